//! Frame templates: Ethernet (+ 802.1Q), IPv4 (+ options, fragments) or IPv6
//! (+ extension headers), TCP / UDP / ICMP / ICMPv6 / SCTP and payload, serialised
//! with correct lengths and checksums (recomputed with pnet, see `csum`).
//!
//! The fuzz inputs pick the fields; anything broken is broken on purpose,
//! by editing the bytes afterwards (see `gen`).

use std::net::IpAddr;

use crate::{csum, walk};

/// The node's MAC (frames arrive to it) and the peer's.
pub const NODE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const SCTP: u8 = 132;

/// One IPv6 extension header.
#[derive(Clone, Copy, Debug)]
pub struct Ext {
    /// Hop-by-hop (0), routing (43), fragment (44), AH (51), dst options (60).
    pub kind: u8,
    /// The header's length field (what it means depends on `kind`).
    pub len: u8,
    /// Routing: segments left; fragment: offset (8-byte units) << 3 | M.
    pub word: u16,
}

/// The IP layer of a packet.
#[derive(Clone, Debug)]
pub struct IpSpec {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// IPv4 options (padded to a multiple of 4, at most 40 bytes).
    pub v4_opts: Vec<u8>,
    /// IPv4 flags and fragment offset word (e.g. 0x2000 = more fragments).
    pub v4_frag: u16,
    pub v6_ext: Vec<Ext>,
}

impl IpSpec {
    pub fn new(src: IpAddr, dst: IpAddr, ttl: u8) -> IpSpec {
        IpSpec {
            src,
            dst,
            ttl,
            v4_opts: Vec::new(),
            v4_frag: 0,
            v6_ext: Vec::new(),
        }
    }

    pub fn v6(&self) -> bool {
        self.src.is_ipv6()
    }
}

/// The L4 header (its payload is passed apart).
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        /// TCP option bytes (padded to a multiple of 4, at most 40).
        opts: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
        /// Send "no checksum" (0), legal over IPv4 only.
        no_csum: bool,
    },
    /// SCTP: the common header, then `chunks` (whole chunks, as the input
    /// made them); the payload follows them.
    Sctp {
        sport: u16,
        dport: u16,
        vtag: u32,
        chunks: Vec<u8>,
    },
    /// ICMP or ICMPv6 (by the IP version): type, code, rest of header.
    Icmp { kind: u8, code: u8, rest: [u8; 4] },
    /// Any other protocol number: the payload is all there is.
    Raw(u8),
}

impl L4 {
    fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::Tcp { .. } => TCP,
            L4::Udp { .. } => UDP,
            L4::Sctp { .. } => SCTP,
            L4::Icmp { .. } if v6 => 58,
            L4::Icmp { .. } => 1,
            L4::Raw(p) => *p,
        }
    }

    fn bytes(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(60 + payload.len());
        match self {
            L4::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                opts,
            } => {
                let opts = padded(opts, 40);
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&ack.to_be_bytes());
                out.push((((20 + opts.len()) / 4) as u8) << 4);
                out.push(*flags);
                out.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
                out.extend_from_slice(&opts);
            }
            L4::Udp { sport, dport, .. } => {
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            L4::Sctp {
                sport,
                dport,
                vtag,
                chunks,
            } => {
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                out.extend_from_slice(&vtag.to_be_bytes());
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(chunks);
            }
            L4::Icmp { kind, code, rest } => {
                out.extend_from_slice(&[*kind, *code, 0, 0]);
                out.extend_from_slice(rest);
            }
            L4::Raw(_) => {}
        }
        out.extend_from_slice(payload);
        out
    }
}

/// `b` cut to `max` bytes and padded with zeros (EOL / Pad1) to 4-byte units.
fn padded(b: &[u8], max: usize) -> Vec<u8> {
    let mut v = b[..b.len().min(max)].to_vec();
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

/// The IP packet, with correct lengths and checksums.
pub fn ip_packet(ip: &IpSpec, l4: &L4, payload: &[u8]) -> Vec<u8> {
    let v6 = ip.v6();
    let seg = l4.bytes(payload);
    let proto = l4.proto(v6);
    let mut out = if v6 {
        let ext = ext_chain(&ip.v6_ext, proto);
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&((ext.len() + seg.len()) as u16).to_be_bytes());
        h.push(ip.v6_ext.first().map_or(proto, |e| e.kind));
        h.push(ip.ttl);
        h.extend_from_slice(&csum::v6(ip.src).octets());
        h.extend_from_slice(&csum::v6(ip.dst).octets());
        h.extend_from_slice(&ext);
        h
    } else {
        let opts = padded(&ip.v4_opts, 40);
        let hdr = 20 + opts.len();
        let mut h = vec![0x40 | (hdr / 4) as u8, 0];
        h.extend_from_slice(&((hdr + seg.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[0x12, 0x34]);
        h.extend_from_slice(&ip.v4_frag.to_be_bytes());
        h.extend_from_slice(&[ip.ttl, proto, 0, 0]);
        h.extend_from_slice(&csum::v4(ip.src).octets());
        h.extend_from_slice(&csum::v4(ip.dst).octets());
        h.extend_from_slice(&opts);
        h
    };
    out.extend_from_slice(&seg);
    if let Some(w) = walk::ip(&out, 0, out.len()) {
        csum::fix(&mut out, &w);
        if let (L4::Udp { no_csum: true, .. }, false) = (l4, w.fragment) {
            let off = w.l4.start + 6;
            out[off..off + 2].copy_from_slice(&[0, 0]);
        }
    }
    out
}

/// IPv6 extension headers, each naming the next, the last naming `proto`.
fn ext_chain(exts: &[Ext], proto: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, |n| n.kind);
        let len = match e.kind {
            44 => 8,
            51 => (usize::from(e.len) + 2) * 4,
            _ => (usize::from(e.len) + 1) * 8,
        };
        let at = out.len();
        out.resize(at + len, 0);
        out[at] = next;
        if e.kind != 44 {
            out[at + 1] = e.len;
        }
        match e.kind {
            // Type 4 (segment routing), then segments left.
            43 => out[at + 2..at + 4].copy_from_slice(&[4, e.word as u8]),
            44 => out[at + 2..at + 4].copy_from_slice(&e.word.to_be_bytes()),
            _ => {}
        }
    }
    out
}

/// An Ethernet frame (tagged when `vlan` is set) around an IP packet.
pub fn ether(vlan: Option<u16>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + payload.len());
    out.extend_from_slice(&NODE_MAC);
    out.extend_from_slice(&PEER_MAC);
    if let Some(tci) = vlan {
        out.extend_from_slice(&[0x81, 0x00]);
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The ethertype of an IP packet's version.
pub fn ip_ethertype(ip: &[u8]) -> u16 {
    match ip.first().map(|b| b >> 4) {
        Some(6) => 0x86dd,
        _ => 0x0800,
    }
}
