//! Decoding one frame from the input: a template picked by the first byte
//! (a new flow to a VIP, a backend's reply, ICMP errors quoting a tracked
//! flow from either side, echo, fragments, non-IP, raw bytes, traffic that
//! is not ours), filled from the next bytes, then optionally mangled.
//!
//! Replies and ICMP errors are built from flows the pipeline has really
//! forwarded earlier in the run (`Flow`, learned from its output), so they
//! meet conntrack entries instead of hoping to guess a Maglev pick.

use std::net::IpAddr;

use dataplane::addr::Proto;

use crate::frame::{self, Ext, IpSpec, L4};
use crate::input::Input;
use crate::scenario::{self, BACKEND_HOSTS, CLIENT_HOSTS, ROUTER_HOST, VIP_HOSTS};
use crate::{csum, walk};

/// The largest frame built: what a 2 KiB rx buffer holds.
pub const MAX_FRAME: usize = 2048;

/// A flow the pipeline forwarded: the client's tuple and the backend picked.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub client: IpAddr,
    pub cport: u16,
    pub vip: IpAddr,
    pub vport: u16,
    pub backend: IpAddr,
    pub bport: u16,
    /// Where the backend answers: the client, or the gateway's source-NAT
    /// address and port when the flow was source-NATed.
    pub nat_src: IpAddr,
    pub nat_sport: u16,
    pub proto: Proto,
}

/// Template modifiers (the second byte of every frame).
const M_VLAN: u8 = 1;
const M_OPTIONS: u8 = 2;
const M_TTL: u8 = 4;
const M_PAYLOAD: u8 = 8;
const M_MUTATE: u8 = 16;
const M_REFIX: u8 = 32;
const M_LENGTH: u8 = 64;
const M_ODD: u8 = 128;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;

/// Decodes the next frame.
pub fn frame(inp: &mut Input, learned: &[Flow]) -> Vec<u8> {
    let kind = inp.u8();
    let mods = inp.u8();
    let mut f = match kind % 12 {
        0..=2 => to_vip(inp, mods, false),
        3 | 4 => {
            let fl = flow(inp, learned);
            let ip = ip_spec(inp, mods, fl.backend, fl.nat_src);
            let l4 = ports_l4(inp, mods, fl.proto, fl.bport, fl.nat_sport);
            build(inp, mods, &ip, &l4)
        }
        5 => icmp_error(inp, mods, learned, true),
        6 => icmp_error(inp, mods, learned, false),
        7 => echo(inp, mods),
        8 => to_vip(inp, mods, true),
        9 => not_ip(inp),
        10 => {
            let n = usize::from(inp.u8()) + usize::from(inp.u8() & 3) * 256;
            inp.bytes(n).to_vec()
        }
        _ => not_ours(inp, mods),
    };
    if mods & M_MUTATE != 0 {
        mutate(inp, mods, &mut f);
    }
    f.truncate(MAX_FRAME);
    f
}

/// A TCP segment or UDP datagram to a Service port (or a fragment of one).
fn to_vip(inp: &mut Input, mods: u8, fragment: bool) -> Vec<u8> {
    let (vip, vport, proto) = scenario::target(usize::from(inp.u8()));
    let six = vip.is_ipv6();
    let who = inp.u8();
    // Now and then a backend is the client (hairpin).
    let client = if who & 3 == 3 {
        scenario::addr(
            six,
            1,
            BACKEND_HOSTS[usize::from(who >> 2) % BACKEND_HOSTS.len()],
        )
    } else {
        scenario::addr(
            six,
            0,
            CLIENT_HOSTS[usize::from(who >> 2) % CLIENT_HOSTS.len()],
        )
    };
    let cport = port(inp);
    let mut ip = ip_spec(inp, mods, client, vip);
    if fragment {
        let offset = u16::from(inp.u8() & 3);
        let more = inp.bool();
        if six {
            ip.v6_ext.push(Ext {
                kind: 44,
                len: 0,
                word: (offset << 3) | u16::from(more),
            });
        } else {
            ip.v4_frag = offset | if more { 0x2000 } else { 0 };
        }
    }
    let l4 = ports_l4(inp, mods, proto, cport, vport);
    build(inp, mods, &ip, &l4)
}

/// A flow learned from the pipeline, or one made up from the scenario.
fn flow(inp: &mut Input, learned: &[Flow]) -> Flow {
    let b = inp.u8();
    if !learned.is_empty() && b < 224 {
        return learned[usize::from(b) % learned.len()];
    }
    let (vip, vport, proto) = scenario::target(usize::from(b));
    let six = vip.is_ipv6();
    let host = inp.u8();
    let client = scenario::addr(six, 0, CLIENT_HOSTS[usize::from(host) % CLIENT_HOSTS.len()]);
    let cport = port(inp);
    Flow {
        client,
        cport,
        nat_src: client,
        nat_sport: cport,
        vip,
        vport,
        backend: scenario::addr(
            six,
            1,
            BACKEND_HOSTS[usize::from(host >> 3) % BACKEND_HOSTS.len()],
        ),
        bport: inp.pick(&[8080, 5353, 80, 8443]),
        proto,
    }
}

/// An ICMP error about a flow: `to_vip`, from the client's side about a
/// reply (VIP -> client) it could not deliver; else from the backend's
/// side about a forwarded packet (client -> backend).
fn icmp_error(inp: &mut Input, mods: u8, learned: &[Flow], to_vip: bool) -> Vec<u8> {
    let fl = flow(inp, learned);
    let six = fl.vip.is_ipv6();
    let from_router = inp.bool();
    let (src, dst, q_src, q_dst, sport, dport) = if to_vip {
        let src = if from_router {
            scenario::addr(six, 0, ROUTER_HOST)
        } else {
            fl.client
        };
        (src, fl.vip, fl.vip, fl.client, fl.vport, fl.cport)
    } else {
        let src = if from_router {
            scenario::addr(six, 1, ROUTER_HOST)
        } else {
            fl.backend
        };
        (
            src,
            fl.nat_src,
            fl.nat_src,
            fl.backend,
            fl.nat_sport,
            fl.bport,
        )
    };
    let q_ip = IpSpec::new(q_src, q_dst, 63);
    let q_l4 = ports_l4(inp, mods, fl.proto, sport, dport);
    let payload = payload(inp, mods);
    let mut quoted = frame::ip_packet(&q_ip, &q_l4, &payload);
    // Routers quote the header and 8 bytes; hosts often quote all of it.
    let keep = inp.u8();
    if keep < 200 {
        let hdr = if six { 40 } else { 20 };
        quoted.truncate(hdr + 8 + usize::from(keep % 32));
    }
    let (kind, code) = if six {
        (inp.pick(&[1, 1, 2, 3, 4]), inp.u8() % 8)
    } else {
        (inp.pick(&[3, 3, 3, 11, 12, 4]), inp.u8() % 16)
    };
    let ip = ip_spec(inp, mods, src, dst);
    let l4 = L4::Icmp {
        kind,
        code,
        rest: [0, 0, 0x05, 0xdc],
    };
    let pkt = frame::ip_packet(&ip, &l4, &quoted);
    frame::ether(vlan(inp, mods), frame::ip_ethertype(&pkt), &pkt)
}

/// ICMP echo (or another informational message) to a VIP or a client.
fn echo(inp: &mut Input, mods: u8) -> Vec<u8> {
    let six = inp.bool();
    let b = inp.u8();
    let dst = scenario::addr(six, 0x13, VIP_HOSTS[usize::from(b) % VIP_HOSTS.len()]);
    let src = scenario::addr(
        six,
        0,
        CLIENT_HOSTS[usize::from(b >> 4) % CLIENT_HOSTS.len()],
    );
    let kind = if six {
        inp.pick(&[128, 129, 135, 136, 1])
    } else {
        inp.pick(&[8, 0, 13, 5, 3])
    };
    let ip = ip_spec(inp, mods, src, dst);
    let l4 = L4::Icmp {
        kind,
        code: 0,
        rest: [0x12, 0x34, 0, inp.u8()],
    };
    build(inp, mods, &ip, &l4)
}

/// A frame that is not IPv4 / IPv6 (ARP, LLDP, any ethertype), or IPv6
/// with an IPv4-mapped address.
fn not_ip(inp: &mut Input) -> Vec<u8> {
    let et = inp.pick(&[0x0806, 0x88cc, 0x8100, 0x0800, 0x86dd, 0]);
    let et = if et == 0 { inp.u16() } else { et };
    if et == 0x86dd && inp.bool() {
        let mapped: IpAddr = "::ffff:198.19.0.10".parse().expect("address");
        let src = scenario::addr(true, 0, 1);
        let ip = IpSpec::new(src, mapped, 64);
        let l4 = L4::Udp {
            sport: 40000,
            dport: 53,
            no_csum: false,
        };
        let pkt = frame::ip_packet(&ip, &l4, &[1, 2, 3]);
        return frame::ether(None, et, &pkt);
    }
    let n = usize::from(inp.u8() % 64);
    let body = inp.bytes(n).to_vec();
    frame::ether(None, et, &body)
}

/// TCP or UDP between scenario hosts that involves no VIP: client to
/// backend directly, backend to client from a port no flow uses.
fn not_ours(inp: &mut Input, mods: u8) -> Vec<u8> {
    let six = inp.bool();
    let b = inp.u8();
    let client = scenario::addr(six, 0, CLIENT_HOSTS[usize::from(b) % CLIENT_HOSTS.len()]);
    let backend = scenario::addr(
        six,
        1,
        BACKEND_HOSTS[usize::from(b >> 2) % BACKEND_HOSTS.len()],
    );
    let (src, dst) = if b & 0x80 != 0 {
        (client, backend)
    } else {
        (backend, client)
    };
    let ip = ip_spec(inp, mods, src, dst);
    let l4 = if inp.bool() {
        let (sport, dport) = (port(inp), port(inp));
        let proto = if b & 0x40 != 0 {
            Proto::Tcp
        } else {
            Proto::Udp
        };
        ports_l4(inp, mods, proto, sport, dport)
    } else {
        L4::Raw(inp.pick(&[47, 50, 132, 0, 255]))
    };
    build(inp, mods, &ip, &l4)
}

/// The IP layer: options or extension headers and an odd TTL on request.
fn ip_spec(inp: &mut Input, mods: u8, src: IpAddr, dst: IpAddr) -> IpSpec {
    let ttl = if mods & M_TTL != 0 {
        inp.pick(&[0, 1, 2, 255])
    } else {
        64
    };
    let mut ip = IpSpec::new(src, dst, ttl);
    if mods & M_OPTIONS != 0 {
        if ip.v6() {
            for _ in 0..1 + inp.below(3) {
                let kind = inp.pick(&[0, 60, 43, 44, 51, 60]);
                let b = inp.u8();
                ip.v6_ext.push(Ext {
                    kind,
                    len: b % 4,
                    // Mostly segments left 0 / an atomic fragment header.
                    word: if b < 192 { 0 } else { u16::from(b & 0x0f) },
                });
            }
        } else {
            let n = inp.below(11) * 4;
            // NOPs, or bytes straight from the input.
            ip.v4_opts = if inp.bool() {
                vec![1; n]
            } else {
                inp.bytes(n).to_vec()
            };
        }
    }
    ip
}

/// A TCP, UDP or SCTP header between two ports, with flags and options
/// (for SCTP: chunks).
fn ports_l4(inp: &mut Input, mods: u8, proto: Proto, sport: u16, dport: u16) -> L4 {
    if proto == Proto::Sctp {
        return sctp_l4(inp, mods, sport, dport);
    }
    if proto != Proto::Tcp {
        return L4::Udp {
            sport,
            dport,
            no_csum: mods & M_ODD != 0 && inp.bool(),
        };
    }
    let flags = inp.pick(&[
        SYN,
        ACK,
        PSH | ACK,
        FIN | ACK,
        RST,
        RST | ACK,
        SYN | ACK,
        FIN,
        0,
    ]);
    let flags = if flags == 0 { inp.u8() } else { flags };
    let (seq, ack) = if mods & M_ODD != 0 {
        (inp.u32(), inp.u32())
    } else {
        (u32::from(inp.u8()) << 8, 1)
    };
    let opts = if mods & M_OPTIONS != 0 {
        let n = inp.below(11) * 4;
        inp.bytes(n).to_vec()
    } else {
        Vec::new()
    };
    L4::Tcp {
        sport,
        dport,
        seq,
        ack,
        flags,
        opts,
    }
}

/// SCTP chunk types a packet starts with (RFC 9260 3.2): the handshake,
/// DATA and SACK, the shutdown, ABORT, HEARTBEAT, ERROR.
pub const SCTP_FIRST: [u8; 12] = [1, 2, 10, 11, 0, 3, 7, 8, 14, 6, 4, 9];
/// Chunk types bundled behind the first: DATA, SACK, ABORT (last, as RFC
/// 9260 6.10 wants it), and an INIT (which may not be bundled: malformed).
pub const SCTP_BUNDLED: [u8; 4] = [0, 3, 6, 1];

/// Value bytes of a generated chunk of type `kind`: the fixed part of
/// INIT / INIT ACK, DATA's header and 4 bytes of data, and so on.
pub fn sctp_value_len(kind: u8) -> usize {
    match kind {
        0..=2 => 16,
        3 => 12,
        10 | 4 | 5 => 8,
        7 | 9 => 4,
        _ => 0,
    }
}

/// One chunk: type, flags, length, value, padding.
fn sctp_chunk(out: &mut Vec<u8>, kind: u8, flags: u8, value: &[u8]) {
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// An SCTP packet between two ports: the first chunk's type (byte 1), bits
/// (byte 2: T flag, bundle a second chunk, which one), the verification
/// tag (byte 3, or 4 bytes with `M_ODD`), then each chunk's value bytes.
fn sctp_l4(inp: &mut Input, mods: u8, sport: u16, dport: u16) -> L4 {
    let kind = inp.pick(&SCTP_FIRST);
    let bits = inp.u8();
    let vtag = if mods & M_ODD != 0 {
        inp.u32()
    } else {
        u32::from(inp.u8())
    };
    let mut chunks = Vec::new();
    let value = inp.bytes(sctp_value_len(kind)).to_vec();
    sctp_chunk(&mut chunks, kind, bits & 1, &value);
    if bits & 2 != 0 {
        let second = SCTP_BUNDLED[usize::from(bits >> 2) % SCTP_BUNDLED.len()];
        let value = inp.bytes(sctp_value_len(second)).to_vec();
        sctp_chunk(&mut chunks, second, 0, &value);
    }
    L4::Sctp {
        sport,
        dport,
        vtag,
        chunks,
    }
}

/// A client port: mostly one of a few, so that flows meet again.
fn port(inp: &mut Input) -> u16 {
    let b = inp.u8();
    if b < 240 {
        40000 + u16::from(b % 6)
    } else {
        inp.u16()
    }
}

fn payload(inp: &mut Input, mods: u8) -> Vec<u8> {
    if mods & M_PAYLOAD == 0 {
        return Vec::new();
    }
    let n = usize::from(inp.u8()) * 6;
    (0..n).map(|i| (i * 7) as u8).collect()
}

fn vlan(inp: &mut Input, mods: u8) -> Option<u16> {
    (mods & M_VLAN != 0).then(|| inp.u16() & 0x0fff)
}

/// The Ethernet frame of an IP packet built from `ip` and `l4`.
fn build(inp: &mut Input, mods: u8, ip: &IpSpec, l4: &L4) -> Vec<u8> {
    let payload = payload(inp, mods);
    let pkt = frame::ip_packet(ip, l4, &payload);
    frame::ether(vlan(inp, mods), frame::ip_ethertype(&pkt), &pkt)
}

/// Flips bytes, then optionally makes the checksums right again (so that
/// odd but well-formed packets keep the checksum invariant meaningful),
/// then optionally cuts the frame or pads it past the IP length.
fn mutate(inp: &mut Input, mods: u8, f: &mut Vec<u8>) {
    for _ in 0..1 + inp.below(4) {
        let at = usize::from(inp.u16());
        let x = inp.u8();
        if !f.is_empty() {
            let n = f.len();
            f[at % n] ^= x;
        }
    }
    if mods & M_REFIX != 0 {
        if let Some(ip) = walk::frame_ip(f) {
            csum::fix(f, &ip);
        }
    }
    if mods & M_LENGTH != 0 {
        let b = usize::from(inp.u8());
        if b & 1 == 1 {
            f.truncate(f.len().saturating_sub(b >> 1));
        } else {
            f.resize(f.len() + (b >> 1), 0);
        }
    }
}
