//! `vipgate bench lab`: kube-proxy's iptables and nftables paths against
//! vipgate (AF_PACKET, AF_XDP) in veth labs, written as report.json,
//! report.md and SVG plots. UDP packet rates and latency per service count,
//! or (`--traffic tcp`) iperf3 bulk TCP per stream count and offload setting.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use bench::labbench::report::{self as lab_report, LabReport};
use bench::labbench::{self, tcp, LabBenchConfig, PathKind, Traffic};
use bench::report::{utc_stamp, Machine};
use clap::Args;

#[derive(Args, Debug)]
pub struct LabBenchArgs {
    /// Service counts, comma-separated (default 1,1000,10000; --quick: 1,100).
    /// UDP modes only: tcp installs one TCP Service.
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    services: Vec<usize>,
    /// Seconds per throughput run, UDP blast or iperf3 test (`-t`, rounded
    /// up to whole seconds) (--quick: 1).
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    duration: f64,
    /// Paths to measure, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kernel-iptables,kernel-nftables,vipgate-af_packet,vipgate-af_xdp"
    )]
    paths: Vec<String>,
    /// Traffic modes, comma-separated: established (a few hundred UDP
    /// flows, later packets follow conntrack), new-flows (every UDP packet a
    /// new flow, so every packet walks the Service rules), tcp (bulk TCP:
    /// an iperf3 client in the client namespace to one TCP Service with a
    /// single backend running the iperf3 server, per path x --streams x
    /// --offloads, Gbit/s and retransmits; needs iperf3 installed; a
    /// test that fails is recorded as 0 Gbit/s with its error).
    #[arg(long, value_delimiter = ',', default_value = "established")]
    traffic: Vec<String>,
    /// Runs per figure; the report shows medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    repeats: u16,
    /// Backend namespaces (endpoints of every service). UDP modes only: tcp
    /// uses one backend.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    backends: u16,
    /// Distinct UDP flows in the blast.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    flows: u16,
    /// Latency probe rate, requests per second.
    #[arg(long, default_value_t = 2000.0, value_name = "RPS")]
    latency_rate: f64,
    /// tcp: iperf3 parallel streams (-P) per test, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4",
          value_parser = clap::value_parser!(u32).range(1..=128))]
    streams: Vec<u32>,
    /// tcp: lab offload settings, comma-separated: default (veths as
    /// `ip link add` leaves them: tx checksum, TSO/GSO, GRO on) and/or off.
    #[arg(long, value_delimiter = ',', default_value = "default,off")]
    offloads: Vec<String>,
    /// Latency probe length in seconds (--quick: 0.5).
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    latency_seconds: f64,
    /// Output directory. Default: bench-out/lab-<UTC timestamp>.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Services 1 and 100, 1 s runs, short latency probes: for CI.
    #[arg(long)]
    quick: bool,
    /// Extra arguments for every `vipgate run` the bench starts, as one
    /// string split at spaces (e.g. "--workers 2" or
    /// "--af-packet-ring blocks"): to compare settings run by run.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    gateway_args: Option<String>,
}

pub fn run(a: LabBenchArgs) -> Result<(), String> {
    for (v, what) in [
        (a.duration, "--duration"),
        (a.latency_rate, "--latency-rate"),
        (a.latency_seconds, "--latency-seconds"),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(format!("{what} must be a positive number"));
        }
    }
    let paths = a
        .paths
        .iter()
        .map(|p| PathKind::parse(p.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let traffic = a
        .traffic
        .iter()
        .map(|t| Traffic::parse(t.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let offloads = a
        .offloads
        .iter()
        .map(|o| tcp::parse_offloads(o.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let services = match (a.services.is_empty(), a.quick) {
        (false, _) => a.services.clone(),
        (true, true) => vec![1, 100],
        (true, false) => vec![1, 1000, 10_000],
    };
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("bench-out").join(format!("lab-{}", utc_stamp(started))));
    let cfg = LabBenchConfig {
        paths,
        traffic,
        services,
        duration: if a.quick { 1.0 } else { a.duration },
        repeats: usize::from(a.repeats),
        backends: usize::from(a.backends),
        flows: a.flows,
        latency_rate: a.latency_rate,
        latency_seconds: if a.quick { 0.5 } else { a.latency_seconds },
        streams: a.streams.clone(),
        offloads,
        vipgate_bin: std::env::current_exe().map_err(|e| format!("locating vipgate: {e}"))?,
        gateway_args: a
            .gateway_args
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        work_dir: out.clone(),
        quick: a.quick,
    };
    let labbench::Results { cells, tcp } = labbench::run(&cfg);
    let failed: Vec<String> = cells
        .iter()
        .filter_map(|c| {
            c.error
                .as_ref()
                .map(|e| format!("{} x {} services ({}): {e}", c.path, c.services, c.traffic))
        })
        .chain(tcp.iter().filter_map(|c| {
            c.error.as_ref().map(|e| {
                format!(
                    "{} -P {} (tcp, offloads {}): {e}",
                    c.path,
                    c.streams,
                    tcp::offloads_name(c.offloads)
                )
            })
        }))
        .collect();
    let report = LabReport {
        vipgate_version: env!("CARGO_PKG_VERSION").into(),
        command_line: std::env::args().collect(),
        started_unix: started,
        machine: Machine::detect(),
        versions: lab_report::versions(),
        config: cfg,
        cells,
        tcp,
    };
    let files = lab_report::write_all(&report, &out)
        .map_err(|e| format!("writing the report to {}: {e}", out.display()))?;
    for f in files {
        println!("wrote {}", f.display());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} cell{} failed:\n  {}",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" },
            failed.join("\n  ")
        ))
    }
}
