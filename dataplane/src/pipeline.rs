//! The per-packet pipeline of one worker: classify -> conntrack -> Maglev
//! pick -> NAT rewrite, over a burst, in place. It owns its conntrack
//! partition and counters; the service table is borrowed for the burst
//! (loaded once per burst by the caller).

use crate::addr::{Proto, Tuple};
use crate::conntrack::{self, Conntrack, Direction, InsertError};
use crate::counters::{Counted, Counters};
use crate::io::{Batch, MAX_BURST};
use crate::table::ServiceTable;
use crate::verdict::{DropReason, Verdict};
use crate::wire::nat::{decrement_ttl, rewrite_endpoint, translate_icmp_error, End};
use crate::wire::parse::{parse, parse_quoted, ParseError, Parsed, L4};
use crate::wire::reject::{icmp_port_unreachable, tcp_reset};

/// Conntrack slots examined for expiry per burst: enough to cycle a 1M
/// table in a few seconds at 1M bursts/s, small enough to stay invisible
/// in a burst's cost.
pub const EXPIRE_BUDGET_PER_BURST: usize = 64;

/// How a worker's pipeline behaves.
#[derive(Clone, Debug, Default)]
pub struct PipelineConfig {
    pub conntrack: conntrack::Config,
}

/// One worker's pipeline state.
pub struct Pipeline {
    ct: Conntrack,
    counters: Counters,
    /// What each frame of the last burst was counted as, so that the worker
    /// can move a frame it fails to send to a drop reason instead of
    /// counting it twice (a `Tx` verdict does not say which counter).
    counted: [Counted; MAX_BURST],
    counted_len: usize,
}

impl Pipeline {
    /// Allocates everything the pipeline will ever use (conntrack included).
    pub fn new(cfg: PipelineConfig) -> Pipeline {
        Pipeline {
            ct: Conntrack::new(cfg.conntrack),
            counters: Counters::default(),
            counted: [Counted::default(); MAX_BURST],
            counted_len: 0,
        }
    }

    /// What each frame of the last [`Pipeline::process_burst`] was counted
    /// as (index = frame index in that burst).
    pub fn counted(&self) -> &[Counted] {
        &self.counted[..self.counted_len]
    }

    /// Moves one frame, counted as `was`, to the drop counter of `reason`:
    /// the worker dropped it after the pipeline's verdict.
    #[inline]
    pub fn recount(&mut self, was: Counted, reason: DropReason) -> bool {
        self.counters.recount(was, reason)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn conntrack(&self) -> &Conntrack {
        &self.ct
    }

    /// Runs every frame of `batch` through the pipeline, rewriting in place
    /// and setting each frame's verdict. `now_ns` is the dataplane clock,
    /// read once per burst by the caller.
    pub fn process_burst(&mut self, table: &ServiceTable, batch: &mut Batch, now_ns: u64) {
        let now = (now_ns / 1_000_000_000) as u32;
        self.counters.bursts += 1;
        for i in 0..batch.len() {
            let len = batch.descs()[i].len as usize;
            let buf = batch.frame_mut(i);
            let (verdict, new_len, counted) = self.frame(table, buf, len, now);
            self.counted[i] = counted;
            batch.set_verdict(i, verdict);
            if new_len != len {
                batch.set_len(i, new_len);
            }
        }
        self.counted_len = batch.len();
        self.ct.expire(now, EXPIRE_BUDGET_PER_BURST);
    }

    /// One frame: `buf` is its whole buffer, `len` its length. Returns the
    /// verdict and the (possibly changed) length.
    #[inline]
    pub fn process_frame(
        &mut self,
        table: &ServiceTable,
        buf: &mut [u8],
        len: usize,
        now: u32,
    ) -> (Verdict, usize) {
        let (v, n, _) = self.frame(table, buf, len, now);
        (v, n)
    }

    /// [`Pipeline::process_frame`], also saying which counter took the frame.
    #[inline]
    fn frame(
        &mut self,
        table: &ServiceTable,
        buf: &mut [u8],
        len: usize,
        now: u32,
    ) -> (Verdict, usize, Counted) {
        self.counters.packets += 1;
        let v = self.classify_and_nat(table, buf, len, now);
        let counted = match v {
            Outcome::Forwarded => {
                self.counters.forwarded += 1;
                Counted::Forwarded
            }
            Outcome::Reversed => {
                self.counters.reversed += 1;
                Counted::Reversed
            }
            Outcome::Rejected(_) => {
                self.counters.rejected += 1;
                Counted::Rejected
            }
            Outcome::Pass => {
                self.counters.passed += 1;
                Counted::Passed
            }
            Outcome::Drop(r) => {
                self.counters.dropped[r as usize] += 1;
                Counted::Dropped
            }
        };
        let (verdict, len) = match v {
            // The egress interface is the worker's call (neighbour table),
            // so the pipeline only says "transmit".
            Outcome::Forwarded | Outcome::Reversed => (Verdict::Tx(0), len),
            Outcome::Rejected(n) => (Verdict::Tx(0), n),
            Outcome::Pass => (Verdict::Pass, len),
            Outcome::Drop(r) => (Verdict::Drop(r), len),
        };
        (verdict, len, counted)
    }

    #[inline]
    fn classify_and_nat(
        &mut self,
        table: &ServiceTable,
        buf: &mut [u8],
        len: usize,
        now: u32,
    ) -> Outcome {
        let p = match parse(&buf[..len.min(buf.len())]) {
            Ok(p) => p,
            Err(ParseError::NotIp) => return Outcome::Pass,
            Err(ParseError::Malformed) => return Outcome::Drop(DropReason::Malformed),
        };
        if p.fragment {
            return if table.is_vip(&p.dst) {
                Outcome::Drop(DropReason::Fragment)
            } else {
                Outcome::Pass
            };
        }
        match p.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
                ..
            } => self.flow(table, buf, &p, Proto::Tcp, sport, dport, flags, now),
            L4::Udp { sport, dport } => self.flow(table, buf, &p, Proto::Udp, sport, dport, 0, now),
            L4::IcmpError { .. } => self.icmp_error(table, buf, &p, now),
            L4::IcmpEcho { .. } | L4::Other => Outcome::Pass,
        }
    }

    /// A TCP segment or UDP datagram: to a VIP (forward), from a backend of
    /// a tracked flow (reply), or neither (pass).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn flow(
        &mut self,
        table: &ServiceTable,
        buf: &mut [u8],
        p: &Parsed,
        proto: Proto,
        sport: u16,
        dport: u16,
        flags: u8,
        now: u32,
    ) -> Outcome {
        let t = Tuple {
            src: p.src,
            dst: p.dst,
            sport,
            dport,
            proto,
        };
        if let Some(svc) = table.lookup(&p.dst, dport, proto) {
            if p.ttl <= 1 {
                return Outcome::Drop(DropReason::TtlExceeded);
            }
            let (backend, bport) = match self.ct.find_original(&t, now) {
                Some(id) => {
                    let e = *self.ct.entry(id);
                    // UDP has no connection to keep: a flow whose backend
                    // left re-balances (TCP keeps its backend until it ends).
                    if proto == Proto::Udp && !svc.is_active(&e.backend, e.backend_port) {
                        self.ct.remove(id);
                        match self.new_flow(table, svc, &t, flags, now) {
                            Ok(b) => b,
                            Err(o) => return o,
                        }
                    } else {
                        self.ct.update(id, Direction::Original, flags, now);
                        (e.backend, e.backend_port)
                    }
                }
                None => match self.new_flow(table, svc, &t, flags, now) {
                    Ok(b) => b,
                    Err(Outcome::Rejected(_)) => return self.reject(buf, p),
                    Err(o) => return o,
                },
            };
            rewrite_endpoint(buf, p, End::Dst, &backend, bport);
            decrement_ttl(buf, p);
            return Outcome::Forwarded;
        }
        if let Some(id) = self.ct.find_reply(&t, now) {
            if p.ttl <= 1 {
                return Outcome::Drop(DropReason::TtlExceeded);
            }
            self.ct.update(id, Direction::Reply, flags, now);
            let e = self.ct.entry(id);
            let (vip, vport) = (e.original.dst, e.original.dport);
            rewrite_endpoint(buf, p, End::Src, &vip, vport);
            decrement_ttl(buf, p);
            return Outcome::Reversed;
        }
        Outcome::Pass
    }

    /// Picks a backend for a new flow and records it.
    #[inline]
    fn new_flow(
        &mut self,
        table: &ServiceTable,
        svc: &crate::table::ServiceEntry,
        t: &Tuple,
        flags: u8,
        now: u32,
    ) -> Result<(crate::addr::Addr, u16), Outcome> {
        let Some(b) = svc.pick(t, table.config().seed) else {
            return Err(Outcome::Rejected(0));
        };
        match self.ct.insert(t, b.addr, b.port, flags, now) {
            Ok(_) => {
                self.counters.flows += 1;
                Ok((b.addr, b.port))
            }
            Err(InsertError::Full) => Err(Outcome::Drop(DropReason::ConntrackFull)),
        }
    }

    /// Replaces the packet with kube-proxy's REJECT answer.
    fn reject(&mut self, buf: &mut [u8], p: &Parsed) -> Outcome {
        let n = match p.l4 {
            L4::Tcp { .. } => tcp_reset(buf, p),
            _ => icmp_port_unreachable(buf, p),
        };
        Outcome::Rejected(n)
    }

    /// An ICMP error: about a reply we sent (to a VIP, from a router on the
    /// client side) or about a forwarded packet (from a backend's side).
    fn icmp_error(
        &mut self,
        table: &ServiceTable,
        buf: &mut [u8],
        p: &Parsed,
        now: u32,
    ) -> Outcome {
        let to_vip = table.is_vip(&p.dst);
        let untracked = if to_vip {
            Outcome::Drop(DropReason::IcmpUntracked)
        } else {
            Outcome::Pass
        };
        let Ok(q) = parse_quoted(buf, p) else {
            return untracked;
        };
        let proto = match Proto::from_number(q.proto) {
            Some(pr @ (Proto::Tcp | Proto::Udp)) => pr,
            _ => return untracked,
        };
        // The quoted packet travelled the other way: reverse it.
        let t = Tuple {
            src: q.dst,
            dst: q.src,
            sport: q.dport,
            dport: q.sport,
            proto,
        };
        if to_vip {
            // Quoted: VIP -> client (our reply); reversed: the original tuple.
            let Some(id) = self.ct.find_original(&t, now) else {
                return untracked;
            };
            if p.ttl <= 1 {
                return Outcome::Drop(DropReason::TtlExceeded);
            }
            let e = *self.ct.entry(id);
            translate_icmp_error(buf, p, &q, End::Src, &q.src, &e.backend, e.backend_port);
            decrement_ttl(buf, p);
            Outcome::Forwarded
        } else {
            // Quoted: client -> backend (forwarded); reversed: the reply tuple.
            let Some(id) = self.ct.find_reply(&t, now) else {
                return untracked;
            };
            if p.ttl <= 1 {
                return Outcome::Drop(DropReason::TtlExceeded);
            }
            let e = *self.ct.entry(id);
            translate_icmp_error(
                buf,
                p,
                &q,
                End::Dst,
                &q.dst,
                &e.original.dst,
                e.original.dport,
            );
            decrement_ttl(buf, p);
            Outcome::Reversed
        }
    }
}

/// The pipeline's decision before it is mapped to a port.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Forwarded,
    Reversed,
    /// Answered; the answer's frame length.
    Rejected(usize),
    Pass,
    Drop(DropReason),
}
