//! Existing connections are sacred: a new table generation never moves an
//! established TCP flow, new flows follow the new table, and UDP flows
//! whose backend left re-balance (DESIGN.md "Dataplane principles").

use dataplane::addr::{Addr, Proto};
use dataplane::generation::Tables;
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::Verdict;
use dataplane::wire::parse::parse;
use fixtures::packet::{Eth, Ip, Ipv4, Packet, Tcp, Udp, L4, TCP_ACK, TCP_SYN};
use fixtures::verify::check_frame;

const VIP: [u8; 4] = [198, 19, 0, 10];

fn spec(proto: Proto, backends: &[(u8, BackendState)]) -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey {
            vip: Addr::from_v4(VIP),
            port: 80,
            proto,
        },
        name: "default/web:http".into(),
        backends: backends
            .iter()
            .map(|&(h, state)| BackendSpec {
                addr: Addr::from_v4([198, 18, 1, h]),
                port: 8080,
                weight: 1,
                state,
            })
            .collect(),
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    }
}

fn packet(client: u8, l4: L4) -> Vec<u8> {
    let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = Ip::V4(Ipv4::new([198, 18, 0, client], VIP, 64));
    Packet::new(eth, ip, l4).frame()
}

fn tcp(client: u8, cport: u16, flags: u8) -> Vec<u8> {
    packet(client, L4::Tcp(Tcp::new(cport, 80, 1, 1, flags)))
}

fn udp(client: u8, cport: u16) -> Vec<u8> {
    packet(client, L4::Udp(Udp::new(cport, 80, vec![1, 2, 3])))
}

/// Runs one frame with the currently published table; returns the backend
/// host byte it was sent to, or None if it was not forwarded.
fn send(p: &mut Pipeline, tables: &Tables, frame: &[u8], now: u32) -> Option<u8> {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let table = tables.load();
    let (v, n) = p.process_frame(&table, &mut buf, frame.len(), now);
    if v != Verdict::Tx(0) {
        return None;
    }
    Some(parse(&buf[..n]).unwrap().dst.v4_octets()[3])
}

fn pipeline() -> Pipeline {
    Pipeline::new(PipelineConfig {
        conntrack: dataplane::conntrack::Config {
            capacity: 4096,
            ..Default::default()
        },
        ..Default::default()
    })
}

#[test]
fn established_tcp_keeps_its_backend_and_new_flows_follow_the_new_table() {
    let ready = BackendState::Ready;
    let gen1 = vec![spec(Proto::Tcp, &[(10, ready), (11, ready), (12, ready)])];
    let tables = Tables::new(ServiceTable::from_specs(gen1, TableConfig::default()));
    let mut p = pipeline();

    // 60 connections established on generation 1.
    let mut first: Vec<u8> = Vec::new();
    for c in 0..60u16 {
        first.push(send(&mut p, &tables, &tcp(1, 20000 + c, TCP_SYN), 10).unwrap());
    }
    // Backend .10 goes away (and .20 arrives): generation 2.
    let gen2 = vec![spec(Proto::Tcp, &[(11, ready), (12, ready), (20, ready)])];
    let (t2, stats) = ServiceTable::build(gen2, &tables.current());
    assert_eq!(stats.rebuilt, 1);
    tables.publish(t2);
    assert_eq!(tables.load().generation(), 2);

    let moved_away = first.iter().filter(|&&b| b == 10).count();
    assert!(
        moved_away > 0,
        "some flows must have been on the removed backend"
    );
    for (c, &b) in first.iter().enumerate() {
        let again = send(&mut p, &tables, &tcp(1, 20000 + c as u16, TCP_ACK), 11).unwrap();
        assert_eq!(again, b, "established flow {c} moved from .{b} to .{again}");
    }
    // New connections never pick the removed backend, and some pick the new one.
    let mut new_picks = Vec::new();
    for c in 0..200u16 {
        new_picks.push(send(&mut p, &tables, &tcp(2, 30000 + c, TCP_SYN), 12).unwrap());
    }
    assert!(
        !new_picks.contains(&10),
        "a new flow went to the removed backend"
    );
    assert!(
        new_picks.contains(&20),
        "no new flow reached the added backend"
    );
}

#[test]
fn udp_flows_rebalance_when_their_backend_leaves() {
    let ready = BackendState::Ready;
    let tables = Tables::new(ServiceTable::from_specs(
        vec![spec(Proto::Udp, &[(10, ready), (11, ready)])],
        TableConfig::default(),
    ));
    let mut p = pipeline();
    let mut before = Vec::new();
    for c in 0..40u16 {
        before.push(send(&mut p, &tables, &udp(3, 40000 + c), 10).unwrap());
    }
    assert!(before.contains(&10) && before.contains(&11));
    let (t2, _) = ServiceTable::build(vec![spec(Proto::Udp, &[(11, ready)])], &tables.current());
    tables.publish(t2);
    for c in 0..40u16 {
        assert_eq!(send(&mut p, &tables, &udp(3, 40000 + c), 11), Some(11));
    }
}

/// A tracked UDP flow whose Service lost all its endpoints in a new
/// generation re-balances onto nothing: it is answered like any datagram
/// to a Service without endpoints, with an ICMP port unreachable quoting
/// it (it used to transmit a 0-byte frame counted as rejected).
#[test]
fn udp_flow_whose_service_lost_all_endpoints_is_answered_port_unreachable() {
    let ready = BackendState::Ready;
    let tables = Tables::new(ServiceTable::from_specs(
        vec![spec(Proto::Udp, &[(10, ready)])],
        TableConfig::default(),
    ));
    let mut p = pipeline();
    let dgram = udp(6, 45000);
    assert_eq!(send(&mut p, &tables, &dgram, 10), Some(10));
    assert_eq!(p.conntrack().len(), 1);
    let (t2, _) = ServiceTable::build(vec![spec(Proto::Udp, &[])], &tables.current());
    tables.publish(t2);

    let mut buf = vec![0u8; 2048];
    buf[..dgram.len()].copy_from_slice(&dgram);
    let (v, n) = p.process_frame(&tables.load(), &mut buf, dgram.len(), 11);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(p.counters().rejected, 1);
    assert!(n >= 14 + 20 + 8 + 28, "answer of {n} bytes");
    let out = &buf[..n];
    check_frame(out).unwrap();
    let answer = parse(out).unwrap();
    assert_eq!(answer.proto, 1, "ICMP");
    assert_eq!(
        out[answer.l4_off..answer.l4_off + 2],
        [3, 3],
        "port unreachable"
    );
    assert_eq!(answer.dst, Addr::from_v4([198, 18, 0, 6]));
    assert_eq!(answer.src, Addr::from_v4(VIP));
    // It quotes the datagram as it arrived.
    let quoted = &out[answer.l4_off + 8..n];
    assert_eq!(quoted, &dgram[14..], "quoted datagram");
    assert_eq!(p.conntrack().len(), 0, "the flow is gone");
}

#[test]
fn terminating_backends_serve_only_when_nothing_is_ready() {
    let (ready, term) = (BackendState::Ready, BackendState::ServingTerminating);
    let tables = Tables::new(ServiceTable::from_specs(
        vec![spec(Proto::Tcp, &[(10, ready), (11, term)])],
        TableConfig::default(),
    ));
    let mut p = pipeline();
    for c in 0..50u16 {
        assert_eq!(
            send(&mut p, &tables, &tcp(4, 50000 + c, TCP_SYN), 10),
            Some(10)
        );
    }
    // .10 starts terminating too and .11 stays: new flows use the serving
    // terminating backends; the existing flows stay on .10.
    let (t2, _) = ServiceTable::build(
        vec![spec(
            Proto::Tcp,
            &[(10, BackendState::NotServing), (11, term)],
        )],
        &tables.current(),
    );
    tables.publish(t2);
    assert_eq!(send(&mut p, &tables, &tcp(4, 50000, TCP_ACK), 11), Some(10));
    assert_eq!(send(&mut p, &tables, &tcp(5, 60000, TCP_SYN), 11), Some(11));
}
