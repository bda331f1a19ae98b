//! SCTP Services through the real pipeline, with frames and expectations
//! built by the fixtures crate (its own builder and CRC32c, the `crc`
//! crate): parsing and malformed packets, the NAT round trip (property),
//! association states and their timeouts, what opens an association, the
//! ABORT answers of a Service without endpoints, ICMP errors quoting SCTP,
//! and the owner worker of both directions.

use std::net::IpAddr;

use dataplane::addr::{Addr, Proto};
use dataplane::conntrack::SctpState;
use dataplane::pipeline::Pipeline;
use dataplane::service::{
    Affinity, BackendSpec, BackendState, NoEndpoints, ServiceKey, ServiceSpec,
};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::parse::{parse, ParseError, L4 as PL4};
use dataplane::wire::sctp::Chunks;
use fixtures::flow::{sctp_abort_for, Host, Nat, TTL};
use fixtures::packet::*;
use fixtures::verify::{check_frame, sctp_crc32c};
use proptest::prelude::*;

mod common {
    pub mod frames;
}
use common::frames::small_pipeline;

const VPORT: u16 = 3868;
const BPORT: u16 = 3869;

fn ip(v6: bool, net: u8, host: u8) -> IpAddr {
    if v6 {
        IpAddr::V6(std::net::Ipv6Addr::new(
            0xfd00,
            0x18 + u16::from(net >> 7),
            u16::from(net & 0x7f),
            0,
            0,
            0,
            0,
            u16::from(host),
        ))
    } else {
        IpAddr::V4(std::net::Ipv4Addr::new(
            198,
            18 + (net >> 7),
            net & 0x7f,
            host,
        ))
    }
}

fn vip(v6: bool) -> IpAddr {
    ip(v6, 0x80, 10)
}

fn empty_vip(v6: bool) -> IpAddr {
    ip(v6, 0x80, 11)
}

fn client(v6: bool) -> Host {
    Host {
        mac: [2, 0, 0, 0, 0, 9],
        ip: ip(v6, 0, 9),
    }
}

fn backend(v6: bool) -> Host {
    Host {
        mac: [2, 0, 0, 0, 1, 10],
        ip: ip(v6, 1, 10),
    }
}

/// SCTP VIP:3868 -> backend:3869 and an SCTP VIP without endpoints, in
/// both families; a TCP Service on the same VIP and port number.
fn table() -> ServiceTable {
    let mut specs = Vec::new();
    for v6 in [false, true] {
        let spec = |vip: IpAddr, proto, backends: Vec<BackendSpec>| ServiceSpec {
            key: ServiceKey {
                vip: Addr::from(vip),
                port: VPORT,
                proto,
            },
            name: "telecom/hss:diameter".into(),
            backends,
            affinity: Affinity::None,
            no_endpoints: NoEndpoints::Reject,
            forwarding: Default::default(),
            source_ranges: Vec::new(),
        };
        let be = |port| BackendSpec {
            addr: Addr::from(backend(v6).ip),
            port,
            weight: 1,
            state: BackendState::Ready,
        };
        specs.push(spec(vip(v6), Proto::Sctp, vec![be(BPORT)]));
        specs.push(spec(vip(v6), Proto::Tcp, vec![be(8080)]));
        specs.push(spec(empty_vip(v6), Proto::Sctp, vec![]));
    }
    ServiceTable::from_specs(specs, TableConfig::default())
}

fn nat(v6: bool, cport: u16) -> Nat {
    Nat::new(client(v6), cport, vip(v6), VPORT, backend(v6), BPORT)
}

fn sctp(vtag: u32, chunks: Vec<SctpChunk>) -> L4 {
    L4::Sctp(Sctp::new(0, 0, vtag, chunks))
}

fn init(tag: u32) -> L4 {
    sctp(0, vec![SctpChunk::init(SCTP_INIT, tag, 1, &[])])
}

/// Runs `frame` at dataplane second `now`; returns the verdict and the frame.
fn at(p: &mut Pipeline, t: &ServiceTable, frame: &[u8], now: u32) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let (v, n) = p.process_frame(t, &mut buf, frame.len(), now);
    buf.truncate(n);
    (v, buf)
}

/// `frame` with its SCTP packet cut to `keep` bytes, IP lengths (and the
/// IPv4 header checksum) made to agree: a packet short at the SCTP layer.
fn cut_sctp(frame: &[u8], v6: bool, keep: usize) -> Vec<u8> {
    let l4 = if v6 { 14 + 40 } else { 14 + 20 };
    let mut f = frame[..l4 + keep].to_vec();
    if v6 {
        f[18..20].copy_from_slice(&(keep as u16).to_be_bytes());
    } else {
        f[16..18].copy_from_slice(&((20 + keep) as u16).to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let c = internet_checksum_of(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    f
}

fn internet_checksum_of(b: &[u8]) -> u16 {
    fixtures::verify::internet_checksum(&[b])
}

#[test]
fn parse_reads_ports_tag_and_chunks_and_refuses_short_packets() {
    for v6 in [false, true] {
        let data = sctp(
            0x0102_0304,
            vec![
                SctpChunk::new(SCTP_COOKIE_ECHO, 0, vec![7; 8]),
                SctpChunk::data(1, b"x"),
            ],
        );
        let f = nat(v6, 40000).client_packet(data, TTL).frame();
        let p = parse(&f).unwrap();
        assert_eq!(p.proto, 132);
        assert_eq!(
            p.l4,
            PL4::Sctp {
                sport: 40000,
                dport: VPORT,
                vtag: 0x0102_0304,
                chunk: SCTP_COOKIE_ECHO,
                chunk_flags: 0,
                chunks: Chunks(Chunks::COOKIE_ECHO),
            }
        );
        let t = table();
        for keep in [0, 4, 8, 11, 12, 15] {
            let short = cut_sctp(&f, v6, keep);
            assert_eq!(parse(&short), Err(ParseError::Malformed), "keep {keep}");
            let mut p = small_pipeline();
            let (v, out) = at(&mut p, &t, &short, 1);
            assert_eq!(v, Verdict::Drop(DropReason::Malformed));
            assert_eq!(out, short);
            assert_eq!(p.counters().dropped(DropReason::Malformed), 1);
        }
    }
}

/// A whole association; returns the pipeline, and checks every output
/// against the independently built rewrite.
fn associate(t: &ServiceTable, v6: bool, cport: u16, now: u32) -> Pipeline {
    let mut p = small_pipeline();
    let n = nat(v6, cport);
    let steps: Vec<(bool, L4, SctpState)> = vec![
        (true, init(11), SctpState::CookieWait),
        (
            false,
            sctp(
                11,
                vec![SctpChunk::init(
                    SCTP_INIT_ACK,
                    22,
                    5,
                    &[0, 7, 0, 8, 1, 2, 3, 4],
                )],
            ),
            SctpState::CookieWait,
        ),
        (
            true,
            sctp(
                22,
                vec![SctpChunk::new(SCTP_COOKIE_ECHO, 0, vec![1, 2, 3, 4])],
            ),
            SctpState::CookieEchoed,
        ),
        (
            false,
            sctp(11, vec![SctpChunk::bare(SCTP_COOKIE_ACK, 0)]),
            SctpState::Established,
        ),
        (
            true,
            sctp(22, vec![SctpChunk::data(1, b"ping")]),
            SctpState::Established,
        ),
        (
            false,
            sctp(11, vec![SctpChunk::sack(1)]),
            SctpState::Established,
        ),
    ];
    for (i, (fwd, l4, state)) in steps.into_iter().enumerate() {
        let (input, want) = if fwd { n.forward(l4) } else { n.reply(l4) };
        let (v, out) = at(&mut p, t, &input, now);
        assert_eq!(v, Verdict::Tx(0), "step {i}");
        assert_eq!(out, want, "step {i}: the rewrite");
        assert_eq!(check_frame(&out), Ok(()), "step {i}");
        let e = p.conntrack().iter().next().unwrap();
        assert_eq!(e.sctp(), Some(state), "step {i}");
        assert_eq!(e.tcp(), None);
    }
    p
}

#[test]
fn an_association_is_tracked_to_established_and_assured() {
    let t = table();
    for v6 in [false, true] {
        let p = associate(&t, v6, 40000, 1);
        let e = p.conntrack().iter().next().unwrap();
        assert!(e.assured() && e.replied());
        assert_eq!(e.original.proto, Proto::Sctp);
        assert_eq!(e.deadline(), 1 + 210);
        assert_eq!(p.counters().flows, 1);
    }
}

#[test]
fn shutdown_closes_and_abort_closes_with_their_timeouts() {
    let t = table();
    for v6 in [false, true] {
        let mut p = associate(&t, v6, 40000, 1);
        let n = nat(v6, 40000);
        let step = |p: &mut Pipeline, fwd: bool, l4: L4, now: u32| {
            let (input, want) = if fwd { n.forward(l4) } else { n.reply(l4) };
            let (v, out) = at(p, &t, &input, now);
            assert_eq!((v, out), (Verdict::Tx(0), want));
            *p.conntrack().iter().next().unwrap()
        };
        let e = step(&mut p, false, sctp(11, vec![SctpChunk::shutdown(1)]), 2);
        assert_eq!(
            (e.sctp(), e.deadline()),
            (Some(SctpState::ShutdownRecd), 2 + 3)
        );
        let e = step(
            &mut p,
            true,
            sctp(22, vec![SctpChunk::bare(SCTP_SHUTDOWN_ACK, 0)]),
            3,
        );
        assert_eq!(
            (e.sctp(), e.deadline()),
            (Some(SctpState::ShutdownAckSent), 3 + 3)
        );
        let e = step(
            &mut p,
            false,
            sctp(11, vec![SctpChunk::bare(SCTP_SHUTDOWN_COMPLETE, 0)]),
            4,
        );
        assert_eq!((e.sctp(), e.deadline()), (Some(SctpState::Closed), 4 + 10));
        assert!(!e.assured(), "a closed association may be evicted");

        // An ABORT from either side closes at once.
        let mut p = associate(&t, v6, 40001, 1);
        let n = nat(v6, 40001);
        let (input, want) = n.forward(sctp(
            22,
            vec![SctpChunk::sack(3), SctpChunk::bare(SCTP_ABORT, 0)],
        ));
        assert_eq!(at(&mut p, &t, &input, 2), (Verdict::Tx(0), want));
        let e = p.conntrack().iter().next().unwrap();
        assert_eq!((e.sctp(), e.deadline()), (Some(SctpState::Closed), 2 + 10));
    }
}

/// Only an INIT opens an association; an INIT that gets no COOKIE ECHO
/// within the COOKIE_WAIT timeout (3 s) is forgotten, and the late COOKIE
/// ECHO is then dropped like any packet outside an association.
#[test]
fn only_an_init_opens_and_a_handshake_times_out() {
    let t = table();
    for v6 in [false, true] {
        let n = nat(v6, 40000);
        let mut p = small_pipeline();
        for l4 in [
            sctp(5, vec![SctpChunk::data(1, b"x")]),
            sctp(5, vec![SctpChunk::new(SCTP_COOKIE_ECHO, 0, vec![1; 4])]),
            sctp(5, vec![SctpChunk::bare(SCTP_ABORT, 0)]),
            sctp(5, vec![SctpChunk::bare(SCTP_SHUTDOWN_COMPLETE, 0)]),
        ] {
            let input = n.client_packet(l4, TTL).frame();
            let (v, out) = at(&mut p, &t, &input, 1);
            assert_eq!(v, Verdict::Drop(DropReason::SctpNoAssociation));
            assert_eq!(out, input);
        }
        assert_eq!(p.conntrack().len(), 0);
        assert_eq!(p.counters().dropped(DropReason::SctpNoAssociation), 4);

        let (input, want) = n.forward(init(11));
        assert_eq!(at(&mut p, &t, &input, 10), (Verdict::Tx(0), want));
        let e = *p.conntrack().iter().next().unwrap();
        assert_eq!((e.sctp(), e.deadline()), (Some(SctpState::CookieWait), 13));
        let echo = n
            .client_packet(
                sctp(22, vec![SctpChunk::new(SCTP_COOKIE_ECHO, 0, vec![1; 4])]),
                TTL,
            )
            .frame();
        let (v, _) = at(&mut p, &t, &echo, 13);
        assert_eq!(v, Verdict::Drop(DropReason::SctpNoAssociation));
        assert_eq!(p.conntrack().len(), 0);
    }
}

/// RFC 9260 8.4 answers from a Service without endpoints, compared with
/// the fixtures' independent construction, plus the fields spelled out.
#[test]
fn a_service_without_endpoints_answers_with_abort() {
    let t = table();
    for v6 in [false, true] {
        let n = Nat::new(client(v6), 40000, empty_vip(v6), VPORT, backend(v6), BPORT);
        let mut p = small_pipeline();
        let cases: Vec<(L4, u8, u8, u32)> = vec![
            (init(0xabcd_0001), SCTP_ABORT, 0, 0xabcd_0001),
            (
                sctp(0x77, vec![SctpChunk::data(1, b"x")]),
                SCTP_ABORT,
                SCTP_FLAG_T,
                0x77,
            ),
            (
                sctp(0x78, vec![SctpChunk::new(SCTP_COOKIE_ECHO, 0, vec![1; 4])]),
                SCTP_ABORT,
                SCTP_FLAG_T,
                0x78,
            ),
            (
                sctp(0x79, vec![SctpChunk::bare(SCTP_SHUTDOWN_ACK, 0)]),
                SCTP_SHUTDOWN_COMPLETE,
                SCTP_FLAG_T,
                0x79,
            ),
        ];
        for (l4, kind, flags, tag) in cases {
            let input = n.client_packet(l4, TTL);
            let (v, out) = at(&mut p, &t, &input.frame(), 1);
            assert_eq!(v, Verdict::Tx(0));
            assert_eq!(out, sctp_abort_for(&input));
            assert_eq!(check_frame(&out), Ok(()));
            let q = parse(&out).unwrap();
            assert_eq!(
                (q.src, q.dst),
                (Addr::from(empty_vip(v6)), Addr::from(client(v6).ip))
            );
            let PL4::Sctp {
                sport,
                dport,
                vtag,
                chunk,
                chunk_flags,
                ..
            } = q.l4
            else {
                panic!("not SCTP: {q:?}")
            };
            assert_eq!((sport, dport), (VPORT, 40000));
            assert_eq!((vtag, chunk, chunk_flags), (tag, kind, flags));
            assert_eq!(q.l4_len(), 16);
            let seg = &out[q.l4_off..];
            assert_eq!(seg[8..12], sctp_crc32c(seg).to_le_bytes());
            assert_eq!(&out[..6], &client(v6).mac, "back to the sender's MAC");
        }
        // An ABORT or SHUTDOWN COMPLETE is never answered.
        for kind in [SCTP_ABORT, SCTP_SHUTDOWN_COMPLETE] {
            for flags in [0, SCTP_FLAG_T] {
                let input = n
                    .client_packet(sctp(9, vec![SctpChunk::bare(kind, flags)]), TTL)
                    .frame();
                let (v, out) = at(&mut p, &t, &input, 1);
                assert_eq!(v, Verdict::Drop(DropReason::SctpNoEndpointsUnanswered));
                assert_eq!(out, input);
            }
        }
        let c = p.counters();
        assert_eq!(
            (c.rejected, c.dropped(DropReason::SctpNoEndpointsUnanswered)),
            (4, 4)
        );
        assert_eq!(p.conntrack().len(), 0);
    }
}

/// An ICMP error from the backend's side about a forwarded SCTP packet is
/// translated for the client: quoted destination back to VIP:port, outer
/// and quoted IPv4 checksums and the ICMP checksum right (the quoted CRC32c
/// is not fixed, see `wire::nat`).
#[test]
fn icmp_errors_quoting_sctp_are_translated() {
    let t = table();
    for v6 in [false, true] {
        let mut p = associate(&t, v6, 40000, 1);
        let n = nat(v6, 40000);
        let forwarded = n.dnat(&n.client_packet(sctp(22, vec![SctpChunk::data(2, b"big")]), TTL));
        let (kind, code) = if v6 { (1, 4) } else { (3, 3) };
        let err = Packet::new(
            Eth::new(backend(v6).mac, fixtures::flow::GW_MAC),
            fixtures::flow::ip_header(backend(v6).ip, client(v6).ip, 64),
            L4::Icmp(Icmp {
                kind,
                code,
                rest: [0; 4],
                body: forwarded.ip_bytes(),
            }),
        )
        .frame();
        let (v, out) = at(&mut p, &t, &err, 2);
        assert_eq!(v, Verdict::Tx(0));
        assert_eq!(check_frame(&out), Ok(()));
        let outer = parse(&out).unwrap();
        let q = dataplane::wire::parse::parse_quoted(&out, &outer).unwrap();
        assert_eq!((q.proto, q.dst, q.dport), (132, Addr::from(vip(v6)), VPORT));
        assert_eq!((q.src, q.sport), (Addr::from(client(v6).ip), 40000));
        assert_eq!(p.counters().reversed, 4);
    }
}

/// An INIT flood churns through its own embryonic entries and never
/// pushes out an established association (assured once COOKIE ACK came
/// back), as a SYN flood never pushes out an established TCP flow.
#[test]
fn an_init_flood_does_not_evict_established_associations() {
    let t = table();
    let mut p = Pipeline::new(dataplane::pipeline::PipelineConfig {
        conntrack: dataplane::conntrack::Config {
            capacity: 8,
            ..Default::default()
        },
        ..Default::default()
    });
    let est: Vec<Nat> = (0..4).map(|k| nat(k % 2 == 1, 41000 + k)).collect();
    for n in &est {
        for (fwd, l4) in [
            (true, init(11)),
            (
                false,
                sctp(11, vec![SctpChunk::init(SCTP_INIT_ACK, 22, 5, &[])]),
            ),
            (
                true,
                sctp(22, vec![SctpChunk::new(SCTP_COOKIE_ECHO, 0, vec![1; 4])]),
            ),
            (false, sctp(11, vec![SctpChunk::bare(SCTP_COOKIE_ACK, 0)])),
        ] {
            let (input, want) = if fwd { n.forward(l4) } else { n.reply(l4) };
            assert_eq!(at(&mut p, &t, &input, 1), (Verdict::Tx(0), want));
        }
    }
    for k in 0..200u16 {
        let (input, want) = nat(k % 2 == 1, 50000 + k).forward(init(u32::from(k) + 1));
        assert_eq!(
            at(&mut p, &t, &input, 2),
            (Verdict::Tx(0), want),
            "INIT {k}"
        );
    }
    let st = p.conntrack().stats();
    assert!(st.evicted_unreplied >= 190, "{st:?}");
    for n in &est {
        let (input, want) = n.forward(sctp(22, vec![SctpChunk::data(1, b"still here")]));
        assert_eq!(at(&mut p, &t, &input, 3), (Verdict::Tx(0), want));
    }
    let assured = p
        .conntrack()
        .iter()
        .filter(|e| e.assured() && e.sctp() == Some(SctpState::Established))
        .count();
    assert_eq!(assured, 4);
}

/// Both directions of an SCTP flow belong to one worker, as TCP's do.
#[test]
fn both_directions_have_one_owner() {
    let t = table();
    for v6 in [false, true] {
        for cport in 40000..40064 {
            let n = nat(v6, cport);
            let (fwd, _) = n.forward(init(1));
            let (rev, _) = n.reply(sctp(1, vec![SctpChunk::sack(1)]));
            for workers in [2, 3, 8] {
                assert_eq!(
                    dataplane::steer::owner(&fwd, &t, workers),
                    dataplane::steer::owner(&rev, &t, workers),
                    "port {cport}, {workers} workers"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Forward then reply restores the client's view exactly; every frame
    /// written equals the independent rewrite, CRC32c included.
    #[test]
    fn nat_round_trip(
        v6 in any::<bool>(),
        cport in 1024u16..65535,
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        vlan in proptest::option::of(1u16..4094),
        ctag in 1u32..,
        btag in 1u32..,
    ) {
        let t = table();
        let mut p = small_pipeline();
        let mut n = nat(v6, cport);
        n.vlan = vlan;
        let (input, want) = n.forward(init(ctag));
        prop_assert_eq!(at(&mut p, &t, &input, 1), (Verdict::Tx(0), want));
        let (input, want) = n.reply(sctp(ctag, vec![SctpChunk::init(SCTP_INIT_ACK, btag, 9, &[])]));
        prop_assert_eq!(at(&mut p, &t, &input, 1), (Verdict::Tx(0), want));
        let data = sctp(btag, vec![SctpChunk::data(1, &payload)]);
        let (input, want) = n.forward(data.clone());
        let (v, out) = at(&mut p, &t, &input, 1);
        prop_assert_eq!(v, Verdict::Tx(0));
        prop_assert_eq!(check_frame(&out), Ok(()));
        prop_assert_eq!(&out, &want);
        let back = sctp(ctag, vec![SctpChunk::data(9, &payload)]);
        let (input, want) = n.reply(back);
        let (v, out) = at(&mut p, &t, &input, 1);
        prop_assert_eq!(v, Verdict::Tx(0));
        prop_assert_eq!(check_frame(&out), Ok(()));
        prop_assert_eq!(out, want);
    }
}
