//! The classify step: one pass over a frame's headers that validates lengths
//! and records the offsets and fields the pipeline needs. After a successful
//! parse, every offset stored in [`Parsed`] lies inside the frame, so the
//! rewrite code can index without further checks.
//!
//! smoltcp's checked views validate the outer IPv4/IPv6/TCP/UDP headers. A
//! packet quoted inside an ICMP error is usually truncated (its IP total
//! length exceeds what is quoted), which those views reject by design, so
//! [`parse_quoted`] checks the few bytes it needs by hand.

use smoltcp::wire::{Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

use super::sctp;
use crate::addr::Addr;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETH_HDR_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;

/// IPv6 extension headers we walk over to find L4; a chain longer than this
/// is treated as not ours (DoS guard, as in Katran's parser).
const MAX_IPV6_EXT_HEADERS: usize = 8;

/// Why a frame cannot be classified.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ParseError {
    /// Not IPv4/IPv6 (ARP, LLDP, ...): the kernel's business.
    NotIp,
    /// Truncated or inconsistent headers.
    Malformed,
    /// IPv6 with a source or destination in `::ffff:0:0/96` (IPv4-mapped).
    /// The dataplane keeps IPv4 addresses in that range (see
    /// [`Addr`]), so such a packet's addresses would alias IPv4 services
    /// and flows. The range is for representing IPv4 inside an IPv6 stack,
    /// not for the wire (RFC 4291 2.5.5.2, RFC 6890; Linux neither sends
    /// a v4-mapped source, nor accepts one in `ip6_rcv_core`): no Service
    /// of ours can be reached that way, so it is the kernel's business.
    V4Mapped,
}

/// What the L4 header says, for the protocols the pipeline acts on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        /// Data offset in bytes.
        hdr_len: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// SCTP: ports, verification tag, the first chunk's type and flags, and
    /// which association-control chunks the packet carries (see
    /// [`sctp::summarize`], which validated every chunk header).
    Sctp {
        sport: u16,
        dport: u16,
        vtag: u32,
        chunk: u8,
        chunk_flags: u8,
        chunks: sctp::Chunks,
    },
    /// ICMP / ICMPv6 echo request or reply.
    IcmpEcho {
        id: u16,
        request: bool,
    },
    /// ICMP / ICMPv6 error quoting another packet (at `l4_off + 8`).
    IcmpError {
        kind: u8,
        code: u8,
    },
    /// Any other L4 (or other ICMP messages); never NATed.
    Other,
}

/// Offsets and fields of one frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Parsed {
    /// Offset of the IP header (14, or 18 with a VLAN tag).
    pub l3_off: usize,
    pub v6: bool,
    /// Offset of the L4 header.
    pub l4_off: usize,
    /// End of the IP packet per its length field (Ethernet padding excluded).
    pub ip_end: usize,
    /// L4 protocol number (after IPv6 extension headers).
    pub proto: u8,
    pub src: Addr,
    pub dst: Addr,
    /// Part of a fragmented datagram.
    pub fragment: bool,
    /// A fragment at offset 0: it carries the L4 header (ports), which
    /// `l4` holds when it is whole in this fragment.
    pub frag_first: bool,
    /// The datagram's identification (IPv4: 16 bits; IPv6: the fragment
    /// header's 32 bits): with source, destination and protocol it names
    /// the datagram its fragments belong to. 0 when not a fragment.
    pub frag_id: u32,
    /// IPv6 with a routing header that still has segments left: `dst` is
    /// the next waypoint, not where the packet ends, and its L4 checksum
    /// covers the final destination (RFC 8200 8.1), so it is not ours to
    /// translate.
    pub in_transit: bool,
    /// TTL or hop limit.
    pub ttl: u8,
    pub l4: L4,
}

impl Parsed {
    /// Offset of the IPv4 TTL / IPv6 hop-limit byte.
    #[inline]
    pub fn ttl_off(&self) -> usize {
        self.l3_off + if self.v6 { 7 } else { 8 }
    }

    /// Offset of the source address.
    #[inline]
    pub fn src_off(&self) -> usize {
        self.l3_off + if self.v6 { 8 } else { 12 }
    }

    /// Offset of the destination address.
    #[inline]
    pub fn dst_off(&self) -> usize {
        self.l3_off + if self.v6 { 24 } else { 16 }
    }

    /// Bytes of L4 header and payload.
    #[inline]
    pub fn l4_len(&self) -> usize {
        self.ip_end - self.l4_off
    }
}

/// Reads the (possibly VLAN-tagged) ethertype; returns it and the L3 offset.
#[inline]
pub fn ethertype(frame: &[u8]) -> Result<(u16, usize), ParseError> {
    if frame.len() < ETH_HDR_LEN {
        return Err(ParseError::Malformed);
    }
    let et = u16::from_be_bytes([frame[12], frame[13]]);
    if et != ETHERTYPE_VLAN {
        return Ok((et, ETH_HDR_LEN));
    }
    if frame.len() < ETH_HDR_LEN + VLAN_TAG_LEN {
        return Err(ParseError::Malformed);
    }
    Ok((
        u16::from_be_bytes([frame[16], frame[17]]),
        ETH_HDR_LEN + VLAN_TAG_LEN,
    ))
}

/// Whether a frame may be an IP fragment, from two header bytes: an IPv4
/// fragment offset or more-fragments flag, or an IPv6 next header that is
/// the fragment header or one that may come before it. Cheap enough for
/// every frame; [`parse`] says for sure.
#[inline]
pub fn maybe_fragment(frame: &[u8]) -> bool {
    let Ok((et, l3)) = ethertype(frame) else {
        return false;
    };
    match (et, frame.get(l3 + 6), frame.get(l3 + 7)) {
        (ETHERTYPE_IPV4, Some(&hi), Some(&lo)) => u16::from_be_bytes([hi, lo]) & 0x3fff != 0,
        (ETHERTYPE_IPV6, Some(&next), _) => matches!(next, 0 | IPV6_ROUTING | 44 | 60),
        _ => false,
    }
}

/// Classifies one Ethernet frame.
#[inline]
pub fn parse(frame: &[u8]) -> Result<Parsed, ParseError> {
    let (et, l3_off) = ethertype(frame)?;
    let mut p = match et {
        ETHERTYPE_IPV4 => parse_ipv4(frame, l3_off)?,
        ETHERTYPE_IPV6 => parse_ipv6(frame, l3_off)?,
        _ => return Err(ParseError::NotIp),
    };
    if !p.fragment {
        p.l4 = parse_l4(&frame[p.l4_off..p.ip_end], p.proto)?;
    } else if p.frag_first {
        p.l4 = first_fragment_l4(&frame[p.l4_off..p.ip_end], p.proto);
    }
    Ok(p)
}

fn parse_ipv4(frame: &[u8], l3_off: usize) -> Result<Parsed, ParseError> {
    let ip = Ipv4Packet::new_checked(&frame[l3_off..]).map_err(|_| ParseError::Malformed)?;
    if ip.version() != 4 {
        return Err(ParseError::Malformed);
    }
    let hdr_len = usize::from(ip.header_len());
    let total = usize::from(ip.total_len());
    Ok(Parsed {
        l3_off,
        v6: false,
        l4_off: l3_off + hdr_len,
        ip_end: l3_off + total,
        proto: ip.next_header().into(),
        src: Addr::from_v4(ip.src_addr().octets()),
        dst: Addr::from_v4(ip.dst_addr().octets()),
        fragment: ip.more_frags() || ip.frag_offset() != 0,
        frag_first: ip.more_frags() && ip.frag_offset() == 0,
        frag_id: if ip.more_frags() || ip.frag_offset() != 0 {
            u32::from(ip.ident())
        } else {
            0
        },
        in_transit: false,
        ttl: ip.hop_limit(),
        l4: L4::Other,
    })
}

fn parse_ipv6(frame: &[u8], l3_off: usize) -> Result<Parsed, ParseError> {
    let ip = Ipv6Packet::new_checked(&frame[l3_off..]).map_err(|_| ParseError::Malformed)?;
    if ip.version() != 6 {
        return Err(ParseError::Malformed);
    }
    let (src, dst) = v6_addrs(ip.src_addr().octets(), ip.dst_addr().octets())?;
    let ip_end = l3_off + 40 + usize::from(ip.payload_len());
    let ext = walk_ipv6_ext(frame, l3_off + 40, ip_end, ip.next_header().into())?;
    Ok(Parsed {
        l3_off,
        v6: true,
        l4_off: ext.l4_off,
        ip_end,
        proto: ext.proto,
        src,
        dst,
        fragment: ext.fragment,
        frag_first: ext.frag_first,
        frag_id: ext.frag_id,
        in_transit: ext.in_transit,
        ttl: ip.hop_limit(),
        l4: L4::Other,
    })
}

/// The addresses of an IPv6 header, unless one is IPv4-mapped (see
/// [`ParseError::V4Mapped`]).
#[inline]
fn v6_addrs(src: [u8; 16], dst: [u8; 16]) -> Result<(Addr, Addr), ParseError> {
    let (src, dst) = (Addr::from_v6(src), Addr::from_v6(dst));
    if src.is_v4() || dst.is_v4() {
        return Err(ParseError::V4Mapped);
    }
    Ok((src, dst))
}

/// Where an IPv6 extension-header chain leads.
struct Ipv6Ext {
    proto: u8,
    l4_off: usize,
    fragment: bool,
    frag_first: bool,
    frag_id: u32,
    in_transit: bool,
}

/// IPv6 next-header value of the routing header.
const IPV6_ROUTING: u8 = 43;

/// Walks IPv6 extension headers from `off` to the L4 header.
fn walk_ipv6_ext(
    buf: &[u8],
    mut off: usize,
    end: usize,
    mut next: u8,
) -> Result<Ipv6Ext, ParseError> {
    let mut ext = Ipv6Ext {
        proto: next,
        l4_off: off,
        fragment: false,
        frag_first: false,
        frag_id: 0,
        in_transit: false,
    };
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            // Hop-by-hop, routing, destination options: (n + 1) * 8 bytes.
            0 | IPV6_ROUTING | 60 => {
                if off + 4 > end {
                    return Err(ParseError::Malformed);
                }
                // Routing header: byte 3 is "segments left".
                if next == IPV6_ROUTING && buf[off + 3] != 0 {
                    ext.in_transit = true;
                }
                (usize::from(buf[off + 1]) + 1) * 8
            }
            // Fragment header: 8 bytes; offset or M flag set means a fragment.
            44 => {
                if off + 8 > end {
                    return Err(ParseError::Malformed);
                }
                let fo = u16::from_be_bytes([buf[off + 2], buf[off + 3]]);
                if fo & 0xfff9 != 0 {
                    ext.fragment = true;
                    // Offset 0 with more to come: the first fragment. A
                    // second fragment header would make it a fragment of
                    // a fragment: not first in any usable sense.
                    ext.frag_first = fo & 0xfff8 == 0 && !ext.frag_first && ext.frag_id == 0;
                    ext.frag_id = u32::from_be_bytes([
                        buf[off + 4],
                        buf[off + 5],
                        buf[off + 6],
                        buf[off + 7],
                    ]);
                }
                8
            }
            // Authentication header: (n + 2) * 4 bytes.
            51 => {
                if off + 2 > end {
                    return Err(ParseError::Malformed);
                }
                (usize::from(buf[off + 1]) + 2) * 4
            }
            _ => {
                ext.proto = next;
                ext.l4_off = off;
                return Ok(ext);
            }
        };
        if off + len > end {
            return Err(ParseError::Malformed);
        }
        next = buf[off];
        off += len;
    }
    // A chain this long is not followed to its end: no ports to trust.
    ext.proto = next;
    ext.l4_off = off;
    ext.fragment = true;
    ext.frag_first = false;
    Ok(ext)
}

/// The ports (and TCP header fields) of a first fragment, whose L4 length
/// fields describe the whole datagram rather than `seg`. `L4::Other` when
/// the header is not whole in the fragment (RFC 1858's tiny fragments):
/// such a datagram cannot be steered or translated by its ports.
#[inline]
fn first_fragment_l4(seg: &[u8], proto: u8) -> L4 {
    match proto {
        IPPROTO_TCP if seg.len() >= 20 && usize::from(seg[12] >> 4) * 4 <= seg.len() => {
            let hdr_len = seg[12] >> 4;
            if hdr_len < 5 {
                return L4::Other;
            }
            L4::Tcp {
                sport: u16::from_be_bytes([seg[0], seg[1]]),
                dport: u16::from_be_bytes([seg[2], seg[3]]),
                flags: seg[13],
                seq: u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]),
                ack: u32::from_be_bytes([seg[8], seg[9], seg[10], seg[11]]),
                hdr_len: hdr_len * 4,
            }
        }
        IPPROTO_UDP if seg.len() >= 8 => L4::Udp {
            sport: u16::from_be_bytes([seg[0], seg[1]]),
            dport: u16::from_be_bytes([seg[2], seg[3]]),
        },
        _ => L4::Other,
    }
}

/// Parses the L4 header of `seg` (L4 header plus payload, up to the IP end).
#[inline]
fn parse_l4(seg: &[u8], proto: u8) -> Result<L4, ParseError> {
    match proto {
        IPPROTO_TCP => {
            let t = TcpPacket::new_checked(seg).map_err(|_| ParseError::Malformed)?;
            Ok(L4::Tcp {
                sport: t.src_port(),
                dport: t.dst_port(),
                flags: seg[13],
                seq: u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]),
                ack: u32::from_be_bytes([seg[8], seg[9], seg[10], seg[11]]),
                hdr_len: t.header_len(),
            })
        }
        IPPROTO_UDP => {
            let u = UdpPacket::new_checked(seg).map_err(|_| ParseError::Malformed)?;
            Ok(L4::Udp {
                sport: u.src_port(),
                dport: u.dst_port(),
            })
        }
        IPPROTO_SCTP => {
            let s = sctp::summarize(seg).ok_or(ParseError::Malformed)?;
            Ok(L4::Sctp {
                sport: s.sport,
                dport: s.dport,
                vtag: s.vtag,
                chunk: s.first,
                chunk_flags: s.first_flags,
                chunks: s.chunks,
            })
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            if seg.len() < 8 {
                return Err(ParseError::Malformed);
            }
            let (kind, code) = (seg[0], seg[1]);
            let id = u16::from_be_bytes([seg[4], seg[5]]);
            Ok(match (proto, kind) {
                (IPPROTO_ICMP, 8) | (IPPROTO_ICMPV6, 128) => L4::IcmpEcho { id, request: true },
                (IPPROTO_ICMP, 0) | (IPPROTO_ICMPV6, 129) => L4::IcmpEcho { id, request: false },
                // v4: destination unreachable, time exceeded, parameter problem.
                (IPPROTO_ICMP, 3 | 11 | 12) => L4::IcmpError { kind, code },
                // v6: destination unreachable, packet too big, time exceeded, parameter problem.
                (IPPROTO_ICMPV6, 1..=4) => L4::IcmpError { kind, code },
                _ => L4::Other,
            })
        }
        _ => Ok(L4::Other),
    }
}

/// A packet quoted inside an ICMP error: its IP header and the first 8 bytes
/// of its L4 header (ports; for TCP the sequence number too, for SCTP the
/// verification tag) are present.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Quoted {
    /// Offset of the quoted IP header in the frame.
    pub l3_off: usize,
    pub l4_off: usize,
    pub v6: bool,
    pub proto: u8,
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    /// End of the quoted bytes (the outer IP packet's end).
    pub end: usize,
}

/// Parses the packet quoted by the ICMP error whose outer header is `outer`.
pub fn parse_quoted(frame: &[u8], outer: &Parsed) -> Result<Quoted, ParseError> {
    let l3 = outer.l4_off + 8;
    let end = outer.ip_end;
    if l3 + 1 > end {
        return Err(ParseError::Malformed);
    }
    let version = frame[l3] >> 4;
    let (v6, proto, l4_off, src, dst) = if !outer.v6 && version == 4 {
        let ihl = usize::from(frame[l3] & 0x0f) * 4;
        if ihl < 20 || l3 + ihl > end {
            return Err(ParseError::Malformed);
        }
        let mut s = [0u8; 4];
        let mut d = [0u8; 4];
        s.copy_from_slice(&frame[l3 + 12..l3 + 16]);
        d.copy_from_slice(&frame[l3 + 16..l3 + 20]);
        (
            false,
            frame[l3 + 9],
            l3 + ihl,
            Addr::from_v4(s),
            Addr::from_v4(d),
        )
    } else if outer.v6 && version == 6 {
        if l3 + 40 > end {
            return Err(ParseError::Malformed);
        }
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&frame[l3 + 8..l3 + 24]);
        d.copy_from_slice(&frame[l3 + 24..l3 + 40]);
        let (src, dst) = v6_addrs(s, d)?;
        let ext = walk_ipv6_ext(frame, l3 + 40, end, frame[l3 + 6])?;
        (true, ext.proto, ext.l4_off, src, dst)
    } else {
        return Err(ParseError::Malformed);
    };
    if l4_off + 8 > end {
        return Err(ParseError::Malformed);
    }
    let (sport, dport) = match proto {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => (
            u16::from_be_bytes([frame[l4_off], frame[l4_off + 1]]),
            u16::from_be_bytes([frame[l4_off + 2], frame[l4_off + 3]]),
        ),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let id = u16::from_be_bytes([frame[l4_off + 4], frame[l4_off + 5]]);
            (id, id)
        }
        _ => return Err(ParseError::Malformed),
    };
    Ok(Quoted {
        l3_off: l3,
        l4_off,
        v6,
        proto,
        src,
        dst,
        sport,
        dport,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixtures::packet::{fragment_ip, Eth, Ip, Ipv4, Ipv6, Packet, Udp, L4};

    fn frames(v6: bool, vlan: Option<u16>) -> Vec<Vec<u8>> {
        let mut eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        eth.vlan = vlan;
        let ip = if v6 {
            let mut a = [0u8; 16];
            a[0] = 0xfd;
            Ip::V6(Ipv6::new(a, a, 64))
        } else {
            Ip::V4(Ipv4::new([198, 18, 0, 9], [198, 19, 0, 53], 64))
        };
        let whole = Packet::new(eth.clone(), ip, L4::Udp(Udp::new(1, 53, vec![9; 3000])));
        let ethertype = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        let mut out = vec![whole.frame()];
        out.extend(
            fragment_ip(&whole.ip_bytes(), 7, 1232)
                .iter()
                .map(|p| eth.frame(ethertype, p)),
        );
        out
    }

    /// Never false for a frame `parse` calls a fragment; false for whole
    /// datagrams (IPv4 with DF set too), other protocols and short frames.
    #[test]
    fn maybe_fragment_sees_every_fragment() {
        for v6 in [false, true] {
            for vlan in [None, Some(5)] {
                let f = frames(v6, vlan);
                assert!(!maybe_fragment(&f[0]), "v6={v6} vlan={vlan:?}: whole");
                assert!(!parse(&f[0]).unwrap().fragment);
                for (i, frag) in f[1..].iter().enumerate() {
                    assert!(parse(frag).unwrap().fragment);
                    assert!(maybe_fragment(frag), "v6={v6} vlan={vlan:?} fragment {i}");
                }
                for cut in [0, 13, 14, 20] {
                    assert!(!maybe_fragment(&f[1][..cut]), "cut at {cut}");
                }
            }
        }
        let arp =
            fixtures::packet::arp_request([2, 0, 0, 0, 0, 1], [198, 18, 0, 9], [198, 18, 0, 1]);
        assert!(!maybe_fragment(&arp));
    }
}
