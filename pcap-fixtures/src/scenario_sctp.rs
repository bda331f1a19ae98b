//! `sctp`: SCTP Services, dual-stack, one backend per family, so every
//! expected output follows from the rules alone (no Maglev). Per family:
//! a whole association through the VIP (INIT, INIT ACK, COOKIE ECHO with
//! DATA, COOKIE ACK with SACK, DATA, SACK, HEARTBEAT, SHUTDOWN, SHUTDOWN
//! ACK, SHUTDOWN COMPLETE), a new association on the client's port once
//! the first has closed (ended by the backend's ABORT), a packet outside
//! any association (dropped), one without a chunk (malformed), and the
//! answers of a Service without endpoints (RFC 9260 8.4).
//!
//! Every frame's CRC32c is computed by the packet builder (`crc` crate),
//! never by the dataplane.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::fixture::{Drop, Step, Verdict};
use crate::flow::*;
use crate::packet::*;
use crate::scenario_basic::Script;
use crate::yaml::{EndpointDef, EpState, L4Proto, PortDef, ServiceDef};

const SEED: u64 = u64::from_be_bytes(*b"\0\0\0\0sctp");
/// 2025-03-04 12:00:00 UTC.
const START_S: u64 = 1_741_089_600;
/// Diameter over SCTP (RFC 6733): the Service port, and where the pods listen.
const PORT: u16 = 3868;
const TARGET: u16 = 3869;

fn vip(v6: bool, host: u8) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x19, 3, 0, 0, 0, 0, u16::from(host)))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 19, 3, host))
    }
}

fn host(v6: bool, net: u8, n: u8) -> Host {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0x18,
            u16::from(net),
            0,
            0,
            0,
            0,
            u16::from(n),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 18, net, n))
    };
    Host {
        mac: [0x02, 0x00, 0x00, u8::from(v6), net, n],
        ip,
    }
}

fn backend(v6: bool) -> Host {
    host(v6, 1, 130)
}

fn client(v6: bool) -> Host {
    host(v6, 0, 30)
}

pub fn services() -> Vec<ServiceDef> {
    let port = || PortDef {
        name: "diameter".into(),
        port: PORT,
        proto: L4Proto::Sctp,
        target: TARGET,
        target_name: None,
    };
    let ep = |v6: bool| EndpointDef {
        addr: backend(v6).ip,
        state: EpState::Ready,
        node: "node-a".into(),
        pod: "hss-7c9d5f6b8-x2k4q".into(),
    };
    vec![
        ServiceDef {
            namespace: "telecom".into(),
            name: "hss".into(),
            cluster_ips: vec![vip(false, 10), vip(true, 10)],
            ports: vec![port()],
            endpoints: vec![ep(false), ep(true)],
            affinity_timeout: None,
        },
        ServiceDef {
            namespace: "telecom".into(),
            name: "hss-standby".into(),
            cluster_ips: vec![vip(false, 11), vip(true, 11)],
            ports: vec![port()],
            endpoints: Vec::new(),
            affinity_timeout: None,
        },
    ]
}

fn sctp(vtag: u32, chunks: Vec<SctpChunk>) -> L4 {
    L4::Sctp(Sctp::new(0, 0, vtag, chunks))
}

/// Supported address types (IPv4, IPv6), as a Linux INIT carries them.
const INIT_PARAMS: [u8; 8] = [0x00, 0x0c, 0x00, 0x08, 0x00, 0x05, 0x00, 0x06];

/// A State Cookie parameter holding `cookie`.
fn cookie_param(cookie: &[u8]) -> Vec<u8> {
    let mut p = vec![0x00, 0x07];
    p.extend_from_slice(&((4 + cookie.len()) as u16).to_be_bytes());
    p.extend_from_slice(cookie);
    p
}

fn association(s: &mut Script, v6: bool) {
    let nat = Nat::new(
        client(v6),
        40_000 + u16::from(v6),
        vip(v6, 10),
        PORT,
        backend(v6),
        TARGET,
    );
    let (ctag, btag) = (0x1c11_e470 + u32::from(v6), 0xbac4_e0d0 + u32::from(v6));
    let (ctsn, btsn) = (1000, 7000);
    let cookie: Vec<u8> = (0..36u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let init = |tag| SctpChunk::init(SCTP_INIT, tag, ctsn, &INIT_PARAMS);
    s.fwd(nat.forward(sctp(0, vec![init(ctag)])));
    s.rev(nat.reply(sctp(
        ctag,
        vec![SctpChunk::init(
            SCTP_INIT_ACK,
            btag,
            btsn,
            &cookie_param(&cookie),
        )],
    )));
    s.fwd(nat.forward(sctp(
        btag,
        vec![
            SctpChunk::new(SCTP_COOKIE_ECHO, 0, cookie.clone()),
            SctpChunk::data(ctsn, b"CER Origin-Host: mme1.epc"),
        ],
    )));
    s.rev(nat.reply(sctp(
        ctag,
        vec![SctpChunk::bare(SCTP_COOKIE_ACK, 0), SctpChunk::sack(ctsn)],
    )));
    s.rev(nat.reply(sctp(
        ctag,
        vec![SctpChunk::data(btsn, b"CEA Result-Code: 2001")],
    )));
    s.fwd(nat.forward(sctp(btag, vec![SctpChunk::sack(btsn)])));
    let hb_info = vec![0x00, 0x01, 0x00, 0x0c, 1, 2, 3, 4, 5, 6, 7, 8];
    s.fwd(nat.forward(sctp(
        btag,
        vec![SctpChunk::new(SCTP_HEARTBEAT, 0, hb_info.clone())],
    )));
    s.rev(nat.reply(sctp(ctag, vec![SctpChunk::new(5, 0, hb_info)])));
    s.fwd(nat.forward(sctp(btag, vec![SctpChunk::shutdown(btsn)])));
    s.rev(nat.reply(sctp(ctag, vec![SctpChunk::bare(SCTP_SHUTDOWN_ACK, 0)])));
    s.fwd(nat.forward(sctp(btag, vec![SctpChunk::bare(SCTP_SHUTDOWN_COMPLETE, 0)])));
    // The port again, for a new association: the backend turns it down.
    let ctag2 = ctag ^ 0xffff;
    s.fwd(nat.forward(sctp(0, vec![init(ctag2)])));
    s.rev(nat.reply(sctp(ctag2, vec![SctpChunk::bare(SCTP_ABORT, 0)])));

    // From another port, outside any association: a DATA is dropped...
    let stray = Nat::new(client(v6), 40_100, vip(v6, 10), PORT, backend(v6), TARGET);
    let data = sctp(btag, vec![SctpChunk::data(5, b"late")]);
    s.silent(
        stray.client_packet(data, TTL).frame(),
        Verdict::Dropped(Drop::SctpNoAssociation),
    );
    // ... and a packet without a chunk is malformed.
    s.silent(
        stray.client_packet(sctp(btag, Vec::new()), TTL).frame(),
        Verdict::Dropped(Drop::Malformed),
    );
}

/// RFC 9260 8.4 from a Service without endpoints: the INIT's tag, else the
/// packet's own reflected; a SHUTDOWN ACK gets a SHUTDOWN COMPLETE; an
/// ABORT is never answered.
fn no_endpoints(s: &mut Script, v6: bool) {
    let nat = Nat::new(client(v6), 40_200, vip(v6, 11), PORT, backend(v6), TARGET);
    let tag = 0x0a0b_0c0d;
    for l4 in [
        sctp(0, vec![SctpChunk::init(SCTP_INIT, tag, 1, &INIT_PARAMS)]),
        sctp(tag, vec![SctpChunk::data(1, b"hello")]),
        sctp(tag, vec![SctpChunk::new(SCTP_COOKIE_ECHO, 0, vec![9; 20])]),
        sctp(tag, vec![SctpChunk::bare(SCTP_SHUTDOWN_ACK, 0)]),
    ] {
        let p = nat.client_packet(l4, TTL);
        s.reject(p.frame(), sctp_abort_for(&p));
    }
    for flags in [0, SCTP_FLAG_T] {
        let abort = sctp(tag, vec![SctpChunk::bare(SCTP_ABORT, flags)]);
        s.silent(
            nat.client_packet(abort, TTL).frame(),
            Verdict::Dropped(Drop::SctpNoEndpointsUnanswered),
        );
    }
}

/// All steps of `sctp`, in capture order.
pub fn steps() -> Vec<Step> {
    let mut s = Script::new(Duration::from_secs(START_S), SEED);
    for v6 in [false, true] {
        association(&mut s, v6);
        no_endpoints(&mut s, v6);
    }
    s.rec.steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{check_frame, sctp_crc32c};

    #[test]
    fn every_frame_has_correct_checksums() {
        let steps = steps();
        assert_eq!(steps.len(), 2 * 21);
        for (i, s) in steps.iter().enumerate() {
            assert_eq!(check_frame(&s.input), Ok(()), "input {i}");
            if let Some(o) = &s.output {
                assert_eq!(check_frame(o), Ok(()), "output {i}");
            }
        }
    }

    /// The expected rewrite really differs from the input where NAT
    /// changes it: the port, and so the CRC32c.
    #[test]
    fn forwarded_frames_carry_the_target_port_and_a_new_crc() {
        for s in steps().iter().filter(|s| s.verdict == Verdict::Forwarded) {
            let (i, o) = (&s.input, s.output.as_ref().unwrap());
            let l4 = if i[12..14] == [0x08, 0x00] { 34 } else { 54 };
            assert_eq!(u16::from_be_bytes([i[l4 + 2], i[l4 + 3]]), PORT);
            assert_eq!(u16::from_be_bytes([o[l4 + 2], o[l4 + 3]]), TARGET);
            assert_ne!(i[l4 + 8..l4 + 12], o[l4 + 8..l4 + 12]);
            assert_eq!(
                o[l4 + 8..l4 + 12],
                sctp_crc32c(&o[l4..]).to_le_bytes(),
                "written LSB first"
            );
        }
    }
}
