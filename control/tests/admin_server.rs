//! The admin endpoint over real TCP: a table built from specs, served on
//! 127.0.0.1:0, read back with the CLI's own blocking client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use control::admin::{fetch_services, http_request, render_services_table, AdminServer, Health};
use dataplane::addr::{Addr, Proto};
use dataplane::generation::Tables;
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use serde_json::Value;

fn backend(last: u8, state: BackendState, weight: u32) -> BackendSpec {
    BackendSpec {
        addr: Addr::from_v4([198, 18, 1, last]),
        port: 8080,
        weight,
        state,
    }
}

fn web() -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey {
            vip: Addr::from_v4([198, 19, 0, 10]),
            port: 80,
            proto: Proto::Tcp,
        },
        name: "default/web:http".into(),
        backends: vec![
            backend(1, BackendState::Ready, 1),
            backend(2, BackendState::ServingTerminating, 1),
            backend(3, BackendState::NotServing, 1),
        ],
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    }
}

fn dns_v6() -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey {
            vip: Addr::from_v6([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53]),
            port: 53,
            proto: Proto::Udp,
        },
        name: "kube-system/dns:dns".into(),
        backends: vec![BackendSpec {
            addr: Addr::from_v6([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]),
            port: 5353,
            weight: 1,
            state: BackendState::ServingTerminating,
        }],
        affinity: Affinity::ClientIp { timeout_s: 10800 },
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    }
}

/// Same VIP as `web`, lower port: must sort before it.
fn web_admin() -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey {
            vip: Addr::from_v4([198, 19, 0, 10]),
            port: 22,
            proto: Proto::Tcp,
        },
        name: "default/web:ssh".into(),
        backends: vec![
            backend(4, BackendState::Ready, 3),
            backend(5, BackendState::Ready, 1),
        ],
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    }
}

fn start(specs: Vec<ServiceSpec>) -> (AdminServer, SocketAddr, Tables, Arc<Health>) {
    let tables = Tables::new(ServiceTable::from_specs(specs, TableConfig::default()));
    let health = Arc::new(Health::new());
    let server = AdminServer::start(
        "127.0.0.1:0".parse().unwrap(),
        tables.clone(),
        Arc::clone(&health),
    )
    .expect("admin server starts");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    (server, addr, tables, health)
}

#[test]
fn services_lists_the_live_table_sorted_by_key() {
    let (_server, addr, tables, _) = start(vec![dns_v6(), web(), web_admin()]);
    let table = tables.current();
    let v = fetch_services(addr).expect("GET /services");
    assert_eq!(v["generation"], 1);
    let services = v["services"].as_array().expect("services list");
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // IPv4 (v4-mapped ::ffff:...) sorts before fd00::, then port order.
    assert_eq!(
        names,
        ["default/web:ssh", "default/web:http", "kube-system/dns:dns"]
    );

    let http = &services[1];
    assert_eq!(http["vip"], "198.19.0.10");
    assert_eq!(http["port"], 80);
    assert_eq!(http["protocol"], "TCP");
    assert_eq!(http["affinity"], "None");
    assert_eq!(http["affinity_timeout_s"], Value::Null);
    let entry = table
        .lookup(&Addr::from_v4([198, 19, 0, 10]), 80, Proto::Tcp)
        .unwrap();
    assert_eq!(http["table_size"], entry.maglev.size());
    let backends = http["backends"].as_array().unwrap();
    let summary: Vec<(&str, u64, &str, bool)> = backends
        .iter()
        .map(|b| {
            (
                b["addr"].as_str().unwrap(),
                b["port"].as_u64().unwrap(),
                b["state"].as_str().unwrap(),
                b["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("198.18.1.1", 8080, "ready", true),
            ("198.18.1.2", 8080, "serving-terminating", false),
            ("198.18.1.3", 8080, "not-serving", false),
        ]
    );

    let ssh = &services[0];
    assert_eq!(ssh["backends"][0]["weight"], 3);
    assert_eq!(ssh["backends"][1]["active"], true);

    // No Ready backend: the serving-terminating one takes new flows.
    let dns = &services[2];
    assert_eq!(dns["vip"], "fd00::53");
    assert_eq!(dns["protocol"], "UDP");
    assert_eq!(dns["affinity"], "ClientIP");
    assert_eq!(dns["affinity_timeout_s"], 10800);
    assert_eq!(dns["backends"][0]["addr"], "fd00::101");
    assert_eq!(dns["backends"][0]["state"], "serving-terminating");
    assert_eq!(dns["backends"][0]["active"], true);
}

#[test]
fn published_generations_show_up() {
    let (server, addr, tables, _) = start(vec![web()]);
    assert_eq!(fetch_services(addr).unwrap()["generation"], 1);

    let mut changed = web();
    changed.backends[1].state = BackendState::Ready;
    let (next, _) = ServiceTable::build(vec![changed, dns_v6()], &tables.current());
    tables.publish(next);

    let v = fetch_services(addr).unwrap();
    assert_eq!(v["generation"], 2);
    assert_eq!(v["services"].as_array().unwrap().len(), 2);
    assert_eq!(v["services"][0]["backends"][1]["state"], "ready");
    assert_eq!(v["services"][0]["backends"][1]["active"], true);

    let text = render_services_table(&v);
    assert!(text.starts_with("generation 2, 2 services\n"), "{text}");
    assert!(text.contains("198.19.0.10:80/TCP"), "{text}");
    assert!(text.contains("2/3"), "ready/total of web: {text}");
    assert!(text.contains("[fd00::53]:53/UDP"), "{text}");
    server.stop();
}

#[test]
fn healthz_is_ok_and_readyz_follows_health() {
    let (_server, addr, _, health) = start(vec![web()]);
    let get = |path: &str| http_request(addr, "GET", path).unwrap();

    let h = get("/healthz");
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));

    let r = get("/readyz");
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "waiting for the first full sync\n")
    );

    health.set_source_error(Some("connection refused".into()));
    let r = get("/readyz");
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "source error: connection refused\n")
    );

    health.set_source_error(None);
    health.set_synced(true);
    let r = get("/readyz");
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "interfaces not attached\n")
    );

    health.set_attached(true);
    let r = get("/readyz");
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));

    // After the first sync, an API outage keeps readiness (last good tables
    // serve) but is reported.
    health.set_source_error(Some("watch services: 503".into()));
    let r = get("/readyz");
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("ready\n"), "{:?}", r.body);
    assert!(
        r.body.contains("source error: watch services: 503"),
        "{:?}",
        r.body
    );

    health.set_attached(false);
    assert_eq!(get("/readyz").status, 503);
    assert_eq!(
        get("/healthz").status,
        200,
        "liveness does not depend on readiness"
    );
}

#[test]
fn unknown_paths_404_and_other_methods_405() {
    let (_server, addr, _, _) = start(vec![web()]);
    assert_eq!(http_request(addr, "GET", "/").unwrap().status, 404);
    assert_eq!(http_request(addr, "GET", "/metric").unwrap().status, 404);
    assert_eq!(http_request(addr, "POST", "/nope").unwrap().status, 404);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/services", "/healthz", "/readyz", "/metrics", "/stats"] {
            let r = http_request(addr, method, path).unwrap();
            assert_eq!(r.status, 405, "{method} {path}");
        }
    }
    // The query string is not part of the route.
    assert_eq!(
        http_request(addr, "GET", "/healthz?verbose=1")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn garbage_requests_get_an_error_not_a_dead_server() {
    let (_server, addr, _, _) = start(vec![web()]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    // hyper answers 400 or just closes; either way the read must end.
    let _ = s.read_to_end(&mut reply);
    if !reply.is_empty() {
        assert!(
            reply.starts_with(b"HTTP/1.1 4"),
            "{:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    assert_eq!(http_request(addr, "GET", "/healthz").unwrap().status, 200);
}

#[test]
fn stop_closes_the_port_and_bind_errors_are_returned() {
    let (server, addr, tables, health) = start(vec![]);
    assert_eq!(
        fetch_services(addr).unwrap()["services"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The port is taken while the server runs.
    let err = AdminServer::start(addr, tables.clone(), Arc::clone(&health));
    assert!(err.is_err(), "second bind on {addr} must fail");

    server.stop();
    let e = fetch_services(addr).unwrap_err();
    assert!(e.contains(&addr.to_string()), "{e}");
}
