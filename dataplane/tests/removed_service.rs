//! A removed Service port's established TCP flows keep their translation
//! until they end or time out (kube-proxy's conntrack entries outlive the
//! rules that made them); its UDP flows are flushed, as kube-proxy deletes
//! them with the Service; new flows to it are no longer ours. Before, every
//! packet of those flows was handed to the kernel un-NATed.
//!
//! Expected frames are built with the fixtures' packet builder (the same
//! packet addressed to the backend, TTL one lower), not by the dataplane.

use dataplane::addr::{Addr, Proto};
use dataplane::generation::Tables;
use dataplane::pipeline::Pipeline;
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::Verdict;
use fixtures::packet::{Eth, Ip, Ipv4, Ipv6, Packet, Tcp, Udp, L4, TCP_ACK, TCP_SYN};
use fixtures::verify::check_frame;

mod common {
    pub mod frames;
}
use common::frames::{run, small_pipeline};

#[derive(Clone, Copy, Debug)]
enum Family {
    V4,
    V6,
}

struct Addrs {
    client: Addr,
    vip: Addr,
    backend: Addr,
}

fn addrs(f: Family) -> Addrs {
    match f {
        Family::V4 => Addrs {
            client: Addr::from_v4([198, 18, 0, 9]),
            vip: Addr::from_v4([198, 19, 0, 10]),
            backend: Addr::from_v4([198, 18, 1, 10]),
        },
        Family::V6 => {
            let a = |last: u8| {
                let mut b = [0u8; 16];
                b[0] = 0xfd;
                b[15] = last;
                Addr::from_v6(b)
            };
            Addrs {
                client: a(9),
                vip: a(0x10),
                backend: a(0x20),
            }
        }
    }
}

const BPORT: u16 = 8080;

fn spec(f: Family, proto: Proto) -> ServiceSpec {
    let a = addrs(f);
    ServiceSpec {
        key: ServiceKey {
            vip: a.vip,
            port: 80,
            proto,
        },
        name: "default/gone:http".into(),
        backends: vec![BackendSpec {
            addr: a.backend,
            port: BPORT,
            weight: 1,
            state: BackendState::Ready,
        }],
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    }
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

/// client:40000 -> `dst`:`dport`.
fn to(f: Family, dst: Addr, dport: u16, l4: L4, ttl: u8) -> Vec<u8> {
    let a = addrs(f);
    Packet::new(
        eth(),
        ip(f, a.client, dst, ttl),
        l4.with_ports(40000, dport),
    )
    .frame()
}

fn tcp(flags: u8) -> L4 {
    L4::Tcp(Tcp::new(0, 0, 1000, 2000, flags))
}

fn udp() -> L4 {
    L4::Udp(Udp::new(0, 0, b"query".to_vec()))
}

/// The tables with `specs` published as a new generation; the entries of
/// Service ports no longer named stay retired for `retire_for_s`.
fn tables(specs: Vec<ServiceSpec>, retire_for_s: u32) -> Tables {
    let cfg = TableConfig {
        retire_for_s,
        ..TableConfig::default()
    };
    Tables::new(ServiceTable::from_specs(specs, cfg))
}

fn publish(t: &Tables, specs: Vec<ServiceSpec>) {
    let (next, _) = ServiceTable::build(specs, &t.current());
    t.publish(next);
}

fn send(p: &mut Pipeline, t: &Tables, frame: &[u8]) -> (Verdict, Vec<u8>) {
    run(p, &t.load(), frame)
}

fn established_tcp_survives_removal(f: Family) {
    let a = addrs(f);
    let t = tables(vec![spec(f, Proto::Tcp)], 3600);
    let mut p = small_pipeline();
    let (v, _) = send(&mut p, &t, &to(f, a.vip, 80, tcp(TCP_SYN), 64));
    assert_eq!(v, Verdict::Tx(0));

    publish(&t, vec![]);
    assert_eq!(t.current().len(), 0);
    assert_eq!(t.current().retired(), 1);

    // The next segment of the connection still reaches its backend.
    let (v, out) = send(&mut p, &t, &to(f, a.vip, 80, tcp(TCP_ACK), 64));
    assert_eq!(v, Verdict::Tx(0), "{f:?}: established flow after removal");
    let want = to(f, a.backend, BPORT, tcp(TCP_ACK), 63);
    assert_eq!(out, want, "{f:?}: translated as before the removal");
    check_frame(&out).unwrap();
    // And the backend's answer is reverse-translated.
    let reply = Packet::new(
        eth().reversed(),
        ip(f, a.backend, a.client, 64),
        tcp(TCP_ACK).with_ports(BPORT, 40000),
    )
    .frame();
    let (v, out) = send(&mut p, &t, &reply);
    assert_eq!(v, Verdict::Tx(0));
    let want = Packet::new(
        eth().reversed(),
        ip(f, a.vip, a.client, 63),
        tcp(TCP_ACK).with_ports(80, 40000),
    )
    .frame();
    assert_eq!(out, want, "{f:?}: reply after removal");

    // A new connection to the removed port is not ours any more.
    let syn = Packet::new(
        eth(),
        ip(f, a.client, a.vip, 64),
        tcp(TCP_SYN).with_ports(40001, 80),
    )
    .frame();
    let (v, out) = send(&mut p, &t, &syn);
    assert_eq!(v, Verdict::Pass, "{f:?}: new flow to a removed port");
    assert_eq!(out, syn);
    assert_eq!(p.conntrack().len(), 1, "no flow was made for it");
}

#[test]
fn v4_established_tcp_flows_of_a_removed_service_keep_their_translation() {
    established_tcp_survives_removal(Family::V4);
}

#[test]
fn v6_established_tcp_flows_of_a_removed_service_keep_their_translation() {
    established_tcp_survives_removal(Family::V6);
}

fn udp_flows_are_flushed(f: Family) {
    let a = addrs(f);
    let t = tables(vec![spec(f, Proto::Udp)], 3600);
    let mut p = small_pipeline();
    let q = to(f, a.vip, 80, udp(), 64);
    assert_eq!(send(&mut p, &t, &q).0, Verdict::Tx(0));
    assert_eq!(p.conntrack().len(), 1);

    publish(&t, vec![]);
    let (v, out) = send(&mut p, &t, &q);
    assert_eq!(v, Verdict::Pass, "{f:?}: UDP to a removed port");
    assert_eq!(out, q, "passed unchanged");
    assert_eq!(p.conntrack().len(), 0, "the UDP flow was flushed");
    assert_eq!(p.counters().retired_flushed, 1);
    assert_eq!(send(&mut p, &t, &q).0, Verdict::Pass);
    assert_eq!(p.counters().retired_flushed, 1);
}

#[test]
fn v4_udp_flows_of_a_removed_service_are_flushed() {
    udp_flows_are_flushed(Family::V4);
}

#[test]
fn v6_udp_flows_of_a_removed_service_are_flushed() {
    udp_flows_are_flushed(Family::V6);
}

/// Retirement ends (here at once: `retire_for_s` 0) at the next build;
/// a Service port added again is live again, not the retired entry.
#[test]
fn retirement_ends_and_a_readded_port_is_live() {
    let f = Family::V4;
    let a = addrs(f);
    let t = tables(vec![spec(f, Proto::Tcp)], 0);
    let mut p = small_pipeline();
    assert_eq!(
        send(&mut p, &t, &to(f, a.vip, 80, tcp(TCP_SYN), 64)).0,
        Verdict::Tx(0)
    );
    publish(&t, vec![]);
    assert_eq!(t.current().retired(), 1);
    publish(&t, vec![]);
    assert_eq!(t.current().retired(), 0, "retirement over");
    let ack = to(f, a.vip, 80, tcp(TCP_ACK), 64);
    assert_eq!(send(&mut p, &t, &ack), (Verdict::Pass, ack.clone()));

    publish(&t, vec![spec(f, Proto::Tcp)]);
    let syn = to(f, a.vip, 80, tcp(TCP_SYN), 64);
    let (v, out) = send(&mut p, &t, &syn);
    assert_eq!(v, Verdict::Tx(0), "re-added port takes new flows");
    assert_eq!(out, to(f, a.backend, BPORT, tcp(TCP_SYN), 63));
}
