//! Topology hints and healthCheckNodePort through the live control path:
//! test API server -> kube client (KubeSource) -> incremental Publisher ->
//! published table and health check listeners (on loopback), wired as
//! `vipgate run --kubeconfig --node-name --zone` wires them.

mod kube_common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::admin::Health;
use control::kube_source::{KubeSource, KubeSourceConfig};
use control::model::ModelOptions;
use control::publish::Publisher;
use control::service_health::ServiceHealthServer;
use control::test_api_server::{ApiServer, Resource};
use dataplane::addr::{Addr, Proto};
use dataplane::generation::Tables;
use dataplane::table::TableConfig;
use kube_common::*;
use serde_json::{json, Value};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const CLUSTER_IP: &str = "198.19.0.30";

/// A LoadBalancer Service with `externalTrafficPolicy: Local`, as the API
/// server stores it (health check port allocated).
fn edge(health_port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "edge", "namespace": "shop"},
        "spec": {"type": "LoadBalancer", "clusterIP": CLUSTER_IP, "clusterIPs": [CLUSTER_IP],
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                 "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Cluster",
                 "healthCheckNodePort": health_port, "trafficDistribution": "PreferClose",
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                            "nodePort": 30080}],
                 "selector": {"app": "edge"}},
        "status": {"loadBalancer": {"ingress": [{"ip": "198.19.6.30"}]}}
    })
}

/// (address, node, zone hint, ready)
fn edge_slice(endpoints: &[(&str, &str, Option<&str>, bool)]) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(addr, node, zone, ready)| {
            let mut e = json!({"addresses": [addr], "nodeName": node,
                               "conditions": {"ready": ready, "serving": ready, "terminating": false}});
            if let Some(z) = zone {
                e["zone"] = json!(z);
                e["hints"] = json!({"forZones": [{"name": z}]});
            }
            e
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "edge-x1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "edge",
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": eps
    })
}

fn cluster_backends(tables: &Tables) -> Vec<String> {
    let vip = Addr::from(CLUSTER_IP.parse::<IpAddr>().unwrap());
    let mut v: Vec<String> = tables
        .current()
        .lookup(&vip, 80, Proto::Tcp)
        .map(|e| e.active.iter().map(|b| b.addr.to_string()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The status code of `GET /` on the port; `None` when refused or reset
/// (a connection queued as its listener closes).
fn probe(port: u16) -> Option<u16> {
    let addr = SocketAddr::from((LOOPBACK, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split(' ').nth(1)?.parse().ok()
}

fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn hints_and_health_checks_follow_the_api() {
    let health_port = TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = ApiServer::start().unwrap();
    server.apply(edge(health_port)).unwrap();
    server
        .apply(edge_slice(&[
            ("198.18.1.1", "node-a", Some("zone-a"), true),
            ("198.18.1.2", "node-b", Some("zone-b"), true),
            ("198.18.1.3", "node-c", Some("zone-a"), true),
        ]))
        .unwrap();

    let tables = Tables::empty(TableConfig::default());
    let opts = ModelOptions {
        node_name: Some("node-a".into()),
        zone: Some("zone-a".into()),
        ..ModelOptions::default()
    };
    let mut publisher = Publisher::new(tables.clone(), opts);
    let health = Arc::new(Health::new());
    health.set_synced(true);
    health.set_attached(true);
    let hs = Arc::new(ServiceHealthServer::start(vec![LOOPBACK], Arc::clone(&health)).unwrap());
    let hs2 = Arc::clone(&hs);
    let dir = Scratch::new("topology");
    let cfg = KubeSourceConfig {
        kubeconfig: Some(server.write_kubeconfig(&dir.0).unwrap()),
        ..KubeSourceConfig::default()
    };
    let source = KubeSource::start(cfg, move |snap| {
        let p = publisher.publish_shared(&snap.services, &snap.slices);
        hs2.sync(&p.health_checks);
    })
    .unwrap();

    // Zone hints: the ClusterIP keeps zone-a's endpoints; node-a has one
    // ready endpoint, so its health check is 200.
    until("the zone's endpoints", || {
        cluster_backends(&tables) == ["198.18.1.1", "198.18.1.3"]
    });
    until("health check 200", || probe(health_port) == Some(200));

    // One ready endpoint loses its hint: every endpoint. node-a's endpoint
    // goes unready: 503.
    server
        .apply(edge_slice(&[
            ("198.18.1.1", "node-a", Some("zone-a"), false),
            ("198.18.1.2", "node-b", None, true),
            ("198.18.1.3", "node-c", Some("zone-a"), true),
        ]))
        .unwrap();
    until("the fallback to every endpoint", || {
        cluster_backends(&tables) == ["198.18.1.2", "198.18.1.3"]
    });
    until("health check 503", || probe(health_port) == Some(503));

    // Cluster policy: no health check any more, its listener closes.
    let mut cluster = edge(health_port);
    cluster["spec"]["externalTrafficPolicy"] = json!("Cluster");
    server.apply(cluster).unwrap();
    until("the listener closed", || probe(health_port).is_none());

    // Local again, then the Service deleted: closed again.
    server.apply(edge(health_port)).unwrap();
    until("health check back (503)", || {
        probe(health_port) == Some(503)
    });
    server.delete(Resource::Service, "shop", "edge").unwrap();
    until("the listener closed after the deletion", || {
        probe(health_port).is_none()
    });

    source.stop();
    server.pause();
}

#[test]
fn the_zone_comes_from_the_node_label() {
    let server = ApiServer::start().unwrap();
    server.put_node(
        "node-a",
        &[
            ("kubernetes.io/hostname", "node-a"),
            ("topology.kubernetes.io/zone", "zone-a"),
        ],
    );
    server.put_node("node-b", &[("kubernetes.io/hostname", "node-b")]);
    let dir = Scratch::new("node");
    let kubeconfig = Some(server.write_kubeconfig(&dir.0).unwrap());
    let zone = |node: &str| control::kube_source::node_zone(kubeconfig.clone(), node);
    assert_eq!(zone("node-a"), Ok(Some("zone-a".to_string())));
    assert_eq!(zone("node-b"), Ok(None));
    let err = zone("node-z").unwrap_err();
    assert!(err.contains("not found"), "{err}");
}
