//! Opening the gateway's sockets: AF_XDP (steering program per interface,
//! one socket per rx queue) or AF_PACKET (one socket per interface), with
//! `--io auto` falling back from the first to the second.

use dataplane::io::af_packet::{check_host, AfPacket, AfPacketConfig};
use dataplane::io::af_xdp::{AfXdp, AfXdpConfig, BindMode, SteeringConfig, XdpLink, XdpSteering};
use dataplane::worker::Port;

/// Which backend `--io` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IoMode {
    /// AF_XDP, else AF_PACKET (saying why in one line).
    Auto,
    #[value(name = "af-xdp")]
    AfXdp,
    #[value(name = "af-packet")]
    AfPacket,
}

/// AF_XDP sockets plus what keeps them fed: the steering programs (their
/// maps are filled from every published table) and the links that keep the
/// programs attached (dropping a link detaches its program).
pub struct XdpPorts {
    pub ports: Vec<Port<AfXdp>>,
    pub steering: Vec<XdpSteering>,
    pub links: Vec<XdpLink>,
    /// "zero-copy" or "copy".
    pub mode: &'static str,
}

pub enum Opened {
    Xdp(XdpPorts),
    Packet(Vec<Port<AfPacket>>),
}

/// Receive queues of `ifname` (sysfs of the current network namespace).
fn rx_queues(ifname: &str) -> u32 {
    let dir = format!("/sys/class/net/{ifname}/queues");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}

fn ifindex_of(ifname: &str) -> Result<u32, String> {
    let path = format!("/sys/class/net/{ifname}/ifindex");
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            format!("interface {ifname:?} not found in this network namespace (ip link)")
        })
}

pub fn open_xdp(ifaces: &[String]) -> Result<XdpPorts, String> {
    let mut out = XdpPorts {
        ports: Vec::new(),
        steering: Vec::new(),
        links: Vec::new(),
        mode: "zero-copy",
    };
    for ifname in ifaces {
        let ifindex = ifindex_of(ifname)?;
        let steer = XdpSteering::load(&SteeringConfig::default()).map_err(|e| e.to_string())?;
        let link = steer
            .attach_best(ifname)
            .map_err(|e| format!("{ifname}: {e}"))?;
        for q in 0..rx_queues(ifname) {
            let sock = AfXdp::open(ifname, q, &AfXdpConfig::default())
                .map_err(|e| format!("{ifname} queue {q}: {e}"))?;
            if sock.mode() == BindMode::Copy {
                out.mode = "copy";
            }
            steer
                .register(&sock)
                .map_err(|e| format!("{ifname} queue {q}: {e}"))?;
            out.ports.push(Port { io: sock, ifindex });
        }
        out.steering.push(steer);
        out.links.push(link);
    }
    Ok(out)
}

pub fn open_packet(ifaces: &[String]) -> Result<Vec<Port<AfPacket>>, String> {
    let cfg = AfPacketConfig::default();
    let mut ports = Vec::new();
    for ifname in ifaces {
        for w in check_host(ifname, &cfg) {
            eprintln!("vipgate: warning: {w}");
        }
        let sock = AfPacket::open(ifname, &cfg).map_err(|e| format!("{ifname}: {e}"))?;
        ports.push(Port {
            ifindex: sock.ifindex(),
            io: sock,
        });
    }
    Ok(ports)
}

pub fn open(mode: IoMode, ifaces: &[String]) -> Result<Opened, String> {
    match mode {
        IoMode::AfXdp => open_xdp(ifaces).map(Opened::Xdp),
        IoMode::AfPacket => open_packet(ifaces).map(Opened::Packet),
        IoMode::Auto => match open_xdp(ifaces) {
            Ok(x) => Ok(Opened::Xdp(x)),
            Err(why) => {
                eprintln!("vipgate: AF_XDP unavailable, falling back to AF_PACKET: {why}");
                open_packet(ifaces).map(Opened::Packet)
            }
        },
    }
}
