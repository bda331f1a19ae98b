//! sessionAffinity: ClientIP as kube-proxy implements it: a client keeps
//! the backend it was sent to while it comes back within timeoutSeconds,
//! across endpoint changes, as long as that backend still takes new flows;
//! after the timeout it is placed afresh. The expected backends come from
//! the frames themselves (what the client got first) and from a pipeline
//! that remembers nothing, never from the affinity code.

use std::sync::Arc;

use dataplane::addr::{Addr, Proto};
use dataplane::affinity::AffinityTable;
use dataplane::generation::Tables;
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::Verdict;
use dataplane::wire::parse::parse;
use fixtures::packet::{Eth, Ip, Ipv4, Ipv6, Packet, Tcp, L4, TCP_SYN};
use fixtures::verify::check_frame;

const TIMEOUT: u32 = 100;
const CLIENTS: u8 = 60;

#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

fn addr(f: Family, net: u8, host: u8) -> Addr {
    match f {
        Family::V4 => Addr::from_v4([198, 18, net, host]),
        Family::V6 => {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            a[13] = net;
            a[15] = host;
            Addr::from_v6(a)
        }
    }
}

fn vip(f: Family) -> Addr {
    addr(f, 200, 10)
}

fn spec(f: Family, backends: &[(u8, BackendState)]) -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey {
            vip: vip(f),
            port: 80,
            proto: Proto::Tcp,
        },
        name: "default/sticky:http".into(),
        backends: backends
            .iter()
            .map(|&(h, state)| BackendSpec {
                addr: addr(f, 1, h),
                port: 8080,
                weight: 1,
                state,
            })
            .collect(),
        affinity: Affinity::ClientIp { timeout_s: TIMEOUT },
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    }
}

fn ready(hosts: &[u8]) -> Vec<(u8, BackendState)> {
    hosts.iter().map(|&h| (h, BackendState::Ready)).collect()
}

fn syn(f: Family, client: u8, cport: u16) -> Vec<u8> {
    let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let (src, dst) = (addr(f, 0, client), vip(f));
    let ip = match f {
        Family::V4 => Ip::V4(Ipv4::new(src.v4_octets(), dst.v4_octets(), 64)),
        Family::V6 => Ip::V6(Ipv6::new(src.0, dst.0, 64)),
    };
    Packet::new(eth, ip, L4::Tcp(Tcp::new(cport, 80, 1, 0, TCP_SYN))).frame()
}

/// Sends a SYN; returns the backend's host byte (checked: a valid frame).
fn connect(p: &mut Pipeline, tables: &Tables, f: Family, client: u8, cport: u16, now: u32) -> u8 {
    let frame = syn(f, client, cport);
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(&frame);
    let table = tables.load();
    let (v, n) = p.process_frame(&table, &mut buf, frame.len(), now);
    assert_eq!(
        v,
        Verdict::Tx(0),
        "client {client} port {cport} not forwarded"
    );
    check_frame(&buf[..n]).unwrap();
    let dst = parse(&buf[..n]).unwrap().dst;
    dst.0[15]
}

fn pipeline(cfg: &PipelineConfig) -> Pipeline {
    Pipeline::new(cfg.clone())
}

fn config() -> PipelineConfig {
    PipelineConfig {
        conntrack: dataplane::conntrack::Config {
            capacity: 4096,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A pipeline and a Service on backends .10-.12 that every client has
/// connected to once (port 10000, second 10); each client's backend.
fn three_backends_connected(f: Family) -> (Pipeline, Tables, Vec<u8>) {
    let mut p = pipeline(&config());
    let tables = Tables::new(ServiceTable::from_specs(
        vec![spec(f, &ready(&[10, 11, 12]))],
        TableConfig::default(),
    ));
    let first = (0..CLIENTS)
        .map(|c| connect(&mut p, &tables, f, c, 10_000, 10))
        .collect();
    (p, tables, first)
}

fn publish(tables: &Tables, s: ServiceSpec) {
    let (t, _) = ServiceTable::build(vec![s], &tables.current());
    tables.publish(t);
}

/// The case: one endpoint added moved 17 of 60 clients when
/// affinity was only a hash. Now none moves until the timeout; after it,
/// clients are placed as a pipeline with no memory places them.
fn kept_across_added_endpoint_until_timeout(f: Family) {
    let (mut p, tables, first) = three_backends_connected(f);
    publish(&tables, spec(f, &ready(&[10, 11, 12, 13])));

    // A memoryless pipeline shows how many clients the new ring moves.
    let mut fresh = pipeline(&config());
    let placed: Vec<u8> = (0..CLIENTS)
        .map(|c| connect(&mut fresh, &tables, f, c, 10_001, 50))
        .collect();
    let ring_moves = first.iter().zip(&placed).filter(|(a, b)| a != b).count();
    assert!(
        ring_moves > 0,
        "the test needs an endpoint change that moves clients"
    );

    // Within the timeout (last seen at 10, now 60): every client stays.
    for c in 0..CLIENTS {
        let b = connect(&mut p, &tables, f, c, 20_000, 10 + TIMEOUT - 50);
        assert_eq!(b, first[c as usize], "client {c} moved within its timeout");
    }
    // Each new connection refreshed the client: still kept at 60 + TIMEOUT.
    for c in 0..CLIENTS {
        let b = connect(&mut p, &tables, f, c, 20_001, 60 + TIMEOUT);
        assert_eq!(b, first[c as usize], "client {c} moved after a refresh");
    }
    let k = *p.counters();
    assert_eq!(k.affinity_unknown, CLIENTS as u64);
    assert_eq!(k.affinity_hits, 2 * CLIENTS as u64);
    // Silent for longer than the timeout: placed afresh, like `fresh`.
    for c in 0..CLIENTS {
        let b = connect(&mut p, &tables, f, c, 20_002, 60 + 2 * TIMEOUT + 1);
        assert_eq!(b, placed[c as usize], "client {c} after its timeout");
    }
    assert_eq!(p.counters().affinity_expired, CLIENTS as u64);
    println!(
        "{} clients, one endpoint added: {ring_moves} would move without state, \
         0 moved within the timeout",
        CLIENTS
    );
}

#[test]
fn v4_clients_keep_their_backend_across_an_added_endpoint_until_the_timeout() {
    kept_across_added_endpoint_until_timeout(Family::V4);
}

#[test]
fn v6_clients_keep_their_backend_across_an_added_endpoint_until_the_timeout() {
    kept_across_added_endpoint_until_timeout(Family::V6);
}

/// A client whose backend stops taking new flows (terminating while others
/// are ready, or gone) moves; the others stay.
fn moves_only_when_its_backend_stops_serving(f: Family) {
    let (mut p, tables, first) = three_backends_connected(f);
    let on_11 = first.iter().filter(|&&b| b == 11).count();
    assert!(on_11 > 0);
    publish(
        &tables,
        spec(
            f,
            &[
                (10, BackendState::Ready),
                (11, BackendState::ServingTerminating),
                (12, BackendState::Ready),
            ],
        ),
    );
    for c in 0..CLIENTS {
        let b = connect(&mut p, &tables, f, c, 10_001, 20);
        if first[c as usize] == 11 {
            assert_ne!(b, 11, "client {c} sent to a terminating backend");
        } else {
            assert_eq!(b, first[c as usize], "client {c} moved needlessly");
        }
    }
    assert_eq!(p.counters().affinity_moved, on_11 as u64);
    // The moved clients stick to their new backend.
    let second: Vec<u8> = (0..CLIENTS)
        .map(|c| connect(&mut p, &tables, f, c, 10_002, 30))
        .collect();
    let third: Vec<u8> = (0..CLIENTS)
        .map(|c| connect(&mut p, &tables, f, c, 10_003, 40))
        .collect();
    assert_eq!(second, third);
}

#[test]
fn v4_a_client_moves_only_when_its_backend_stops_taking_new_flows() {
    moves_only_when_its_backend_stops_serving(Family::V4);
}

#[test]
fn v6_a_client_moves_only_when_its_backend_stops_taking_new_flows() {
    moves_only_when_its_backend_stops_serving(Family::V6);
}

/// Two workers of one gateway (pipelines made from clones of one config)
/// share what they remember: a client's next connection, owned by the other
/// worker, reaches the same backend after an endpoint change. Pipelines of
/// separate configs do not (the test would pass vacuously otherwise).
#[test]
fn workers_of_one_gateway_share_client_affinity() {
    let f = Family::V4;
    let spec1 = spec(f, &ready(&[10, 11, 12]));
    let spec2 = spec(f, &ready(&[10, 11, 12, 13, 14, 15]));
    let run = |shared: bool| -> usize {
        let cfg = config();
        let mut a = pipeline(&cfg);
        let mut b = if shared {
            pipeline(&cfg)
        } else {
            pipeline(&config())
        };
        let tables = Tables::new(ServiceTable::from_specs(
            vec![spec1.clone()],
            TableConfig::default(),
        ));
        let first: Vec<u8> = (0..CLIENTS)
            .map(|c| connect(&mut a, &tables, f, c, 10_000, 10))
            .collect();
        publish(&tables, spec2.clone());
        (0..CLIENTS)
            .filter(|&c| connect(&mut b, &tables, f, c, 10_001, 20) != first[c as usize])
            .count()
    };
    assert_eq!(
        run(true),
        0,
        "a client moved between workers of one gateway"
    );
    assert!(run(false) > 0, "separate tables should have moved someone");
}

/// The table is bounded: more clients than it holds displace the least
/// recently seen, counted; every flow is still forwarded.
#[test]
fn a_full_affinity_table_evicts_counted_and_still_forwards() {
    let f = Family::V4;
    let cfg = PipelineConfig {
        affinity: Arc::new(AffinityTable::new(8)),
        ..config()
    };
    let mut p = pipeline(&cfg);
    let tables = Tables::new(ServiceTable::from_specs(
        vec![spec(f, &ready(&[10, 11, 12]))],
        TableConfig::default(),
    ));
    for c in 0..CLIENTS {
        connect(&mut p, &tables, f, c, 10_000, 10);
    }
    let k = *p.counters();
    assert_eq!(k.flows, CLIENTS as u64);
    assert_eq!(k.affinity_evictions, CLIENTS as u64 - 8);
    assert_eq!(cfg.affinity.len(), 8);
}
