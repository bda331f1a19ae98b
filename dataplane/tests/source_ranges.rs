//! loadBalancerSourceRanges: a new flow to a load-balancer IP from a client
//! outside the ranges is dropped unchanged, counted as `source_range`; one
//! from inside is forwarded as usual (expected frame built by the fixtures),
//! and a port without ranges (the ClusterIP) admits everyone. Before, the
//! field was ignored.

use dataplane::addr::{Addr, Proto};
use dataplane::service::{
    Affinity, BackendSpec, BackendState, NoEndpoints, ServiceKey, ServiceSpec, SourceRange,
};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::{DropReason, Verdict};
use fixtures::packet::{Eth, Ip, Ipv4, Ipv6, Packet, Tcp, L4, TCP_SYN};
use fixtures::verify::check_frame;

mod common {
    pub mod frames;
}
use common::frames::{run, small_pipeline};

fn v6(last: u8, net: u8) -> Addr {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1] = net;
    a[15] = last;
    Addr::from_v6(a)
}

struct Case {
    lb: Addr,
    cluster: Addr,
    backend: Addr,
    inside: Addr,
    outside: Addr,
    range: SourceRange,
}

fn cases() -> [Case; 2] {
    [
        Case {
            lb: Addr::from_v4([198, 19, 6, 1]),
            cluster: Addr::from_v4([198, 19, 0, 10]),
            backend: Addr::from_v4([198, 18, 1, 10]),
            inside: Addr::from_v4([198, 18, 7, 99]),
            outside: Addr::from_v4([198, 18, 8, 99]),
            range: SourceRange::new(Addr::from_v4([198, 18, 7, 0]), 24).unwrap(),
        },
        Case {
            lb: v6(1, 6),
            cluster: v6(10, 0),
            backend: v6(10, 1),
            inside: v6(99, 7),
            outside: v6(99, 8),
            range: SourceRange::new(v6(0, 7), 16).unwrap(),
        },
    ]
}

fn spec(vip: Addr, backend: Addr, ranges: Vec<SourceRange>) -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey {
            vip,
            port: 80,
            proto: Proto::Tcp,
        },
        name: "shop/web:http".into(),
        backends: vec![BackendSpec {
            addr: backend,
            port: 8080,
            weight: 1,
            state: BackendState::Ready,
        }],
        affinity: Affinity::None,
        no_endpoints: NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: ranges,
    }
}

fn ip(src: Addr, dst: Addr, ttl: u8) -> Ip {
    if src.is_v4() {
        Ip::V4(Ipv4::new(src.v4_octets(), dst.v4_octets(), ttl))
    } else {
        Ip::V6(Ipv6::new(src.0, dst.0, ttl))
    }
}

fn syn(src: Addr, dst: Addr, dport: u16, ttl: u8) -> Vec<u8> {
    let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let tcp = L4::Tcp(Tcp::new(40000, dport, 1000, 0, TCP_SYN));
    Packet::new(eth, ip(src, dst, ttl), tcp).frame()
}

#[test]
fn clients_outside_the_source_ranges_are_dropped_at_lb_ips_only() {
    for c in cases() {
        let table = ServiceTable::from_specs(
            vec![
                spec(c.lb, c.backend, vec![c.range]),
                spec(c.cluster, c.backend, vec![]),
            ],
            TableConfig::default(),
        );
        let mut p = small_pipeline();
        let refused = syn(c.outside, c.lb, 80, 64);
        let (v, out) = run(&mut p, &table, &refused);
        assert_eq!(v, Verdict::Drop(DropReason::SourceRange), "{}", c.lb);
        assert_eq!(out, refused, "a dropped frame is not rewritten");

        let (v, out) = run(&mut p, &table, &syn(c.inside, c.lb, 80, 64));
        assert_eq!(v, Verdict::Tx(0), "{}", c.lb);
        assert_eq!(out, syn(c.inside, c.backend, 8080, 63));
        check_frame(&out).unwrap();

        // The ClusterIP has no ranges: the outside client gets in there.
        let (v, out) = run(&mut p, &table, &syn(c.outside, c.cluster, 80, 64));
        assert_eq!(v, Verdict::Tx(0), "{}", c.cluster);
        assert_eq!(out, syn(c.outside, c.backend, 8080, 63));

        let k = p.counters();
        assert_eq!(k.dropped(DropReason::SourceRange), 1);
        assert_eq!((k.forwarded, k.flows), (2, 2));
        assert_eq!(p.conntrack().len(), 2, "no flow made for the refused one");
    }
    assert_eq!(DropReason::SourceRange.name(), "source_range");
}
