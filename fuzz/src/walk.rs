//! Finding a frame's layers with pnet's packet views, written apart from the
//! dataplane's parser (smoltcp views and `wire/parse.rs`) so that the checks
//! built on it do not inherit that parser's mistakes.
//!
//! The walk is lenient where the dataplane is strict: it never decides what
//! a frame means, only where each header and the L4 bytes are, so that the
//! checksums over them can be recomputed from scratch.

use std::net::IpAddr;
use std::ops::Range;

use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::ipv6::Ipv6Packet;
use pnet_packet::vlan::VlanPacket;
use pnet_packet::Packet;

/// IPv6 extension headers followed to the L4 header; more is not a packet
/// the fuzz inputs build, and the checks skip it.
const MAX_EXT: usize = 8;

/// One IP packet's layout, offsets counted from the start of the buffer.
#[derive(Clone, Debug)]
pub struct Ip {
    pub v6: bool,
    pub l3: usize,
    /// IPv4 header bytes (0 for IPv6).
    pub v4_hdr_len: usize,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// The L4 protocol (after IPv6 extension headers).
    pub proto: u8,
    /// L4 header and payload, as far as the buffer holds them.
    pub l4: Range<usize>,
    /// The IP length field fits in the buffer (a quoted packet is usually cut).
    pub complete: bool,
    pub fragment: bool,
}

impl Ip {
    /// The L4 ports (TCP/UDP/SCTP), when the L4 header is there.
    pub fn ports(&self, buf: &[u8]) -> Option<(u16, u16)> {
        let l4 = &buf[self.l4.clone()];
        if !matches!(self.proto, 6 | 17 | 132) || self.fragment || l4.len() < 4 {
            return None;
        }
        Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ))
    }
}

/// The ethertype after at most one 802.1Q tag, and the L3 offset.
pub fn ethertype(frame: &[u8]) -> Option<(u16, usize)> {
    let eth = EthernetPacket::new(frame)?;
    let et = eth.get_ethertype();
    if et != EtherTypes::Vlan {
        return Some((et.0, EthernetPacket::minimum_packet_size()));
    }
    let tag = VlanPacket::new(eth.payload())?;
    Some((
        tag.get_ethertype().0,
        EthernetPacket::minimum_packet_size() + VlanPacket::minimum_packet_size(),
    ))
}

/// The IP packet an Ethernet frame carries.
pub fn frame_ip(frame: &[u8]) -> Option<Ip> {
    match ethertype(frame)? {
        (0x0800 | 0x86dd, l3) => ip(frame, l3, frame.len()),
        _ => None,
    }
}

/// The IP packet at `buf[off..end]`; it may claim more bytes than that.
pub fn ip(buf: &[u8], off: usize, end: usize) -> Option<Ip> {
    let bytes = buf.get(off..end)?;
    match bytes.first()? >> 4 {
        4 => ipv4(bytes, off),
        6 => ipv6(buf, bytes, off),
        _ => None,
    }
}

fn ipv4(bytes: &[u8], off: usize) -> Option<Ip> {
    let p = Ipv4Packet::new(bytes)?;
    let hdr = usize::from(p.get_header_length()) * 4;
    let total = usize::from(p.get_total_length());
    if hdr < 20 || hdr > bytes.len() || total < hdr {
        return None;
    }
    let end = total.min(bytes.len());
    Some(Ip {
        v6: false,
        l3: off,
        v4_hdr_len: hdr,
        src: p.get_source().into(),
        dst: p.get_destination().into(),
        ttl: p.get_ttl(),
        proto: p.get_next_level_protocol().0,
        l4: off + hdr..off + end,
        complete: total <= bytes.len(),
        fragment: p.get_flags() & 1 != 0 || p.get_fragment_offset() != 0,
    })
}

fn ipv6(buf: &[u8], bytes: &[u8], off: usize) -> Option<Ip> {
    let p = Ipv6Packet::new(bytes)?;
    let total = 40 + usize::from(p.get_payload_length());
    let end = off + total.min(bytes.len());
    let mut next = p.get_next_header().0;
    let mut at = off + 40;
    let mut fragment = false;
    let mut hops = 0;
    loop {
        if !matches!(next, 0 | 43 | 44 | 51 | 60) {
            break;
        }
        // Every extension header is at least 8 bytes.
        if at + 8 > end {
            return None;
        }
        let len = match next {
            0 | 43 | 60 => (usize::from(buf[at + 1]) + 1) * 8,
            44 => {
                let fo = u16::from_be_bytes([buf[at + 2], buf[at + 3]]);
                fragment |= fo & 0xfff9 != 0;
                8
            }
            _ => (usize::from(buf[at + 1]) + 2) * 4,
        };
        hops += 1;
        if hops > MAX_EXT || at + len > end {
            return None;
        }
        next = buf[at];
        at += len;
    }
    Some(Ip {
        v6: true,
        l3: off,
        v4_hdr_len: 0,
        src: p.get_source().into(),
        dst: p.get_destination().into(),
        ttl: p.get_hop_limit(),
        proto: next,
        l4: at..end,
        complete: total <= bytes.len(),
        fragment,
    })
}

/// Whether an ICMP / ICMPv6 message of this type quotes a packet.
pub fn is_icmp_error(v6: bool, kind: u8) -> bool {
    if v6 {
        (1..=4).contains(&kind)
    } else {
        matches!(kind, 3 | 4 | 5 | 11 | 12)
    }
}

/// The packet quoted by the ICMP error `outer` (ICMP header: 8 bytes).
pub fn quoted(buf: &[u8], outer: &Ip) -> Option<Ip> {
    let icmp = if outer.v6 { 58 } else { 1 };
    let l4 = &buf[outer.l4.clone()];
    if outer.proto != icmp || outer.fragment || l4.len() < 8 || !is_icmp_error(outer.v6, l4[0]) {
        return None;
    }
    ip(buf, outer.l4.start + 8, outer.l4.end)
}
