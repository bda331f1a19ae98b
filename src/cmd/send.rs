//! `vipgate send`: transmit a capture on an interface (AF_PACKET sendmmsg
//! bursts or AF_XDP), paced or at top speed, bounded by loops and time.

use std::path::PathBuf;
use std::time::Duration;

use bench::send::{self, SendConfig, SendIo};
use clap::{Args, ValueEnum};
use dataplane::io::pcap::read_capture;
use dataplane::io::MAX_BURST;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IoArg {
    #[value(name = "af_packet", alias = "af-packet")]
    AfPacket,
    #[value(name = "af_xdp", alias = "af-xdp")]
    AfXdp,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Interface to transmit on.
    #[arg(long, value_name = "IF")]
    iface: String,
    /// Capture (pcap or pcapng, Ethernet) to send.
    #[arg(long, value_name = "FILE")]
    pcap: PathBuf,
    /// Packets per second.
    #[arg(long, value_name = "PPS", conflicts_with = "topspeed")]
    rate: Option<f64>,
    /// As fast as the socket takes frames (the default without --rate).
    #[arg(long)]
    topspeed: bool,
    /// Passes over the capture (default 1 unless --duration is given).
    #[arg(long, value_name = "K")]
    loops: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// Stop after this many frames.
    #[arg(long, value_name = "N")]
    max_packets: Option<u64>,
    /// Rewrite every frame's source MAC.
    #[arg(long, value_name = "MAC")]
    src_mac: Option<String>,
    /// Rewrite every frame's destination MAC.
    #[arg(long, value_name = "MAC")]
    dst_mac: Option<String>,
    /// Transmit path.
    #[arg(long, value_enum, default_value_t = IoArg::AfPacket)]
    io: IoArg,
    /// Frames per burst.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=MAX_BURST as i64))]
    burst: u16,
}

pub fn run(a: SendArgs) -> Result<(), String> {
    let duration = match a.duration {
        Some(d) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d)),
        Some(_) => return Err("--duration must be a positive number of seconds".into()),
        None => None,
    };
    let src_mac = a.src_mac.as_deref().map(send::parse_mac).transpose()?;
    let dst_mac = a.dst_mac.as_deref().map(send::parse_mac).transpose()?;
    let cap = read_capture(&a.pcap).map_err(|e| e.to_string())?;
    let cfg = SendConfig {
        rate_pps: a.rate,
        loops: a.loops,
        duration,
        max_packets: a.max_packets,
        io: match a.io {
            IoArg::AfPacket => SendIo::AfPacket,
            IoArg::AfXdp => SendIo::AfXdp,
        },
        burst: usize::from(a.burst),
        ..SendConfig::new(&a.iface)
    };
    let (st, skipped) = send::send_capture(&cap, src_mac, dst_mac, &cfg)?;
    if skipped > 0 {
        eprintln!(
            "vipgate send: skipped {skipped} frame{} shorter than an Ethernet header or longer than {}'s MTU",
            if skipped == 1 { "" } else { "s" },
            a.iface
        );
    }
    println!(
        "sent {} packets ({} bytes, {} loops) in {:.3} s: {:.0} pps, {:.1} Mbps",
        st.sent,
        st.bytes,
        st.loops_done,
        st.seconds,
        st.pps(),
        st.mbps()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct SendBenchArgs {
    /// Capture to send. Default: generated 60-byte UDP frames to 198.18.0.77.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Frames per run, rounded up to whole passes over the capture
    /// (default 2000000; --quick: 100000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    packets: Option<u64>,
    /// Runs per tool; the report shows medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    repeats: u16,
    /// Output directory. Default: bench-out/send-<UTC timestamp>.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// 100000 frames per run: for CI.
    #[arg(long)]
    quick: bool,
}

/// `vipgate bench send`.
pub fn bench(a: SendBenchArgs) -> Result<(), String> {
    use bench::report::{utc_stamp, Machine};
    use bench::sendbench::{self, SendBenchConfig, SendBenchReport};
    use std::time::{SystemTime, UNIX_EPOCH};

    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("bench-out").join(format!("send-{}", utc_stamp(started))));
    let cfg = SendBenchConfig {
        pcap: a.pcap,
        packets: a
            .packets
            .unwrap_or(if a.quick { 100_000 } else { 2_000_000 }),
        repeats: usize::from(a.repeats),
        vipgate_bin: std::env::current_exe().map_err(|e| format!("locating vipgate: {e}"))?,
        work_dir: out.clone(),
        quick: a.quick,
    };
    let machine = Machine::detect();
    let (capture, tools) = sendbench::run(&cfg)?;
    let failed: Vec<String> = tools
        .iter()
        .filter_map(|t| t.error.as_ref().map(|e| format!("{}: {e}", t.tool)))
        .collect();
    let report = SendBenchReport {
        vipgate_version: env!("CARGO_PKG_VERSION").into(),
        command_line: std::env::args().collect(),
        started_unix: started,
        machine,
        tcpreplay_version: sendbench::tcpreplay_version(),
        config: cfg,
        capture,
        tools,
    };
    let files = sendbench::write_all(&report, &out)
        .map_err(|e| format!("writing the report to {}: {e}", out.display()))?;
    for f in files {
        println!("wrote {}", f.display());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("some runs failed:\n  {}", failed.join("\n  ")))
    }
}
