//! The per-packet pipeline of one worker: classify -> conntrack -> Maglev
//! pick -> NAT rewrite, over a burst, in place. It owns its conntrack
//! partition and counters; the service table is borrowed for the burst
//! (loaded once per burst by the caller).
//!
//! A burst runs in rounds of [`LOOKAHEAD`] frames. Look-ahead passes parse
//! each frame of a round, hash it, look its service up and start loading
//! what its processing will read (conntrack index line and entry, service
//! entry, for a new flow the Maglev ring slot and backend); then the per-packet
//! pass does the real work in order. With thousands of services and a large
//! conntrack those loads are cache misses, and a round overlaps them instead
//! of paying them one packet at a time. The look-ahead reads state only (the
//! service table is fixed for the burst, the conntrack hash for the table's
//! lifetime), so every verdict is what one-at-a-time processing gives.

use std::sync::Arc;

use crate::addr::{Addr, Proto, Tuple};
use crate::affinity::{backend_fingerprint, AffinityTable, Found, Stored};
use crate::conntrack::{self, sctp, tcp, Conntrack, Direction, InsertError};
use crate::counters::{Counted, Counters};
use crate::fragments::{FragKey, FragTable, Inserted, FRAGMENT_TIMEOUT_S};
use crate::io::OffloadMeta;
use crate::io::{Batch, MAX_BURST};
use crate::service::{Affinity, BackendSpec, Forwarding, NoEndpoints, ServiceKey};
use crate::table::{ServiceEntry, ServiceTable};
use crate::verdict::{DropReason, Verdict};
use crate::wire::nat::{
    decrement_ttl, rewrite_address, rewrite_both_ends, rewrite_endpoint, translate_icmp_error, End,
    L4Csum,
};
use crate::wire::parse::{parse, parse_quoted, ParseError, Parsed, L4};
use crate::wire::reject::{
    icmp_error, icmp_port_unreachable, sctp_abort, sctp_is_answered, tcp_reset, IcmpAnswer,
};

/// Conntrack slots examined for expiry per burst: enough to cycle a 1M
/// table in a few seconds at 1M bursts/s, small enough to stay invisible
/// in a burst's cost.
pub const EXPIRE_BUDGET_PER_BURST: usize = 64;

/// Fragmented datagrams a worker remembers the translation of.
pub const FRAGMENT_ENTRIES: usize = 1024;

/// How a datagram's first fragment was translated: which end became
/// which address (later fragments get the same).
#[derive(Clone, Copy, Debug, Default)]
struct FragNat {
    /// The source was rewritten (a reply); else the destination.
    src: bool,
    addr: Addr,
    /// A source-NATed flow's other end: the new address of the end `src`
    /// does not name.
    other: Option<Addr>,
}

/// Frames per look-ahead round: enough misses in flight to cover the memory
/// latency, few enough that the prefetched lines (about four per frame) are
/// still in L1 when the per-packet pass reaches them.
pub const LOOKAHEAD: usize = 32;

/// What the look-ahead learned about one frame of the round.
#[derive(Clone, Copy)]
struct Ahead {
    parsed: Result<Parsed, ParseError>,
    /// [`Conntrack::tuple_hash`] of a TCP/UDP frame's tuple (else unused).
    ct_hash: u32,
    /// [`ServiceEntry::pick_hash`] of a frame to a service that matched no
    /// flow when looked at ahead (it will most likely pick a backend).
    pick_hash: Option<u64>,
}

/// A TCP/UDP frame's lookups, done ahead by the burst path.
#[derive(Clone, Copy)]
struct Known<'t> {
    svc: Option<&'t ServiceEntry>,
    ct_hash: u32,
    pick_hash: Option<u64>,
}

/// How TCP to a Service without endpoints is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RejectTcp {
    /// A TCP RST (RFC 9293), what Cilium and IPVS-mode kube-proxy send.
    #[default]
    Rst,
    /// ICMP / ICMPv6 port unreachable, what kube-proxy's iptables and
    /// nftables REJECT rules send for TCP too. Linux clients report
    /// ECONNREFUSED for either.
    Icmp,
}

/// The node's own addresses, one per family: the source of the ICMP errors
/// the gateway sends as a router (time exceeded). Without one, such packets
/// are dropped silently, counted as `ttl_exceeded`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeAddrs {
    pub v4: Option<Addr>,
    pub v6: Option<Addr>,
}

impl NodeAddrs {
    /// The address for a packet of this family.
    pub fn for_family(&self, v6: bool) -> Option<Addr> {
        if v6 {
            self.v6
        } else {
            self.v4
        }
    }
}

/// Source-NAT ports by default: above Linux's default ephemeral range
/// (`ip_local_port_range` 32768-60999), so the node's own connections
/// never use them and their replies are never mistaken for a flow's.
pub const DEFAULT_SNAT_PORTS: (u16, u16) = (61000, 65535);

/// Source NAT (masquerade): the address a flow's packets leave from, per
/// family, and the ports the workers of a gateway split between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnatConfig {
    pub addrs: NodeAddrs,
    /// First and last port, inclusive.
    pub ports: (u16, u16),
}

impl Default for SnatConfig {
    fn default() -> Self {
        SnatConfig {
            addrs: NodeAddrs::default(),
            ports: DEFAULT_SNAT_PORTS,
        }
    }
}

/// New ports tried for one source-NATed flow before it is dropped: bounds
/// a new flow's cost when its backend's share of the pool is nearly full.
const SNAT_TRIES: usize = 64;

/// Exhausted backend endpoints a worker remembers (see `Pipeline::snat_full`).
const SNAT_FULL_MEMORY: usize = 8;

/// ICMP errors a worker originates per second when nothing is set: Linux's
/// `net.ipv4.icmp_msgs_per_sec` default.
pub const DEFAULT_ICMP_PER_SECOND: u32 = 1000;

/// How a worker's pipeline behaves. Clones share the ClientIP affinity
/// table: give every worker of a gateway a clone of one config.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub conntrack: conntrack::Config,
    pub reject_tcp: RejectTcp,
    pub affinity: Arc<AffinityTable>,
    pub node_addrs: NodeAddrs,
    /// Most ICMP time-exceeded answers per worker per second; the rest are
    /// dropped (as `ttl_exceeded`), as the kernel rate-limits its own.
    pub icmp_per_second: u32,
    pub snat: SnatConfig,
    /// This worker's index among `workers` of its gateway: it takes only
    /// the source-NAT ports whose replies are steered to it.
    pub worker: usize,
    pub workers: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            conntrack: conntrack::Config::default(),
            reject_tcp: RejectTcp::default(),
            affinity: Arc::default(),
            node_addrs: NodeAddrs::default(),
            icmp_per_second: DEFAULT_ICMP_PER_SECOND,
            snat: SnatConfig::default(),
            worker: 0,
            workers: 1,
        }
    }
}

/// One worker's share of the source-NAT ports of `addr`: those whose
/// replies [`crate::steer::endpoint_owner`] gives it.
fn snat_share(addr: Option<Addr>, ports: (u16, u16), worker: usize, workers: usize) -> Box<[u16]> {
    let Some(addr) = addr else {
        return Box::new([]);
    };
    (ports.0.max(1)..=ports.1)
        .filter(|&p| crate::steer::endpoint_owner(&addr, p, workers) == worker)
        .collect()
}

/// One worker's pipeline state.
pub struct Pipeline {
    ct: Conntrack,
    reject_tcp: RejectTcp,
    affinity: Arc<AffinityTable>,
    node_addrs: NodeAddrs,
    icmp_per_second: u32,
    /// The second the ICMP budget is counted for, and what it has used.
    icmp_second: u32,
    icmp_sent: u32,
    frags: FragTable<FragNat>,
    /// Source-NAT address and this worker's ports, per family ([v4, v6]),
    /// and where the next search for a free port starts.
    snat_addrs: NodeAddrs,
    snat_ports: [Box<[u16]>; 2],
    snat_next: [usize; 2],
    /// Backend endpoints (address, port, protocol) whose share of ports was
    /// found full, and the second it was: new flows to them are dropped
    /// without a search for the rest of that second, so a flood towards an
    /// exhausted backend costs one comparison per packet, not a search.
    snat_full: [(Addr, u16, Proto, u32); SNAT_FULL_MEMORY],
    snat_full_next: usize,
    counters: Counters,
    /// What each frame of the last burst was counted as, so that the worker
    /// can move a frame it fails to send to a drop reason instead of
    /// counting it twice (a `Tx` verdict does not say which counter).
    counted: [Counted; MAX_BURST],
    counted_len: usize,
    /// The current look-ahead round, by frame index within the round.
    ahead: [Ahead; LOOKAHEAD],
}

impl Pipeline {
    /// Allocates everything the pipeline will ever use (conntrack included).
    pub fn new(cfg: PipelineConfig) -> Pipeline {
        let snat = cfg.snat;
        let zero = Addr([0; 16]);
        let ct_cfg = conntrack::Config {
            snat: [snat.addrs.v4.unwrap_or(zero), snat.addrs.v6.unwrap_or(zero)],
            ..cfg.conntrack
        };
        let share = |a| snat_share(a, snat.ports, cfg.worker, cfg.workers);
        Pipeline {
            ct: Conntrack::new(ct_cfg),
            snat_addrs: snat.addrs,
            snat_ports: [share(snat.addrs.v4), share(snat.addrs.v6)],
            snat_next: [0; 2],
            // Second u32::MAX never comes: the slots start empty.
            snat_full: [(Addr([0; 16]), 0, Proto::Tcp, u32::MAX); SNAT_FULL_MEMORY],
            snat_full_next: 0,
            reject_tcp: cfg.reject_tcp,
            affinity: cfg.affinity,
            node_addrs: cfg.node_addrs,
            icmp_per_second: cfg.icmp_per_second,
            icmp_second: 0,
            icmp_sent: 0,
            frags: FragTable::new(FRAGMENT_ENTRIES, FRAGMENT_TIMEOUT_S),
            counters: Counters::default(),
            counted: [Counted::default(); MAX_BURST],
            counted_len: 0,
            ahead: [Ahead {
                parsed: Err(ParseError::NotIp),
                ct_hash: 0,
                pick_hash: None,
            }; LOOKAHEAD],
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
        let n = batch.len();
        let mut start = 0;
        while start < n {
            let end = n.min(start + LOOKAHEAD);
            let mut svcs: [Option<&ServiceEntry>; LOOKAHEAD] = [None; LOOKAHEAD];
            self.look_ahead(table, batch, start..end, &mut svcs);
            for i in start..end {
                let d = batch.descs()[i];
                let len = d.len as usize;
                let l4csum = if d.offload.csum_partial() {
                    L4Csum::Partial
                } else {
                    L4Csum::Full
                };
                let a = self.ahead[i - start];
                let known = Known {
                    svc: svcs[i - start],
                    ct_hash: a.ct_hash,
                    pick_hash: a.pick_hash,
                };
                let buf = batch.frame_mut(i);
                let (verdict, new_len, counted) =
                    self.frame(table, buf, len, a.parsed, Some(known), l4csum, now);
                self.counted[i] = counted;
                batch.set_verdict(i, verdict);
                if counted == Counted::Rejected {
                    // A reject is a new frame, checksummed in full.
                    batch.set_offload(i, OffloadMeta::NONE);
                }
                if new_len != len {
                    batch.set_len(i, new_len);
                }
            }
            start = end;
        }
        self.counted_len = n;
        self.ct.expire(now, EXPIRE_BUDGET_PER_BURST);
    }

    /// The look-ahead passes over frames `range` of `batch` (at most
    /// [`LOOKAHEAD`]): fills `self.ahead` and `svcs` (by index in the round)
    /// and issues the prefetches. Nothing here changes any state that the
    /// per-packet pass reads besides those two arrays.
    #[inline]
    fn look_ahead<'t>(
        &mut self,
        table: &'t ServiceTable,
        batch: &Batch,
        range: std::ops::Range<usize>,
        svcs: &mut [Option<&'t ServiceEntry>; LOOKAHEAD],
    ) {
        let start = range.start;
        let seed = table.config().seed;
        // First the loads that need nothing but the headers: the index line
        // and the service lookup's slot.
        let mut svc_hash = [0u64; LOOKAHEAD];
        for i in range.clone() {
            let parsed = parse(batch.frame(i));
            let mut ct_hash = 0;
            if let Ok(p) = &parsed {
                if let Some(t) = flow_tuple(p) {
                    ct_hash = self.ct.tuple_hash(&t);
                    self.ct.prefetch_index(ct_hash);
                    let h = table.key_hash(&service_key(&t));
                    table.prefetch_lookup(h);
                    svc_hash[i - start] = h;
                }
            }
            self.ahead[i - start] = Ahead {
                parsed,
                ct_hash,
                pick_hash: None,
            };
        }
        // The service lookups, from slots that are on their way; and the
        // service entry of a packet that will read it (UDP checks its
        // backend is still active, a SYN picks one).
        for i in range.clone() {
            let Ok(p) = &self.ahead[i - start].parsed else {
                continue;
            };
            let Some(t) = flow_tuple(p) else {
                continue;
            };
            let svc = table.lookup_hashed(svc_hash[i - start], &service_key(&t));
            if let Some(s) = svc {
                let syn = matches!(p.l4, L4::Tcp { flags, .. } if flags & tcp::SYN != 0);
                if t.proto == Proto::Udp || syn {
                    s.prefetch();
                }
            }
            svcs[i - start] = svc;
        }
        // Then what those point at: the flow's entry; for a UDP flow the
        // active-backend list; for a packet to a service that matches no
        // flow (a new flow, most likely) the ring slot its pick will read.
        for i in range.clone() {
            let a = &mut self.ahead[i - start];
            let Some(t) = a.parsed.as_ref().ok().and_then(flow_tuple) else {
                continue;
            };
            let svc = svcs[i - start];
            let dir = if svc.is_some() {
                Direction::Original
            } else {
                Direction::Reply
            };
            let tracked = self.ct.prefetch_entry(a.ct_hash, dir);
            match (svc, tracked) {
                (Some(s), false) => {
                    let h = s.pick_hash(&t, seed);
                    s.prefetch_pick(h);
                    a.pick_hash = Some(h);
                }
                (Some(s), true) if t.proto == Proto::Udp => s.prefetch_is_active(),
                _ => {}
            }
        }
        // Last, the backend each new flow's ring slot names.
        for i in range {
            if let (Some(s), Some(h)) = (svcs[i - start], self.ahead[i - start].pick_hash) {
                s.prefetch_backend(h);
            }
        }
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
        let parsed = parse(&buf[..len.min(buf.len())]);
        let (v, n, _) = self.frame(table, buf, len, parsed, None, L4Csum::Full, now);
        (v, n)
    }

    /// [`Pipeline::process_frame`] of an already parsed frame, also saying
    /// which counter took the frame. `known`: the frame's lookups, if done.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn frame(
        &mut self,
        table: &ServiceTable,
        buf: &mut [u8],
        len: usize,
        parsed: Result<Parsed, ParseError>,
        known: Option<Known<'_>>,
        l4csum: L4Csum,
        now: u32,
    ) -> (Verdict, usize, Counted) {
        self.counters.packets += 1;
        let v = self.classify_and_nat(table, buf, parsed, known, l4csum, now);
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
        parsed: Result<Parsed, ParseError>,
        known: Option<Known<'_>>,
        l4csum: L4Csum,
        now: u32,
    ) -> Outcome {
        let p = match parsed {
            Ok(p) => p,
            // Not IP, or IPv6 with IPv4-mapped addresses: not ours.
            Err(ParseError::NotIp | ParseError::V4Mapped) => return Outcome::Pass,
            Err(ParseError::Malformed) => return Outcome::Drop(DropReason::Malformed),
        };
        if p.fragment && (!p.frag_first || !matches!(p.l4, L4::Tcp { .. } | L4::Udp { .. })) {
            return self.later_fragment(table, buf, &p, now);
        }
        if p.in_transit {
            // Source-routed through this address, not ending here.
            return Outcome::Pass;
        }
        if let Some(t) = flow_tuple(&p) {
            let flags = match p.l4 {
                L4::Tcp { flags, .. } => flags,
                L4::Sctp { chunks, .. } => chunks.0,
                _ => 0,
            };
            let known = known.unwrap_or_else(|| Known {
                svc: table.lookup(&t.dst, t.dport, t.proto),
                ct_hash: self.ct.tuple_hash(&t),
                pick_hash: None,
            });
            return self.flow(table, buf, &p, &t, known, flags, l4csum, now);
        }
        match p.l4 {
            L4::IcmpError { .. } => self.icmp_error(table, buf, &p, now),
            _ => Outcome::Pass,
        }
    }

    /// A TCP segment or UDP datagram: to a VIP (forward), from a backend of
    /// a tracked flow (reply), or neither (pass).
    /// `known` holds `t`'s service and conntrack hash.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn flow(
        &mut self,
        table: &ServiceTable,
        buf: &mut [u8],
        p: &Parsed,
        t: &Tuple,
        known: Known<'_>,
        flags: u8,
        l4csum: L4Csum,
        now: u32,
    ) -> Outcome {
        if let Some(svc) = known.svc {
            if svc.is_retired() {
                return self.retired_flow(buf, p, t, known.ct_hash, flags, l4csum, now);
            }
            if p.ttl <= 1 {
                return self.ttl_expired(buf, p, now);
            }
            let tracked = match self.ct.find_original_hashed(t, known.ct_hash, now) {
                Some(id) => {
                    let e = *self.ct.entry(id);
                    // UDP has no connection to keep: a flow whose backend
                    // left re-balances (TCP keeps its backend until it ends).
                    if t.proto == Proto::Udp && !svc.is_active(&e.backend, e.backend_port) {
                        self.ct.remove(id);
                        None
                    } else {
                        self.ct.update(id, Direction::Original, flags, now);
                        Some((e.backend, e.backend_port, e.snat_port))
                    }
                }
                None => None,
            };
            // A new flow, or a re-balanced one: either may find the
            // Service without endpoints now, and is answered as such.
            let (backend, bport, snat_port) = match tracked {
                Some(b) => b,
                // loadBalancerSourceRanges: checked when a flow starts, as
                // kube-proxy's firewall rules see only a connection's first
                // packet.
                None if !svc.spec.admits(&t.src) => return Outcome::Drop(DropReason::SourceRange),
                None if t.proto == Proto::Sctp && !sctp::opens(flags) => {
                    return self.sctp_untracked(table, svc, buf, p, t);
                }
                None => match self.new_flow(table, svc, t, known.pick_hash, flags, now) {
                    Ok(b) => b,
                    Err(Outcome::Rejected(_)) if svc.spec.no_endpoints == NoEndpoints::Drop => {
                        return Outcome::Drop(DropReason::NoLocalEndpoints)
                    }
                    Err(Outcome::Rejected(_)) => return self.reject(buf, p),
                    Err(o) => return o,
                },
            };
            self.translate_to_backend(buf, p, &backend, bport, snat_port, l4csum, now);
            return Outcome::Forwarded;
        }
        if let Some(id) = self.ct.find_reply_hashed(t, known.ct_hash, now) {
            if p.ttl <= 1 {
                return Outcome::Drop(DropReason::TtlExceeded);
            }
            self.ct.update(id, Direction::Reply, flags, now);
            let e = *self.ct.entry(id);
            let (vip, vport) = (e.original.dst, e.original.dport);
            let client = e.snat().then_some(e.original.src);
            self.remember_fragment(p, true, vip, client, now);
            if e.snat() {
                let client = (&e.original.src, e.original.sport);
                rewrite_both_ends(buf, p, (&vip, vport), client, l4csum);
            } else {
                rewrite_endpoint(buf, p, End::Src, &vip, vport, l4csum);
            }
            decrement_ttl(buf, p);
            return Outcome::Reversed;
        }
        Outcome::Pass
    }

    /// Rewrites a client's packet of a flow for its backend: to the
    /// backend endpoint, and from the gateway's address and `snat_port`
    /// when the flow is source-NATed (`snat_port` != 0).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn translate_to_backend(
        &mut self,
        buf: &mut [u8],
        p: &Parsed,
        backend: &Addr,
        bport: u16,
        snat_port: u16,
        l4csum: L4Csum,
        now: u32,
    ) {
        let snat = (snat_port != 0).then(|| self.ct.snat_addr(!p.v6));
        self.remember_fragment(p, false, *backend, snat, now);
        match snat {
            Some(a) => rewrite_both_ends(buf, p, (&a, snat_port), (backend, bport), l4csum),
            None => rewrite_endpoint(buf, p, End::Dst, backend, bport, l4csum),
        }
        decrement_ttl(buf, p);
    }

    /// A packet to a removed Service port. Its established TCP (and SCTP)
    /// flows keep their translation until they end or time out, as kube-proxy's
    /// conntrack entries outlive the rules that made them; its UDP flows
    /// are flushed (kube-proxy deletes them when the Service goes), and
    /// everything else is no longer ours: passed to the kernel.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn retired_flow(
        &mut self,
        buf: &mut [u8],
        p: &Parsed,
        t: &Tuple,
        ct_hash: u32,
        flags: u8,
        l4csum: L4Csum,
        now: u32,
    ) -> Outcome {
        let Some(id) = self.ct.find_original_hashed(t, ct_hash, now) else {
            return Outcome::Pass;
        };
        // kube-proxy's conntrack cleanup flushes UDP entries only: TCP and
        // SCTP associations run on.
        if t.proto == Proto::Udp {
            self.ct.remove(id);
            self.counters.retired_flushed += 1;
            return Outcome::Pass;
        }
        if p.ttl <= 1 {
            return self.ttl_expired(buf, p, now);
        }
        self.ct.update(id, Direction::Original, flags, now);
        let e = *self.ct.entry(id);
        self.translate_to_backend(buf, p, &e.backend, e.backend_port, e.snat_port, l4csum, now);
        Outcome::Forwarded
    }

    /// Picks a backend for a new flow and records it. `pick_hash`: `t`'s
    /// [`ServiceEntry::pick_hash`], if the look-ahead computed it.
    /// `Err(Outcome::Rejected(0))` means no endpoints: the caller builds
    /// the answer ([`Pipeline::reject`]), never transmits it as is.
    #[inline]
    fn new_flow(
        &mut self,
        table: &ServiceTable,
        svc: &ServiceEntry,
        t: &Tuple,
        pick_hash: Option<u64>,
        flags: u8,
        now: u32,
    ) -> Result<(Addr, u16, u16), Outcome> {
        let b = match svc.spec.affinity {
            Affinity::None => {
                let h = pick_hash.unwrap_or_else(|| svc.pick_hash(t, table.config().seed));
                debug_assert_eq!(h, svc.pick_hash(t, table.config().seed));
                svc.pick_hashed(h)
            }
            Affinity::ClientIp { timeout_s } => {
                self.affinity_pick(table, svc, t, pick_hash, timeout_s, now)
            }
        };
        let Some(b) = b else {
            return Err(Outcome::Rejected(0));
        };
        let (addr, port) = (b.addr, b.port);
        let snat_port = self.snat_for(svc, t, addr, port, now)?;
        match self.ct.insert_nat(t, addr, port, snat_port, flags, now) {
            Ok(_) => {
                self.counters.flows += 1;
                Ok((addr, port, snat_port))
            }
            Err(InsertError::Full) => Err(Outcome::Drop(DropReason::ConntrackFull)),
        }
    }

    /// The source-NAT port of a new flow to `backend:bport`, or 0 for a
    /// plain DNAT flow. Source NAT when the Service forwards with snat;
    /// when the client is the backend itself (a hairpin: DNAT alone would
    /// hand it a packet from itself to itself); and when another live
    /// flow's replies already arrive as this flow's would (one client port
    /// to two VIPs of one backend), where DNAT would merge the two.
    #[inline]
    fn snat_for(
        &mut self,
        svc: &ServiceEntry,
        t: &Tuple,
        backend: Addr,
        bport: u16,
        now: u32,
    ) -> Result<u16, Outcome> {
        let dnat_reply = Tuple {
            src: backend,
            dst: t.src,
            sport: bport,
            dport: t.sport,
            proto: t.proto,
        };
        if svc.spec.forwarding == Forwarding::Snat {
            self.counters.snat_flows += 1;
        } else if backend == t.src {
            self.counters.snat_hairpin += 1;
        } else if self.ct.reply_in_use(&dnat_reply, now) {
            self.counters.snat_clash += 1;
        } else {
            return Ok(0);
        }
        self.free_snat_port(&dnat_reply, now)
            .ok_or(Outcome::Drop(DropReason::SnatExhausted))
    }

    /// A port of this worker's share whose reply tuple (from the backend
    /// endpoint of `reply` to the source-NAT address) no live flow holds,
    /// searched round-robin from where the last search stopped.
    #[inline]
    fn free_snat_port(&mut self, reply: &Tuple, now: u32) -> Option<u16> {
        let fam = usize::from(!reply.src.is_v4());
        let dst = self.snat_addrs.for_family(fam == 1)?;
        let backend = (reply.src, reply.sport, reply.proto, now);
        if self.snat_full.contains(&backend) {
            return None;
        }
        let n = self.snat_ports[fam].len();
        for _ in 0..SNAT_TRIES.min(n) {
            let i = self.snat_next[fam];
            self.snat_next[fam] = if i + 1 == n { 0 } else { i + 1 };
            let port = self.snat_ports[fam][i];
            let t = Tuple {
                dst,
                dport: port,
                ..*reply
            };
            if !self.ct.reply_in_use(&t, now) {
                return Some(port);
            }
        }
        self.snat_full[self.snat_full_next] = backend;
        self.snat_full_next = (self.snat_full_next + 1) % SNAT_FULL_MEMORY;
        None
    }

    /// The backend of a new flow under ClientIP affinity: the client's
    /// remembered one while it is within `timeout_s` and still takes new
    /// flows, else the Maglev pick of the client address (which every
    /// gateway agrees on); either way remembered as of `now`.
    #[inline]
    fn affinity_pick<'s>(
        &mut self,
        table: &ServiceTable,
        svc: &'s ServiceEntry,
        t: &Tuple,
        pick_hash: Option<u64>,
        timeout_s: u32,
        now: u32,
    ) -> Option<&'s BackendSpec> {
        let key = AffinityTable::key(&svc.spec.key, &t.src);
        let remembered = match self.affinity.lookup(key, now, timeout_s) {
            Found::Backend(fp) => {
                let b = svc.active_by_fingerprint(fp);
                match b {
                    Some(_) => self.counters.affinity_hits += 1,
                    None => self.counters.affinity_moved += 1,
                }
                b
            }
            Found::Expired => {
                self.counters.affinity_expired += 1;
                None
            }
            Found::Unknown => {
                self.counters.affinity_unknown += 1;
                None
            }
        };
        let b = remembered.or_else(|| {
            let h = pick_hash.unwrap_or_else(|| svc.pick_hash(t, table.config().seed));
            svc.pick_hashed(h)
        })?;
        let fp = backend_fingerprint(&b.addr, b.port);
        if self.affinity.remember(key, fp, now, timeout_s) == Stored::Evicted {
            self.counters.affinity_evictions += 1;
        }
        Some(b)
    }

    /// After translating a first fragment: how, for its later fragments.
    #[inline]
    fn remember_fragment(
        &mut self,
        p: &Parsed,
        src: bool,
        addr: Addr,
        other: Option<Addr>,
        now: u32,
    ) {
        if p.fragment
            && self
                .frags
                .insert(FragKey::of(p), FragNat { src, addr, other }, now)
                == Inserted::Evicted
        {
            self.counters.fragment_evictions += 1;
        }
    }

    /// A fragment that does not carry its datagram's ports (past the first,
    /// or a first one too short): translated as its first fragment was, if
    /// this worker translated it; else dropped if addressed to a VIP (it
    /// cannot be translated) and passed otherwise (not ours).
    fn later_fragment(
        &mut self,
        table: &ServiceTable,
        buf: &mut [u8],
        p: &Parsed,
        now: u32,
    ) -> Outcome {
        let Some(nat) = (!p.frag_first)
            .then(|| self.frags.get(&FragKey::of(p), now))
            .flatten()
        else {
            return if table.is_vip(&p.dst) {
                Outcome::Drop(DropReason::Fragment)
            } else {
                Outcome::Pass
            };
        };
        if p.ttl <= 1 {
            return Outcome::Drop(DropReason::TtlExceeded);
        }
        let (end, other_end) = if nat.src {
            (End::Src, End::Dst)
        } else {
            (End::Dst, End::Src)
        };
        rewrite_address(buf, p, end, &nat.addr);
        if let Some(a) = nat.other {
            rewrite_address(buf, p, other_end, &a);
        }
        decrement_ttl(buf, p);
        self.counters.fragments_followed += 1;
        if nat.src {
            Outcome::Reversed
        } else {
            Outcome::Forwarded
        }
    }

    /// Counts what the worker's hold of early later fragments did with a
    /// burst ([`crate::worker::frag_hold`]): `held` taken (counted as
    /// packets when they leave it), `full` not taken (they go on as before).
    pub fn count_fragment_hold(&mut self, held: u64, full: u64) {
        self.counters.fragments_held += held;
        self.counters.fragment_hold_full += full;
    }

    /// Counts a held fragment whose first fragment never came as
    /// [`Pipeline::later_fragment`] counts one that has no translation:
    /// dropped if addressed to a VIP, else passed.
    pub fn count_fragment_expired(&mut self, to_vip: bool) {
        self.counters.packets += 1;
        self.counters.fragment_hold_expired += 1;
        if to_vip {
            self.counters.dropped[DropReason::Fragment as usize] += 1;
        } else {
            self.counters.passed += 1;
        }
    }

    /// A client's packet towards a VIP whose TTL / hop limit would run out
    /// here: answered with ICMP time exceeded from the node's address, as
    /// the kernel's forwarding path answers it (so traceroute through the
    /// gateway shows it), within the per-second budget; else dropped.
    /// Never for ICMP errors (RFC 1812 4.3.2.7: no error about an error).
    fn ttl_expired(&mut self, buf: &mut [u8], p: &Parsed, now: u32) -> Outcome {
        let Some(src) = self.node_addrs.for_family(p.v6) else {
            return Outcome::Drop(DropReason::TtlExceeded);
        };
        if now != self.icmp_second {
            self.icmp_second = now;
            self.icmp_sent = 0;
        }
        if self.icmp_sent >= self.icmp_per_second {
            return Outcome::Drop(DropReason::TtlExceeded);
        }
        self.icmp_sent += 1;
        self.counters.time_exceeded_sent += 1;
        Outcome::Rejected(icmp_error(buf, p, IcmpAnswer::TimeExceeded, &src))
    }

    /// An SCTP packet to a VIP port that is not an INIT and matches no
    /// association: dropped, unless the Service has no endpoints, which is
    /// answered as an INIT would be (RFC 9260 8.4 answers any
    /// out-of-the-blue packet, see [`Pipeline::reject`]).
    #[cold]
    fn sctp_untracked(
        &mut self,
        table: &ServiceTable,
        svc: &ServiceEntry,
        buf: &mut [u8],
        p: &Parsed,
        t: &Tuple,
    ) -> Outcome {
        if svc.pick(t, table.config().seed).is_some() {
            Outcome::Drop(DropReason::SctpNoAssociation)
        } else if svc.spec.no_endpoints == NoEndpoints::Drop {
            Outcome::Drop(DropReason::NoLocalEndpoints)
        } else {
            self.reject(buf, p)
        }
    }

    /// Replaces the packet with kube-proxy's REJECT answer.
    ///
    /// Except a RST, which is never answered: RFC 9293 3.10.7.1 discards a
    /// RST to a closed port, and Linux's REJECT --reject-with tcp-reset
    /// (nf_send_reset) sends nothing for one, and the rule drops it. It is
    /// dropped here too, counted, rather than passed: it is addressed to a
    /// VIP, so the kernel has nothing to do with it (and AF_XDP cannot hand
    /// a frame back to the kernel at all).
    fn reject(&mut self, buf: &mut [u8], p: &Parsed) -> Outcome {
        let n = match p.l4 {
            L4::Tcp { flags, .. } if flags & tcp::RST != 0 => {
                return Outcome::Drop(DropReason::RstNoEndpoints)
            }
            L4::Tcp { .. } if self.reject_tcp == RejectTcp::Rst => tcp_reset(buf, p),
            // Likewise an ABORT or SHUTDOWN COMPLETE (RFC 9260 8.4).
            L4::Sctp { chunk, chunks, .. } if !sctp_is_answered(chunk, chunks) => {
                return Outcome::Drop(DropReason::SctpNoEndpointsUnanswered)
            }
            L4::Sctp { .. } => sctp_abort(buf, p),
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
            Some(pr @ (Proto::Tcp | Proto::Udp | Proto::Sctp)) => pr,
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
            if e.snat() {
                // The quoted reply went to the client: the backend sent it
                // to the gateway's address and port.
                let snat = self.ct.snat_addr(!q.v6);
                translate_icmp_error(buf, p, &q, End::Dst, &q.dst, &snat, e.snat_port);
            }
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
            if e.snat() {
                // The quoted packet came from the gateway's address and
                // port: the client sent it, from its own.
                let (client, cport) = (e.original.src, e.original.sport);
                translate_icmp_error(buf, p, &q, End::Src, &q.src, &client, cport);
            }
            decrement_ttl(buf, p);
            Outcome::Reversed
        }
    }
}

/// The tuple of a TCP segment, UDP datagram or SCTP packet that has ports
/// (a whole packet or a first fragment): what conntrack and the service
/// table are keyed on.
#[inline]
fn flow_tuple(p: &Parsed) -> Option<Tuple> {
    if (p.fragment && !p.frag_first) || p.in_transit {
        return None;
    }
    let (sport, dport, proto) = match p.l4 {
        L4::Tcp { sport, dport, .. } => (sport, dport, Proto::Tcp),
        L4::Udp { sport, dport } => (sport, dport, Proto::Udp),
        L4::Sctp { sport, dport, .. } => (sport, dport, Proto::Sctp),
        _ => return None,
    };
    Some(Tuple {
        src: p.src,
        dst: p.dst,
        sport,
        dport,
        proto,
    })
}

/// The service key a flow's packets to a VIP are looked up by.
#[inline]
fn service_key(t: &Tuple) -> ServiceKey {
    ServiceKey {
        vip: t.dst,
        port: t.dport,
        proto: t.proto,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::memory::{Capture, MemoryIo};
    use crate::io::pcap::read_capture;
    use crate::io::PacketIo;
    use crate::service::ServiceSpec;
    use crate::table::TableConfig;

    /// Every frame's verdict, length and bytes after the pipeline, in order.
    type Out = Vec<(Verdict, Vec<u8>)>;

    /// Replays `cap` `loops` times in bursts of `burst`, through
    /// `process_burst` (look-ahead) or frame by frame through `process_frame`
    /// plus the per-burst expiry (the path without look-ahead).
    fn replay(
        cap: &Capture,
        table: &ServiceTable,
        capacity: u32,
        burst: usize,
        loops: u64,
        ahead: bool,
    ) -> (Out, Pipeline) {
        let order: Vec<u32> = (0..cap.len() as u32).collect();
        let mut io = MemoryIo::new(cap, &order, loops);
        let mut batch = Batch::new();
        let mut p = Pipeline::new(PipelineConfig {
            conntrack: conntrack::Config {
                capacity,
                ..Default::default()
            },
            ..Default::default()
        });
        let mut out = Vec::new();
        while !io.done() {
            io.rx_burst(&mut batch, burst);
            if ahead {
                p.process_burst(table, &mut batch, io.now_ns());
            } else {
                let now = (io.now_ns() / 1_000_000_000) as u32;
                p.counters.bursts += 1;
                for i in 0..batch.len() {
                    let len = batch.descs()[i].len as usize;
                    let (v, n) = p.process_frame(table, batch.frame_mut(i), len, now);
                    batch.set_verdict(i, v);
                    batch.set_len(i, n);
                }
                p.ct.expire(now, EXPIRE_BUDGET_PER_BURST);
            }
            for i in 0..batch.len() {
                out.push((batch.verdicts()[i], batch.frame(i).to_vec()));
            }
        }
        (out, p)
    }

    fn assert_same(cap: &Capture, table: &ServiceTable, capacity: u32, loops: u64) {
        for burst in [1, 7, LOOKAHEAD, LOOKAHEAD + 1, 64, MAX_BURST] {
            let (want, plain) = replay(cap, table, capacity, burst, loops, false);
            let (got, p) = replay(cap, table, capacity, burst, loops, true);
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "burst {burst}: frame {i} differs");
            }
            assert_eq!(p.counters(), plain.counters(), "burst {burst}");
            assert_eq!(p.ct.stats(), plain.ct.stats(), "burst {burst}");
            assert_eq!(p.ct.len(), plain.ct.len(), "burst {burst}");
        }
    }

    /// The specs `control` makes of a fixture's services (as the fixtures
    /// crate does, but with this crate's types: its own are a different
    /// build of this crate in unit tests).
    fn specs(services: &[fixtures::yaml::ServiceDef]) -> Vec<ServiceSpec> {
        use crate::addr::Addr;
        use crate::service::{Affinity, BackendSpec, BackendState, ServiceKey};
        use fixtures::yaml::{EpState, L4Proto};
        let mut out = Vec::new();
        for svc in services {
            for &ip in &svc.cluster_ips {
                for p in &svc.ports {
                    let backends = svc
                        .endpoints
                        .iter()
                        .filter(|e| e.addr.is_ipv6() == ip.is_ipv6())
                        .map(|e| BackendSpec {
                            addr: Addr::from(e.addr),
                            port: p.target,
                            weight: 1,
                            state: match e.state {
                                EpState::Ready => BackendState::Ready,
                                EpState::ServingTerminating => BackendState::ServingTerminating,
                            },
                        })
                        .collect();
                    out.push(ServiceSpec {
                        key: ServiceKey {
                            vip: Addr::from(ip),
                            port: p.port,
                            proto: match p.proto {
                                L4Proto::Tcp => Proto::Tcp,
                                L4Proto::Udp => Proto::Udp,
                                L4Proto::Sctp => Proto::Sctp,
                            },
                        },
                        name: format!("{}/{}:{}", svc.namespace, svc.name, p.port),
                        backends,
                        affinity: match svc.affinity_timeout {
                            Some(timeout_s) => Affinity::ClientIp { timeout_s },
                            None => Affinity::None,
                        },
                        no_endpoints: crate::service::NoEndpoints::Reject,
                        forwarding: Default::default(),
                        source_ranges: Vec::new(),
                    });
                }
            }
        }
        out
    }

    fn fixture(name: &str, services: &[fixtures::yaml::ServiceDef]) -> (Capture, ServiceTable) {
        let path = fixtures::fixtures_dir().join(format!("{name}.pcap"));
        let cap = read_capture(&path).unwrap();
        let table = ServiceTable::from_specs(specs(services), TableConfig::default());
        (cap, table)
    }

    /// The demo capture (new TCP/UDP flows, replies, rejects, ICMP errors,
    /// pass-through), replayed with a roomy conntrack and with one so small
    /// that new flows keep evicting the ones the look-ahead has just seen
    /// (and are refused once it holds only assured flows).
    #[test]
    fn look_ahead_changes_no_verdict_byte_or_counter() {
        let (cap, table) = fixture("demo", &fixtures::scenario_demo::services());
        assert!(cap.len() > 1000, "{}", cap.len());
        for capacity in [1 << 16, 16] {
            assert_same(&cap, &table, capacity, 2);
        }
        let (_, p) = replay(&cap, &table, 16, 64, 2, true);
        let st = p.ct.stats();
        assert!(st.evicted_unreplied > 50 && st.full > 0, "{st:?}");
        let c = p.counters();
        assert!(
            c.forwarded > 0 && c.reversed > 0 && c.rejected > 0 && c.passed > 0,
            "{c:?}"
        );
    }

    /// ClientIP affinity: the pick hash the look-ahead computes is the
    /// client's, not the 5-tuple's.
    #[test]
    fn look_ahead_keeps_client_affinity_picks() {
        let (cap, table) = fixture("affinity", &fixtures::scenario_affinity::services());
        assert!(table
            .entries()
            .iter()
            .any(|e| matches!(e.spec.affinity, crate::service::Affinity::ClientIp { .. })));
        assert_same(&cap, &table, 1 << 16, 2);
    }

    /// SCTP: associations, packets outside one, ABORT answers.
    #[test]
    fn look_ahead_agrees_on_sctp() {
        let (cap, table) = fixture("sctp", &fixtures::scenario_sctp::services());
        assert_same(&cap, &table, 1 << 16, 2);
    }
}
