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
