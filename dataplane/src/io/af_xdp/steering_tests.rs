//! The steering program run by the kernel over hand-built frames
//! (BPF_PROG_TEST_RUN): the verifier accepts it, and each kind of packet
//! gets the action the module docs of `program` promise. Needs root.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::program::{XDP_PASS, XDP_REDIRECT};
use super::steering::{SteeringConfig, XdpSteering};
use crate::addr::{Addr, Proto};

const NODE: [u8; 4] = [198, 18, 0, 1];
const CLIENT: [u8; 4] = [198, 18, 0, 2];
const VIP: [u8; 4] = [198, 19, 0, 10];
const BACKEND: [u8; 4] = [198, 18, 1, 5];
const VIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const BACKEND6: [u8; 16] = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

use crate::io::af_packet::is_root;

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: needs root (BPF_PROG_LOAD / BPF_PROG_TEST_RUN)");
            return;
        }
    };
}

fn eth(ethertype: u16, vlan: Option<u16>, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    if let Some(tci) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, options: usize, frag: u16, l4: &[u8]) -> Vec<u8> {
    assert_eq!(options % 4, 0);
    let ihl = (20 + options) / 4;
    let total = (20 + options + l4.len()) as u16;
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend(std::iter::repeat_n(0x01u8, options)); // NOP options
    h.extend_from_slice(l4);
    h
}

fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(l4);
    h
}

fn ports(sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let mut l4 = vec![0u8; len];
    l4[..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4
}

fn udp(s: u16, d: u16) -> Vec<u8> {
    ports(s, d, 8)
}

fn tcp(s: u16, d: u16) -> Vec<u8> {
    ports(s, d, 20)
}

/// An SCTP common header and one empty chunk: the ports are where TCP's
/// and UDP's are.
fn sctp(s: u16, d: u16) -> Vec<u8> {
    ports(s, d, 16)
}

fn icmp(ty: u8) -> Vec<u8> {
    vec![ty, 0, 0, 0, 0, 7, 0, 1]
}

fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(0x0800, None, &ipv4(src, dst, proto, 0, 0, l4))
}

fn v6(src: [u8; 16], dst: [u8; 16], next: u8, l4: &[u8]) -> Vec<u8> {
    eth(0x86dd, None, &ipv6(src, dst, next, l4))
}

/// A loaded program with VIPs and backends in place and an (unbound)
/// AF_XDP socket in queue slot 0, so a steered frame reports XDP_REDIRECT.
struct Rig {
    steer: XdpSteering,
    _xsk: OwnedFd,
}

impl Rig {
    fn new() -> Rig {
        let mut steer = XdpSteering::load(&SteeringConfig {
            max_entries: 64,
            max_queues: 4,
        })
        .unwrap_or_else(|e| panic!("load: {e}"));
        // SAFETY: plain socket(2), owned right away.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            raw >= 0,
            "socket(AF_XDP): {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: raw is a new fd nothing else owns.
        let xsk = unsafe { OwnedFd::from_raw_fd(raw) };
        steer
            .register_fd(0, xsk.as_raw_fd())
            .expect("xskmap update");
        let m = steer.maps_mut();
        m.add_vip(Addr::from_v4(VIP), 53, Proto::Udp).unwrap();
        m.add_vip(Addr::from_v4(VIP), 80, Proto::Tcp).unwrap();
        m.add_backend(Addr::from_v4(BACKEND), 8080, Proto::Tcp)
            .unwrap();
        m.add_vip(Addr::from_v6(VIP6), 443, Proto::Tcp).unwrap();
        m.add_backend(Addr::from_v6(BACKEND6), 8443, Proto::Tcp)
            .unwrap();
        Rig { steer, _xsk: xsk }
    }

    fn run(&self, frame: &[u8]) -> u32 {
        self.steer.program().test_run(frame).expect("test run")
    }

    #[track_caller]
    fn expect(&self, what: &str, frame: &[u8], action: u32) {
        assert_eq!(self.run(frame), action, "{what}");
    }
}

#[test]
fn ipv4_tcp_udp_steering() {
    need_root!();
    let r = Rig::new();
    r.expect(
        "udp to vip port",
        &v4(CLIENT, VIP, 17, &udp(40000, 53)),
        XDP_REDIRECT,
    );
    r.expect(
        "udp to other port",
        &v4(CLIENT, VIP, 17, &udp(40000, 54)),
        XDP_PASS,
    );
    r.expect(
        "tcp to udp-only port",
        &v4(CLIENT, VIP, 6, &tcp(40000, 53)),
        XDP_PASS,
    );
    r.expect(
        "tcp to vip",
        &v4(CLIENT, VIP, 6, &tcp(40000, 80)),
        XDP_REDIRECT,
    );
    r.expect(
        "tcp to node",
        &v4(CLIENT, NODE, 6, &tcp(40000, 22)),
        XDP_PASS,
    );
    r.expect(
        "backend reply",
        &v4(BACKEND, CLIENT, 6, &tcp(8080, 40000)),
        XDP_REDIRECT,
    );
    r.expect(
        "backend other port",
        &v4(BACKEND, NODE, 6, &tcp(8081, 22)),
        XDP_PASS,
    );
    r.expect(
        "sctp to udp-only port",
        &v4(CLIENT, VIP, 132, &sctp(1, 53)),
        XDP_PASS,
    );
    let tagged = eth(0x0800, Some(7), &ipv4(CLIENT, VIP, 17, 0, 0, &udp(1, 53)));
    r.expect("802.1Q udp to vip", &tagged, XDP_REDIRECT);
    let tagged = eth(0x0800, Some(7), &ipv4(CLIENT, NODE, 17, 0, 0, &udp(1, 53)));
    r.expect("802.1Q udp to node", &tagged, XDP_PASS);
}

/// SCTP to an SCTP VIP port and replies from SCTP backends are steered in,
/// in both families; the same ports over TCP/UDP, or SCTP to other
/// ports, are not.
#[test]
fn sctp_steering() {
    need_root!();
    let mut r = Rig::new();
    let m = r.steer.maps_mut();
    m.add_vip(Addr::from_v4(VIP), 3868, Proto::Sctp).unwrap();
    m.add_backend(Addr::from_v4(BACKEND), 3869, Proto::Sctp)
        .unwrap();
    m.add_vip(Addr::from_v6(VIP6), 3868, Proto::Sctp).unwrap();
    m.add_backend(Addr::from_v6(BACKEND6), 3869, Proto::Sctp)
        .unwrap();
    let sctp4 = |s, d, sp, dp| v4(s, d, 132, &sctp(sp, dp));
    let sctp6 = |s, d, sp, dp| v6(s, d, 132, &sctp(sp, dp));
    r.expect(
        "sctp to vip",
        &sctp4(CLIENT, VIP, 40000, 3868),
        XDP_REDIRECT,
    );
    r.expect(
        "sctp to vip other port",
        &sctp4(CLIENT, VIP, 40000, 3869),
        XDP_PASS,
    );
    r.expect("sctp to node", &sctp4(CLIENT, NODE, 40000, 3868), XDP_PASS);
    r.expect(
        "udp to sctp port",
        &v4(CLIENT, VIP, 17, &udp(40000, 3868)),
        XDP_PASS,
    );
    r.expect(
        "sctp backend reply",
        &sctp4(BACKEND, CLIENT, 3869, 40000),
        XDP_REDIRECT,
    );
    r.expect(
        "tcp from sctp backend port",
        &v4(BACKEND, CLIENT, 6, &tcp(3869, 40000)),
        XDP_PASS,
    );
    r.expect(
        "v6 sctp to vip",
        &sctp6(CLIENT6, VIP6, 40000, 3868),
        XDP_REDIRECT,
    );
    r.expect(
        "v6 sctp to vip other port",
        &sctp6(CLIENT6, VIP6, 40000, 3870),
        XDP_PASS,
    );
    r.expect(
        "v6 sctp backend reply",
        &sctp6(BACKEND6, CLIENT6, 3869, 40000),
        XDP_REDIRECT,
    );
    r.expect(
        "v6 udp to sctp port",
        &v6(CLIENT6, VIP6, 17, &udp(40000, 3868)),
        XDP_PASS,
    );
}

#[test]
fn ipv4_options_use_the_ihl_offset() {
    need_root!();
    let r = Rig::new();
    // With 8 option bytes of NOPs, a fixed offset of 20 would read the
    // ports as 0x0101 and miss; matching proves the IHL offset is used.
    for opts in [4, 8, 40] {
        let f = eth(
            0x0800,
            None,
            &ipv4(CLIENT, VIP, 6, opts, 0, &tcp(40000, 80)),
        );
        r.expect("options, tcp to vip", &f, XDP_REDIRECT);
        let f = eth(
            0x0800,
            None,
            &ipv4(CLIENT, VIP, 6, opts, 0, &tcp(40000, 81)),
        );
        r.expect("options, other port", &f, XDP_PASS);
    }
}

#[test]
fn fragments_and_icmp_match_on_address() {
    need_root!();
    let r = Rig::new();
    let mf = 0x2000;
    let later = 0x00b9; // offset 185*8, no MF
    for frag in [mf, later] {
        let f = eth(0x0800, None, &ipv4(CLIENT, VIP, 17, 0, frag, &udp(9, 9)));
        r.expect("fragment to vip", &f, XDP_REDIRECT);
        let f = eth(0x0800, None, &ipv4(CLIENT, NODE, 17, 0, frag, &udp(9, 53)));
        r.expect("fragment to node", &f, XDP_PASS);
        // A backend's fragmented reply: its later fragments have no ports.
        let f = eth(
            0x0800,
            None,
            &ipv4(BACKEND, CLIENT, 17, 0, frag, &udp(9, 9)),
        );
        r.expect("fragment from backend", &f, XDP_REDIRECT);
        let f = eth(
            0x0800,
            None,
            &ipv4(CLIENT, NODE, 17, 0, frag, &udp(8080, 9)),
        );
        r.expect("fragment from elsewhere", &f, XDP_PASS);
    }
    // DF alone is not a fragment: the ports decide.
    let f = eth(0x0800, None, &ipv4(CLIENT, VIP, 17, 0, 0x4000, &udp(9, 9)));
    r.expect("DF udp to other port", &f, XDP_PASS);

    r.expect("echo to vip", &v4(CLIENT, VIP, 1, &icmp(8)), XDP_REDIRECT);
    r.expect("echo to node", &v4(CLIENT, NODE, 1, &icmp(8)), XDP_PASS);
    r.expect(
        "echo from backend",
        &v4(BACKEND, NODE, 1, &icmp(8)),
        XDP_PASS,
    );
    r.expect(
        "echo reply from backend",
        &v4(BACKEND, NODE, 1, &icmp(0)),
        XDP_PASS,
    );
    for ty in [3, 11, 12] {
        r.expect(
            "error from backend",
            &v4(BACKEND, CLIENT, 1, &icmp(ty)),
            XDP_REDIRECT,
        );
        r.expect(
            "error from client",
            &v4(CLIENT, NODE, 1, &icmp(ty)),
            XDP_PASS,
        );
    }
    r.expect("truncated icmp", &v4(CLIENT, VIP, 1, &[8, 0, 0]), XDP_PASS);
}

#[test]
fn ipv6_steering() {
    need_root!();
    let r = Rig::new();
    // IPv6 to or from the IPv4-mapped form of an IPv4 VIP or backend is
    // not that VIP's traffic: it passes (AF_XDP could not give it back).
    let mapped = |a: [u8; 4]| {
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(&a);
        m
    };
    r.expect(
        "tcp to ::ffff:vip",
        &v6(CLIENT6, mapped(VIP), 6, &tcp(40000, 80)),
        XDP_PASS,
    );
    r.expect(
        "udp to ::ffff:vip",
        &v6(CLIENT6, mapped(VIP), 17, &udp(1, 53)),
        XDP_PASS,
    );
    r.expect(
        "reply from ::ffff:backend",
        &v6(mapped(BACKEND), CLIENT6, 6, &tcp(8080, 40000)),
        XDP_PASS,
    );
    r.expect(
        "echo to ::ffff:vip",
        &v6(CLIENT6, mapped(VIP), 58, &icmp(128)),
        XDP_PASS,
    );
    r.expect(
        "tcp to v6 vip",
        &v6(CLIENT6, VIP6, 6, &tcp(40000, 443)),
        XDP_REDIRECT,
    );
    r.expect(
        "tcp to v6 vip other",
        &v6(CLIENT6, VIP6, 6, &tcp(40000, 444)),
        XDP_PASS,
    );
    r.expect(
        "v6 backend reply",
        &v6(BACKEND6, CLIENT6, 6, &tcp(8443, 40000)),
        XDP_REDIRECT,
    );
    r.expect(
        "udp to v6 vip",
        &v6(CLIENT6, VIP6, 17, &udp(1, 443)),
        XDP_PASS,
    );
    // Extension headers: not walked, the VIP address decides.
    for next in [0, 43, 44, 60] {
        r.expect(
            "ext hdr to vip",
            &v6(CLIENT6, VIP6, next, &tcp(1, 2)),
            XDP_REDIRECT,
        );
        r.expect(
            "ext hdr to client",
            &v6(VIP6, CLIENT6, next, &tcp(1, 2)),
            XDP_PASS,
        );
        // From a backend (a fragmented reply): its address decides.
        r.expect(
            "ext hdr from backend",
            &v6(BACKEND6, CLIENT6, next, &tcp(1, 2)),
            XDP_REDIRECT,
        );
    }
    r.expect(
        "echo to v6 vip",
        &v6(CLIENT6, VIP6, 58, &icmp(128)),
        XDP_REDIRECT,
    );
    for nd in [133, 134, 135, 136, 137, 143] {
        r.expect(
            "ndp/mld to vip",
            &v6(CLIENT6, VIP6, 58, &icmp(nd)),
            XDP_PASS,
        );
    }
    r.expect(
        "v6 error from backend",
        &v6(BACKEND6, CLIENT6, 58, &icmp(1)),
        XDP_REDIRECT,
    );
    r.expect(
        "v6 echo from backend",
        &v6(BACKEND6, CLIENT6, 58, &icmp(128)),
        XDP_PASS,
    );
}

#[test]
fn non_ip_and_malformed_frames_pass() {
    need_root!();
    let r = Rig::new();
    let arp = eth(0x0806, None, &[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2]);
    r.expect("arp", &arp, XDP_PASS);
    r.expect("bare ethernet", &eth(0x0800, None, &[]), XDP_PASS);
    let mut short = ipv4(CLIENT, VIP, 17, 0, 0, &udp(1, 53));
    short.truncate(19);
    r.expect("truncated ipv4", &eth(0x0800, None, &short), XDP_PASS);
    let mut ports_cut = ipv4(CLIENT, VIP, 17, 0, 0, &udp(1, 53));
    ports_cut.truncate(23);
    r.expect("truncated udp", &eth(0x0800, None, &ports_cut), XDP_PASS);
    let mut bad_ihl = ipv4(CLIENT, VIP, 17, 0, 0, &udp(1, 53));
    bad_ihl[0] = 0x44;
    r.expect("ihl 4", &eth(0x0800, None, &bad_ihl), XDP_PASS);
    let mut bad_ver = ipv4(CLIENT, VIP, 17, 0, 0, &udp(1, 53));
    bad_ver[0] = 0x65;
    r.expect(
        "version 6 in v4 ethertype",
        &eth(0x0800, None, &bad_ver),
        XDP_PASS,
    );
    // IHL claims 60 bytes the frame does not have.
    let mut long_ihl = ipv4(CLIENT, VIP, 17, 0, 0, &udp(1, 53));
    long_ihl[0] = 0x4f;
    r.expect("ihl past the end", &eth(0x0800, None, &long_ihl), XDP_PASS);
    let mut short6 = ipv6(CLIENT6, VIP6, 6, &tcp(1, 443));
    short6.truncate(39);
    r.expect("truncated ipv6", &eth(0x86dd, None, &short6), XDP_PASS);
    let cut_tag = eth(0x8100, None, &[0, 7]);
    r.expect("truncated vlan tag", &cut_tag, XDP_PASS);
}

#[test]
fn map_updates_take_effect_and_address_entries_are_counted() {
    need_root!();
    let mut r = Rig::new();
    let vip = Addr::from_v4(VIP);
    let frag = eth(0x0800, None, &ipv4(CLIENT, VIP, 17, 0, 0x2000, &udp(9, 9)));
    assert!(r.steer.maps().dst_has(vip, 0, 0));

    assert!(r.steer.maps_mut().remove_vip(vip, 53, Proto::Udp).unwrap());
    assert!(!r.steer.maps_mut().remove_vip(vip, 53, Proto::Udp).unwrap());
    r.expect("removed port", &v4(CLIENT, VIP, 17, &udp(1, 53)), XDP_PASS);
    r.expect(
        "other port kept",
        &v4(CLIENT, VIP, 6, &tcp(1, 80)),
        XDP_REDIRECT,
    );
    r.expect("address entry kept", &frag, XDP_REDIRECT);

    // Adding twice and removing once must not drop the address entry early.
    r.steer.maps_mut().add_vip(vip, 80, Proto::Tcp).unwrap();
    assert!(r.steer.maps_mut().remove_vip(vip, 80, Proto::Tcp).unwrap());
    assert!(!r.steer.maps().dst_has(vip, 0, 0));
    r.expect("address entry gone", &frag, XDP_PASS);

    let b = Addr::from_v4(BACKEND);
    assert!(r
        .steer
        .maps_mut()
        .remove_backend(b, 8080, Proto::Tcp)
        .unwrap());
    r.expect(
        "backend gone",
        &v4(BACKEND, CLIENT, 6, &tcp(8080, 1)),
        XDP_PASS,
    );
    r.steer.maps_mut().add_backend(b, 8080, Proto::Tcp).unwrap();
    r.expect(
        "backend back",
        &v4(BACKEND, CLIENT, 6, &tcp(8080, 1)),
        XDP_REDIRECT,
    );

    // Without a socket on the queue the redirect falls back to PASS.
    assert!(r.steer.unregister(0).unwrap());
    r.expect(
        "no socket on queue",
        &v4(BACKEND, CLIENT, 6, &tcp(8080, 1)),
        XDP_PASS,
    );
}
