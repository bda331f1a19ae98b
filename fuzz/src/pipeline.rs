//! The `pipeline` target: bursts of frames decoded from the input run through
//! `Pipeline::process_burst` (look-ahead rounds, the gateway's path) and, on
//! a second pipeline built the same way, one frame at a time through
//! `Pipeline::process_frame` followed by an empty burst (which runs the
//! per-burst expiry, as the unit tests' plain path does). Between bursts the
//! clock moves and the table may switch generation.
//!
//! Invariants (a violation panics, which AFL records as a crash):
//! - both paths give the same verdicts, lengths, bytes, counters and
//!   conntrack statistics, burst by burst;
//! - every frame gets one verdict and is counted once: `counted()` has one
//!   entry per frame agreeing with the verdict, the counters move by what
//!   `counted()` says and stay balanced, `packets` equals frames fed;
//! - the rest, per frame, in `verify`.

use std::sync::Arc;

use dataplane::addr::Addr;
use dataplane::affinity::AffinityTable;
use dataplane::counters::{Counted, Counters};
use dataplane::io::{Batch, FrameDesc, OffloadMeta};
use dataplane::pipeline::{NodeAddrs, Pipeline, PipelineConfig, RejectTcp, SnatConfig};
use dataplane::table::ServiceTable;
use dataplane::verdict::Verdict;

use crate::gen::{self, Flow, MAX_FRAME};
use crate::input::Input;
use crate::{scenario, verify, walk};

/// Bursts per run and frames per burst: enough for flows to be set up,
/// answered, errored, expired and evicted, and for a burst to span two
/// look-ahead rounds (32), few enough for thousands of runs a second (a
/// first campaign with 16 x 80 slowed to a few hundred a second as the
/// corpus grew long inputs, and found no edge after its first 10 minutes).
const MAX_BURSTS: usize = 8;
const MAX_FRAMES: usize = 48;
/// Learned flows kept for replies and ICMP errors.
const MAX_LEARNED: usize = 32;

/// Seconds the clock moves before a burst: none, within a timeout, past the
/// UDP / ICMP (30 s), SYN_SENT (120 s) and established TCP (5 days) timeouts.
const STEPS: [u64; 12] = [0, 0, 0, 1, 1, 2, 29, 31, 61, 121, 3600, 432_001];

/// Bytes per frame buffer of a burst; the tail past each frame is filled
/// with a different byte on each path, so a read past a frame's end shows.
const SLOT: usize = MAX_FRAME;
const TAIL_BURST: u8 = 0xa5;
const TAIL_SINGLE: u8 = 0x5a;

/// Runs one input; returns the burst path's counters (what the seeds reach).
pub fn run(data: &[u8]) -> Counters {
    let mut inp = Input::new(data);
    let setup = inp.u8();
    let cfg = PipelineConfig {
        conntrack: dataplane::conntrack::Config {
            capacity: [4, 16, 64, 1024][usize::from(setup & 3)],
            ..Default::default()
        },
        reject_tcp: if setup & 4 != 0 {
            RejectTcp::Icmp
        } else {
            RejectTcp::Rst
        },
        // A small affinity table, so that eviction is reached too.
        affinity: Arc::new(AffinityTable::new(16)),
        // Time exceeded answered (v4 only: the v6 drop is reached too), and
        // a budget small enough to run out.
        node_addrs: NodeAddrs {
            v4: Some(Addr::from_v4([198, 18, 0, 1])),
            v6: None,
        },
        icmp_per_second: 4,
        // Source NAT (the snat Services, hairpins, clashes) from an IPv4
        // address only (IPv6 ones are dropped as exhausted), over a range
        // small enough to run out, as worker 0 of 1 or 2.
        snat: SnatConfig {
            addrs: NodeAddrs {
                v4: Some(Addr::from_v4([198, 18, 0, 1])),
                v6: None,
            },
            ports: if setup & 8 != 0 {
                (61000, 61003)
            } else {
                (61000, 65535)
            },
        },
        worker: 0,
        workers: 1 + usize::from(setup & 16 != 0),
    };
    let mut run = Run {
        // Each its own affinity table: they must decide alike from their
        // own state, not from what the other remembered.
        burst: Pipeline::new(PipelineConfig {
            affinity: Arc::new(AffinityTable::new(16)),
            ..cfg.clone()
        }),
        single: Pipeline::new(cfg),
        region: vec![0; SLOT * MAX_FRAMES],
        learned: Vec::new(),
        fed: 0,
    };
    let tables = scenario::tables();
    let mut table = tables.get(0);
    let mut now_ns = 1_000_000_000u64;
    for _ in 0..MAX_BURSTS {
        if inp.is_empty() {
            break;
        }
        let h = inp.u8();
        // Bit 7: switch to the generation in bits 4-5; bits 0-3: clock step.
        if h & 0x80 != 0 {
            table = tables.get(usize::from((h >> 4) & 3));
        }
        now_ns += STEPS[usize::from(h & 0x0f) % STEPS.len()] * 1_000_000_000;
        now_ns += u64::from(inp.u8()) * 3_900_000;
        let n = 1 + inp.below(MAX_FRAMES);
        let caps = inp.u8();
        let mut frames = Vec::with_capacity(n);
        for _ in 0..n {
            let f = gen::frame(&mut inp, &run.learned);
            let cap = match caps & 3 {
                // Exactly the frame: an answer must fit in what it answers.
                2 => f.len(),
                3 => (f.len() + usize::from(inp.u8())).min(SLOT),
                _ => SLOT,
            };
            frames.push((f, cap));
        }
        run.burst(table, &frames, now_ns);
    }
    *run.burst.counters()
}

/// The two pipelines of a run and what the run has learned.
struct Run {
    burst: Pipeline,
    single: Pipeline,
    region: Vec<u8>,
    learned: Vec<Flow>,
    fed: u64,
}

/// One frame's fate on one path.
#[derive(Debug, PartialEq, Eq)]
struct Out {
    verdict: Verdict,
    bytes: Vec<u8>,
}

impl Run {
    fn burst(&mut self, table: &ServiceTable, frames: &[(Vec<u8>, usize)], now_ns: u64) {
        let before = *self.burst.counters();
        let got = self.by_burst(table, frames, now_ns);
        let counted = self.burst.counted().to_vec();
        let want = by_frame(&mut self.single, table, frames, now_ns);
        self.fed += frames.len() as u64;

        for (i, ((g, w), (f, cap))) in got.iter().zip(&want).zip(frames).enumerate() {
            assert_eq!(g, w, "frame {i}: process_burst and process_frame differ");
            verify::frame(i, f, *cap, &g.bytes, g.verdict, counted[i]);
        }
        let c = *self.burst.counters();
        assert_eq!(&c, self.single.counters(), "counters differ between paths");
        assert_eq!(
            self.burst.conntrack().stats(),
            self.single.conntrack().stats(),
            "conntrack stats differ between paths"
        );
        assert_eq!(self.burst.conntrack().len(), self.single.conntrack().len());
        assert_eq!(counted.len(), frames.len(), "one counted entry per frame");
        assert!(c.balanced(), "counters do not add up: {c:?}");
        assert_eq!(c.packets, self.fed, "packets != frames fed");
        check_delta(&c.since(&before), &counted);
        assert!(self.burst.conntrack().len() <= self.burst.conntrack().capacity());
        self.learn(frames, &got, &counted);
    }

    /// The gateway's path: all frames in one batch, look-ahead and all.
    fn by_burst(
        &mut self,
        table: &ServiceTable,
        frames: &[(Vec<u8>, usize)],
        now_ns: u64,
    ) -> Vec<Out> {
        self.region[..frames.len() * SLOT].fill(TAIL_BURST);
        let mut batch = Batch::new();
        // SAFETY: `region` outlives the batch, which is dropped at the end of
        // this function, and nothing else touches it meanwhile.
        unsafe { batch.reset(self.region.as_mut_ptr(), self.region.len()) };
        for (i, (f, cap)) in frames.iter().enumerate() {
            let off = i * SLOT;
            self.region[off..off + f.len()].copy_from_slice(f);
            let pushed = batch.push(FrameDesc {
                offset: off as u64,
                len: f.len() as u32,
                cap: *cap as u32,
                tag: i as u32,
                offload: OffloadMeta::NONE,
            });
            assert!(pushed, "frame {i} did not fit the batch");
        }
        self.burst.process_burst(table, &mut batch, now_ns);
        (0..frames.len())
            .map(|i| Out {
                verdict: batch.verdicts()[i],
                bytes: batch.frame(i).to_vec(),
            })
            .collect()
    }

    /// Flows the burst forwarded (TCP/UDP/SCTP to a VIP), for later replies.
    fn learn(&mut self, frames: &[(Vec<u8>, usize)], got: &[Out], counted: &[Counted]) {
        for (((f, _), out), c) in frames.iter().zip(got).zip(counted) {
            if *c != Counted::Forwarded {
                continue;
            }
            let (Some(a), Some(b)) = (walk::frame_ip(f), walk::frame_ip(&out.bytes)) else {
                continue;
            };
            let (Some((cport, vport)), Some((nat_sport, bport))) =
                (a.ports(f), b.ports(&out.bytes))
            else {
                continue;
            };
            let flow = Flow {
                client: a.src,
                cport,
                vip: a.dst,
                vport,
                backend: b.dst,
                bport,
                nat_src: b.src,
                nat_sport,
                proto: match dataplane::addr::Proto::from_number(a.proto) {
                    Some(p @ (dataplane::addr::Proto::Tcp | dataplane::addr::Proto::Sctp)) => p,
                    _ => dataplane::addr::Proto::Udp,
                },
            };
            let same = |l: &Flow| {
                (l.client, l.cport, l.vip, l.vport, l.proto)
                    == (flow.client, flow.cport, flow.vip, flow.vport, flow.proto)
            };
            match self.learned.iter_mut().find(|l| same(l)) {
                Some(l) => *l = flow,
                None => {
                    if self.learned.len() == MAX_LEARNED {
                        self.learned.remove(0);
                    }
                    self.learned.push(flow);
                }
            }
        }
    }
}

/// The plain path: each frame through `process_frame` in its own buffer,
/// then the burst's end (an empty burst: the expiry step).
fn by_frame(
    p: &mut Pipeline,
    table: &ServiceTable,
    frames: &[(Vec<u8>, usize)],
    now_ns: u64,
) -> Vec<Out> {
    let now = (now_ns / 1_000_000_000) as u32;
    let out = frames
        .iter()
        .enumerate()
        .map(|(i, (f, cap))| {
            let mut buf = vec![TAIL_SINGLE; *cap];
            buf[..f.len()].copy_from_slice(f);
            let (verdict, n) = p.process_frame(table, &mut buf, f.len(), now);
            assert!(n <= *cap, "frame {i}: length {n} past its buffer of {cap}");
            buf.truncate(n);
            Out {
                verdict,
                bytes: buf,
            }
        })
        .collect();
    p.process_burst(table, &mut Batch::new(), now_ns);
    out
}

/// The counters moved by exactly what `counted()` says of the burst.
fn check_delta(d: &Counters, counted: &[Counted]) {
    let n = |k: Counted| counted.iter().filter(|&&c| c == k).count() as u64;
    assert_eq!(d.packets, counted.len() as u64);
    assert_eq!(d.forwarded, n(Counted::Forwarded), "{d:?}");
    assert_eq!(d.reversed, n(Counted::Reversed), "{d:?}");
    assert_eq!(d.rejected, n(Counted::Rejected), "{d:?}");
    assert_eq!(d.passed, n(Counted::Passed), "{d:?}");
    assert_eq!(d.dropped_total(), n(Counted::Dropped), "{d:?}");
    assert_eq!(d.bursts, 1);
}
