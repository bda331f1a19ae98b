//! A packet source-routed *through* a VIP (IPv6 routing header with
//! segments left) does not end there: its L4 checksum covers the final
//! destination, so translating it would corrupt it. It is passed on
//! untouched; the same packet with no segments left is an ordinary packet
//! to the VIP and is translated.

use dataplane::addr::{Addr, Proto};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::Verdict;
use fixtures::packet::{Eth, ExtHeader, Ip, Ipv6, Packet, Tcp, L4, TCP_SYN};

const VIP: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x01];
const CLIENT: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0x01];
const BACKEND: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0x01];
const FINAL: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0f, 0x01];

fn table() -> ServiceTable {
    let spec = ServiceSpec {
        key: ServiceKey {
            vip: Addr::from_v6(VIP),
            port: 80,
            proto: Proto::Tcp,
        },
        name: "default/web:http".into(),
        backends: vec![BackendSpec {
            addr: Addr::from_v6(BACKEND),
            port: 8080,
            weight: 1,
            state: BackendState::Ready,
        }],
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    };
    ServiceTable::from_specs(vec![spec], TableConfig::default())
}

/// A SYN from the client to VIP:80 carrying a type-2-style routing header
/// (one address: FINAL) with `segments_left` still to visit.
fn syn_with_routing_header(segments_left: u8) -> Vec<u8> {
    let mut ip = Ipv6::new(CLIENT, VIP, 64);
    // Routing type 4 (segment routing), segments left, last entry, flags,
    // tag (2 bytes), then one 16-byte segment: 22 bytes, + 2 = 24.
    let mut body = vec![4, segments_left, 0, 0, 0, 0];
    body.extend_from_slice(&FINAL);
    ip.ext.push(ExtHeader { kind: 43, body });
    let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    Packet::new(
        eth,
        Ip::V6(ip),
        L4::Tcp(Tcp::new(40_000, 80, 1, 0, TCP_SYN)),
    )
    .frame()
}

fn run(frame: &mut [u8]) -> (Verdict, Pipeline) {
    let table = table();
    let mut p = Pipeline::new(PipelineConfig::default());
    let len = frame.len();
    let (v, _) = p.process_frame(&table, frame, len, 1);
    (v, p)
}

#[test]
fn source_routed_through_a_vip_is_passed_untouched() {
    let original = syn_with_routing_header(1);
    let mut frame = original.clone();
    let (v, p) = run(&mut frame);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(frame, original, "a passed frame must not be rewritten");
    assert_eq!(p.counters().passed, 1);
    assert_eq!(p.counters().flows, 0);
}

#[test]
fn routing_header_with_no_segments_left_is_translated() {
    let mut frame = syn_with_routing_header(0);
    let (v, p) = run(&mut frame);
    assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    assert_eq!(p.counters().forwarded, 1);
    // The IPv6 destination (bytes 38..54 of the frame) is the backend now.
    assert_eq!(frame[38..54], BACKEND);
}
