//! A client packet towards a VIP whose TTL / hop limit would run out at the
//! gateway is answered with ICMP time exceeded from the node's address, as
//! the kernel's forwarding path answers it, within a per-second budget;
//! without a node address, or over the budget, it is dropped, counted.
//! It used to be a silent drop always.
//!
//! The expected answer is built with the fixtures' packet builder: an ICMP
//! / ICMPv6 time exceeded (11/0, 3/0) quoting the packet as it arrived.

use dataplane::addr::{Addr, Proto};
use dataplane::pipeline::{NodeAddrs, Pipeline, PipelineConfig};
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::{DropReason, Verdict};
use fixtures::packet::{Eth, Icmp, Ip, Ipv4, Ipv6, Packet, Tcp, Udp, L4, TCP_SYN};
use fixtures::verify::check_frame;

mod common {
    pub mod frames;
}
use common::frames::run_at;

const CLIENT4: [u8; 4] = [198, 18, 0, 9];
const VIP4: [u8; 4] = [198, 19, 0, 10];
const NODE4: [u8; 4] = [198, 18, 0, 1];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0x01];
const VIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x01];
const NODE6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];

fn table() -> ServiceTable {
    let specs = [
        (Addr::from_v4(VIP4), Proto::Tcp),
        (Addr::from_v6(VIP6), Proto::Tcp),
        (Addr::from_v4(VIP4), Proto::Udp),
    ]
    .into_iter()
    .map(|(vip, proto)| ServiceSpec {
        key: ServiceKey {
            vip,
            port: 80,
            proto,
        },
        name: "default/web:http".into(),
        backends: vec![BackendSpec {
            addr: if vip.is_v4() {
                Addr::from_v4([198, 18, 1, 10])
            } else {
                Addr::from_v6([0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10])
            },
            port: 8080,
            weight: 1,
            state: BackendState::Ready,
        }],
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    })
    .collect();
    ServiceTable::from_specs(specs, TableConfig::default())
}

fn pipeline(node: NodeAddrs, per_second: u32) -> Pipeline {
    Pipeline::new(PipelineConfig {
        node_addrs: node,
        icmp_per_second: per_second,
        ..PipelineConfig::default()
    })
}

fn both() -> NodeAddrs {
    NodeAddrs {
        v4: Some(Addr::from_v4(NODE4)),
        v6: Some(Addr::from_v6(NODE6)),
    }
}

fn eth() -> Eth {
    Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
}

fn ip(v6: bool, src4: [u8; 4], dst4: [u8; 4], src6: [u8; 16], dst6: [u8; 16], ttl: u8) -> Ip {
    if v6 {
        Ip::V6(Ipv6::new(src6, dst6, ttl))
    } else {
        let mut h = Ipv4::new(src4, dst4, ttl);
        h.flags_frag = 0;
        Ip::V4(h)
    }
}

/// Client -> VIP:80 with `ttl`.
fn to_vip(v6: bool, l4: L4, ttl: u8) -> Packet {
    Packet::new(eth(), ip(v6, CLIENT4, VIP4, CLIENT6, VIP6, ttl), l4)
}

fn syn() -> L4 {
    L4::Tcp(Tcp::new(40000, 80, 1000, 0, TCP_SYN))
}

/// What a router sends back for `p`: node -> client, time exceeded,
/// quoting `p`'s IP packet whole (these are far below the quote limits).
fn time_exceeded(v6: bool, p: &Packet) -> Vec<u8> {
    let icmp = Icmp {
        kind: if v6 { 3 } else { 11 },
        code: 0,
        rest: [0; 4],
        body: p.ip_bytes(),
    };
    let back = Eth::new([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
    Packet::new(
        back,
        ip(v6, NODE4, CLIENT4, NODE6, CLIENT6, 64),
        L4::Icmp(icmp),
    )
    .frame()
}

#[test]
fn ttl_one_towards_a_vip_is_answered_with_time_exceeded() {
    let t = table();
    let mut p = pipeline(both(), 100);
    let cases = [
        (false, syn()),
        (true, syn()),
        (false, L4::Udp(Udp::new(40000, 80, b"query".to_vec()))),
    ];
    for (v6, l4) in cases {
        let pkt = to_vip(v6, l4, 1);
        let (v, out) = run_at(&mut p, &t, &pkt.frame(), 1);
        assert_eq!(v, Verdict::Tx(0), "v6={v6}");
        assert_eq!(out, time_exceeded(v6, &pkt), "v6={v6}");
        check_frame(&out).unwrap();
    }
    let c = p.counters();
    assert_eq!((c.time_exceeded_sent, c.rejected), (3, 3));
    assert_eq!(c.dropped(DropReason::TtlExceeded), 0);
    assert_eq!(p.conntrack().len(), 0, "no flow made for an expired packet");
    // TTL 2 goes through (leaving with 1).
    let (v, _) = run_at(&mut p, &t, &to_vip(false, syn(), 2).frame(), 1);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(p.counters().forwarded, 1);
}

#[test]
fn time_exceeded_is_rate_limited_per_second() {
    let t = table();
    let mut p = pipeline(both(), 2);
    let frame = to_vip(false, syn(), 1).frame();
    let verdicts: Vec<Verdict> = (0..4).map(|_| run_at(&mut p, &t, &frame, 7).0).collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Tx(0),
            Verdict::Tx(0),
            Verdict::Drop(DropReason::TtlExceeded),
            Verdict::Drop(DropReason::TtlExceeded)
        ]
    );
    // A new second, a new budget.
    assert_eq!(run_at(&mut p, &t, &frame, 8).0, Verdict::Tx(0));
    let c = p.counters();
    assert_eq!(c.time_exceeded_sent, 3);
    assert_eq!(c.dropped(DropReason::TtlExceeded), 2);
}

#[test]
fn without_a_node_address_of_the_family_it_is_dropped_unchanged() {
    let t = table();
    let only_v4 = NodeAddrs {
        v4: Some(Addr::from_v4(NODE4)),
        v6: None,
    };
    let mut p = pipeline(only_v4, 100);
    let frame = to_vip(true, syn(), 1).frame();
    let (v, out) = run_at(&mut p, &t, &frame, 1);
    assert_eq!(v, Verdict::Drop(DropReason::TtlExceeded));
    assert_eq!(out, frame);
    let mut none = pipeline(NodeAddrs::default(), 100);
    let frame = to_vip(false, syn(), 1).frame();
    assert_eq!(
        run_at(&mut none, &t, &frame, 1).0,
        Verdict::Drop(DropReason::TtlExceeded)
    );
    assert_eq!(none.counters().time_exceeded_sent, 0);
}
