//! The steering program with its maps: load once per interface, attach,
//! register each queue's socket, and keep the VIP/backend maps in step
//! with the service tables.

use std::collections::{HashMap, HashSet};

use super::bpf::{ifindex, AttachMode, Map, XdpLink, XdpProgram};
use super::error::AfXdpError;
use super::program::{steering_program, ProgramMaps, KEY_LEN, KEY_V4, KEY_V6, VALUE_LEN};
use super::socket::AfXdp;
use crate::addr::{Addr, Proto};
use std::os::fd::AsRawFd;

/// Sizes of the steering maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SteeringConfig {
    /// Entries of each hash map: VIP ports (plus one per VIP address) and
    /// backend endpoints (plus one per backend address).
    pub max_entries: u32,
    /// XSKMAP slots: queues of the interface that may get a socket.
    pub max_queues: u32,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        SteeringConfig {
            max_entries: 65536,
            max_queues: 64,
        }
    }
}

/// The map key: address, port in network order, proto, pad.
pub fn key(addr: &Addr, port: u16, proto: u8) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..16].copy_from_slice(&addr.0);
    k[16..18].copy_from_slice(&port.to_be_bytes());
    k[18] = proto;
    // The dataplane's IPv4 addresses are the IPv4-mapped ones; an IPv6 VIP
    // in ::ffff:0:0/96 cannot be configured (control keys it as IPv4).
    k[19] = if addr.is_v4() { KEY_V4 } else { KEY_V6 };
    k
}

const PRESENT: [u8; VALUE_LEN] = [1];

/// One direction's map: exact (addr, port, proto) entries plus an
/// address-only entry (port 0, proto 0) kept while any exact entry for
/// that address exists. The address entry is what fragments, ICMP and
/// IPv6 packets with extension headers are matched on.
struct Side {
    map: Map,
    entries: HashSet<(Addr, u16, Proto)>,
    per_addr: HashMap<Addr, u32>,
}

impl Side {
    fn new(name: &str, max_entries: u32) -> Result<Side, AfXdpError> {
        Ok(Side {
            map: Map::hash(name, KEY_LEN as u32, VALUE_LEN as u32, max_entries)?,
            entries: HashSet::new(),
            per_addr: HashMap::new(),
        })
    }

    fn add(&mut self, addr: Addr, port: u16, proto: Proto) -> Result<(), AfXdpError> {
        if self.entries.contains(&(addr, port, proto)) {
            return Ok(());
        }
        let os = |e| AfXdpError::from_io("bpf(BPF_MAP_UPDATE_ELEM)", e);
        self.map
            .update(&key(&addr, port, proto as u8), &PRESENT)
            .map_err(os)?;
        let n = self.per_addr.entry(addr).or_insert(0);
        if *n == 0 {
            if let Err(e) = self.map.update(&key(&addr, 0, 0), &PRESENT) {
                let _ = self.map.delete(&key(&addr, port, proto as u8));
                self.per_addr.remove(&addr);
                return Err(os(e));
            }
        }
        *n += 1;
        self.entries.insert((addr, port, proto));
        Ok(())
    }

    fn remove(&mut self, addr: Addr, port: u16, proto: Proto) -> Result<bool, AfXdpError> {
        if !self.entries.remove(&(addr, port, proto)) {
            return Ok(false);
        }
        let os = |e| AfXdpError::from_io("bpf(BPF_MAP_DELETE_ELEM)", e);
        self.map
            .delete(&key(&addr, port, proto as u8))
            .map_err(os)?;
        if let Some(n) = self.per_addr.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                self.per_addr.remove(&addr);
                self.map.delete(&key(&addr, 0, 0)).map_err(os)?;
            }
        }
        Ok(true)
    }
}

/// The two lookup maps of the steering program, filled from userspace.
pub struct SteeringMaps {
    dst: Side,
    src: Side,
}

impl SteeringMaps {
    fn new(cfg: &SteeringConfig) -> Result<SteeringMaps, AfXdpError> {
        Ok(SteeringMaps {
            dst: Side::new("vipgate_dst", cfg.max_entries)?,
            src: Side::new("vipgate_src", cfg.max_entries)?,
        })
    }

    /// Steers packets *to* this service port (and ICMP/fragments to its address).
    pub fn add_vip(&mut self, addr: Addr, port: u16, proto: Proto) -> Result<(), AfXdpError> {
        self.dst.add(addr, port, proto)
    }

    /// Stops steering to this service port. Ok(false) if it was not added.
    pub fn remove_vip(&mut self, addr: Addr, port: u16, proto: Proto) -> Result<bool, AfXdpError> {
        self.dst.remove(addr, port, proto)
    }

    /// Steers packets *from* this backend endpoint (its replies), and ICMP
    /// errors from its address.
    pub fn add_backend(&mut self, addr: Addr, port: u16, proto: Proto) -> Result<(), AfXdpError> {
        self.src.add(addr, port, proto)
    }

    /// Stops steering from this backend endpoint. Ok(false) if it was not added.
    pub fn remove_backend(
        &mut self,
        addr: Addr,
        port: u16,
        proto: Proto,
    ) -> Result<bool, AfXdpError> {
        self.src.remove(addr, port, proto)
    }

    /// Whether the kernel map holds this destination key (port 0 and
    /// proto 0: the address entry).
    pub fn dst_has(&self, addr: Addr, port: u16, proto: u8) -> bool {
        self.dst
            .map
            .contains(&key(&addr, port, proto))
            .unwrap_or(false)
    }

    /// Whether the kernel map holds this source key.
    pub fn src_has(&self, addr: Addr, port: u16, proto: u8) -> bool {
        self.src
            .map
            .contains(&key(&addr, port, proto))
            .unwrap_or(false)
    }
}

/// The loaded steering program, its maps and its XSKMAP.
///
/// The XSKMAP is indexed by rx queue, so load one `XdpSteering` per
/// interface: two interfaces sharing it would share queue slots.
pub struct XdpSteering {
    maps: SteeringMaps,
    xsks: Map,
    prog: XdpProgram,
    /// Loaded as handling multi-buffer frames (BPF_F_XDP_HAS_FRAGS).
    frags: bool,
    max_queues: u32,
}

impl XdpSteering {
    /// Creates the maps and loads the program (needs CAP_BPF + CAP_NET_ADMIN).
    pub fn load(cfg: &SteeringConfig) -> Result<XdpSteering, AfXdpError> {
        if cfg.max_queues == 0 || cfg.max_entries < 2 {
            return Err(AfXdpError::Config(
                "steering maps need max_queues >= 1 and max_entries >= 2".into(),
            ));
        }
        let maps = SteeringMaps::new(cfg)?;
        let xsks = Map::xsk("vipgate_xsks", cfg.max_queues)?;
        let insns = steering_program(ProgramMaps {
            dst: maps.dst.map.fd(),
            src: maps.src.map.fd(),
            xsks: xsks.fd(),
        })
        .map_err(|e| AfXdpError::Config(format!("steering program: {e}")))?;
        // Multi-buffer first, so interfaces above a page's MTU (jumbo
        // frames) take the program; a kernel older than 5.18 rejects the
        // flag, and gets the program without it.
        let (prog, frags) = match XdpProgram::load("vipgate_steer", &insns, true) {
            Ok(p) => (p, true),
            Err(AfXdpError::Permission { op }) => return Err(AfXdpError::Permission { op }),
            Err(_) => (XdpProgram::load("vipgate_steer", &insns, false)?, false),
        };
        Ok(XdpSteering {
            maps,
            xsks,
            prog,
            frags,
            max_queues: cfg.max_queues,
        })
    }

    /// Attaches to `ifname` in the given mode. Keep the link: dropping it
    /// detaches the program.
    pub fn attach(&self, ifname: &str, mode: AttachMode) -> Result<XdpLink, AfXdpError> {
        self.prog.attach(ifname, ifindex(ifname)?, mode)
    }

    /// Attaches in driver mode, or in generic (SKB) mode where the driver
    /// has no XDP support.
    pub fn attach_best(&self, ifname: &str) -> Result<XdpLink, AfXdpError> {
        match self.attach(ifname, AttachMode::Driver) {
            Err(AfXdpError::XdpNotSupported { .. }) => self.attach(ifname, AttachMode::Skb),
            r => r,
        }
    }

    /// Points the socket's queue slot at it: from now on steered packets
    /// arriving on that queue go to this socket.
    pub fn register(&self, sock: &AfXdp) -> Result<(), AfXdpError> {
        if sock.queue() >= self.max_queues {
            return Err(AfXdpError::Config(format!(
                "queue {} is beyond the XSKMAP's {} slots; raise max_queues",
                sock.queue(),
                self.max_queues
            )));
        }
        let fd = sock.as_raw_fd() as u32;
        self.xsks
            .update(&sock.queue().to_ne_bytes(), &fd.to_ne_bytes())
            .map_err(|e| AfXdpError::from_io("bpf(BPF_MAP_UPDATE_ELEM xskmap)", e))
    }

    /// Empties a queue slot: its steered packets pass to the kernel again.
    pub fn unregister(&self, queue: u32) -> Result<bool, AfXdpError> {
        self.xsks
            .delete(&queue.to_ne_bytes())
            .map_err(|e| AfXdpError::from_io("bpf(BPF_MAP_DELETE_ELEM xskmap)", e))
    }

    pub fn maps(&self) -> &SteeringMaps {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut SteeringMaps {
        &mut self.maps
    }

    /// Whether the program takes multi-buffer frames, so that interfaces
    /// with an MTU above a page accept it.
    pub fn multi_buffer(&self) -> bool {
        self.frags
    }

    pub fn program(&self) -> &XdpProgram {
        &self.prog
    }

    /// Registers a raw fd in a queue slot (tests: an unbound AF_XDP socket
    /// makes BPF_PROG_TEST_RUN report XDP_REDIRECT for steered frames).
    #[cfg(test)]
    pub(crate) fn register_fd(&self, queue: u32, fd: i32) -> std::io::Result<()> {
        self.xsks
            .update(&queue.to_ne_bytes(), &(fd as u32).to_ne_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_is_addr_port_be_proto_pad() {
        let a = Addr::from_v4([198, 19, 0, 10]);
        let k = key(&a, 8080, 17);
        assert_eq!(&k[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&k[12..16], &[198, 19, 0, 10]);
        assert_eq!(&k[16..18], &[0x1f, 0x90]);
        assert_eq!(k[18], 17);
        assert_eq!(k[19], KEY_V4);
        let v6 = key(
            &Addr::from_v6([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            80,
            6,
        );
        assert_eq!(v6[19], KEY_V6);
    }
}
