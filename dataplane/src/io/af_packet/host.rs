//! Host settings an AF_PACKET gateway depends on, and the offload switches
//! labs need (through the ethtool ioctl: the `ethtool` binary is often absent
//! from minimal images).
//!
//! AF_PACKET receives a copy: the kernel still processes every packet the
//! gateway handles. On a host that forwards, the kernel would also route the
//! VIP traffic, and the backend would see each packet twice. GRO/LRO merge
//! segments into super-frames the gateway cannot rewrite into wire frames.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::config::AfPacketConfig;

const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETH_FLAG_LRO: u32 = 1 << 15;
/// Ethernet header plus two VLAN tags: what a frame adds to the MTU.
const L2_OVERHEAD: u32 = 14 + 2 * 4;

/// An offload the ethtool ioctl can read and switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    /// Generic receive offload (software merge on rx).
    Gro,
    /// Large receive offload (NIC merge on rx).
    Lro,
    /// TCP segmentation offload (tx super-frames).
    Tso,
    /// Generic segmentation offload (tx super-frames, software).
    Gso,
    /// Tx checksum offload: a sender over veth leaves partial checksums.
    TxChecksum,
}

impl Offload {
    /// Its `ethtool -K` name.
    pub fn name(self) -> &'static str {
        match self {
            Offload::Gro => "gro",
            Offload::Lro => "lro",
            Offload::Tso => "tso",
            Offload::Gso => "gso",
            Offload::TxChecksum => "tx",
        }
    }
}

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// A datagram socket to issue interface ioctls on, in the caller's netns.
fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; checked below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(ifname: &str) -> io::Result<libc::ifreq> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: ifreq is plain data; all-zero is valid (NUL-padded name).
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

fn ethtool(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let sock = ctl_socket()?;
    let mut v = EthtoolValue { cmd, data };
    let mut req = ifreq(ifname)?;
    req.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
    // SAFETY: req names the interface and points at an ethtool_value that
    // lives across the call, which is what these ETHTOOL_* commands take.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.data)
}

const ETHTOOL_GDRVINFO: u32 = 0x03;

/// `struct ethtool_drvinfo` (linux/ethtool.h): only the driver name is read.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// The driver of `ifname` as `ethtool -i` names it ("veth", "mlx5_core").
pub fn driver(ifname: &str) -> io::Result<String> {
    let sock = ctl_socket()?;
    // SAFETY: plain data, all-zero is valid.
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = ifreq(ifname)?;
    req.ifr_ifru.ifru_data = (&mut info as *mut EthtoolDrvinfo).cast();
    // SAFETY: req points at an ethtool_drvinfo that lives across the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..n]).into_owned())
}

/// Whether `ifname` exists in the caller's network namespace.
pub fn interface_exists(ifname: &str) -> bool {
    super::socket::ifindex(ifname).is_ok()
}

/// Whether this process runs as root (effective UID 0): what the labs
/// need for namespaces, veth pairs and packet sockets, and what tests ask
/// before they build one.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The name of interface `ifindex` now (in the caller's network
/// namespace), or None when there is none.
pub fn interface_name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, the most if_indextoname writes.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// The MTU of `ifname` (in the caller's network namespace).
pub fn mtu(ifname: &str) -> io::Result<u32> {
    let r = if_ioctl(ifname, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    Ok(unsafe { r.ifr_ifru.ifru_mtu } as u32)
}

/// Whether `offload` is on for `ifname` (in the caller's network namespace).
pub fn offload(ifname: &str, offload: Offload) -> io::Result<bool> {
    Ok(match offload {
        Offload::Gro => ethtool(ifname, ETHTOOL_GGRO, 0)? != 0,
        Offload::Lro => ethtool(ifname, ETHTOOL_GFLAGS, 0)? & ETH_FLAG_LRO != 0,
        Offload::Tso => ethtool(ifname, ETHTOOL_GTSO, 0)? != 0,
        Offload::Gso => ethtool(ifname, ETHTOOL_GGSO, 0)? != 0,
        Offload::TxChecksum => ethtool(ifname, ETHTOOL_GTXCSUM, 0)? != 0,
    })
}

/// Switches `offload` on or off for `ifname` (needs CAP_NET_ADMIN). Labs
/// use this the way `ethtool -K IF gro off` is used on real hosts.
pub fn set_offload(ifname: &str, offload: Offload, on: bool) -> io::Result<()> {
    let v = on as u32;
    match offload {
        Offload::Gro => ethtool(ifname, ETHTOOL_SGRO, v)?,
        Offload::Tso => ethtool(ifname, ETHTOOL_STSO, v)?,
        Offload::Gso => ethtool(ifname, ETHTOOL_SGSO, v)?,
        Offload::TxChecksum => ethtool(ifname, ETHTOOL_STXCSUM, v)?,
        Offload::Lro => {
            let flags = ethtool(ifname, ETHTOOL_GFLAGS, 0)?;
            let flags = if on {
                flags | ETH_FLAG_LRO
            } else {
                flags & !ETH_FLAG_LRO
            };
            ethtool(ifname, ETHTOOL_SFLAGS, flags)?
        }
    };
    Ok(())
}

fn if_ioctl(ifname: &str, req_code: libc::c_ulong) -> io::Result<libc::ifreq> {
    let sock = ctl_socket()?;
    let mut req = ifreq(ifname)?;
    // SAFETY: SIOCGIF* fill the ifreq they are given.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), req_code as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

fn sysctl_on(path: &str) -> Option<bool> {
    let s = std::fs::read_to_string(path).ok()?;
    Some(s.trim() != "0")
}

/// Warnings about host settings that break or degrade an AF_PACKET gateway
/// on `ifname`, each saying what to change. Empty when all is well. Reads
/// the caller's network namespace (/proc/sys/net and ioctls follow the
/// calling thread's namespace).
pub fn check_host(ifname: &str, cfg: &AfPacketConfig) -> Vec<String> {
    let mut warn = Vec::new();
    for (path, key) in [
        ("/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward"),
        (
            "/proc/sys/net/ipv6/conf/all/forwarding",
            "net.ipv6.conf.all.forwarding",
        ),
    ] {
        if sysctl_on(path) == Some(true) {
            warn.push(format!(
                "{key}=1: AF_PACKET only copies packets, so the kernel also routes the VIP \
                 traffic and backends get every packet twice; set `sysctl -w {key}=0`, or drop \
                 VIP traffic in the kernel (e.g. an nftables prerouting drop for the VIPs)"
            ));
        }
    }
    let flags = match if_ioctl(ifname, libc::SIOCGIFFLAGS) {
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        Ok(r) => unsafe { r.ifr_ifru.ifru_flags },
        Err(e) => {
            warn.push(format!(
                "interface {ifname:?} cannot be inspected ({e}): check `ip link`"
            ));
            return warn;
        }
    };
    if flags & libc::IFF_UP as libc::c_short == 0 {
        warn.push(format!(
            "interface {ifname} is down: `ip link set dev {ifname} up`"
        ));
    }
    if let Ok(mtu) = mtu(ifname) {
        if mtu + L2_OVERHEAD > cfg.buf_size {
            warn.push(format!(
                "MTU {mtu} of {ifname} needs frames of up to {} bytes but buf_size is {}: \
                 full-size frames would be skipped; raise buf_size or lower the MTU",
                mtu + L2_OVERHEAD,
                cfg.buf_size
            ));
        }
    }
    // With vnet headers, merged super-frames are NATed once and sent on
    // whole: GRO/LRO then save work instead of losing frames.
    let merged_fit = cfg.vnet_hdr && cfg.buf_size as usize >= 65_536 + L2_OVERHEAD as usize;
    for o in [Offload::Gro, Offload::Lro] {
        if merged_fit {
            break;
        }
        match offload(ifname, o) {
            Ok(true) => warn.push(format!(
                "{} is on for {ifname}: the kernel merges segments into frames of up to 64 KiB, \
                 which do not fit a {}-byte buffer and are skipped (rx_oversize); \
                 run `ethtool -K {ifname} {} off`",
                o.name().to_uppercase(),
                cfg.buf_size,
                o.name()
            )),
            Ok(false) => {}
            // Drivers without the feature answer EOPNOTSUPP: nothing to fix.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => warn.push(format!(
                "cannot read {} state of {ifname} ({e}); check `ethtool -k {ifname}`",
                o.name()
            )),
        }
    }
    warn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_is_reported_not_fatal() {
        let w = check_host("vg-none-xyz0", &AfPacketConfig::default());
        assert!(w.iter().any(|w| w.contains("cannot be inspected")), "{w:?}");
    }

    #[test]
    fn loopback_mtu_is_flagged_against_small_buffers() {
        // lo's MTU is 65536 in every namespace: more than a 2 KiB buffer,
        // not more than the default one (sized for 64 KiB super-frames).
        let small = AfPacketConfig {
            buf_size: 2048,
            ..AfPacketConfig::default()
        };
        let w = check_host("lo", &small);
        assert!(w.iter().any(|w| w.contains("MTU 65536")), "{w:?}");
        let w = check_host("lo", &AfPacketConfig::default());
        assert!(!w.iter().any(|w| w.contains("MTU")), "{w:?}");
    }

    #[test]
    fn loopback_facts_read() {
        assert_eq!(mtu("lo").unwrap(), 65536);
        // lo has no ethtool driver info on every kernel: an error is fine,
        // a wrong name is not.
        if let Ok(d) = driver("lo") {
            assert!(!d.contains('\0'), "{d:?}");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(offload("", Offload::Gro).is_err());
        assert!(offload("a-name-far-too-long", Offload::Gro).is_err());
    }
}
