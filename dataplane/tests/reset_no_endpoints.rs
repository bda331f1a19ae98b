//! A TCP RST to a Service without endpoints is never answered (RFC 9293
//! 3.10.7.1; Linux's REJECT with tcp-reset sends nothing for a RST): it is
//! dropped, counted as `rst_no_endpoints`, while any other segment still
//! gets its RST. It used to be answered with a RST of its own.

use dataplane::addr::{Addr, Proto};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::service::{Affinity, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::parse::{parse, L4 as PL4};
use fixtures::packet::{Eth, Ip, Ipv4, Ipv6, Packet, Tcp, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use fixtures::verify::check_frame;

mod common {
    pub mod frames;
}
use common::frames::run;

const VIP4: [u8; 4] = [198, 19, 0, 10];
const CLIENT4: [u8; 4] = [198, 18, 0, 9];
const VIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x01];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0x01];

/// TCP port 80 on an IPv4 and an IPv6 VIP, both without endpoints.
fn table() -> ServiceTable {
    let specs = [Addr::from_v4(VIP4), Addr::from_v6(VIP6)]
        .into_iter()
        .map(|vip| ServiceSpec {
            key: ServiceKey {
                vip,
                port: 80,
                proto: Proto::Tcp,
            },
            name: "default/web:http".into(),
            backends: vec![],
            affinity: Affinity::None,
            no_endpoints: dataplane::service::NoEndpoints::Reject,
            forwarding: Default::default(),
            source_ranges: Vec::new(),
        })
        .collect();
    ServiceTable::from_specs(specs, TableConfig::default())
}

/// Client -> VIP:80 segments with `flags`, over IPv4 and IPv6.
fn segments(flags: u8) -> [Vec<u8>; 2] {
    let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let tcp = || L4::Tcp(Tcp::new(40000, 80, 1000, 2000, flags));
    [
        Packet::new(eth.clone(), Ip::V4(Ipv4::new(CLIENT4, VIP4, 64)), tcp()).frame(),
        Packet::new(eth, Ip::V6(Ipv6::new(CLIENT6, VIP6, 64)), tcp()).frame(),
    ]
}

#[test]
fn a_rst_to_a_service_without_endpoints_is_dropped_not_answered() {
    let table = table();
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut n = 0;
    for flags in [TCP_RST, TCP_RST | TCP_ACK, TCP_RST | TCP_SYN] {
        for frame in segments(flags) {
            let (v, out) = run(&mut p, &table, &frame);
            assert_eq!(v, Verdict::Drop(DropReason::RstNoEndpoints), "{flags:#x}");
            assert_eq!(out, frame, "a dropped frame is not rewritten");
            n += 1;
        }
    }
    let c = p.counters();
    assert_eq!(c.dropped(DropReason::RstNoEndpoints), n);
    assert_eq!(c.rejected, 0);
    assert_eq!(p.conntrack().len(), 0);
    assert_eq!(DropReason::RstNoEndpoints.name(), "rst_no_endpoints");
}

/// Every other segment is still answered with a RST (RFC 9293 3.10.7.1):
/// `<SEQ=SEG.ACK><CTL=RST>` for one with ACK, else
/// `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
#[test]
fn other_segments_still_get_their_reset() {
    let table = table();
    let mut p = Pipeline::new(PipelineConfig::default());
    let cases = [
        (TCP_SYN, 0, 1001, TCP_RST | TCP_ACK),
        (TCP_ACK, 2000, 0, TCP_RST),
        (TCP_FIN | TCP_ACK, 2000, 0, TCP_RST),
    ];
    for (flags, seq, ack, rst_flags) in cases {
        for frame in segments(flags) {
            let (v, out) = run(&mut p, &table, &frame);
            assert_eq!(v, Verdict::Tx(0), "{flags:#x}");
            check_frame(&out).unwrap();
            let a = parse(&out).unwrap();
            let PL4::Tcp {
                sport,
                dport,
                flags: f,
                seq: s,
                ack: k,
                ..
            } = a.l4
            else {
                panic!("not TCP: {:?}", a.l4);
            };
            assert_eq!((sport, dport), (80, 40000));
            assert_eq!((f, s, k), (rst_flags, seq, ack), "answer to {flags:#x}");
        }
    }
    assert_eq!(p.counters().rejected, 6);
    assert_eq!(p.counters().dropped(DropReason::RstNoEndpoints), 0);
}

/// With `RejectTcp::Icmp` (`--reject-tcp icmp`, kube-proxy's iptables and
/// nftables REJECT), a SYN gets an ICMP / ICMPv6 port unreachable from the
/// VIP quoting it, and a RST is still not answered.
#[test]
fn reject_tcp_icmp_answers_port_unreachable() {
    use dataplane::pipeline::RejectTcp;
    let table = table();
    let mut p = Pipeline::new(PipelineConfig {
        reject_tcp: RejectTcp::Icmp,
        ..Default::default()
    });
    for (i, frame) in segments(TCP_SYN).into_iter().enumerate() {
        let (v, out) = run(&mut p, &table, &frame);
        assert_eq!(v, Verdict::Tx(0));
        check_frame(&out).unwrap();
        let a = parse(&out).unwrap();
        let (kind, code) = match a.l4 {
            PL4::IcmpError { kind, code } => (kind, code),
            other => panic!("not an ICMP error: {other:?}"),
        };
        // ICMP 3/3, ICMPv6 1/4: port unreachable.
        let want = if i == 0 { (3, 3) } else { (1, 4) };
        assert_eq!((kind, code), want, "frame {i}");
        let vip = if i == 0 {
            Addr::from_v4(VIP4)
        } else {
            Addr::from_v6(VIP6)
        };
        assert_eq!(a.src, vip, "answered from the VIP");
    }
    for frame in segments(TCP_RST) {
        let (v, _) = run(&mut p, &table, &frame);
        assert_eq!(v, Verdict::Drop(DropReason::RstNoEndpoints));
    }
    assert_eq!(p.counters().rejected, 2);
}
