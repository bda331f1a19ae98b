//! `vipgate bench replay`: the replay matrix (mixes x table sizes x workers),
//! each cell repeated, written as report.json, report.md and SVG plots.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use bench::matrix::{self, CellConfig, Mix, Sizes, TableSize, Workload};
use bench::replay::ReplayConfig;
use bench::report::{self, Machine, Report, RunConfig};
use clap::{Args, Subcommand};
use dataplane::generation::Tables;
use dataplane::io::pcap::read_capture;
use dataplane::io::MAX_BURST;
use dataplane::table::ServiceTable;

use super::{services, tuning::Tuning};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Replay synthetic traffic (or a capture) through the pipeline across
    /// traffic mixes, table sizes and worker counts; write a report.
    Replay(ReplayBenchArgs),
    /// kube-proxy's iptables and nftables paths against vipgate in a veth
    /// lab: forwarded pps, loss and latency per service count, or iperf3
    /// bulk TCP in Gbit/s with --traffic tcp (root).
    Lab(super::bench_lab::LabBenchArgs),
    /// `vipgate send --topspeed` (AF_PACKET, AF_XDP) against `tcpreplay
    /// --topspeed` on one veth pair with one capture (root).
    Send(super::send::SendBenchArgs),
}

#[derive(Args, Debug)]
pub struct ReplayBenchArgs {
    /// Capture to replay instead of the synthetic mixes.
    #[arg(long, value_name = "FILE", requires = "services")]
    pcap: Option<PathBuf>,
    /// Services and EndpointSlices for --pcap (kubectl YAML dump).
    #[arg(long, value_name = "FILE", requires = "pcap")]
    services: Option<PathBuf>,
    /// Largest worker count; cells run 1..=N workers. Default: all cores.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// Total time budget in seconds, split evenly between cells.
    #[arg(long, default_value_t = 60.0, value_name = "S")]
    duration: f64,
    /// Timed runs per cell; the report shows their median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    repeats: u16,
    /// Frames per burst.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=MAX_BURST as i64))]
    burst: u16,
    /// Output directory. Default: bench-out/replay-<UTC timestamp>.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A tiny matrix (2 mixes x 2 table sizes x 1 worker, 0.2 s) for CI.
    #[arg(long)]
    quick: bool,
    /// Do not pin workers to cores.
    #[arg(long)]
    no_pin: bool,
    #[command(flatten)]
    tuning: Tuning,
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    match args.command {
        BenchCommand::Replay(a) => replay(a),
        BenchCommand::Lab(a) => super::bench_lab::run(a),
        BenchCommand::Send(a) => super::send::bench(a),
    }
}

/// Workloads are built one table at a time, so a 10000-service table and
/// its captures are freed before the next is made.
enum Plan {
    Synthetic {
        mixes: Vec<Mix>,
        sizes: Vec<TableSize>,
        capture: Sizes,
    },
    File(Box<Workload>),
}

fn replay(a: ReplayBenchArgs) -> Result<(), String> {
    if !(a.duration.is_finite() && a.duration > 0.0) {
        return Err("--duration must be a positive number of seconds".into());
    }
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = Machine::detect();
    let max_workers = a.workers.map_or(machine.cores, usize::from).max(1);
    let worker_counts: Vec<usize> = if a.quick {
        vec![1]
    } else {
        (1..=max_workers).collect()
    };
    let duration = if a.quick { 0.2 } else { a.duration };
    // The quick matrix keeps conntrack small so its syn capture, small
    // enough for a debug build, still overflows it as the full one does.
    let capacity = if a.quick {
        a.tuning.conntrack_capacity.min(4096)
    } else {
        a.tuning.conntrack_capacity
    };
    let plan = match (&a.pcap, &a.services) {
        (Some(pcap), Some(svc)) => {
            let capture = read_capture(pcap).map_err(|e| e.to_string())?;
            for w in dataplane::io::pcap::warnings(&capture, &pcap.display().to_string()) {
                eprintln!("vipgate: warning: {w}");
            }
            let specs = services::load_file(svc, &a.tuning.model_options())?;
            // Services as people count them: distinct VIPs, not service ports.
            let services = specs
                .iter()
                .map(|s| s.key.vip)
                .collect::<std::collections::HashSet<_>>()
                .len() as u32;
            let name = pcap
                .file_stem()
                .map_or_else(|| "capture".into(), |s| s.to_string_lossy().into_owned());
            Plan::File(Box::new(Workload {
                mix: name,
                services,
                backends: 0,
                capture,
                tables: Tables::new(ServiceTable::from_specs(specs, a.tuning.table_config())),
            }))
        }
        _ if a.quick => Plan::Synthetic {
            mixes: vec![Mix::Established, Mix::Syn],
            sizes: vec![TableSize::new(1, 10), TableSize::new(100, 10)],
            // Small captures: the CI test runs a debug build.
            capture: Sizes {
                flows: capacity / 4,
                syns: capacity.saturating_mul(4),
                mixed: capacity / 2,
            },
        },
        _ => Plan::Synthetic {
            mixes: Mix::ALL.to_vec(),
            sizes: TableSize::FULL.to_vec(),
            capture: Sizes::for_capacity(capacity),
        },
    };
    let cells_total = worker_counts.len()
        * match &plan {
            Plan::Synthetic { mixes, sizes, .. } => mixes.len() * sizes.len(),
            Plan::File(_) => 1,
        };
    let cfg = CellConfig {
        seconds: duration / cells_total as f64,
        repeats: usize::from(a.repeats),
        replay: ReplayConfig {
            burst: usize::from(a.burst),
            pin: !a.no_pin,
            pipeline: {
                let mut p = a.tuning.pipeline_config();
                p.conntrack.capacity = capacity;
                p
            },
            ..ReplayConfig::default()
        },
    };
    let mut cells = Vec::with_capacity(cells_total);
    let run_workload = |w: &Workload, cells: &mut Vec<_>| {
        for &n in &worker_counts {
            // Backends are named only off the usual 10, so the 100 x 1000
            // cells stand apart from the 100 x 10 ones.
            let backends = match w.backends {
                0 | 10 => String::new(),
                b => format!(" ({b} backends)"),
            };
            eprint!(
                "[{}/{cells_total}] {} x {} services{backends} x {n} worker{} ... ",
                cells.len() + 1,
                w.mix,
                w.services,
                if n == 1 { "" } else { "s" }
            );
            let c = matrix::run_cell(w, n, &cfg);
            eprintln!("{:.2} Mpps", c.median_mpps);
            cells.push(c);
        }
    };
    match plan {
        Plan::File(w) => run_workload(&w, &mut cells),
        Plan::Synthetic {
            mixes,
            sizes,
            capture,
        } => {
            for size in sizes {
                let tables =
                    matrix::tables(size, a.tuning.table_config(), a.tuning.forwarding.into());
                for &mix in &mixes {
                    let w = Workload {
                        mix: mix.name().into(),
                        services: size.services,
                        backends: size.backends,
                        capture: matrix::capture(mix, size.services, capture),
                        tables: tables.clone(),
                    };
                    run_workload(&w, &mut cells);
                }
            }
        }
    }
    let report = Report {
        vipgate_version: env!("CARGO_PKG_VERSION").into(),
        command_line: std::env::args().collect(),
        started_unix: started,
        machine,
        config: RunConfig {
            duration_seconds: duration,
            repeats: usize::from(a.repeats),
            quick: a.quick,
            burst: usize::from(a.burst),
            conntrack_capacity: capacity,
            pinned: !a.no_pin,
        },
        cells,
    };
    let out = a.out.unwrap_or_else(|| {
        PathBuf::from("bench-out").join(format!("replay-{}", report::utc_stamp(started)))
    });
    let files = report::write_all(&report, &out)
        .map_err(|e| format!("writing the report to {}: {e}", out.display()))?;
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
