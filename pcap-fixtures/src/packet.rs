//! Frame builders: Ethernet (+ optional 802.1Q tag), IPv4 (+ options) or
//! IPv6 (+ extension headers), TCP/UDP/ICMP/ICMPv6/SCTP and payload.
//!
//! A packet is described as plain data and serialised in one go, with every
//! length and checksum computed in full over the finished bytes. Fixtures
//! need both well-formed packets and deliberately broken ones; the broken
//! ones are made by editing the bytes this module returns.

use crate::verify::{internet_checksum, sctp_crc32c};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;
/// IPv6 Destination Options extension header.
pub const PROTO_DSTOPTS: u8 = 60;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// IPv4 "don't fragment" in the flags/fragment-offset word.
pub const IPV4_DF: u16 = 0x4000;

/// Ethernet header. `vlan` is the 802.1Q TCI when the frame is tagged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eth {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub vlan: Option<u16>,
}

impl Eth {
    pub fn new(src: [u8; 6], dst: [u8; 6]) -> Eth {
        Eth {
            dst,
            src,
            vlan: None,
        }
    }

    /// The header for a frame going back where this one came from.
    pub fn reversed(&self) -> Eth {
        Eth {
            dst: self.src,
            src: self.dst,
            vlan: self.vlan,
        }
    }

    /// Serialises the header followed by `payload` of the given ethertype.
    pub fn frame(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + payload.len());
        out.extend_from_slice(&self.dst);
        out.extend_from_slice(&self.src);
        if let Some(tci) = self.vlan {
            out.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    /// Flags and fragment offset as on the wire (e.g. [`IPV4_DF`]).
    pub flags_frag: u16,
    /// Raw option bytes; must be a multiple of 4 long (pad with EOL/NOP).
    pub options: Vec<u8>,
}

impl Ipv4 {
    pub fn new(src: [u8; 4], dst: [u8; 4], ttl: u8) -> Ipv4 {
        Ipv4 {
            src,
            dst,
            ttl,
            tos: 0,
            ident: 0,
            flags_frag: IPV4_DF,
            options: Vec::new(),
        }
    }
}

/// An IPv6 extension header: `kind` is the next-header value that names it,
/// `body` the bytes after its own next-header and length octets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtHeader {
    pub kind: u8,
    /// Length + 2 must be a multiple of 8.
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
    pub ext: Vec<ExtHeader>,
}

impl Ipv6 {
    pub fn new(src: [u8; 16], dst: [u8; 16], hop_limit: u8) -> Ipv6 {
        Ipv6 {
            src,
            dst,
            hop_limit,
            traffic_class: 0,
            flow_label: 0,
            ext: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ip {
    V4(Ipv4),
    V6(Ipv6),
}

impl Ip {
    pub fn ethertype(&self) -> u16 {
        match self {
            Ip::V4(_) => ETHERTYPE_IPV4,
            Ip::V6(_) => ETHERTYPE_IPV6,
        }
    }

    pub fn ttl(&self) -> u8 {
        match self {
            Ip::V4(h) => h.ttl,
            Ip::V6(h) => h.hop_limit,
        }
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        match self {
            Ip::V4(h) => h.ttl = ttl,
            Ip::V6(h) => h.hop_limit = ttl,
        }
    }

    /// Source and destination as they appear on the wire (4 or 16 bytes).
    pub fn addrs(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            Ip::V4(h) => (h.src.to_vec(), h.dst.to_vec()),
            Ip::V6(h) => (h.src.to_vec(), h.dst.to_vec()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub urgent: u16,
    /// Raw option bytes; must be a multiple of 4 long.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Tcp {
    pub fn new(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8) -> Tcp {
        Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            window: 64240,
            urgent: 0,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// Sequence space the segment occupies: payload plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32
            + u32::from(self.flags & TCP_SYN != 0)
            + u32::from(self.flags & TCP_FIN != 0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Udp {
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
    /// Send checksum 0 ("none"), which only IPv4 allows.
    pub zero_checksum: bool,
}

impl Udp {
    pub fn new(sport: u16, dport: u16, payload: Vec<u8>) -> Udp {
        Udp {
            sport,
            dport,
            payload,
            zero_checksum: false,
        }
    }
}

/// SCTP chunk types (RFC 9260 3.2).
pub const SCTP_DATA: u8 = 0;
pub const SCTP_INIT: u8 = 1;
pub const SCTP_INIT_ACK: u8 = 2;
pub const SCTP_SACK: u8 = 3;
pub const SCTP_HEARTBEAT: u8 = 4;
pub const SCTP_ABORT: u8 = 6;
pub const SCTP_SHUTDOWN: u8 = 7;
pub const SCTP_SHUTDOWN_ACK: u8 = 8;
pub const SCTP_COOKIE_ECHO: u8 = 10;
pub const SCTP_COOKIE_ACK: u8 = 11;
pub const SCTP_SHUTDOWN_COMPLETE: u8 = 14;
/// The T bit of ABORT and SHUTDOWN COMPLETE (tag reflected).
pub const SCTP_FLAG_T: u8 = 0x01;

/// One SCTP chunk: its length is computed, its value padded to 4 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SctpChunk {
    pub kind: u8,
    pub flags: u8,
    pub value: Vec<u8>,
}

impl SctpChunk {
    pub fn new(kind: u8, flags: u8, value: Vec<u8>) -> SctpChunk {
        SctpChunk { kind, flags, value }
    }

    /// INIT or INIT ACK (`kind`) with the fixed fields of RFC 9260 3.3.2
    /// and `params` (whole TLVs) after them.
    pub fn init(kind: u8, initiate_tag: u32, tsn: u32, params: &[u8]) -> SctpChunk {
        let mut v = initiate_tag.to_be_bytes().to_vec();
        v.extend_from_slice(&106_496u32.to_be_bytes()); // a_rwnd
        v.extend_from_slice(&[0, 10, 0, 10]); // outbound / inbound streams
        v.extend_from_slice(&tsn.to_be_bytes());
        v.extend_from_slice(params);
        SctpChunk::new(kind, 0, v)
    }

    /// DATA (B and E bits: an unfragmented message) on stream 0.
    pub fn data(tsn: u32, payload: &[u8]) -> SctpChunk {
        let mut v = tsn.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // stream, ssn, ppid
        v.extend_from_slice(payload);
        SctpChunk::new(SCTP_DATA, 0x03, v)
    }

    /// SACK of everything up to `cum_tsn`, no gaps.
    pub fn sack(cum_tsn: u32) -> SctpChunk {
        let mut v = cum_tsn.to_be_bytes().to_vec();
        v.extend_from_slice(&106_496u32.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0]);
        SctpChunk::new(SCTP_SACK, 0, v)
    }

    /// SHUTDOWN acknowledging up to `cum_tsn`.
    pub fn shutdown(cum_tsn: u32) -> SctpChunk {
        SctpChunk::new(SCTP_SHUTDOWN, 0, cum_tsn.to_be_bytes().to_vec())
    }

    /// A chunk that is only its header (COOKIE ACK, SHUTDOWN ACK, ...).
    pub fn bare(kind: u8, flags: u8) -> SctpChunk {
        SctpChunk::new(kind, flags, Vec::new())
    }
}

/// An SCTP packet: common header and chunks; the CRC32c is computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sctp {
    pub sport: u16,
    pub dport: u16,
    pub vtag: u32,
    pub chunks: Vec<SctpChunk>,
}

impl Sctp {
    pub fn new(sport: u16, dport: u16, vtag: u32, chunks: Vec<SctpChunk>) -> Sctp {
        Sctp {
            sport,
            dport,
            vtag,
            chunks,
        }
    }
}

/// ICMP or ICMPv6 message (which one follows from the IP version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Icmp {
    pub kind: u8,
    pub code: u8,
    /// The four bytes after the checksum (unused, MTU, echo id/seq, ...).
    pub rest: [u8; 4],
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp(Tcp),
    Udp(Udp),
    Icmp(Icmp),
    Sctp(Sctp),
}

impl L4 {
    /// Sets source and destination port (ICMP has none: unchanged).
    pub fn with_ports(mut self, sport: u16, dport: u16) -> L4 {
        match &mut self {
            L4::Tcp(t) => {
                t.sport = sport;
                t.dport = dport;
            }
            L4::Udp(u) => {
                u.sport = sport;
                u.dport = dport;
            }
            L4::Sctp(s) => {
                s.sport = sport;
                s.dport = dport;
            }
            L4::Icmp(_) => {}
        }
        self
    }

    fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::Tcp(_) => PROTO_TCP,
            L4::Udp(_) => PROTO_UDP,
            L4::Icmp(_) if v6 => PROTO_ICMPV6,
            L4::Icmp(_) => PROTO_ICMP,
            L4::Sctp(_) => PROTO_SCTP,
        }
    }
}

/// A whole frame as data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub eth: Eth,
    pub ip: Ip,
    pub l4: L4,
}

impl Packet {
    pub fn new(eth: Eth, ip: Ip, l4: L4) -> Packet {
        Packet { eth, ip, l4 }
    }

    /// The IP packet: IP header(s) and L4 with all checksums filled in.
    pub fn ip_bytes(&self) -> Vec<u8> {
        ip_packet(&self.ip, &self.l4)
    }

    pub fn frame(&self) -> Vec<u8> {
        self.eth.frame(self.ip.ethertype(), &self.ip_bytes())
    }
}

/// Pads a frame with zeros to the Ethernet minimum (60 bytes without FCS),
/// the way a receiving NIC hands short frames up.
pub fn pad_min(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < 60 {
        frame.resize(60, 0);
    }
    frame
}

/// Serialises the IP header(s) and `l4`, computing lengths and checksums.
pub fn ip_packet(ip: &Ip, l4: &L4) -> Vec<u8> {
    let v6 = matches!(ip, Ip::V6(_));
    let proto = l4.proto(v6);
    let (src, dst) = ip.addrs();
    let mut seg = l4_bytes(l4);
    if let L4::Sctp(_) = l4 {
        // No pseudo-header: the CRC32c of the SCTP packet alone.
        let c = sctp_crc32c(&seg);
        seg[8..12].copy_from_slice(&c.to_le_bytes());
    }
    let sum = match l4 {
        L4::Sctp(_) => 0,
        L4::Udp(u) if u.zero_checksum && !v6 => 0,
        L4::Icmp(_) if !v6 => internet_checksum(&[&seg]),
        _ => {
            let pseudo = pseudo_header(&src, &dst, proto, seg.len());
            let s = internet_checksum(&[&pseudo, &seg]);
            // UDP sends a computed 0 as 0xffff: 0 on the wire means "none".
            if s == 0 && proto == PROTO_UDP {
                0xffff
            } else {
                s
            }
        }
    };
    let at = match l4 {
        L4::Tcp(_) => Some(16),
        L4::Udp(_) => Some(6),
        L4::Icmp(_) => Some(2),
        L4::Sctp(_) => None,
    };
    if let Some(at) = at {
        seg[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    match ip {
        Ip::V4(h) => {
            let mut out = ipv4_header(h, proto, seg.len());
            out.extend_from_slice(&seg);
            out
        }
        Ip::V6(h) => {
            let mut out = ipv6_headers(h, proto, seg.len());
            out.extend_from_slice(&seg);
            out
        }
    }
}

/// Cuts a whole IP packet (IPv4 without options, or IPv6 without
/// extension headers) into fragments with identification `id`, `chunk`
/// payload bytes each (a multiple of 8), in order (RFC 791 / RFC 8200
/// 4.5). Returns IP packets; IPv4 header checksums summed in full.
pub fn fragment_ip(ip_packet: &[u8], id: u32, chunk: usize) -> Vec<Vec<u8>> {
    assert!(
        chunk > 0 && chunk.is_multiple_of(8),
        "fragment payloads are multiples of 8"
    );
    let v6 = ip_packet[0] >> 4 == 6;
    let hdr = if v6 { 40 } else { 20 };
    let payload = &ip_packet[hdr..];
    let n = payload.len().div_ceil(chunk);
    (0..n)
        .map(|i| {
            let part = &payload[i * chunk..((i + 1) * chunk).min(payload.len())];
            let more = u16::from(i + 1 < n);
            let offset = (i * chunk / 8) as u16;
            let mut out = ip_packet[..hdr].to_vec();
            if v6 {
                let next = out[6];
                out[6] = 44;
                out[4..6].copy_from_slice(&((8 + part.len()) as u16).to_be_bytes());
                out.extend_from_slice(&[next, 0]);
                out.extend_from_slice(&((offset << 3) | more).to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
            } else {
                out[2..4].copy_from_slice(&((hdr + part.len()) as u16).to_be_bytes());
                out[4..6].copy_from_slice(&(id as u16).to_be_bytes());
                out[6..8].copy_from_slice(&((more << 13) | offset).to_be_bytes());
                out[10..12].copy_from_slice(&[0, 0]);
                let c = internet_checksum(&[&out[..hdr]]);
                out[10..12].copy_from_slice(&c.to_be_bytes());
            }
            out.extend_from_slice(part);
            out
        })
        .collect()
}

/// The pseudo-header of RFC 793 (IPv4) or RFC 8200 section 8.1 (IPv6),
/// chosen by the address length.
pub fn pseudo_header(src: &[u8], dst: &[u8], proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    if src.len() == 4 {
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, proto]);
    }
    p
}

fn ipv4_header(h: &Ipv4, proto: u8, l4_len: usize) -> Vec<u8> {
    assert!(h.options.len().is_multiple_of(4) && h.options.len() <= 40);
    let hlen = 20 + h.options.len();
    let mut out = Vec::with_capacity(hlen + l4_len);
    out.push(0x40 | (hlen / 4) as u8);
    out.push(h.tos);
    out.extend_from_slice(&((hlen + l4_len) as u16).to_be_bytes());
    out.extend_from_slice(&h.ident.to_be_bytes());
    out.extend_from_slice(&h.flags_frag.to_be_bytes());
    out.push(h.ttl);
    out.push(proto);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&h.src);
    out.extend_from_slice(&h.dst);
    out.extend_from_slice(&h.options);
    let sum = internet_checksum(&[&out]);
    out[10..12].copy_from_slice(&sum.to_be_bytes());
    out
}

fn ipv6_headers(h: &Ipv6, proto: u8, l4_len: usize) -> Vec<u8> {
    let ext_len: usize = h.ext.iter().map(|e| e.body.len() + 2).sum();
    let first = h.ext.first().map_or(proto, |e| e.kind);
    let mut out = Vec::with_capacity(40 + ext_len + l4_len);
    let word = (6u32 << 28) | (u32::from(h.traffic_class) << 20) | (h.flow_label & 0xf_ffff);
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(&((ext_len + l4_len) as u16).to_be_bytes());
    out.push(first);
    out.push(h.hop_limit);
    out.extend_from_slice(&h.src);
    out.extend_from_slice(&h.dst);
    for (i, e) in h.ext.iter().enumerate() {
        assert!(
            (e.body.len() + 2).is_multiple_of(8),
            "extension header not 8-aligned"
        );
        let next = h.ext.get(i + 1).map_or(proto, |n| n.kind);
        out.push(next);
        out.push(((e.body.len() + 2) / 8 - 1) as u8);
        out.extend_from_slice(&e.body);
    }
    out
}

/// L4 bytes with the checksum field zero.
fn l4_bytes(l4: &L4) -> Vec<u8> {
    let mut out = Vec::new();
    match l4 {
        L4::Tcp(t) => {
            assert!(t.options.len().is_multiple_of(4) && t.options.len() <= 40);
            out.extend_from_slice(&t.sport.to_be_bytes());
            out.extend_from_slice(&t.dport.to_be_bytes());
            out.extend_from_slice(&t.seq.to_be_bytes());
            out.extend_from_slice(&t.ack.to_be_bytes());
            out.push((((20 + t.options.len()) / 4) as u8) << 4);
            out.push(t.flags);
            out.extend_from_slice(&t.window.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&t.urgent.to_be_bytes());
            out.extend_from_slice(&t.options);
            out.extend_from_slice(&t.payload);
        }
        L4::Udp(u) => {
            out.extend_from_slice(&u.sport.to_be_bytes());
            out.extend_from_slice(&u.dport.to_be_bytes());
            out.extend_from_slice(&((8 + u.payload.len()) as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&u.payload);
        }
        L4::Icmp(i) => {
            out.push(i.kind);
            out.push(i.code);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&i.rest);
            out.extend_from_slice(&i.body);
        }
        L4::Sctp(sc) => {
            out.extend_from_slice(&sc.sport.to_be_bytes());
            out.extend_from_slice(&sc.dport.to_be_bytes());
            out.extend_from_slice(&sc.vtag.to_be_bytes());
            out.extend_from_slice(&[0; 4]);
            for c in &sc.chunks {
                out.push(c.kind);
                out.push(c.flags);
                out.extend_from_slice(&((4 + c.value.len()) as u16).to_be_bytes());
                out.extend_from_slice(&c.value);
                out.resize(out.len().next_multiple_of(4), 0);
            }
        }
    }
    out
}

/// An ARP request (who-has `target` tell `sender`), broadcast.
pub fn arp_request(src_mac: [u8; 6], sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    arp.extend_from_slice(&src_mac);
    arp.extend_from_slice(&sender);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target);
    Eth::new(src_mac, [0xff; 6]).frame(ETHERTYPE_ARP, &arp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{
        EthernetFrame, Icmpv4Packet, Icmpv6Packet, IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket,
        UdpPacket,
    };

    const A: [u8; 4] = [198, 18, 0, 1];
    const B: [u8; 4] = [198, 19, 0, 10];
    const A6: [u8; 16] = [0xfd, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const B6: [u8; 16] = [0xfd, 0, 0, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];

    fn eth() -> Eth {
        Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 1, 1])
    }

    fn tcp() -> L4 {
        let mut t = Tcp::new(40000, 80, 1000, 0, TCP_SYN);
        t.options = vec![2, 4, 5, 0xb4];
        t.payload = b"hello".to_vec();
        L4::Tcp(t)
    }

    // smoltcp is an independent implementation: it must agree with ours.
    #[test]
    fn ipv4_tcp_checks_out_in_smoltcp() {
        let mut ip = Ipv4::new(A, B, 64);
        ip.options = vec![0x94, 4, 0, 0];
        let f = Packet::new(eth(), Ip::V4(ip), tcp()).frame();
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        let p = Ipv4Packet::new_checked(e.payload()).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 24);
        let t = TcpPacket::new_checked(p.payload()).unwrap();
        assert!(t.verify_checksum(
            &IpAddress::from(p.src_addr()),
            &IpAddress::from(p.dst_addr())
        ));
        assert_eq!(t.payload(), b"hello");
        assert_eq!(t.src_port(), 40000);
    }

    #[test]
    fn ipv6_udp_with_ext_header_checks_out_in_smoltcp() {
        let mut ip = Ipv6::new(A6, B6, 64);
        ip.ext.push(ExtHeader {
            kind: PROTO_DSTOPTS,
            body: vec![1, 4, 0, 0, 0, 0],
        });
        let f = Packet::new(
            eth(),
            Ip::V6(ip),
            L4::Udp(Udp::new(5000, 53, b"q".to_vec())),
        )
        .frame();
        let p = Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(p.next_header(), smoltcp::wire::IpProtocol::Ipv6Opts);
        assert_eq!(usize::from(p.payload_len()), 8 + 9);
        let u = UdpPacket::new_checked(&p.payload()[8..]).unwrap();
        assert!(u.verify_checksum(
            &IpAddress::from(p.src_addr()),
            &IpAddress::from(p.dst_addr())
        ));
    }

    #[test]
    fn icmp_both_families_check_out_in_smoltcp() {
        let body = Packet::new(eth(), Ip::V4(Ipv4::new(A, B, 64)), tcp()).ip_bytes();
        let icmp = L4::Icmp(Icmp {
            kind: 3,
            code: 3,
            rest: [0; 4],
            body,
        });
        let f = Packet::new(eth(), Ip::V4(Ipv4::new(B, A, 64)), icmp.clone()).frame();
        let p = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(Icmpv4Packet::new_checked(p.payload())
            .unwrap()
            .verify_checksum());

        let f6 = Packet::new(eth(), Ip::V6(Ipv6::new(B6, A6, 64)), icmp).frame();
        let p6 = Ipv6Packet::new_checked(&f6[14..]).unwrap();
        assert_eq!(p6.next_header(), smoltcp::wire::IpProtocol::Icmpv6);
        let i6 = Icmpv6Packet::new_checked(p6.payload()).unwrap();
        assert!(i6.verify_checksum(&p6.src_addr(), &p6.dst_addr()));
    }

    #[test]
    fn vlan_tag_sits_before_the_ethertype() {
        let mut e = eth();
        e.vlan = Some(100);
        let f = e.frame(ETHERTYPE_IPV4, &[0x45]);
        assert_eq!(&f[12..18], &[0x81, 0x00, 0x00, 100, 0x08, 0x00]);
        assert_eq!(f[18], 0x45);
    }

    #[test]
    fn udp_zero_checksum_is_kept_on_ipv4_only() {
        let mut u = Udp::new(1, 2, vec![9; 3]);
        u.zero_checksum = true;
        let v4 = ip_packet(&Ip::V4(Ipv4::new(A, B, 64)), &L4::Udp(u.clone()));
        assert_eq!(&v4[26..28], &[0, 0]);
        let v6 = ip_packet(&Ip::V6(Ipv6::new(A6, B6, 64)), &L4::Udp(u));
        assert_ne!(&v6[46..48], &[0, 0]);
    }

    #[test]
    fn seq_len_counts_syn_and_fin() {
        let mut t = Tcp::new(1, 2, 0, 0, TCP_SYN | TCP_FIN);
        t.payload = vec![0; 7];
        assert_eq!(t.seq_len(), 9);
    }
}
