//! `vipgate replay`: a capture and a cluster dump through the real pipeline.

use std::path::PathBuf;

use clap::Args;
use dataplane::generation::Tables;
use dataplane::io::memory::TxCapture;
use dataplane::io::pcap::{parse_capture, read_capture, write_pcap};
use dataplane::io::MAX_BURST;
use dataplane::table::ServiceTable;

use super::{embedded, services, tuning::Tuning};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Services and EndpointSlices, as `kubectl get svc,endpointslices -A -o yaml`
    /// prints them. Default: the built-in demo.
    #[arg(long, value_name = "FILE", requires = "pcap")]
    services: Option<PathBuf>,
    /// Capture to replay (pcap or pcapng, Ethernet). Default: the built-in demo.
    #[arg(long, value_name = "FILE", requires = "services")]
    pcap: Option<PathBuf>,
    /// Write every transmitted frame (rewritten packets, generated RST/ICMP)
    /// of the first loop to this pcap. Passed and dropped packets are counted,
    /// not written.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Worker threads, each pinned to its own core; flows are split by client.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Times to repeat the capture (the clock keeps rising across loops).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    loops: u64,
    /// Frames per burst.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=MAX_BURST as i64))]
    burst: u16,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Do not pin workers to cores.
    #[arg(long)]
    no_pin: bool,
    #[command(flatten)]
    tuning: Tuning,
}

pub fn run(args: ReplayArgs) -> Result<(), String> {
    let opts = args.tuning.model_options();
    let (capture, specs) = match (&args.pcap, &args.services) {
        (Some(pcap), Some(svc)) => (
            read_capture(pcap).map_err(|e| e.to_string())?,
            services::load_file(svc, &opts)?,
        ),
        _ => (
            parse_capture(embedded::DEMO_PCAP, embedded::DEMO_PCAP_NAME)
                .map_err(|e| e.to_string())?,
            services::load_str(embedded::DEMO_SERVICES, embedded::DEMO_SERVICES_NAME, &opts)?,
        ),
    };
    if capture.truncated > 0 {
        eprintln!(
            "vipgate: warning: {} frames longer than {} bytes were cut (turn off GRO/TSO when capturing)",
            capture.truncated,
            dataplane::io::memory::FRAME_BUF_SIZE
        );
    }
    let table = ServiceTable::from_specs(specs, args.tuning.table_config());
    let tables = Tables::new(table);
    let cfg = bench::replay::ReplayConfig {
        workers: usize::from(args.workers),
        loops: args.loops,
        warmup_loops: 0,
        burst: usize::from(args.burst),
        keep_tx: args.out.is_some(),
        pin: !args.no_pin,
        pipeline: args.tuning.pipeline_config(),
    };
    let result = bench::replay::run(&capture, &tables, &cfg);
    if let (Some(out), Some(tx)) = (&args.out, &result.tx) {
        let frames = TxCapture::merge(tx);
        write_pcap(out, frames.iter().map(|(_, d, ts)| (*d, *ts))).map_err(|e| e.to_string())?;
    }
    if args.json {
        println!("{}", bench::summary::to_json(&result));
    } else {
        print!("{}", bench::summary::to_text(&result));
        if let Some(out) = &args.out {
            println!(
                "\nwrote {} frames to {}",
                result
                    .tx
                    .as_ref()
                    .map_or(0, |t| t.iter().map(|p| p.len()).sum::<usize>()),
                out.display()
            );
        }
    }
    Ok(())
}
