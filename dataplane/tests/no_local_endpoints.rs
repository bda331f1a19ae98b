//! A Service whose `Local` traffic policy leaves this node without
//! endpoints (while it has some elsewhere) drops new flows, as kube-proxy
//! does, counted as `no_local_endpoints`; a Service without any endpoints
//! still answers (RST / ICMP unreachable). It used to answer both.

use dataplane::addr::{Addr, Proto};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::service::{Affinity, NoEndpoints, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::{DropReason, Verdict};
use fixtures::packet::{Eth, Ip, Ipv4, Ipv6, Packet, Tcp, Udp, L4, TCP_SYN};

mod common {
    pub mod frames;
}
use common::frames::run;

const VIP4: [u8; 4] = [198, 19, 0, 20];
const CLIENT4: [u8; 4] = [198, 18, 0, 9];
const VIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x20];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0x01];

fn table(no_endpoints: NoEndpoints) -> ServiceTable {
    let specs = [Addr::from_v4(VIP4), Addr::from_v6(VIP6)]
        .into_iter()
        .flat_map(|vip| {
            [Proto::Tcp, Proto::Udp].map(|proto| ServiceSpec {
                key: ServiceKey {
                    vip,
                    port: 80,
                    proto,
                },
                name: "default/web:http".into(),
                backends: vec![],
                affinity: Affinity::None,
                no_endpoints,
                forwarding: Default::default(),
                source_ranges: Vec::new(),
            })
        })
        .collect();
    ServiceTable::from_specs(specs, TableConfig::default())
}

/// A TCP SYN and a UDP datagram to VIP:80, over IPv4 and IPv6.
fn frames() -> Vec<Vec<u8>> {
    let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut out = Vec::new();
    for ip in [
        Ip::V4(Ipv4::new(CLIENT4, VIP4, 64)),
        Ip::V6(Ipv6::new(CLIENT6, VIP6, 64)),
    ] {
        out.push(
            Packet::new(
                eth.clone(),
                ip.clone(),
                L4::Tcp(Tcp::new(40000, 80, 1, 0, TCP_SYN)),
            )
            .frame(),
        );
        out.push(Packet::new(eth.clone(), ip, L4::Udp(Udp::new(40000, 80, vec![1; 8]))).frame());
    }
    out
}

#[test]
fn no_local_endpoints_drops_and_counts() {
    let table = table(NoEndpoints::Drop);
    let mut p = Pipeline::new(PipelineConfig::default());
    for frame in frames() {
        let (v, out) = run(&mut p, &table, &frame);
        assert_eq!(v, Verdict::Drop(DropReason::NoLocalEndpoints));
        assert_eq!(out, frame, "a dropped frame is not rewritten");
    }
    let c = p.counters();
    assert_eq!(c.dropped(DropReason::NoLocalEndpoints), 4);
    assert_eq!(c.rejected, 0);
    assert_eq!(p.conntrack().len(), 0);
    assert_eq!(DropReason::NoLocalEndpoints.name(), "no_local_endpoints");
}

#[test]
fn no_endpoints_at_all_is_still_answered() {
    let table = table(NoEndpoints::Reject);
    let mut p = Pipeline::new(PipelineConfig::default());
    for frame in frames() {
        let (v, _) = run(&mut p, &table, &frame);
        assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    }
    assert_eq!(p.counters().rejected, 4);
}
