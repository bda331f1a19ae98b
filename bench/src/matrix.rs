//! Synthetic workloads for `vipgate bench replay`: traffic mixes built in
//! memory and service tables of a chosen size, so the per-core cost can be
//! measured as a function of what the packets are and how big the cluster is.
//!
//! Addresses: clients in 198.18.0.0/17, backends in 198.18.128.0/17, VIPs in
//! 198.19.0.0/16 (RFC 2544 benchmarking space only).

use dataplane::addr::{Addr, Proto};
use dataplane::generation::Tables;
use dataplane::io::memory::Capture;
use dataplane::service::{
    Affinity, BackendSpec, BackendState, Forwarding, ServiceKey, ServiceSpec,
};
use dataplane::table::{ServiceTable, TableConfig};
use serde::Serialize;

use crate::replay::{self, ReplayConfig, ReplayResult};
use fixtures::packet::{Eth, Ip, Ipv4, Packet, Tcp, Udp, L4, TCP_ACK, TCP_PSH, TCP_SYN};

/// Port every synthetic service listens on, for TCP and UDP alike.
pub const SERVICE_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
const PAYLOAD: usize = 32;
/// Capture timestamps start here; all packets of a loop share one second so
/// no flow times out within a loop.
const START_NS: u64 = 1_700_000_000_000_000_000;

/// What the synthetic packets are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// TCP ACK+data on a fixed set of flows: after the first loop every
    /// packet is a conntrack hit.
    Established,
    /// TCP SYNs of distinct clients, more than conntrack holds, so every
    /// packet creates a flow and evicts the least recently seen one.
    Syn,
    /// UDP datagrams on a fixed set of flows.
    Udp,
    /// 70% established TCP, 10% SYN, 20% UDP, interleaved.
    Mix,
}

impl Mix {
    pub const ALL: [Mix; 4] = [Mix::Established, Mix::Syn, Mix::Udp, Mix::Mix];

    pub fn name(self) -> &'static str {
        match self {
            Mix::Established => "established",
            Mix::Syn => "syn",
            Mix::Udp => "udp",
            Mix::Mix => "mix",
        }
    }
}

/// A service table shape: `services` services, each with `backends` backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSize {
    pub services: u32,
    pub backends: u32,
}

impl TableSize {
    /// 1..10000 services with 10 backends, plus 100 services with 1000.
    pub const FULL: [TableSize; 5] = [
        TableSize::new(1, 10),
        TableSize::new(100, 10),
        TableSize::new(100, 1000),
        TableSize::new(1000, 10),
        TableSize::new(10_000, 10),
    ];

    pub const fn new(services: u32, backends: u32) -> TableSize {
        TableSize { services, backends }
    }
}

/// How many packets (and flows) a synthetic capture holds. Sized so the
/// flow set of `Established`/`Udp` fits conntrack while `Syn` overflows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Flows of the established and UDP mixes.
    pub flows: u32,
    /// Distinct SYNs of the syn mix; make it larger than the conntrack
    /// capacity of one worker so repeats of the capture are still new flows.
    pub syns: u32,
    /// Packets of the mixed capture.
    pub mixed: u32,
}

impl Sizes {
    /// For conntrack capacity `capacity` per worker.
    pub fn for_capacity(capacity: u32) -> Sizes {
        let capacity = capacity.max(1024);
        Sizes {
            flows: (capacity / 4).min(1 << 16),
            syns: capacity.saturating_mul(4).min(1 << 21),
            mixed: (capacity / 2).min(1 << 18),
        }
    }
}

/// The IPv4 address of VIP number `s` (198.19.0.0/16).
pub fn vip(s: u32) -> [u8; 4] {
    let s = s % 65_536;
    [198, 19, (s >> 8) as u8, s as u8]
}

fn backend_addr(idx: u32) -> [u8; 4] {
    let i = idx % 32_768;
    [198, 18, 128 + (i >> 8) as u8, i as u8]
}

fn client_addr(c: u32) -> [u8; 4] {
    let c = c % 32_768;
    [198, 18, (c >> 8) as u8, c as u8]
}

/// Specs of a table of this size: each service gets a TCP and a UDP port.
/// Backend addresses repeat across services once the /17 is used up, as
/// pods serving several services would.
pub fn specs(size: TableSize) -> Vec<ServiceSpec> {
    let mut specs = Vec::with_capacity(size.services as usize * 2);
    for s in 0..size.services {
        let backends: Vec<BackendSpec> = (0..size.backends)
            .map(|b| BackendSpec {
                addr: Addr::from_v4(backend_addr(s.wrapping_mul(size.backends) + b)),
                port: BACKEND_PORT,
                weight: 1,
                state: BackendState::Ready,
            })
            .collect();
        for proto in [Proto::Tcp, Proto::Udp] {
            specs.push(ServiceSpec {
                key: ServiceKey {
                    vip: Addr::from_v4(vip(s)),
                    port: SERVICE_PORT,
                    proto,
                },
                name: format!("bench/svc{s}:{}", proto_name(proto)),
                backends: backends.clone(),
                affinity: Affinity::None,
                no_endpoints: dataplane::service::NoEndpoints::Reject,
                forwarding: Default::default(),
                source_ranges: Vec::new(),
            });
        }
    }
    specs
}

fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        _ => "other",
    }
}

/// Published tables of this size, every Service forwarding in `forwarding`.
pub fn tables(size: TableSize, cfg: TableConfig, forwarding: Forwarding) -> Tables {
    let specs = specs(size)
        .into_iter()
        .map(|s| ServiceSpec { forwarding, ..s })
        .collect();
    Tables::new(ServiceTable::from_specs(specs, cfg))
}

#[derive(Clone, Copy)]
enum Kind {
    Ack,
    Syn,
    Udp,
}

/// Flow number `flow` of a kind: a distinct (client, port) pair, to service
/// `flow % services` so every service sees traffic.
fn frame(kind: Kind, flow: u32, services: u32) -> Vec<u8> {
    let client = client_addr(flow / 60_000);
    let cport = 1024 + (flow % 60_000) as u16;
    let svc = flow % services.max(1);
    let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = Ip::V4(Ipv4::new(client, vip(svc), 64));
    let l4 = match kind {
        Kind::Ack => {
            let mut t = Tcp::new(cport, SERVICE_PORT, 1000, 2000, TCP_ACK | TCP_PSH);
            t.payload = vec![0x55; PAYLOAD];
            L4::Tcp(t)
        }
        Kind::Syn => L4::Tcp(Tcp::new(cport, SERVICE_PORT, 1000, 0, TCP_SYN)),
        Kind::Udp => L4::Udp(Udp::new(cport, SERVICE_PORT, vec![0x55; PAYLOAD])),
    };
    Packet::new(eth, ip, l4).frame()
}

/// The capture of a mix against a table of `services` services.
pub fn capture(mix: Mix, services: u32, sizes: Sizes) -> Capture {
    let mut cap = Capture::new();
    let mut push = |i: u32, f: Vec<u8>| cap.push(START_NS + u64::from(i), &f);
    match mix {
        Mix::Established => {
            for i in 0..sizes.flows {
                push(i, frame(Kind::Ack, i, services));
            }
        }
        Mix::Udp => {
            for i in 0..sizes.flows {
                push(i, frame(Kind::Udp, i, services));
            }
        }
        Mix::Syn => {
            for i in 0..sizes.syns {
                push(i, frame(Kind::Syn, i, services));
            }
        }
        Mix::Mix => {
            // Disjoint flow ranges per kind so a SYN never lands on an
            // established flow's tuple.
            let est_flows = (sizes.flows * 7 / 10).max(1);
            let udp_flows = (sizes.flows * 2 / 10).max(1);
            let syn_base = est_flows;
            let (mut e, mut u, mut s) = (0u32, 0u32, 0u32);
            for i in 0..sizes.mixed {
                let f = match i % 10 {
                    0..=6 => {
                        e += 1;
                        frame(Kind::Ack, (e - 1) % est_flows, services)
                    }
                    7 => {
                        s += 1;
                        frame(Kind::Syn, syn_base + s - 1, services)
                    }
                    _ => {
                        u += 1;
                        frame(Kind::Udp, (u - 1) % udp_flows, services)
                    }
                };
                push(i, f);
            }
        }
    }
    cap
}

/// One workload: a capture and the tables it is replayed against.
pub struct Workload {
    /// Mix name (or the capture's file name).
    pub mix: String,
    pub services: u32,
    /// Backends per service (0 when the table came from a file).
    pub backends: u32,
    pub capture: Capture,
    pub tables: Tables,
}

/// How to run each cell of the matrix.
#[derive(Clone, Debug)]
pub struct CellConfig {
    /// Wall-clock budget of one cell, all repeats together.
    pub seconds: f64,
    pub repeats: usize,
    pub replay: ReplayConfig,
}

/// One timed replay of a cell.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub loops: u64,
    pub packets: u64,
    pub seconds: f64,
    pub mpps: f64,
    /// Busy time per packet on one core.
    pub ns_per_packet: f64,
    pub forwarded: u64,
    pub passed: u64,
    pub dropped: u64,
    /// Flows created: per packet, it tells how much of the run was new flows.
    pub flows: u64,
}

/// A cell: a workload on a number of workers, repeated.
#[derive(Clone, Debug, Serialize)]
pub struct CellResult {
    pub mix: String,
    pub services: u32,
    pub backends: u32,
    pub workers: usize,
    pub capture_packets: usize,
    pub runs: Vec<Run>,
    pub median_mpps: f64,
    pub median_ns_per_packet: f64,
    /// Median Mpps divided by workers.
    pub mpps_per_core: f64,
    /// Flows created per packet in the median run.
    pub new_flows_per_packet: f64,
    /// (max - min) / median of the runs' Mpps: how far to trust the median.
    pub spread: f64,
}

/// Median of a non-empty slice (mean of the middle two when even); 0 if empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Loops of the capture that fill `target` seconds, given one loop took
/// `per_loop` seconds; at least one.
pub fn loops_for(target: f64, per_loop: f64) -> u64 {
    if per_loop.is_nan() || per_loop <= 0.0 || !target.is_finite() {
        return 1;
    }
    ((target / per_loop).round() as u64).clamp(1, 1 << 32)
}

fn to_run(r: &ReplayResult) -> Run {
    Run {
        loops: r.loops,
        packets: r.total.packets,
        seconds: r.seconds,
        mpps: r.mpps(),
        ns_per_packet: r.ns_per_packet(),
        forwarded: r.total.forwarded,
        passed: r.total.passed,
        dropped: r.total.dropped_total(),
        flows: r.total.flows,
    }
}

/// Runs one cell: a one-loop calibration to pick the loop count, then
/// `repeats` timed replays; the medians are what the report shows.
pub fn run_cell(w: &Workload, workers: usize, cfg: &CellConfig) -> CellResult {
    let repeats = cfg.repeats.max(1);
    let mut rc = cfg.replay.clone();
    rc.workers = workers.max(1);
    // One untimed pass first: established flows are established when timed.
    rc.warmup_loops = 1;
    rc.loops = 1;
    rc.keep_tx = false;
    let calib = replay::run(&w.capture, &w.tables, &rc);
    rc.loops = loops_for(cfg.seconds / repeats as f64, calib.seconds);
    let runs: Vec<Run> = (0..repeats)
        .map(|_| to_run(&replay::run(&w.capture, &w.tables, &rc)))
        .collect();
    let mpps: Vec<f64> = runs.iter().map(|r| r.mpps).collect();
    let ns: Vec<f64> = runs.iter().map(|r| r.ns_per_packet).collect();
    let median_mpps = median(&mpps);
    let mid = runs
        .iter()
        .min_by(|a, b| {
            (a.mpps - median_mpps)
                .abs()
                .total_cmp(&(b.mpps - median_mpps).abs())
        })
        .expect("at least one run");
    let (lo, hi) = mpps.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &m| {
        (lo.min(m), hi.max(m))
    });
    let spread = if median_mpps > 0.0 {
        (hi - lo) / median_mpps
    } else {
        0.0
    };
    let new_flows_per_packet = if mid.packets > 0 {
        mid.flows as f64 / mid.packets as f64
    } else {
        0.0
    };
    CellResult {
        mix: w.mix.clone(),
        services: w.services,
        backends: w.backends,
        workers: rc.workers,
        capture_packets: w.capture.len(),
        median_mpps,
        median_ns_per_packet: median(&ns),
        mpps_per_core: median_mpps / rc.workers as f64,
        new_flows_per_packet,
        spread,
        runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{run, ReplayConfig};
    use std::collections::HashSet;

    fn tuple(frame: &[u8]) -> ([u8; 4], [u8; 4], u8, u16) {
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let l4 = &ip[ihl..];
        (
            ip[12..16].try_into().unwrap(),
            ip[16..20].try_into().unwrap(),
            ip[9],
            u16::from_be_bytes([l4[0], l4[1]]),
        )
    }

    #[test]
    fn syn_flows_are_distinct_and_hit_every_service() {
        let sizes = Sizes {
            flows: 100,
            syns: 20_000,
            mixed: 100,
        };
        let cap = capture(Mix::Syn, 100, sizes);
        assert_eq!(cap.len(), 20_000);
        let mut seen = HashSet::new();
        let mut vips = HashSet::new();
        for i in 0..cap.len() {
            let t = tuple(cap.packet(i).0);
            assert_eq!(t.2, 6);
            assert!(seen.insert(t), "duplicate tuple {t:?} at {i}");
            vips.insert(t.1);
        }
        assert_eq!(vips.len(), 100);
    }

    #[test]
    fn mix_has_the_stated_shares() {
        let sizes = Sizes {
            flows: 1000,
            syns: 10,
            mixed: 10_000,
        };
        let cap = capture(Mix::Mix, 10, sizes);
        let (mut syn, mut ack, mut udp) = (0, 0, 0);
        for i in 0..cap.len() {
            let f = cap.packet(i).0;
            let t = tuple(f);
            match t.2 {
                17 => udp += 1,
                6 if f[14 + 20 + 13] & TCP_SYN != 0 => syn += 1,
                6 => ack += 1,
                p => panic!("unexpected protocol {p}"),
            }
        }
        assert_eq!((ack, syn, udp), (7000, 1000, 2000));
    }

    #[test]
    fn every_mix_is_forwarded_by_the_pipeline() {
        let size = TableSize::new(50, 3);
        let t = tables(size, TableConfig::default(), Forwarding::Dnat);
        let sizes = Sizes {
            flows: 500,
            syns: 800,
            mixed: 1000,
        };
        for mix in Mix::ALL {
            let cap = capture(mix, size.services, sizes);
            let r = run(
                &cap,
                &t,
                &ReplayConfig {
                    loops: 2,
                    pin: false,
                    ..ReplayConfig::default()
                },
            );
            assert_eq!(r.total.packets, 2 * cap.len() as u64, "{}", mix.name());
            assert_eq!(r.total.forwarded, r.total.packets, "{}", mix.name());
        }
    }

    #[test]
    fn syn_overflowing_conntrack_creates_a_flow_per_packet() {
        let size = TableSize::new(4, 2);
        let t = tables(size, TableConfig::default(), Forwarding::Dnat);
        let sizes = Sizes::for_capacity(1024);
        let cap = capture(Mix::Syn, size.services, sizes);
        let mut cfg = ReplayConfig {
            loops: 2,
            pin: false,
            ..ReplayConfig::default()
        };
        cfg.pipeline.conntrack.capacity = 1024;
        let r = run(&cap, &t, &cfg);
        assert_eq!(r.total.flows, r.total.packets);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(loops_for(1.0, 0.1), 10);
        assert_eq!(loops_for(0.01, 1.0), 1);
        assert_eq!(loops_for(1.0, 0.0), 1);
    }

    #[test]
    fn a_cell_repeats_and_takes_medians() {
        let size = TableSize::new(10, 2);
        let w = Workload {
            mix: "udp".into(),
            services: size.services,
            backends: size.backends,
            capture: capture(Mix::Udp, size.services, Sizes::for_capacity(4096)),
            tables: tables(size, TableConfig::default(), Forwarding::Dnat),
        };
        let cfg = CellConfig {
            seconds: 0.05,
            repeats: 3,
            replay: ReplayConfig {
                pin: false,
                ..ReplayConfig::default()
            },
        };
        let c = run_cell(&w, 1, &cfg);
        assert_eq!(c.runs.len(), 3);
        assert!(c
            .runs
            .iter()
            .all(|r| r.packets == r.loops * w.capture.len() as u64));
        assert!(c.median_mpps > 0.0 && c.median_ns_per_packet > 0.0);
        let mut m: Vec<f64> = c.runs.iter().map(|r| r.mpps).collect();
        m.sort_by(f64::total_cmp);
        assert_eq!(c.median_mpps, m[1]);
        assert_eq!(c.spread, (m[2] - m[0]) / m[1]);
    }

    #[test]
    fn table_has_two_ports_per_service() {
        let s = specs(TableSize::new(300, 4));
        assert_eq!(s.len(), 600);
        let vips: HashSet<_> = s.iter().map(|x| x.key.vip).collect();
        assert_eq!(vips.len(), 300);
        assert!(s.iter().all(|x| x.backends.len() == 4));
    }
}
