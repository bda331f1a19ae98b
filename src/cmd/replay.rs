//! `vipgate replay`: a capture and a cluster dump through the real pipeline.

use std::path::PathBuf;

use clap::Args;
use dataplane::generation::Tables;
use dataplane::io::memory::TxCapture;
use dataplane::io::pcap::{parse_capture, read_capture, warnings, write_capture};
use dataplane::io::MAX_BURST;
use dataplane::table::ServiceTable;

use super::{embedded, services, tuning::Tuning};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Services and EndpointSlices, as `kubectl get svc,endpointslices -A -o yaml`
    /// prints them. Default: the built-in demo.
    #[arg(long, value_name = "FILE", requires = "pcap")]
    services: Option<PathBuf>,
    /// Capture to replay: pcap or pcapng of Ethernet (FCS link-type bits
    /// too), Linux cooked SLL/SLL2 (`tcpdump -i any`), raw IP (RAW, IPV4,
    /// IPV6) or BSD loopback (NULL, LOOP), frames up to 64 KiB. Non-Ethernet
    /// packets get a synthetic Ethernet header: 02:00:00:00:00:02 (peer) ->
    /// 02:00:00:00:00:01 (node); SLL/SLL2 packets of packet type OUTGOING
    /// (sent by the node) go 02:00:00:00:00:01 -> 02:00:00:00:00:02. Damaged
    /// records are skipped with one warning. Default: the built-in demo.
    #[arg(long, value_name = "FILE", requires = "services")]
    pcap: Option<PathBuf>,
    /// Write every transmitted frame (rewritten packets, generated RST/ICMP)
    /// of the first loop to this file, as Ethernet whatever the input's link
    /// type: pcapng (ns timestamps) if the name ends in `.pcapng`, else pcap
    /// (µs). Passed and dropped packets are counted, not written.
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
    let (capture, specs, name) = match (&args.pcap, &args.services) {
        (Some(pcap), Some(svc)) => (
            read_capture(pcap).map_err(|e| e.to_string())?,
            services::load_file(svc, &opts)?,
            pcap.display().to_string(),
        ),
        _ => (
            parse_capture(embedded::DEMO_PCAP, embedded::DEMO_PCAP_NAME)
                .map_err(|e| e.to_string())?,
            services::load_str(embedded::DEMO_SERVICES, embedded::DEMO_SERVICES_NAME, &opts)?,
            embedded::DEMO_PCAP_NAME.to_string(),
        ),
    };
    for w in warnings(&capture, &name) {
        eprintln!("vipgate: warning: {w}");
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
        write_capture(out, frames.iter().map(|(_, d, ts)| (*d, *ts))).map_err(|e| e.to_string())?;
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
