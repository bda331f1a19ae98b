//! From dump files to desired services: the whole control-side reading of
//! real object YAML, checked service by service.

use std::path::{Path, PathBuf};

use control::model::{build, Model, ModelOptions};
use control::objects::load_file;
use dataplane::addr::{Addr, Proto};
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceSpec};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn model(file: &str, node: Option<&str>) -> (Model, Vec<String>) {
    let o = load_file(&data(file)).unwrap();
    let opts = ModelOptions {
        node_name: node.map(str::to_string),
        ..ModelOptions::default()
    };
    (build(&o.services, &o.slices, &opts), o.warnings)
}

fn ip(s: &str) -> Addr {
    Addr::from(s.parse::<std::net::IpAddr>().unwrap())
}

fn be(addr: &str, port: u16, state: BackendState) -> BackendSpec {
    BackendSpec {
        addr: ip(addr),
        port,
        weight: 1,
        state,
    }
}

/// `vip port proto name` per service, the way `vipgate services` would list them.
fn listing(m: &Model) -> Vec<String> {
    m.services
        .iter()
        .map(|s| format!("{} {} {} {}", s.key.vip, s.key.port, s.key.proto, s.name))
        .collect()
}

fn get<'a>(m: &'a Model, vip: &str, port: u16, proto: Proto) -> &'a ServiceSpec {
    m.services
        .iter()
        .find(|s| s.key.vip == ip(vip) && s.key.port == port && s.key.proto == proto)
        .unwrap_or_else(|| panic!("{vip} {port} {proto} missing from {:#?}", listing(m)))
}

#[test]
fn cluster_list_services() {
    let (m, _) = model("cluster_list.yaml", None);
    // The one warning: shop/edge's node port is not served (its VIPs are).
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(
        m.warnings[0].starts_with("Service shop/edge: nodePort 31443 not served"),
        "{:?}",
        m.warnings
    );
    // Sorted by (vip, port, proto); v4-mapped addresses sort before fd00::/8.
    // Headless shop/db and ExternalName shop/payments-upstream are absent.
    assert_eq!(
        listing(&m),
        [
            "198.19.0.1 443 TCP default/kubernetes:https",
            "198.19.0.10 53 TCP kube-system/kube-dns:dns-tcp",
            "198.19.0.10 53 UDP kube-system/kube-dns:dns",
            "198.19.0.10 9153 TCP kube-system/kube-dns:metrics",
            "198.19.0.80 80 TCP shop/web:http",
            "198.19.0.90 443 TCP shop/edge:https",
            "198.19.0.90 443 UDP shop/edge:quic",
            "198.19.100.1 443 TCP shop/edge:https",
            "198.19.100.1 443 UDP shop/edge:quic",
            "198.19.200.1 443 TCP shop/edge:https",
            "198.19.200.1 443 UDP shop/edge:quic",
            "fd00:19::90 443 TCP shop/edge:https",
            "fd00:19::90 443 UDP shop/edge:quic",
            "fd00:200::1 443 TCP shop/edge:https",
            "fd00:200::1 443 UDP shop/edge:quic",
        ]
    );
}

#[test]
fn selectorless_kubernetes_service() {
    let (m, _) = model("cluster_list.yaml", None);
    let s = get(&m, "198.19.0.1", 443, Proto::Tcp);
    assert_eq!(s.backends, [be("198.18.0.10", 6443, BackendState::Ready)]);
    assert_eq!(s.affinity, Affinity::None);
}

#[test]
fn named_target_port_across_two_slices_with_conditions() {
    let (m, _) = model("cluster_list.yaml", None);
    let web = get(&m, "198.19.0.80", 80, Proto::Tcp);
    assert_eq!(
        web.backends,
        [
            be("198.18.2.11", 8080, BackendState::ServingTerminating),
            be("198.18.2.12", 8080, BackendState::Ready),
            be("198.18.2.21", 9090, BackendState::Ready),
            be("198.18.2.22", 9090, BackendState::NotServing),
        ]
    );
    assert_eq!(web.affinity, Affinity::ClientIp { timeout_s: 10800 });
}

#[test]
fn udp_and_tcp_on_the_same_port() {
    let (m, _) = model("cluster_list.yaml", None);
    let both = [
        be("198.18.1.2", 53, BackendState::Ready),
        be("198.18.1.3", 53, BackendState::Ready),
    ];
    assert_eq!(get(&m, "198.19.0.10", 53, Proto::Udp).backends, both);
    assert_eq!(get(&m, "198.19.0.10", 53, Proto::Tcp).backends, both);
    assert_eq!(
        get(&m, "198.19.0.10", 9153, Proto::Tcp).backends[0].port,
        9153
    );
}

#[test]
fn dual_stack_external_and_lb_vips_take_their_family() {
    let (m, _) = model("cluster_list.yaml", None);
    for vip in ["198.19.0.90", "198.19.100.1", "198.19.200.1"] {
        for proto in [Proto::Tcp, Proto::Udp] {
            assert_eq!(
                get(&m, vip, 443, proto).backends,
                [be("198.18.4.1", 8443, BackendState::Ready)]
            );
        }
    }
    for vip in ["fd00:19::90", "fd00:200::1"] {
        for proto in [Proto::Tcp, Proto::Udp] {
            assert_eq!(
                get(&m, vip, 443, proto).backends,
                [be("fd00:18::4:1", 8443, BackendState::Ready)]
            );
        }
    }
}

#[test]
fn multidoc_hand_made_slice_and_bad_service() {
    let (m, load_warnings) = model("multidoc.yaml", Some("node-a"));
    assert_eq!(load_warnings.len(), 2, "{load_warnings:?}");
    assert_eq!(
        listing(&m),
        [
            "198.19.1.5 5432 TCP billing/legacy-db:pg",
            "198.19.1.6 514 UDP billing/syslog:514"
        ]
    );
    assert_eq!(
        get(&m, "198.19.1.5", 5432, Proto::Tcp).backends,
        [
            be("198.18.5.1", 15432, BackendState::Ready),
            be("198.18.5.2", 15432, BackendState::NotServing)
        ]
    );
    // internalTrafficPolicy: Local on node-a keeps node-a's endpoint only.
    assert_eq!(
        get(&m, "198.19.1.6", 514, Proto::Udp).backends,
        [be("198.18.6.1", 5514, BackendState::Ready)]
    );
    // The bad clusterIP costs its own Service, named, and nothing else.
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(m.warnings[0].contains("billing/broken") && m.warnings[0].contains("198.19.1.999"));
}

#[test]
fn traffic_policy_local_without_node_name_uses_every_endpoint() {
    let (m, _) = model("multidoc.yaml", None);
    assert_eq!(get(&m, "198.19.1.6", 514, Proto::Udp).backends.len(), 2);
    let policy: Vec<_> = m
        .warnings
        .iter()
        .filter(|w| w.contains("internalTrafficPolicy"))
        .collect();
    assert_eq!(policy.len(), 1, "{:?}", m.warnings);
    assert!(policy[0].contains("billing/syslog"));
}

#[test]
fn json_named_port() {
    let (m, _) = model("cluster.json", None);
    assert_eq!(listing(&m), ["198.19.2.1 9000 TCP json/api:grpc"]);
    assert_eq!(
        m.services[0].backends,
        [be("198.18.7.1", 50051, BackendState::Ready)]
    );
}
