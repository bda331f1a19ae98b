//! IPv6 packets carrying IPv4-mapped addresses (`::ffff:a.b.c.d`). The
//! dataplane keeps IPv4 addresses in that range, so the family of a packet
//! must come from its IP version, never from an address value:
//! - the wire code (NAT, rejects) writes 16-byte addresses into an IPv6
//!   header whatever their value (it used to write 4 bytes into the 16-byte
//!   field, or panic copying them);
//! - the pipeline never lets such a packet reach an IPv4 Service or flow
//!   (it used to DNAT an IPv6 packet to `::ffff:<IPv4 VIP>` to the IPv4
//!   backend, and reverse-NAT a reply from `::ffff:<backend>`): it is
//!   passed to the kernel untouched.
//!
//! Every transmitted frame is checked by the independent full-recompute
//! verifier (`fixtures::verify::check_frame`).

use dataplane::addr::{Addr, Proto};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::Verdict;
use dataplane::wire::nat::{rewrite_endpoint, translate_icmp_error, End, L4Csum};
use dataplane::wire::parse::{parse, parse_quoted, ParseError};
use dataplane::wire::reject::{icmp_port_unreachable, tcp_reset};
use fixtures::packet::{Eth, Icmp, Ip, Ipv4, Ipv6, Packet, Tcp, Udp, L4, TCP_SYN};
use fixtures::verify::check_frame;

mod common {
    pub mod frames;
}
use common::frames::run;

const VIP4: [u8; 4] = [198, 19, 0, 10];
const CLIENT4: [u8; 4] = [198, 18, 0, 9];
const BACKEND4: [u8; 4] = [198, 18, 1, 10];
const VIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x01];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0x01];
const BACKEND6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0x01];

/// `::ffff:a.b.c.d` as the 16 bytes of an IPv6 header.
fn mapped(v4: [u8; 4]) -> [u8; 16] {
    Addr::from_v4(v4).0
}

fn spec(vip: Addr, proto: Proto, backends: &[Addr]) -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey {
            vip,
            port: 80,
            proto,
        },
        name: "default/web:http".into(),
        backends: backends
            .iter()
            .map(|&addr| BackendSpec {
                addr,
                port: 8080,
                weight: 1,
                state: BackendState::Ready,
            })
            .collect(),
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    }
}

/// IPv4 and IPv6 Services on port 80, TCP and UDP: with one backend each,
/// or without endpoints.
fn table(with_endpoints: bool) -> ServiceTable {
    let (b4, b6) = if with_endpoints {
        (vec![Addr::from_v4(BACKEND4)], vec![Addr::from_v6(BACKEND6)])
    } else {
        (vec![], vec![])
    };
    let mut specs = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        specs.push(spec(Addr::from_v4(VIP4), proto, &b4));
        specs.push(spec(Addr::from_v6(VIP6), proto, &b6));
    }
    ServiceTable::from_specs(specs, TableConfig::default())
}

fn eth() -> Eth {
    Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
}

fn v6(src: [u8; 16], dst: [u8; 16], l4: L4) -> Vec<u8> {
    Packet::new(eth(), Ip::V6(Ipv6::new(src, dst, 64)), l4).frame()
}

/// An ICMPv6 port unreachable from BACKEND6 to CLIENT6 quoting the IPv6
/// packet `src` -> `dst` carrying `l4`.
fn unreachable_about(src: [u8; 16], dst: [u8; 16], l4: L4) -> Vec<u8> {
    let quoted = Packet::new(eth(), Ip::V6(Ipv6::new(src, dst, 64)), l4).ip_bytes();
    let err = Icmp {
        kind: 1,
        code: 4,
        rest: [0; 4],
        body: quoted,
    };
    v6(BACKEND6, CLIENT6, L4::Icmp(err))
}

fn syn(sport: u16, dport: u16) -> L4 {
    L4::Tcp(Tcp::new(sport, dport, 1, 0, TCP_SYN))
}

fn udp(sport: u16, dport: u16) -> L4 {
    L4::Udp(Udp::new(sport, dport, vec![1, 2, 3, 4]))
}

/// `frame` is passed to the kernel untouched and nothing is tracked.
fn assert_passed_untouched(p: &mut Pipeline, table: &ServiceTable, frame: &[u8], what: &str) {
    let before = *p.counters();
    let (v, out) = run(p, table, frame);
    assert_eq!(v, Verdict::Pass, "{what}");
    assert_eq!(out, frame, "{what}: a passed frame must not be rewritten");
    let c = p.counters();
    assert_eq!(c.passed, before.passed + 1, "{what}");
    assert_eq!(c.rejected, before.rejected, "{what}");
    assert_eq!(c.forwarded, before.forwarded, "{what}");
    assert_eq!(c.reversed, before.reversed, "{what}");
    assert_eq!(c.flows, before.flows, "{what}");
}

#[test]
fn parser_refuses_ipv6_with_a_mapped_source_or_destination() {
    for (src, dst) in [(mapped(CLIENT4), VIP6), (CLIENT6, mapped(VIP4))] {
        assert_eq!(
            parse(&v6(src, dst, syn(40000, 80))),
            Err(ParseError::V4Mapped)
        );
    }
    assert!(parse(&v6(CLIENT6, VIP6, syn(40000, 80))).is_ok());
}

/// The fuzzer's crash: a mapped source or destination to a Service
/// without endpoints panicked building the reject (TCP RST and ICMPv6
/// port unreachable paths).
#[test]
fn mapped_addresses_to_a_service_without_endpoints_are_passed_not_rejected() {
    let table = table(false);
    let mut p = Pipeline::new(PipelineConfig::default());
    for l4 in [syn(40000, 80), udp(40000, 80)] {
        let cases = [
            (mapped(CLIENT4), VIP6, "mapped source to an IPv6 VIP"),
            (CLIENT6, mapped(VIP4), "IPv6 to a mapped IPv4 VIP"),
            (mapped(CLIENT4), mapped(VIP4), "mapped to mapped"),
        ];
        for (src, dst, what) in cases {
            assert_passed_untouched(&mut p, &table, &v6(src, dst, l4.clone()), what);
        }
    }
    // The IPv4 and IPv6 packets of the same flows are still rejected.
    let v4 = Packet::new(eth(), Ip::V4(Ipv4::new(CLIENT4, VIP4, 64)), syn(40000, 80));
    for frame in [v4.frame(), v6(CLIENT6, VIP6, syn(40000, 80))] {
        let (v, out) = run(&mut p, &table, &frame);
        assert_eq!(v, Verdict::Tx(0));
        check_frame(&out).unwrap();
    }
    assert_eq!(p.counters().rejected, 2);
}

/// An IPv6 packet to `::ffff:<IPv4 VIP>` is not the IPv4 Service's: it
/// used to be DNATed with the 4-byte backend written over the first bytes
/// of the IPv6 destination.
#[test]
fn ipv6_to_a_mapped_vip_does_not_reach_the_ipv4_service() {
    let table = table(true);
    let mut p = Pipeline::new(PipelineConfig::default());
    for l4 in [syn(40000, 80), udp(40000, 80)] {
        let frame = v6(CLIENT6, mapped(VIP4), l4);
        assert_passed_untouched(&mut p, &table, &frame, "IPv6 to ::ffff:VIP");
    }
    assert_eq!(p.conntrack().len(), 0);
}

/// A reply from `::ffff:<backend>` to `::ffff:<client>` does not match the
/// IPv4 flow client -> VIP -> backend (it used to be reverse-NATed), and
/// neither does an ICMPv6 error quoting such a packet.
#[test]
fn ipv6_with_mapped_addresses_matches_no_ipv4_flow() {
    let table = table(true);
    let mut p = Pipeline::new(PipelineConfig::default());
    for l4 in [syn(40000, 80), udp(40001, 80)] {
        let ip = Ip::V4(Ipv4::new(CLIENT4, VIP4, 64));
        let (v, out) = run(&mut p, &table, &Packet::new(eth(), ip, l4).frame());
        assert_eq!(v, Verdict::Tx(0));
        check_frame(&out).unwrap();
    }
    assert_eq!(p.counters().forwarded, 2);
    let tcp_reply = L4::Tcp(Tcp::new(8080, 40000, 7, 2, TCP_SYN | 0x10));
    let reply = v6(mapped(BACKEND4), mapped(CLIENT4), tcp_reply);
    assert_passed_untouched(&mut p, &table, &reply, "TCP reply from ::ffff:backend");
    let reply = v6(mapped(BACKEND4), mapped(CLIENT4), udp(8080, 40001));
    assert_passed_untouched(&mut p, &table, &reply, "UDP reply from ::ffff:backend");

    // A router between gateway and backend reports client -> backend as
    // IPv6 with mapped addresses: the outer header is plain IPv6.
    let frame = unreachable_about(mapped(CLIENT4), mapped(BACKEND4), udp(40001, 8080));
    let outer = parse(&frame).unwrap();
    assert_eq!(parse_quoted(&frame, &outer), Err(ParseError::V4Mapped));
    assert_passed_untouched(&mut p, &table, &frame, "ICMPv6 error quoting mapped");
    assert_eq!(p.counters().reversed, 0);
}

/// The wire layer on its own: given an IPv6 packet (`Parsed::v6`), every
/// address it writes is 16 bytes, whatever the value. The parser keeps
/// mapped values out of parsed IPv6 packets; this holds without it.
#[test]
fn rejects_of_an_ipv6_packet_write_16_byte_addresses_whatever_their_value() {
    for l4 in [syn(40000, 80), udp(40000, 80)] {
        let frame = v6(CLIENT6, VIP6, l4);
        let mut p = parse(&frame).unwrap();
        p.src = Addr::from_v4(CLIENT4);
        let mut buf = vec![0u8; 2048];
        buf[..frame.len()].copy_from_slice(&frame);
        let n = if p.proto == 6 {
            tcp_reset(&mut buf, &p)
        } else {
            icmp_port_unreachable(&mut buf, &p)
        };
        let out = &buf[..n];
        check_frame(out).unwrap();
        // The answer goes back to the (mapped) address the packet came from.
        assert_eq!(out[12..14], [0x86, 0xdd], "still IPv6");
        assert_eq!(out[22..38], VIP6, "answer source");
        assert_eq!(out[38..54], mapped(CLIENT4), "answer destination");
    }
}

#[test]
fn nat_of_an_ipv6_packet_writes_16_byte_addresses_whatever_their_value() {
    let frame = v6(CLIENT6, VIP6, syn(40000, 80));
    let p = parse(&frame).unwrap();
    let to = Addr::from_v4(BACKEND4);
    for l4csum in [L4Csum::Full, L4Csum::Partial] {
        let mut buf = frame.clone();
        rewrite_endpoint(&mut buf, &p, End::Dst, &to, 8080, l4csum);
        assert_eq!(buf[38..54], mapped(BACKEND4), "{l4csum:?}");
        assert_eq!(buf[22..38], CLIENT6, "{l4csum:?}");
        if l4csum == L4Csum::Full {
            check_frame(&buf).unwrap();
        }
    }

    // ICMPv6 error from the backend about client -> backend, translated
    // back to the VIP (here a mapped value): outer source and quoted
    // destination are both 16-byte fields.
    let mut buf = unreachable_about(CLIENT6, BACKEND6, udp(40000, 8080));
    let outer = parse(&buf).unwrap();
    let q = parse_quoted(&buf, &outer).unwrap();
    let vip = Addr::from_v4(VIP4);
    let backend = Addr::from_v6(BACKEND6);
    translate_icmp_error(&mut buf, &outer, &q, End::Dst, &backend, &vip, 80);
    check_frame(&buf).unwrap();
    assert_eq!(buf[22..38], mapped(VIP4), "outer source");
    let qd = q.l3_off + 24;
    assert_eq!(buf[qd..qd + 16], mapped(VIP4), "quoted destination");
    assert_eq!(buf[q.l4_off + 2..q.l4_off + 4], 80u16.to_be_bytes());
}
