//! Conversations through the load balancer: each packet a client or backend
//! sends, paired with the frame the pipeline must write for it, and the
//! answers it generates for services without endpoints.
//!
//! Both frames are built from the same description with the rewritten
//! fields changed, never by editing bytes, so they are independent of how
//! the dataplane rewrites.

use std::cell::Cell;
use std::net::IpAddr;

use crate::packet::*;

/// The gateway's own MAC: frames to the VIP arrive addressed to it.
pub const GW_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0xfe, 0x01];

/// The TTL hosts send with, and what the gateway's rewrite leaves.
pub const TTL: u8 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    pub mac: [u8; 6],
    pub ip: IpAddr,
}

/// An IP header from `src` to `dst` (same family).
pub fn ip_header(src: IpAddr, dst: IpAddr, ttl: u8) -> Ip {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ip::V4(Ipv4::new(s.octets(), d.octets(), ttl)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ip::V6(Ipv6::new(s.octets(), d.octets(), ttl)),
        _ => panic!("mixed address families {src} -> {dst}"),
    }
}

/// One connection client:cport -> vip:vport, served by backend:bport.
#[derive(Debug)]
pub struct Nat {
    pub client: Host,
    pub cport: u16,
    pub vip: IpAddr,
    pub vport: u16,
    pub backend: Host,
    pub bport: u16,
    pub vlan: Option<u16>,
    /// IPv4 options on the client's packets (kept by the rewrite).
    pub v4_options: Vec<u8>,
    /// IPv6 extension headers on the client's packets (kept by the rewrite).
    pub v6_ext: Vec<ExtHeader>,
    client_ident: Cell<u16>,
    backend_ident: Cell<u16>,
}

impl Nat {
    pub fn new(
        client: Host,
        cport: u16,
        vip: IpAddr,
        vport: u16,
        backend: Host,
        bport: u16,
    ) -> Nat {
        // Distinct, flow-dependent IP identifications, as real stacks send.
        let seed = cport ^ bport.rotate_left(7);
        Nat {
            client,
            cport,
            vip,
            vport,
            backend,
            bport,
            vlan: None,
            v4_options: Vec::new(),
            v6_ext: Vec::new(),
            client_ident: Cell::new(seed),
            backend_ident: Cell::new(seed.wrapping_mul(31)),
        }
    }

    fn eth(&self, src: [u8; 6]) -> Eth {
        Eth {
            dst: GW_MAC,
            src,
            vlan: self.vlan,
        }
    }

    fn ip(&self, src: IpAddr, dst: IpAddr, ttl: u8, ident: &Cell<u16>, client: bool) -> Ip {
        let mut ip = ip_header(src, dst, ttl);
        match &mut ip {
            Ip::V4(h) => {
                h.ident = ident.get();
                ident.set(ident.get().wrapping_add(1));
                if client {
                    h.options = self.v4_options.clone();
                }
            }
            Ip::V6(h) => {
                if client {
                    h.ext = self.v6_ext.clone();
                }
            }
        }
        ip
    }

    /// What the client sends to the VIP, with the given TTL.
    pub fn client_packet(&self, l4: L4, ttl: u8) -> Packet {
        let ip = self.ip(self.client.ip, self.vip, ttl, &self.client_ident, true);
        Packet::new(
            self.eth(self.client.mac),
            ip,
            l4.with_ports(self.cport, self.vport),
        )
    }

    /// The client's packet after DNAT: to the backend, one hop less.
    pub fn dnat(&self, sent: &Packet) -> Packet {
        let mut out = sent.clone();
        out.ip = with_dst(&sent.ip, self.backend.ip);
        out.ip.set_ttl(sent.ip.ttl() - 1);
        out.l4 = sent.l4.clone().with_ports(self.cport, self.bport);
        out
    }

    /// What the backend sends back to the client.
    pub fn backend_packet(&self, l4: L4) -> Packet {
        let ip = self.ip(
            self.backend.ip,
            self.client.ip,
            TTL,
            &self.backend_ident,
            false,
        );
        Packet::new(
            self.eth(self.backend.mac),
            ip,
            l4.with_ports(self.bport, self.cport),
        )
    }

    /// The backend's reply after reverse NAT: from the VIP, one hop less.
    pub fn unnat(&self, sent: &Packet) -> Packet {
        let mut out = sent.clone();
        out.ip = with_src(&sent.ip, self.vip);
        out.ip.set_ttl(sent.ip.ttl() - 1);
        out.l4 = sent.l4.clone().with_ports(self.vport, self.cport);
        out
    }

    /// Client -> VIP frame and the frame the pipeline writes for it.
    pub fn forward(&self, l4: L4) -> (Vec<u8>, Vec<u8>) {
        let p = self.client_packet(l4, TTL);
        (p.frame(), self.dnat(&p).frame())
    }

    /// Backend -> client frame and the frame the pipeline writes for it.
    pub fn reply(&self, l4: L4) -> (Vec<u8>, Vec<u8>) {
        let p = self.backend_packet(l4);
        (p.frame(), self.unnat(&p).frame())
    }
}

pub fn with_dst(ip: &Ip, dst: IpAddr) -> Ip {
    let mut ip = ip.clone();
    match (&mut ip, dst) {
        (Ip::V4(h), IpAddr::V4(d)) => h.dst = d.octets(),
        (Ip::V6(h), IpAddr::V6(d)) => h.dst = d.octets(),
        _ => panic!("family mismatch"),
    }
    ip
}

pub fn with_src(ip: &Ip, src: IpAddr) -> Ip {
    let mut ip = ip.clone();
    match (&mut ip, src) {
        (Ip::V4(h), IpAddr::V4(s)) => h.src = s.octets(),
        (Ip::V6(h), IpAddr::V6(s)) => h.src = s.octets(),
        _ => panic!("family mismatch"),
    }
    ip
}

/// Sequence numbers of one TCP connection, so segments follow each other
/// the way a real exchange does.
#[derive(Clone, Debug)]
pub struct Conv {
    client_next: u32,
    server_next: u32,
}

/// SYN options a Linux client sends: MSS 1460, SACK permitted, timestamps,
/// NOP, window scale 7.
const SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7,
];

impl Conv {
    pub fn new(client_isn: u32, server_isn: u32) -> Conv {
        Conv {
            client_next: client_isn,
            server_next: server_isn,
        }
    }

    /// The client's next segment (ports are filled in by [`Nat`]).
    pub fn client(&mut self, flags: u8, payload: &[u8]) -> L4 {
        let t = segment(self.client_next, self.server_next, flags, payload);
        self.client_next = self.client_next.wrapping_add(t.seq_len());
        L4::Tcp(t)
    }

    /// The server's next segment.
    pub fn server(&mut self, flags: u8, payload: &[u8]) -> L4 {
        let t = segment(self.server_next, self.client_next, flags, payload);
        self.server_next = self.server_next.wrapping_add(t.seq_len());
        L4::Tcp(t)
    }
}

fn segment(seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Tcp {
    let mut t = Tcp::new(0, 0, seq, if flags & TCP_ACK != 0 { ack } else { 0 }, flags);
    if flags & TCP_SYN != 0 {
        t.options = SYN_OPTIONS.to_vec();
        if flags & TCP_ACK != 0 {
            t.window = 65160;
        }
    }
    t.payload = payload.to_vec();
    t
}

/// How much of the offending packet an ICMP port unreachable quotes: the
/// answer stays within the minimum MTU (576 IPv4, 1280 IPv6).
pub const V4_QUOTE_MAX: usize = 548;
pub const V6_QUOTE_MAX: usize = 1232;

/// The pipeline's answer to a TCP segment for a service without endpoints.
pub fn rst_for(input: &Packet) -> Vec<u8> {
    let L4::Tcp(t) = &input.l4 else {
        panic!("rst_for needs a TCP packet")
    };
    let (seq, ack, flags) = if t.flags & TCP_ACK != 0 {
        (t.ack, 0, TCP_RST)
    } else {
        (0, t.seq.wrapping_add(t.seq_len()), TCP_RST | TCP_ACK)
    };
    let mut rst = Tcp::new(t.dport, t.sport, seq, ack, flags);
    rst.window = 0;
    Packet::new(input.eth.reversed(), answer_ip(&input.ip), L4::Tcp(rst)).frame()
}

/// The pipeline's answer to a UDP datagram for a service without endpoints.
pub fn port_unreachable_for(input: &Packet) -> Vec<u8> {
    let mut quote = input.ip_bytes();
    let (kind, code, max) = match input.ip {
        Ip::V4(_) => (3, 3, V4_QUOTE_MAX),
        Ip::V6(_) => (1, 4, V6_QUOTE_MAX),
    };
    quote.truncate(max);
    let icmp = L4::Icmp(Icmp {
        kind,
        code,
        rest: [0; 4],
        body: quote,
    });
    let mut ip = answer_ip(&input.ip);
    if let Ip::V4(h) = &mut ip {
        h.flags_frag = 0;
    }
    Packet::new(input.eth.reversed(), ip, icmp).frame()
}

/// The pipeline's answer to an SCTP packet for a service without endpoints
/// (RFC 9260 8.4): a SHUTDOWN ACK gets a SHUTDOWN COMPLETE, anything else
/// an ABORT; an INIT's answer carries its Initiate Tag with the T bit
/// clear, the others the packet's own tag with the T bit set.
pub fn sctp_abort_for(input: &Packet) -> Vec<u8> {
    let L4::Sctp(s) = &input.l4 else {
        panic!("sctp_abort_for needs an SCTP packet")
    };
    let first = &s.chunks[0];
    let (vtag, flags) = if first.kind == SCTP_INIT {
        let v = &first.value;
        (u32::from_be_bytes([v[0], v[1], v[2], v[3]]), 0)
    } else {
        (s.vtag, SCTP_FLAG_T)
    };
    let kind = if s.chunks.iter().any(|c| c.kind == SCTP_SHUTDOWN_ACK) {
        SCTP_SHUTDOWN_COMPLETE
    } else {
        SCTP_ABORT
    };
    let answer = Sctp::new(s.dport, s.sport, vtag, vec![SctpChunk::bare(kind, flags)]);
    Packet::new(input.eth.reversed(), answer_ip(&input.ip), L4::Sctp(answer)).frame()
}

/// IP header of a generated answer: from the VIP back to the sender, TTL 64,
/// ident 0, DF, nothing else set.
fn answer_ip(incoming: &Ip) -> Ip {
    match incoming {
        Ip::V4(h) => Ip::V4(Ipv4::new(h.dst, h.src, 64)),
        Ip::V6(h) => Ip::V6(Ipv6::new(h.dst, h.src, 64)),
    }
}
