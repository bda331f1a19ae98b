//! `vipgate bench lab`: the same Services served by kube-proxy's iptables
//! rules, its nftables rules, and vipgate (AF_PACKET, AF_XDP) in the
//! gateway of a veth lab, measured in one run with the same traffic:
//! forwarded packets per second and loss under a top-speed UDP blast,
//! and round-trip latency at a moderate request rate; or (`tcp`) bulk TCP
//! with iperf3 in Gbit/s, per stream count and lab offload setting.
//!
//! Each path gets a fresh lab (so no conntrack entry or rule of one path
//! serves another); service counts are applied to the path's lab in turn.

/// `vipgate run` in the gateway namespace.
pub mod gateway;
/// iperf3 client and server processes, bounded, and their JSON reports.
pub mod iperf;
/// Loading kube-proxy-shaped iptables and nftables rules.
pub mod kernel_paths;
/// One path across service counts: setup, blasts, latency probes.
pub mod measure;
/// report.json, report.md and the SVG plot.
pub mod report;
/// The benchmark's Services and their YAML.
pub mod services;
/// `--traffic tcp`: iperf3 through each path, offloads x streams.
pub mod tcp;
/// The tcp mode's tables and plots.
pub mod tcp_report;
/// Blast, echo servers, latency probe, veth counters.
pub mod traffic;

use std::path::PathBuf;

use serde::Serialize;

use crate::lab::Offloads;
use crate::matrix::median;
use traffic::Latency;

/// A way packets to a VIP can cross the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    KernelIptables,
    KernelNftables,
    VipgateAfPacket,
    VipgateAfXdp,
}

impl PathKind {
    pub const ALL: [PathKind; 4] = [
        PathKind::KernelIptables,
        PathKind::KernelNftables,
        PathKind::VipgateAfPacket,
        PathKind::VipgateAfXdp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PathKind::KernelIptables => "kernel-iptables",
            PathKind::KernelNftables => "kernel-nftables",
            PathKind::VipgateAfPacket => "vipgate-af_packet",
            PathKind::VipgateAfXdp => "vipgate-af_xdp",
        }
    }

    pub fn parse(s: &str) -> Result<PathKind, String> {
        PathKind::ALL
            .into_iter()
            .find(|p| p.name() == s || p.name().replace('_', "-") == s)
            .ok_or_else(|| {
                let names: Vec<&str> = PathKind::ALL.iter().map(|p| p.name()).collect();
                format!("unknown path {s:?}; one of {}", names.join(", "))
            })
    }

    pub fn is_vipgate(self) -> bool {
        matches!(self, PathKind::VipgateAfPacket | PathKind::VipgateAfXdp)
    }
}

impl Serialize for PathKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What the blast's packets are to conntrack, or bulk TCP instead of a blast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// A few hundred flows over and over: after its first packet a flow
    /// follows conntrack, so the rule set is walked once per flow.
    Established,
    /// Every packet a flow never seen before (client address and port
    /// rotate), so every packet walks the Service rules (iptables: linear
    /// in services) and creates a conntrack entry (vipgate: a flow).
    NewFlows,
    /// iperf3 bulk TCP through one TCP Service (see [`tcp`]).
    Tcp,
}

impl Traffic {
    pub const ALL: [Traffic; 3] = [Traffic::Established, Traffic::NewFlows, Traffic::Tcp];

    pub fn name(self) -> &'static str {
        match self {
            Traffic::Established => "established",
            Traffic::NewFlows => "new-flows",
            Traffic::Tcp => "tcp",
        }
    }

    pub fn parse(s: &str) -> Result<Traffic, String> {
        Traffic::ALL
            .into_iter()
            .find(|t| t.name() == s || t.name().replace('-', "_") == s)
            .ok_or_else(|| format!("unknown traffic {s:?}; one of established, new-flows, tcp"))
    }
}

impl Serialize for Traffic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// How to run the benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct LabBenchConfig {
    pub paths: Vec<PathKind>,
    /// Traffic modes, each measured over every path and service count.
    pub traffic: Vec<Traffic>,
    pub services: Vec<usize>,
    /// Seconds per throughput run.
    pub duration: f64,
    /// Runs per figure; the report shows medians.
    pub repeats: usize,
    /// Backend namespaces (endpoints per service).
    pub backends: usize,
    /// Distinct UDP flows in the blast.
    pub flows: u16,
    /// Latency probe: requests per second, and seconds per probe.
    pub latency_rate: f64,
    pub latency_seconds: f64,
    /// tcp: iperf3 parallel streams (`-P`) per test, and the lab offload
    /// settings measured.
    pub streams: Vec<u32>,
    pub offloads: Vec<Offloads>,
    /// The `vipgate` binary run in the gateway.
    pub vipgate_bin: PathBuf,
    /// Extra arguments for every `vipgate run` (e.g. `--workers 2`).
    pub gateway_args: Vec<String>,
    /// Where services files for vipgate are written.
    pub work_dir: PathBuf,
    pub quick: bool,
}

impl LabBenchConfig {
    /// Frames one blast may send at most: far above what a veth lab
    /// reaches in `duration`, so time is the bound that acts.
    pub fn max_packets(&self) -> u64 {
        (self.duration * 50e6) as u64
    }
}

/// One throughput run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ThroughputRun {
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
    pub sent_pps: f64,
    pub forwarded_pps: f64,
    pub loss: f64,
}

impl ThroughputRun {
    pub fn new(sent: u64, received: u64, seconds: f64) -> ThroughputRun {
        let per_s = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        ThroughputRun {
            sent,
            received,
            seconds,
            sent_pps: per_s(sent),
            forwarded_pps: per_s(received),
            loss: if sent == 0 {
                1.0
            } else {
                (1.0 - received as f64 / sent as f64).max(0.0)
            },
        }
    }
}

/// One path at one service count: raw runs and their medians.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cell {
    pub path: String,
    /// The traffic mode's name.
    pub traffic: String,
    pub services: usize,
    /// new-flows: distinct flows each run could send before repeating one;
    /// a run that sent more than this had some conntrack hits.
    pub distinct_flows: Option<u64>,
    pub runs: Vec<ThroughputRun>,
    pub latency: Vec<Latency>,
    pub forwarded_mpps: f64,
    pub sent_mpps: f64,
    pub loss: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Seconds to load the rules or start the gateway with them.
    pub setup_seconds: f64,
    /// Why the cell has no figures, if it failed.
    pub error: Option<String>,
}

impl Cell {
    /// Fills the medians from the raw runs.
    pub fn summarise(&mut self) {
        let m = |f: &dyn Fn(&ThroughputRun) -> f64| {
            median(&self.runs.iter().map(f).collect::<Vec<_>>())
        };
        self.forwarded_mpps = m(&|r| r.forwarded_pps) / 1e6;
        self.sent_mpps = m(&|r| r.sent_pps) / 1e6;
        self.loss = m(&|r| r.loss);
        let answered: Vec<&Latency> = self.latency.iter().filter(|l| l.answered > 0).collect();
        self.p50_us = median(&answered.iter().map(|l| l.p50_us).collect::<Vec<_>>());
        self.p99_us = median(&answered.iter().map(|l| l.p99_us).collect::<Vec<_>>());
    }
}

/// What a run measured: the UDP cells and the tcp ones.
#[derive(Clone, Debug, Default)]
pub struct Results {
    pub cells: Vec<Cell>,
    pub tcp: Vec<tcp::TcpCell>,
}

/// Runs every path over every service count (UDP modes), then the tcp
/// mode if asked. A path that fails is recorded in its cells and the next
/// path still runs.
pub fn run(cfg: &LabBenchConfig) -> Results {
    let mut cells = Vec::new();
    let udp: Vec<Traffic> = cfg
        .traffic
        .iter()
        .copied()
        .filter(|&t| t != Traffic::Tcp)
        .collect();
    let total = cfg.paths.len() * udp.len();
    for &traffic in &udp {
        for &path in &cfg.paths {
            eprintln!(
                "[{}/{total}] {} ({})",
                cells.len() / cfg.services.len().max(1) + 1,
                path.name(),
                traffic.name()
            );
            cells.extend(measure::run_path(path, traffic, cfg));
        }
    }
    let tcp = if cfg.traffic.contains(&Traffic::Tcp) {
        tcp::run(cfg)
    } else {
        Vec::new()
    };
    Results { cells, tcp }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_names_round_trip_with_either_separator() {
        for p in PathKind::ALL {
            assert_eq!(PathKind::parse(p.name()).unwrap(), p);
        }
        assert_eq!(
            PathKind::parse("vipgate-af-xdp").unwrap(),
            PathKind::VipgateAfXdp
        );
        assert!(PathKind::parse("kernel-ipvs").is_err());
        for t in Traffic::ALL {
            assert_eq!(Traffic::parse(t.name()).unwrap(), t);
        }
        assert_eq!(Traffic::parse("new_flows").unwrap(), Traffic::NewFlows);
        assert_eq!(Traffic::parse("tcp").unwrap(), Traffic::Tcp);
        assert!(Traffic::parse("syn").is_err());
    }

    #[test]
    fn runs_derive_rates_and_loss() {
        let r = ThroughputRun::new(1000, 750, 0.5);
        assert_eq!(r.forwarded_pps, 1500.0);
        assert_eq!(r.sent_pps, 2000.0);
        assert!((r.loss - 0.25).abs() < 1e-12);
        assert_eq!(ThroughputRun::new(0, 0, 1.0).loss, 1.0);
        // Stray frames (ARP) can make received exceed sent: no negative loss.
        assert_eq!(ThroughputRun::new(10, 12, 1.0).loss, 0.0);
    }

    #[test]
    fn cells_take_medians_and_ignore_silent_latency_probes() {
        let mut c = Cell {
            runs: vec![
                ThroughputRun::new(100, 90, 1.0),
                ThroughputRun::new(100, 10, 1.0),
                ThroughputRun::new(100, 50, 1.0),
            ],
            latency: vec![
                Latency {
                    sent: 10,
                    answered: 10,
                    p50_us: 40.0,
                    p99_us: 90.0,
                },
                Latency {
                    sent: 10,
                    answered: 0,
                    p50_us: 0.0,
                    p99_us: 0.0,
                },
                Latency {
                    sent: 10,
                    answered: 9,
                    p50_us: 60.0,
                    p99_us: 70.0,
                },
            ],
            ..Cell::default()
        };
        c.summarise();
        assert!((c.forwarded_mpps - 50e-6).abs() < 1e-12);
        assert!((c.loss - 0.5).abs() < 1e-12);
        assert_eq!(c.p50_us, 50.0);
        assert_eq!(c.p99_us, 80.0);
    }
}
