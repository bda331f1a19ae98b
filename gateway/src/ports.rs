//! Opening the gateway's sockets for `workers` workers: AF_XDP (steering
//! program per interface, one socket per rx queue, queue q to worker
//! q % workers) or AF_PACKET (one socket per interface and worker, the
//! workers of an interface in one PACKET_FANOUT hash group), with
//! `--io auto` falling back from the first to the second.
//!
//! A worker's AF_XDP sockets share one UMEM (the first one it gets owns
//! it, the others bind with XDP_SHARED_UMEM), so a frame received on one
//! interface is transmitted on another from the same memory, no copy.
//!
//! An interface with fewer rx queues than workers (a veth has one unless
//! created with `numrxqueues`) leaves AF_XDP workers without a socket
//! there; such workers only process what the others hand over.

use dataplane::io::af_packet::{
    check_host, AfPacket, AfPacketConfig, Fanout, FanoutMode, RingKind,
};
use dataplane::io::af_xdp::{AfXdp, AfXdpConfig, BindMode, SteeringConfig, XdpLink, XdpSteering};
use dataplane::io::iface::{Facts, Mode};
use dataplane::io::PacketIo;
use dataplane::worker::Port;

/// Which packet I/O backend to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// AF_XDP, else AF_PACKET (saying why in one line).
    Auto,
    /// AF_XDP only.
    AfXdp,
    /// AF_PACKET only.
    AfPacket,
}

/// The AF_PACKET rx ring asked for.
#[derive(Clone, Copy, Debug)]
pub struct PacketRing {
    pub kind: RingKind,
    /// Slots of a frame ring.
    pub slots: u32,
}

/// AF_XDP sockets plus what keeps them fed: the steering programs (their
/// maps are filled from every published table) and the links that keep the
/// programs attached (dropping a link detaches its program).
pub struct XdpPorts {
    /// Per worker.
    pub ports: Vec<Vec<Port<AfXdp>>>,
    pub steering: Vec<XdpSteering>,
    pub links: Vec<XdpLink>,
    /// "zero-copy" or "copy".
    pub mode: &'static str,
}

pub enum Opened {
    Xdp(XdpPorts),
    /// Per worker.
    Packet(Vec<Vec<Port<AfPacket>>>),
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

pub fn open_xdp(ifaces: &[String], workers: usize) -> Result<XdpPorts, String> {
    let workers = workers.max(1);
    let mut out = XdpPorts {
        ports: (0..workers).map(|_| Vec::new()).collect(),
        steering: Vec::new(),
        links: Vec::new(),
        mode: "zero-copy",
    };
    let queues: Vec<u32> = ifaces.iter().map(|i| rx_queues(i)).collect();
    // Sockets per worker: its UMEM gets the usual frames for each of them,
    // so every fill ring can stay full.
    let mut per_worker = vec![0u32; workers];
    for &n in &queues {
        for q in 0..n {
            per_worker[q as usize % workers] += 1;
        }
    }
    let base = AfXdpConfig::default();
    let mut loaded = Vec::with_capacity(ifaces.len());
    for ifname in ifaces {
        ifindex_of(ifname)?;
        let steer = XdpSteering::load(&SteeringConfig::default()).map_err(|e| e.to_string())?;
        // Refuse before attaching: past the limit the kernel either
        // refuses the program with a bare EINVAL or drops every large frame.
        let multi = steer.multi_buffer() && base.multi_buffer;
        let max = if multi {
            base.max_jumbo_frame()
        } else {
            base.max_frame()
        };
        if let Some(e) = Facts::read(ifname).xdp_mtu_error(max, multi) {
            return Err(e);
        }
        loaded.push(steer);
    }
    for ((ifname, &nq), steer) in ifaces.iter().zip(&queues).zip(loaded) {
        let ifindex = ifindex_of(ifname)?;
        let link = steer
            .attach_best(ifname)
            .map_err(|e| format!("{ifname}: {e}"))?;
        for q in 0..nq {
            let w = q as usize % workers;
            let sock = match out.ports[w].first() {
                // SAFETY: every socket sharing this UMEM goes into
                // `out.ports[w]`, which moves to worker w's thread whole
                // and is dropped there (or here, all together, on error).
                Some(first) => unsafe { AfXdp::open_shared(ifname, q, &base, &first.io) },
                None => {
                    let cfg = AfXdpConfig {
                        frame_count: base.frame_count * per_worker[w],
                        ..base.clone()
                    };
                    AfXdp::open(ifname, q, &cfg)
                }
            }
            .map_err(|e| format!("{ifname} queue {q}: {e}"))?;
            if sock.mode() == BindMode::Copy {
                out.mode = "copy";
            }
            // The program takes large frames, but a socket without
            // multi-buffer (kernel before 6.6) would never see them.
            if !sock.multi_buffer() {
                if let Some(e) = Facts::read(ifname).xdp_mtu_error(base.max_frame(), false) {
                    return Err(e);
                }
            }
            steer
                .register(&sock)
                .map_err(|e| format!("{ifname} queue {q}: {e}"))?;
            out.ports[w].push(Port { io: sock, ifindex });
        }
        out.steering.push(steer);
        out.links.push(link);
    }
    Ok(out)
}

/// The fanout group of an interface. Group ids are shared by the whole
/// network namespace: mixing in the process id keeps two gateways (or a
/// packet capture tool using fanout) from joining each other's groups,
/// and XOR with one value keeps different interfaces apart.
pub fn fanout_group(ifindex: u32) -> u16 {
    (ifindex as u16) ^ (std::process::id() as u16).rotate_left(8)
}

pub fn open_packet(
    ifaces: &[String],
    workers: usize,
    ring: PacketRing,
) -> Result<Vec<Vec<Port<AfPacket>>>, String> {
    let workers = workers.max(1);
    let base = AfPacketConfig {
        ring: ring.kind,
        frame_slots: ring.slots,
        ..AfPacketConfig::default()
    };
    let mut cfgs = Vec::with_capacity(ifaces.len());
    for ifname in ifaces {
        for w in check_host(ifname, &base) {
            tracing::warn!("{w}");
        }
        let mut cfg = base.clone();
        if workers > 1 {
            // Hash mode keeps each direction of a flow on one worker; the
            // handoff brings the other direction to the flow's owner.
            cfg.fanout = Some(Fanout {
                group_id: fanout_group(ifindex_of(ifname)?),
                mode: FanoutMode::Hash,
            });
        }
        cfgs.push(cfg);
    }
    let mut out = Vec::with_capacity(workers);
    for w in 0..workers {
        let mut ports = Vec::with_capacity(ifaces.len());
        for (ifname, cfg) in ifaces.iter().zip(&cfgs) {
            let sock =
                AfPacket::open(ifname, cfg).map_err(|e| format!("{ifname} (worker {w}): {e}"))?;
            ports.push(Port {
                ifindex: sock.ifindex(),
                io: sock,
            });
        }
        out.push(ports);
    }
    Ok(out)
}

impl Opened {
    /// What each interface's settings mean for the mode that was opened:
    /// one line per interface, for the operator at start-up.
    pub fn facts(&self, ifaces: &[String]) -> Vec<String> {
        let mode = match self {
            Opened::Xdp(x) => {
                let first = first_port(&x.ports);
                Mode::AfXdp {
                    max_frame: first.map_or(0, |p| p.io.max_frame() as u32),
                    multi_buffer: first.is_some_and(|p| p.io.multi_buffer()),
                }
            }
            Opened::Packet(p) => {
                let first = first_port(p);
                Mode::AfPacket {
                    vnet: first.is_some_and(|p| p.io.vnet_hdr()),
                    max_frame: first.map_or(0, |p| p.io.max_frame() as u32),
                }
            }
        };
        ifaces
            .iter()
            .map(|i| Facts::read(i).describe(mode))
            .collect()
    }
}

fn first_port<I>(per_worker: &[Vec<Port<I>>]) -> Option<&Port<I>> {
    per_worker.iter().flatten().next()
}

pub fn open(
    mode: IoMode,
    ifaces: &[String],
    workers: usize,
    ring: PacketRing,
) -> Result<Opened, String> {
    match mode {
        IoMode::AfXdp => open_xdp(ifaces, workers).map(Opened::Xdp),
        IoMode::AfPacket => open_packet(ifaces, workers, ring).map(Opened::Packet),
        IoMode::Auto => match open_xdp(ifaces, workers) {
            Ok(x) => Ok(Opened::Xdp(x)),
            Err(why) => {
                tracing::warn!("AF_XDP unavailable, falling back to AF_PACKET: {why}");
                open_packet(ifaces, workers, ring).map(Opened::Packet)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_groups_differ_per_interface() {
        let g: Vec<u16> = (1..64).map(fanout_group).collect();
        let mut d = g.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), g.len());
        assert_eq!(fanout_group(7), fanout_group(7));
    }
}
