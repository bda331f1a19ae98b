//! Checksums recomputed in full with pnet's checksum functions, to check
//! what the dataplane updated incrementally (RFC 1624) and to give built
//! inputs correct checksums to start from.
//!
//! SCTP's CRC32c (RFC 9260 appendix B), which pnet lacks, comes from the
//! `crc` crate. A quoted SCTP packet's CRC32c is not judged: a NAT cannot
//! fix it (it covers the whole packet, of which a quote is a part), and no
//! receiver checks it.
//!
//! A field is accepted the way a receiver verifies it: ones'-complement
//! +0 and -0 (0x0000 and 0xffff) are the same value, except that a UDP
//! field of 0 means "no checksum", which IPv4 allows and IPv6 does not
//! (RFC 768, RFC 8200 8.1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pnet_packet::icmp::{self, IcmpPacket};
use pnet_packet::icmpv6::{self, Icmpv6Packet};
use pnet_packet::ipv4::{self, Ipv4Packet};
use pnet_packet::tcp::{self, TcpPacket};
use pnet_packet::udp::{self, UdpPacket};

use crate::walk::{self, Ip};

/// What each checksum of a frame says: `None` where the frame has no such
/// checksum or it cannot be recomputed (a cut quote, a fragment).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checks {
    /// The IPv4 header checksum.
    pub ip: Option<bool>,
    /// The TCP / UDP / ICMP / ICMPv6 checksum or SCTP CRC32c over the
    /// whole segment.
    pub l4: Option<bool>,
    /// In an ICMP error: the quoted IPv4 header's checksum.
    pub quoted_ip: Option<bool>,
    /// In an ICMP error quoting a whole packet: its L4 checksum.
    pub quoted_l4: Option<bool>,
}

impl Checks {
    /// The four results with their names, for comparing and reporting.
    pub fn named(&self) -> [(&'static str, Option<bool>); 4] {
        [
            ("IPv4 header", self.ip),
            ("L4", self.l4),
            ("quoted IPv4 header", self.quoted_ip),
            ("quoted L4", self.quoted_l4),
        ]
    }
}

/// Every checksum of an Ethernet frame (outer, and quoted in an ICMP error).
pub fn checks(frame: &[u8]) -> Checks {
    let Some(outer) = walk::frame_ip(frame) else {
        return Checks::default();
    };
    let mut c = Checks {
        ip: ip_ok(frame, &outer),
        l4: l4_ok(frame, &outer),
        ..Checks::default()
    };
    if let Some(q) = walk::quoted(frame, &outer) {
        c.quoted_ip = ip_ok(frame, &q);
        if q.proto != PROTO_SCTP {
            c.quoted_l4 = l4_ok(frame, &q);
        }
    }
    c
}

/// Writes correct L4 and IPv4 header checksums into the packet `ip` of `buf`
/// (the L4 first: the IPv4 header checksum does not cover it, but a quoted
/// packet's fields are covered by the outer ICMP checksum).
pub fn fix(buf: &mut [u8], ip: &Ip) {
    if let Some(want) = sctp_expected(buf, ip) {
        let at = ip.l4.start + 8;
        buf[at..at + 4].copy_from_slice(&want.to_le_bytes());
    }
    if let Some((off, want, udp)) = l4_expected(buf, ip) {
        let v = if udp && want == 0 { 0xffff } else { want };
        buf[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }
    if !ip.v6 && ip.v4_hdr_len >= 20 {
        let want = Ipv4Packet::new(&buf[ip.l3..ip.l3 + ip.v4_hdr_len]).map(|p| ipv4::checksum(&p));
        if let Some(want) = want {
            buf[ip.l3 + 10..ip.l3 + 12].copy_from_slice(&want.to_be_bytes());
        }
    }
}

fn ip_ok(buf: &[u8], ip: &Ip) -> Option<bool> {
    if ip.v6 {
        return None;
    }
    let p = Ipv4Packet::new(buf.get(ip.l3..ip.l3 + ip.v4_hdr_len)?)?;
    Some(same(p.get_checksum(), ipv4::checksum(&p)))
}

const PROTO_SCTP: u8 = 132;

/// The CRC32c of a whole SCTP packet of `ip` (field taken as zero; written
/// least significant byte first). None when it is not whole.
fn sctp_expected(buf: &[u8], ip: &Ip) -> Option<u32> {
    if ip.proto != PROTO_SCTP || !ip.complete || ip.fragment || ip.l4.len() < 12 {
        return None;
    }
    const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let seg = &buf[ip.l4.clone()];
    let mut d = CRC32C.digest();
    d.update(&seg[..8]);
    d.update(&[0; 4]);
    d.update(&seg[12..]);
    Some(d.finalize())
}

fn l4_ok(buf: &[u8], ip: &Ip) -> Option<bool> {
    if ip.proto == PROTO_SCTP {
        let want = sctp_expected(buf, ip)?;
        let at = ip.l4.start + 8;
        return Some(buf[at..at + 4] == want.to_le_bytes());
    }
    let (off, want, udp) = l4_expected(buf, ip)?;
    let field = u16::from_be_bytes([buf[off], buf[off + 1]]);
    Some(if udp {
        match field {
            0 => !ip.v6,
            _ => field == want || (want == 0 && field == 0xffff),
        }
    } else {
        same(field, want)
    })
}

/// Ones'-complement equality: +0 and -0 are one value.
fn same(field: u16, want: u16) -> bool {
    field == want || (matches!(field, 0 | 0xffff) && matches!(want, 0 | 0xffff))
}

/// Where the L4 checksum field is, what pnet computes for it, and whether
/// it is UDP's. None when the segment is not whole or has no checksum.
fn l4_expected(buf: &[u8], ip: &Ip) -> Option<(usize, u16, bool)> {
    if !ip.complete || ip.fragment {
        return None;
    }
    let seg = &buf[ip.l4.clone()];
    let at = ip.l4.start;
    match (ip.proto, ip.src, ip.dst) {
        (6, IpAddr::V4(s), IpAddr::V4(d)) => {
            let p = TcpPacket::new(seg)?;
            Some((at + 16, tcp::ipv4_checksum(&p, &s, &d), false))
        }
        (6, IpAddr::V6(s), IpAddr::V6(d)) => {
            let p = TcpPacket::new(seg)?;
            Some((at + 16, tcp::ipv6_checksum(&p, &s, &d), false))
        }
        (17, IpAddr::V4(s), IpAddr::V4(d)) => {
            let p = UdpPacket::new(seg)?;
            Some((at + 6, udp::ipv4_checksum(&p, &s, &d), true))
        }
        (17, IpAddr::V6(s), IpAddr::V6(d)) => {
            let p = UdpPacket::new(seg)?;
            Some((at + 6, udp::ipv6_checksum(&p, &s, &d), true))
        }
        (1, IpAddr::V4(_), _) => {
            let p = IcmpPacket::new(seg)?;
            Some((at + 2, icmp::checksum(&p), false))
        }
        (58, IpAddr::V6(s), IpAddr::V6(d)) => {
            let p = Icmpv6Packet::new(seg)?;
            Some((at + 2, icmpv6::checksum(&p, &s, &d), false))
        }
        _ => None,
    }
}

/// The IPv4 address in an `IpAddr` known to be one (builders' addresses).
pub fn v4(a: IpAddr) -> Ipv4Addr {
    match a {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

/// The IPv6 address in an `IpAddr` (IPv4 as mapped).
pub fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{self, IpSpec, L4};

    fn frame_of(ip: &IpSpec, l4: &L4, payload: &[u8]) -> Vec<u8> {
        let pkt = frame::ip_packet(ip, l4, payload);
        frame::ether(Some(7), frame::ip_ethertype(&pkt), &pkt)
    }

    #[test]
    fn built_frames_check_and_a_flipped_byte_does_not() {
        let v4 = IpSpec::new(
            "198.18.0.1".parse().unwrap(),
            "198.19.0.10".parse().unwrap(),
            64,
        );
        let v6 = IpSpec::new(
            "fd00:18::1".parse().unwrap(),
            "fd00:19::10".parse().unwrap(),
            64,
        );
        let tcp = L4::Tcp {
            sport: 40000,
            dport: 80,
            seq: 1,
            ack: 0,
            flags: 2,
            opts: vec![1, 1, 1],
        };
        let udp = L4::Udp {
            sport: 40000,
            dport: 53,
            no_csum: false,
        };
        for (ip, l4) in [(&v4, &tcp), (&v6, &tcp), (&v4, &udp), (&v6, &udp)] {
            let mut f = frame_of(ip, l4, b"hello");
            let c = checks(&f);
            assert_eq!(c.l4, Some(true), "{ip:?} {l4:?}");
            assert_eq!(c.ip, (!ip.v6()).then_some(true));
            let last = f.len() - 1;
            f[last] ^= 0x40;
            assert_eq!(checks(&f).l4, Some(false), "{ip:?} {l4:?}");
        }
    }

    /// SCTP (built raw: the frame builder knows no SCTP) gets its CRC32c
    /// from `fix`, and a flipped byte anywhere in the packet fails it.
    #[test]
    fn sctp_crc32c_is_checked() {
        let ip = IpSpec::new(
            "198.18.0.1".parse().unwrap(),
            "198.19.0.10".parse().unwrap(),
            64,
        );
        // Common header (ports, tag, checksum 0), then a DATA chunk.
        let mut sctp = vec![0x9c, 0x40, 0x0f, 0x1c, 1, 2, 3, 4, 0, 0, 0, 0];
        sctp.extend_from_slice(&[0, 3, 0, 17, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x42]);
        sctp.extend_from_slice(&[0, 0, 0]);
        let f = frame_of(&ip, &L4::Raw(132), &sctp);
        assert_eq!(checks(&f).l4, Some(true));
        let l4 = f.len() - sctp.len();
        for i in l4..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x10;
            assert_eq!(checks(&bad).l4, Some(false), "byte {i}");
        }
    }

    #[test]
    fn quoted_packets_are_checked_inside_icmp_errors() {
        let inner = IpSpec::new(
            "198.19.0.10".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
            64,
        );
        let udp = L4::Udp {
            sport: 53,
            dport: 40000,
            no_csum: false,
        };
        let mut quoted = frame::ip_packet(&inner, &udp, b"abc");
        let outer = IpSpec::new(
            "198.18.0.254".parse().unwrap(),
            "198.19.0.10".parse().unwrap(),
            64,
        );
        let icmp = L4::Icmp {
            kind: 3,
            code: 3,
            rest: [0; 4],
        };
        let ok = Some(true);
        let f = frame_of(&outer, &icmp, &quoted);
        assert_eq!(
            checks(&f),
            Checks {
                ip: ok,
                l4: ok,
                quoted_ip: ok,
                quoted_l4: ok
            }
        );
        // A bad quoted UDP checksum, under a correct ICMP checksum.
        quoted[27] ^= 1;
        let f = frame_of(&outer, &icmp, &quoted);
        assert_eq!(checks(&f).quoted_l4, Some(false));
        assert_eq!(checks(&f).l4, ok);
        // Cut: the quoted L4 checksum cannot be recomputed.
        let f = frame_of(&outer, &icmp, &quoted[..28]);
        assert_eq!(checks(&f).quoted_l4, None);
        assert_eq!(checks(&f).quoted_ip, ok);
    }
}
