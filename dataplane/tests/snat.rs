//! Source NAT (masquerade): a Service forwarding with `snat` reaches its
//! backend from the gateway's address and a port of the worker's share,
//! and the backend's replies (and ICMP errors) come back to that address
//! and are reversed to the client. Whatever the mode, a pod calling its
//! own Service (hairpin) and a DNAT flow whose replies would arrive as
//! another live flow's (one client port to two VIPs of one backend) are
//! source-NATed; with no free port the flow is dropped, counted, never
//! given a live tuple.
//!
//! Expected frames are built with the fixtures' packet builder from the
//! addresses and ports alone, not by the dataplane; every written frame
//! passes the fixtures' independent checksum check.

use dataplane::addr::{Addr, Proto};
use dataplane::pipeline::{NodeAddrs, Pipeline, PipelineConfig, SnatConfig};
use dataplane::service::{
    Affinity, BackendSpec, BackendState, Forwarding, NoEndpoints, ServiceKey, ServiceSpec,
};
use dataplane::steer;
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::{DropReason, Verdict};
use fixtures::packet::{Eth, Icmp, Ip, Ipv4, Ipv6, Packet, Tcp, Udp, L4, TCP_ACK, TCP_SYN};
use fixtures::verify::check_frame;

mod common {
    pub mod frames;
}
use common::frames::{run, run_at};

#[derive(Clone, Copy, Debug)]
enum Family {
    V4,
    V6,
}

struct Addrs {
    client: Addr,
    vip: Addr,
    vip2: Addr,
    backend: Addr,
    gateway: Addr,
}

fn addrs(f: Family) -> Addrs {
    match f {
        Family::V4 => Addrs {
            client: Addr::from_v4([198, 18, 0, 9]),
            vip: Addr::from_v4([198, 19, 0, 10]),
            vip2: Addr::from_v4([198, 19, 0, 11]),
            backend: Addr::from_v4([198, 18, 1, 10]),
            gateway: Addr::from_v4([198, 18, 0, 1]),
        },
        Family::V6 => {
            let a = |net: u8, last: u8| {
                let mut b = [0u8; 16];
                b[0] = 0xfd;
                b[1] = net;
                b[15] = last;
                Addr::from_v6(b)
            };
            Addrs {
                client: a(0, 9),
                vip: a(0xff, 0x10),
                vip2: a(0xff, 0x11),
                backend: a(1, 0x10),
                gateway: a(0, 1),
            }
        }
    }
}

const BPORT: u16 = 8080;
const CPORT: u16 = 40000;

fn spec(vip: Addr, backend: Addr, proto: Proto, forwarding: Forwarding) -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey {
            vip,
            port: 80,
            proto,
        },
        name: format!("default/web-{vip}:http"),
        backends: vec![BackendSpec {
            addr: backend,
            port: BPORT,
            weight: 1,
            state: BackendState::Ready,
        }],
        affinity: Affinity::None,
        no_endpoints: NoEndpoints::Reject,
        source_ranges: Vec::new(),
        forwarding,
    }
}

fn table(specs: Vec<ServiceSpec>) -> ServiceTable {
    ServiceTable::from_specs(specs, TableConfig::default())
}

/// A pipeline that source-NATs from the gateway's addresses with `ports`,
/// as worker `worker` of `workers`.
fn pipeline(ports: (u16, u16), worker: usize, workers: usize) -> Pipeline {
    Pipeline::new(PipelineConfig {
        conntrack: dataplane::conntrack::Config {
            capacity: 1024,
            ..Default::default()
        },
        snat: SnatConfig {
            addrs: NodeAddrs {
                v4: Some(addrs(Family::V4).gateway),
                v6: Some(addrs(Family::V6).gateway),
            },
            ports,
        },
        worker,
        workers,
        ..Default::default()
    })
}

fn ip(f: Family, src: Addr, dst: Addr, ttl: u8) -> Ip {
    match f {
        Family::V4 => Ip::V4(Ipv4::new(src.v4_octets(), dst.v4_octets(), ttl)),
        Family::V6 => Ip::V6(Ipv6::new(src.0, dst.0, ttl)),
    }
}

fn eth() -> Eth {
    Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
}

/// `src`:`sport` -> `dst`:`dport` carrying `l4`.
fn frame(f: Family, src: (Addr, u16), dst: (Addr, u16), l4: L4, ttl: u8) -> Vec<u8> {
    Packet::new(eth(), ip(f, src.0, dst.0, ttl), l4.with_ports(src.1, dst.1)).frame()
}

fn tcp(flags: u8) -> L4 {
    L4::Tcp(Tcp::new(0, 0, 1000, 2000, flags))
}

fn udp() -> L4 {
    L4::Udp(Udp::new(0, 0, b"query".to_vec()))
}

/// The source port a translated IPv4/IPv6 TCP or UDP frame carries.
fn sport_of(f: Family, frame: &[u8]) -> u16 {
    let l4 = 14
        + match f {
            Family::V4 => 20,
            Family::V6 => 40,
        };
    u16::from_be_bytes([frame[l4], frame[l4 + 1]])
}

fn snat_mode_both_ways(f: Family, l4: fn() -> L4, proto: Proto) {
    let a = addrs(f);
    let t = table(vec![spec(a.vip, a.backend, proto, Forwarding::Snat)]);
    let mut p = pipeline((61000, 65535), 0, 1);

    let (v, out) = run(
        &mut p,
        &t,
        &frame(f, (a.client, CPORT), (a.vip, 80), l4(), 64),
    );
    assert_eq!(v, Verdict::Tx(0), "{f:?} {proto}");
    let port = sport_of(f, &out);
    assert!((61000..=65535).contains(&port), "{f:?}: source port {port}");
    let want = frame(f, (a.gateway, port), (a.backend, BPORT), l4(), 63);
    assert_eq!(out, want, "{f:?} {proto}: from the gateway to the backend");
    check_frame(&out).unwrap();

    let reply = frame(f, (a.backend, BPORT), (a.gateway, port), l4(), 64);
    let (v, out) = run(&mut p, &t, &reply);
    assert_eq!(v, Verdict::Tx(0));
    let want = frame(f, (a.vip, 80), (a.client, CPORT), l4(), 63);
    assert_eq!(out, want, "{f:?} {proto}: the reply reversed to the client");
    check_frame(&out).unwrap();

    // The next packet of the flow keeps its port.
    let (_, out) = run(
        &mut p,
        &t,
        &frame(f, (a.client, CPORT), (a.vip, 80), l4(), 64),
    );
    assert_eq!(sport_of(f, &out), port);
    assert_eq!(p.counters().snat_flows, 1);
    assert_eq!(p.conntrack().len(), 1);
}

#[test]
fn v4_snat_service_tcp_and_udp_both_ways() {
    snat_mode_both_ways(Family::V4, || tcp(TCP_SYN), Proto::Tcp);
    snat_mode_both_ways(Family::V4, udp, Proto::Udp);
}

#[test]
fn v6_snat_service_tcp_and_udp_both_ways() {
    snat_mode_both_ways(Family::V6, || tcp(TCP_SYN), Proto::Tcp);
    snat_mode_both_ways(Family::V6, udp, Proto::Udp);
}

/// One client port to two VIPs of one backend: DNAT would give both flows
/// the reply tuple backend:8080 -> client:40000. The second is
/// source-NATed, and each reply reaches its own VIP.
fn clash_is_source_nated(f: Family) {
    let a = addrs(f);
    let t = table(vec![
        spec(a.vip, a.backend, Proto::Tcp, Forwarding::Dnat),
        spec(a.vip2, a.backend, Proto::Tcp, Forwarding::Dnat),
    ]);
    let mut p = pipeline((61000, 65535), 0, 1);
    let syn = |vip| frame(f, (a.client, CPORT), (vip, 80), tcp(TCP_SYN), 64);

    let (_, first) = run(&mut p, &t, &syn(a.vip));
    assert_eq!(
        first,
        frame(f, (a.client, CPORT), (a.backend, BPORT), tcp(TCP_SYN), 63),
        "{f:?}: the first flow is plain DNAT"
    );
    let (v, second) = run(&mut p, &t, &syn(a.vip2));
    assert_eq!(v, Verdict::Tx(0));
    let port = sport_of(f, &second);
    assert_eq!(
        second,
        frame(f, (a.gateway, port), (a.backend, BPORT), tcp(TCP_SYN), 63),
        "{f:?}: the clashing flow leaves from the gateway"
    );
    assert_eq!(p.counters().snat_clash, 1);

    let synack = |dst: (Addr, u16)| frame(f, (a.backend, BPORT), dst, tcp(TCP_SYN | TCP_ACK), 64);
    let (_, out) = run(&mut p, &t, &synack((a.client, CPORT)));
    assert_eq!(
        out,
        frame(
            f,
            (a.vip, 80),
            (a.client, CPORT),
            tcp(TCP_SYN | TCP_ACK),
            63
        )
    );
    let (_, out) = run(&mut p, &t, &synack((a.gateway, port)));
    assert_eq!(
        out,
        frame(
            f,
            (a.vip2, 80),
            (a.client, CPORT),
            tcp(TCP_SYN | TCP_ACK),
            63
        ),
        "{f:?}: the second flow's reply comes from the second VIP"
    );
    check_frame(&out).unwrap();
}

#[test]
fn v4_one_client_port_to_two_vips_of_one_backend() {
    clash_is_source_nated(Family::V4);
}

#[test]
fn v6_one_client_port_to_two_vips_of_one_backend() {
    clash_is_source_nated(Family::V6);
}

/// A backend calling its own Service and landing on itself.
fn hairpin_is_source_nated(f: Family) {
    let a = addrs(f);
    let t = table(vec![spec(a.vip, a.backend, Proto::Tcp, Forwarding::Dnat)]);
    let mut p = pipeline((61000, 65535), 0, 1);
    let (v, out) = run(
        &mut p,
        &t,
        &frame(f, (a.backend, CPORT), (a.vip, 80), tcp(TCP_SYN), 64),
    );
    assert_eq!(v, Verdict::Tx(0));
    let port = sport_of(f, &out);
    assert_eq!(
        out,
        frame(f, (a.gateway, port), (a.backend, BPORT), tcp(TCP_SYN), 63),
        "{f:?}: not from itself to itself"
    );
    let (_, out) = run(
        &mut p,
        &t,
        &frame(
            f,
            (a.backend, BPORT),
            (a.gateway, port),
            tcp(TCP_SYN | TCP_ACK),
            64,
        ),
    );
    assert_eq!(
        out,
        frame(
            f,
            (a.vip, 80),
            (a.backend, CPORT),
            tcp(TCP_SYN | TCP_ACK),
            63
        )
    );
    assert_eq!(p.counters().snat_hairpin, 1);
}

#[test]
fn v4_hairpin() {
    hairpin_is_source_nated(Family::V4);
}

#[test]
fn v6_hairpin() {
    hairpin_is_source_nated(Family::V6);
}

/// Two ports: two flows to the backend get them, the third is dropped and
/// counted, and the two live flows keep theirs.
#[test]
fn an_exhausted_pool_drops_and_never_reuses_a_live_tuple() {
    for f in [Family::V4, Family::V6] {
        let a = addrs(f);
        let t = table(vec![spec(a.vip, a.backend, Proto::Tcp, Forwarding::Snat)]);
        let mut p = pipeline((62000, 62001), 0, 1);
        let syn = |cport| frame(f, (a.client, cport), (a.vip, 80), tcp(TCP_SYN), 64);
        let mut ports = Vec::new();
        for cport in [40000, 40001] {
            let (v, out) = run(&mut p, &t, &syn(cport));
            assert_eq!(v, Verdict::Tx(0));
            ports.push(sport_of(f, &out));
        }
        ports.sort_unstable();
        assert_eq!(ports, [62000, 62001], "{f:?}");
        let third = syn(40002);
        let (v, out) = run(&mut p, &t, &third);
        assert_eq!(v, Verdict::Drop(DropReason::SnatExhausted), "{f:?}");
        assert_eq!(out, third, "a dropped frame is unchanged");
        assert_eq!(p.counters().dropped[DropReason::SnatExhausted as usize], 1);
        assert_eq!(p.conntrack().len(), 2);
        // Still full within the second (remembered, no search); once the
        // two embryonic flows have expired, the port is free again.
        assert_eq!(
            run(&mut p, &t, &syn(40003)).0,
            Verdict::Drop(DropReason::SnatExhausted)
        );
        let (v, out) = run_at(&mut p, &t, &third, 1_000);
        assert_eq!(v, Verdict::Tx(0), "{f:?}: a port freed by expiry is taken");
        assert!((62000..=62001).contains(&sport_of(f, &out)));
    }
}

/// Without a source-NAT address of the family, a flow that needs one is
/// dropped, counted.
#[test]
fn no_snat_address_drops_a_flow_that_needs_one() {
    let a = addrs(Family::V4);
    let t = table(vec![spec(a.vip, a.backend, Proto::Tcp, Forwarding::Snat)]);
    let mut p = Pipeline::new(PipelineConfig::default());
    let syn = frame(Family::V4, (a.client, CPORT), (a.vip, 80), tcp(TCP_SYN), 64);
    let (v, _) = run(&mut p, &t, &syn);
    assert_eq!(v, Verdict::Drop(DropReason::SnatExhausted));
}

/// The backend answers a source-NATed UDP datagram with ICMP port
/// unreachable, to the gateway's address, quoting gateway:port ->
/// backend:8080: the client gets it from the VIP, quoting its own
/// datagram client:40000 -> VIP:80.
fn icmp_error_through_snat(f: Family) {
    let a = addrs(f);
    let t = table(vec![spec(a.vip, a.backend, Proto::Udp, Forwarding::Snat)]);
    let mut p = pipeline((61000, 65535), 0, 1);
    let (_, out) = run(
        &mut p,
        &t,
        &frame(f, (a.client, CPORT), (a.vip, 80), udp(), 64),
    );
    let port = sport_of(f, &out);

    let (kind, code) = match f {
        Family::V4 => (3, 3),
        Family::V6 => (1, 4),
    };
    let quoting = |src: (Addr, u16), dst: (Addr, u16), ttl: u8| {
        L4::Icmp(Icmp {
            kind,
            code,
            rest: [0; 4],
            body: Packet::new(
                eth(),
                ip(f, src.0, dst.0, ttl),
                udp().with_ports(src.1, dst.1),
            )
            .ip_bytes(),
        })
    };
    let err = Packet::new(
        eth(),
        ip(f, a.backend, a.gateway, 64),
        quoting((a.gateway, port), (a.backend, BPORT), 63),
    )
    .frame();
    let (v, out) = run(&mut p, &t, &err);
    assert_eq!(v, Verdict::Tx(0), "{f:?}");
    let want = Packet::new(
        eth(),
        ip(f, a.vip, a.client, 63),
        quoting((a.client, CPORT), (a.vip, 80), 63),
    )
    .frame();
    assert_eq!(out, want, "{f:?}: the error as the client must see it");
    check_frame(&out).unwrap();
}

#[test]
fn v4_icmp_error_through_snat() {
    icmp_error_through_snat(Family::V4);
}

#[test]
fn v6_icmp_error_through_snat() {
    icmp_error_through_snat(Family::V6);
}

/// Each worker of four takes only ports whose replies the steering gives
/// it, so a source-NATed flow's replies reach the worker that made it
/// without a hand-off; the four shares do not overlap.
#[test]
fn snat_ports_are_split_so_that_replies_are_steered_home() {
    let a = addrs(Family::V4);
    let t = table(vec![spec(a.vip, a.backend, Proto::Tcp, Forwarding::Snat)]);
    let mut seen = std::collections::BTreeSet::new();
    for w in 0..4 {
        let mut p = pipeline((61000, 65535), w, 4);
        for c in 0..20u16 {
            let syn = frame(
                Family::V4,
                (a.client, 30000 + c),
                (a.vip, 80),
                tcp(TCP_SYN),
                64,
            );
            let (v, out) = run(&mut p, &t, &syn);
            assert_eq!(v, Verdict::Tx(0));
            let port = sport_of(Family::V4, &out);
            assert!(seen.insert(port), "port {port} taken by two workers");
            let reply = frame(
                Family::V4,
                (a.backend, BPORT),
                (a.gateway, port),
                tcp(TCP_ACK),
                64,
            );
            assert_eq!(steer::owner(&reply, &t, 4), w, "port {port}");
        }
    }
}

/// A flow keeps the translation it started with when its Service's mode
/// changes; new flows take the new mode. Both ways, v4 and v6.
#[test]
fn flows_keep_their_mode_across_a_mode_change() {
    for f in [Family::V4, Family::V6] {
        let a = addrs(f);
        for (from, to) in [
            (Forwarding::Dnat, Forwarding::Snat),
            (Forwarding::Snat, Forwarding::Dnat),
        ] {
            let before = table(vec![spec(a.vip, a.backend, Proto::Tcp, from)]);
            let after = table(vec![spec(a.vip, a.backend, Proto::Tcp, to)]);
            let mut p = pipeline((61000, 65535), 0, 1);
            let seg = |cport, flags| frame(f, (a.client, cport), (a.vip, 80), tcp(flags), 64);

            let (_, first) = run(&mut p, &before, &seg(CPORT, TCP_SYN));
            let (_, again) = run(&mut p, &after, &seg(CPORT, TCP_ACK));
            let src_of = |out: &[u8]| dataplane::wire::parse::parse(out).unwrap().src;
            assert_eq!(
                src_of(&again),
                src_of(&first),
                "{f:?} {from:?} -> {to:?}: kept"
            );
            assert_eq!(sport_of(f, &again), sport_of(f, &first));

            let (_, new) = run(&mut p, &after, &seg(CPORT + 1, TCP_SYN));
            let want = if to == Forwarding::Snat {
                a.gateway
            } else {
                a.client
            };
            assert_eq!(src_of(&new), want, "{f:?} {from:?} -> {to:?}: a new flow");
        }
    }
}
