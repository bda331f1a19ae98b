//! Unit tests of `build` over objects shaped like the API server's.

use super::*;
use dataplane::addr::{Addr, Proto};
use dataplane::service::{Affinity, BackendSpec, BackendState, NoEndpoints};
use serde_json::{json, Value};

pub(super) fn svc(v: Value) -> Service {
    serde_json::from_value(v).expect("test Service deserializes")
}

pub(super) fn slice(v: Value) -> EndpointSlice {
    serde_json::from_value(v).expect("test EndpointSlice deserializes")
}

pub(super) fn ip(s: &str) -> Addr {
    Addr::from(s.parse::<std::net::IpAddr>().unwrap())
}

pub(super) fn be(addr: &str, port: u16, state: BackendState) -> BackendSpec {
    BackendSpec {
        addr: ip(addr),
        port,
        weight: 1,
        state,
    }
}

pub(super) fn run(services: Vec<Service>, slices: Vec<EndpointSlice>) -> Model {
    build(&services, &slices, &ModelOptions::default())
}

pub(super) fn find<'a>(m: &'a Model, vip: &str, port: u16, proto: Proto) -> &'a ServiceSpec {
    m.services
        .iter()
        .find(|s| s.key.vip == ip(vip) && s.key.port == port && s.key.proto == proto)
        .unwrap_or_else(|| panic!("no service {vip}:{port}/{proto} in {:#?}", m.services))
}

/// A ClusterIP Service with one port, as the API server returns it.
pub(super) fn cluster_svc(name: &str, cip: &str, ports: Value) -> Service {
    svc(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "uid": "6a1c1e04-0000-4000-8000-000000000001",
                     "resourceVersion": "1234", "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"type": "ClusterIP", "clusterIP": cip, "clusterIPs": [cip],
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                 "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
                 "selector": {"app": name}, "ports": ports},
        "status": {"loadBalancer": {}}
    }))
}

pub(super) fn eps(
    name: &str,
    service: &str,
    family: &str,
    ports: Value,
    endpoints: Value,
) -> EndpointSlice {
    slice(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "shop", "generateName": format!("{service}-"),
                     "labels": {"kubernetes.io/service-name": service,
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service,
                                          "uid": "6a1c1e04-0000-4000-8000-000000000001",
                                          "blockOwnerDeletion": true, "controller": true}]},
        "addressType": family,
        "ports": ports,
        "endpoints": endpoints
    }))
}

pub(super) fn ready_ep(addr: &str, node: &str) -> Value {
    json!({"addresses": [addr], "nodeName": node,
           "conditions": {"ready": true, "serving": true, "terminating": false},
           "targetRef": {"kind": "Pod", "namespace": "shop", "name": format!("pod-{addr}")}})
}

#[test]
fn one_port_one_slice() {
    let m = run(
        vec![cluster_svc(
            "web",
            "198.19.0.10",
            json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]),
        )],
        vec![eps(
            "web-abc",
            "web",
            "IPv4",
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
            json!([ready_ep("198.18.1.2", "n1"), ready_ep("198.18.1.1", "n2")]),
        )],
    );
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert_eq!(m.services.len(), 1);
    let s = &m.services[0];
    assert_eq!(s.name, "shop/web:http");
    assert_eq!(
        s.key,
        ServiceKey {
            vip: ip("198.19.0.10"),
            port: 80,
            proto: Proto::Tcp
        }
    );
    assert_eq!(s.affinity, Affinity::None);
    // Sorted by address, whatever the slice order.
    assert_eq!(
        s.backends,
        vec![
            be("198.18.1.1", 8080, BackendState::Ready),
            be("198.18.1.2", 8080, BackendState::Ready)
        ]
    );
}

#[test]
fn named_target_port_resolved_per_slice() {
    // Mid-rollout: the old pods expose "http" on 8080, the new ones on 9090.
    let m = run(
        vec![cluster_svc(
            "web",
            "198.19.0.10",
            json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]),
        )],
        vec![
            eps(
                "web-old",
                "web",
                "IPv4",
                json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
                json!([ready_ep("198.18.1.1", "n1")]),
            ),
            eps(
                "web-new",
                "web",
                "IPv4",
                json!([{"name": "http", "port": 9090, "protocol": "TCP"}]),
                json!([ready_ep("198.18.1.2", "n1")]),
            ),
        ],
    );
    assert_eq!(
        find(&m, "198.19.0.10", 80, Proto::Tcp).backends,
        vec![
            be("198.18.1.1", 8080, BackendState::Ready),
            be("198.18.1.2", 9090, BackendState::Ready)
        ]
    );
}

#[test]
fn ports_match_by_name_and_protocol() {
    let m = run(
        vec![cluster_svc(
            "dns",
            "198.19.0.53",
            json!([
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]),
        )],
        vec![eps(
            "dns-1",
            "dns",
            "IPv4",
            // A decoy: the name "dns" with the wrong protocol must not match dns-tcp.
            json!([{"name": "metrics", "port": 9153, "protocol": "TCP"},
                        {"name": "dns", "port": 5353, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 5354, "protocol": "TCP"}]),
            json!([ready_ep("198.18.1.53", "n1")]),
        )],
    );
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let keys: Vec<_> = m
        .services
        .iter()
        .map(|s| (s.key.port, s.key.proto, s.name.as_str()))
        .collect();
    // Sorted by key: Proto's order is Icmp < Tcp < Udp.
    assert_eq!(
        keys,
        vec![
            (53, Proto::Tcp, "shop/dns:dns-tcp"),
            (53, Proto::Udp, "shop/dns:dns"),
            (9153, Proto::Tcp, "shop/dns:metrics")
        ]
    );
    assert_eq!(
        find(&m, "198.19.0.53", 53, Proto::Udp).backends[0].port,
        5353
    );
    assert_eq!(
        find(&m, "198.19.0.53", 53, Proto::Tcp).backends[0].port,
        5354
    );
    assert_eq!(
        find(&m, "198.19.0.53", 9153, Proto::Tcp).backends[0].port,
        9153
    );
}

#[test]
fn unnamed_single_port_named_by_number() {
    let m = run(
        vec![cluster_svc(
            "api",
            "198.19.0.11",
            json!([{"port": 443, "targetPort": 6443}]),
        )],
        vec![eps(
            "api-1",
            "api",
            "IPv4",
            json!([{"port": 6443}]),
            json!([{"addresses": ["198.18.1.9"]}]),
        )],
    );
    let s = find(&m, "198.19.0.11", 443, Proto::Tcp);
    assert_eq!(s.name, "shop/api:443");
    // No conditions at all: ready.
    assert_eq!(
        s.backends,
        vec![be("198.18.1.9", 6443, BackendState::Ready)]
    );
}

#[test]
fn conditions_map_to_states() {
    let conds = |c: Value| EndpointConditions::deserialize(c).unwrap();
    use k8s_openapi::api::discovery::v1::EndpointConditions;
    use serde::Deserialize;
    use slices::state_of;
    assert_eq!(state_of(None), BackendState::Ready);
    assert_eq!(state_of(Some(&conds(json!({})))), BackendState::Ready);
    assert_eq!(
        state_of(Some(&conds(json!({"ready": true})))),
        BackendState::Ready
    );
    assert_eq!(
        state_of(Some(&conds(
            json!({"ready": false, "serving": true, "terminating": true})
        ))),
        BackendState::ServingTerminating
    );
    assert_eq!(
        state_of(Some(&conds(
            json!({"ready": false, "serving": false, "terminating": true})
        ))),
        BackendState::NotServing
    );
    // serving unset follows ready (false); terminating unset is false.
    assert_eq!(
        state_of(Some(&conds(json!({"ready": false, "terminating": true})))),
        BackendState::NotServing
    );
    assert_eq!(
        state_of(Some(&conds(json!({"ready": false, "serving": true})))),
        BackendState::NotServing
    );
    assert_eq!(
        state_of(Some(&conds(json!({"ready": false})))),
        BackendState::NotServing
    );
}

#[test]
fn conditions_flow_into_backends_and_duplicates_keep_best() {
    let m = run(
        vec![cluster_svc(
            "web",
            "198.19.0.10",
            json!([{"name": "http", "port": 80}]),
        )],
        vec![
            eps(
                "web-a",
                "web",
                "IPv4",
                json!([{"name": "http", "port": 8080}]),
                json!([
                {"addresses": ["198.18.1.1"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["198.18.1.2"], "conditions": {"ready": false, "serving": false, "terminating": false}},
                {"addresses": ["198.18.1.3"], "conditions": {"ready": false, "serving": false}}]),
            ),
            // The same pod seen again in a second slice (slices overlap briefly during moves).
            eps(
                "web-b",
                "web",
                "IPv4",
                json!([{"name": "http", "port": 8080}]),
                json!([
                {"addresses": ["198.18.1.3"], "conditions": {"ready": true}},
                {"addresses": ["198.18.1.2"], "conditions": {"ready": false}}]),
            ),
        ],
    );
    assert_eq!(
        find(&m, "198.19.0.10", 80, Proto::Tcp).backends,
        vec![
            be("198.18.1.1", 8080, BackendState::ServingTerminating),
            be("198.18.1.2", 8080, BackendState::NotServing),
            be("198.18.1.3", 8080, BackendState::Ready),
        ]
    );
}

#[test]
fn dual_stack_uses_matching_family() {
    let s = svc(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "198.19.0.10", "clusterIPs": ["198.19.0.10", "fd00:19::10"],
                 "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }));
    let m = run(
        vec![s],
        vec![
            eps(
                "web-v4",
                "web",
                "IPv4",
                json!([{"name": "http", "port": 8080}]),
                json!([ready_ep("198.18.1.1", "n1")]),
            ),
            eps(
                "web-v6",
                "web",
                "IPv6",
                json!([{"name": "http", "port": 8080}]),
                json!([ready_ep("fd00:18::1", "n1")]),
            ),
            // FQDN slices are ignored quietly.
            eps(
                "web-fqdn",
                "web",
                "FQDN",
                json!([{"name": "http", "port": 8080}]),
                json!([{"addresses": ["web.example.invalid"]}]),
            ),
        ],
    );
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert_eq!(m.services.len(), 2);
    assert_eq!(
        find(&m, "198.19.0.10", 80, Proto::Tcp).backends,
        vec![be("198.18.1.1", 8080, BackendState::Ready)]
    );
    assert_eq!(
        find(&m, "fd00:19::10", 80, Proto::Tcp).backends,
        vec![be("fd00:18::1", 8080, BackendState::Ready)]
    );
    // v4 (mapped) keys sort before fd00::.
    assert!(m.services[0].key.vip.is_v4());
}

#[test]
fn headless_and_external_name_carry_no_vip() {
    let headless = svc(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "None", "clusterIPs": ["None"], "externalIPs": ["198.19.1.1"],
                 "selector": {"app": "db"}, "ports": [{"port": 5432}]}}));
    let external = svc(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "ext", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "db.example.invalid", "ports": [{"port": 5432}]}}));
    let m = run(
        vec![headless, external],
        vec![eps(
            "db-1",
            "db",
            "IPv4",
            json!([{"port": 5432}]),
            json!([ready_ep("198.18.1.7", "n1")]),
        )],
    );
    assert!(m.services.is_empty(), "{:#?}", m.services);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn selectorless_service_uses_hand_made_slice() {
    let s = svc(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "legacy", "namespace": "shop"},
        "spec": {"clusterIP": "198.19.0.20", "ports": [{"name": "pg", "port": 5432, "targetPort": 15432}]}}));
    let hand = slice(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "legacy-1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "legacy"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 15432, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["198.18.2.1"]}, {"addresses": ["198.18.2.2"]}]}),
    );
    let m = run(vec![s], vec![hand]);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert_eq!(
        find(&m, "198.19.0.20", 5432, Proto::Tcp).backends,
        vec![
            be("198.18.2.1", 15432, BackendState::Ready),
            be("198.18.2.2", 15432, BackendState::Ready)
        ]
    );
}

#[test]
fn session_affinity_timeouts() {
    let mk = |name: &str, cfg: Value| {
        svc(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
            "spec": {"clusterIP": "198.19.0.30", "sessionAffinity": "ClientIP",
                     "sessionAffinityConfig": cfg, "ports": [{"port": match name { "a" => 1, "b" => 2, _ => 3 }}]}}),
        )
    };
    let m = run(
        vec![
            mk("a", json!({"clientIP": {"timeoutSeconds": 600}})),
            mk("b", json!({})),
            mk("c", json!({"clientIP": {"timeoutSeconds": 0}})),
        ],
        vec![],
    );
    assert_eq!(
        find(&m, "198.19.0.30", 1, Proto::Tcp).affinity,
        Affinity::ClientIp { timeout_s: 600 }
    );
    assert_eq!(
        find(&m, "198.19.0.30", 2, Proto::Tcp).affinity,
        Affinity::ClientIp { timeout_s: 10800 }
    );
    assert_eq!(
        find(&m, "198.19.0.30", 3, Proto::Tcp).affinity,
        Affinity::ClientIp { timeout_s: 10800 }
    );
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(m.warnings[0].contains("shop/c"));
}

fn local_svc() -> Service {
    svc(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "198.19.0.10", "internalTrafficPolicy": "Local",
                 "ports": [{"name": "http", "port": 80}, {"name": "alt", "port": 81}]}}),
    )
}

fn local_slices() -> Vec<EndpointSlice> {
    vec![eps(
        "web-1",
        "web",
        "IPv4",
        json!([{"name": "http", "port": 8080}, {"name": "alt", "port": 8081}]),
        json!([ready_ep("198.18.1.1", "node-a"), ready_ep("198.18.1.2", "node-b"),
               {"addresses": ["198.18.1.3"]}]),
    )]
}

#[test]
fn internal_traffic_policy_local_keeps_this_nodes_endpoints() {
    let opts = ModelOptions {
        node_name: Some("node-b".into()),
        ..ModelOptions::default()
    };
    let m = build(&[local_svc()], &local_slices(), &opts);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert_eq!(
        find(&m, "198.19.0.10", 80, Proto::Tcp).backends,
        vec![be("198.18.1.2", 8080, BackendState::Ready)]
    );
    assert_eq!(
        find(&m, "198.19.0.10", 81, Proto::Tcp).backends,
        vec![be("198.18.1.2", 8081, BackendState::Ready)]
    );

    assert_eq!(
        find(&m, "198.19.0.10", 80, Proto::Tcp).no_endpoints,
        NoEndpoints::Reject
    );

    // A node with no endpoints gets none: traffic is dropped, as kube-proxy does.
    let opts = ModelOptions {
        node_name: Some("node-z".into()),
        ..ModelOptions::default()
    };
    let m = build(&[local_svc()], &local_slices(), &opts);
    let spec = find(&m, "198.19.0.10", 80, Proto::Tcp);
    assert!(spec.backends.is_empty());
    assert_eq!(spec.no_endpoints, NoEndpoints::Drop);

    // No endpoints anywhere: rejected as any Service without endpoints.
    let m = build(&[local_svc()], &[], &opts);
    assert_eq!(
        find(&m, "198.19.0.10", 80, Proto::Tcp).no_endpoints,
        NoEndpoints::Reject
    );
}

#[test]
fn internal_traffic_policy_local_without_node_warns_once() {
    let m = run(vec![local_svc()], local_slices());
    assert_eq!(find(&m, "198.19.0.10", 80, Proto::Tcp).backends.len(), 3);
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(m.warnings[0].contains("shop/web") && m.warnings[0].contains("internalTrafficPolicy"));
}

#[test]
fn external_ips_and_lb_ingress_are_vips() {
    let s = svc(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "LoadBalancer", "clusterIP": "198.19.0.10", "clusterIPs": ["198.19.0.10"],
                 "externalIPs": ["198.19.5.1", "198.19.5.2"], "externalTrafficPolicy": "Local",
                 "internalTrafficPolicy": "Cluster", "healthCheckNodePort": 32123,
                 "ports": [{"name": "http", "port": 80, "nodePort": 30080, "targetPort": 8080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "198.19.6.1", "ipMode": "VIP"},
                                                 {"ip": "198.19.5.2"}, {"hostname": "lb.example.invalid"}]}}}),
    );
    let opts = ModelOptions {
        node_name: Some("node-a".into()),
        ..ModelOptions::default()
    };
    let m = build(&[s], &local_slices_named("web"), &opts);
    // Its node port is not served, and the operator is told so.
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(
        m.warnings[0].contains("shop/web") && m.warnings[0].contains("nodePort 30080 not served"),
        "{:?}",
        m.warnings
    );
    let vips: Vec<String> = m.services.iter().map(|s| s.key.vip.to_string()).collect();
    assert_eq!(
        vips,
        ["198.19.0.10", "198.19.5.1", "198.19.5.2", "198.19.6.1"]
    );
    // The ClusterIP follows internalTrafficPolicy (Cluster): every endpoint.
    assert_eq!(find(&m, "198.19.0.10", 80, Proto::Tcp).backends.len(), 3);
    // External VIPs follow externalTrafficPolicy (Local): this node's only.
    for vip in ["198.19.5.1", "198.19.5.2", "198.19.6.1"] {
        assert_eq!(
            find(&m, vip, 80, Proto::Tcp).backends,
            vec![be("198.18.1.1", 8080, BackendState::Ready)]
        );
        assert_eq!(find(&m, vip, 80, Proto::Tcp).name, "shop/web:http");
    }
    // This node answers the load balancer's health check: one ready endpoint here.
    assert_eq!(
        m.health_checks,
        vec![HealthCheck {
            namespace: "shop".into(),
            name: "web".into(),
            port: 32123,
            local_endpoints: 1
        }]
    );
}

/// loadBalancerSourceRanges restrict the load-balancer IPs only (an
/// address that is also an externalIP included), not the ClusterIP or the
/// other externalIPs; the annotation stands in when the field is empty;
/// a bad entry is skipped with a warning.
#[test]
fn load_balancer_source_ranges_apply_to_lb_ips_only() {
    let lb = |extra: serde_json::Value, annotations: serde_json::Value| {
        let mut spec = json!({"type": "LoadBalancer", "clusterIP": "198.19.0.10",
            "externalIPs": ["198.19.5.1", "198.19.5.2"],
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        svc(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": "198.19.6.1"}, {"ip": "198.19.5.2"}]}}}))
    };
    let ranges = |m: &Model, vip: &str| -> Vec<String> {
        find(m, vip, 80, Proto::Tcp)
            .source_ranges
            .iter()
            .map(|r| format!("{}/{}", r.net, r.bits))
            .collect()
    };
    let s = lb(
        json!({"loadBalancerSourceRanges": ["198.18.7.9/24", "fd00::/8", "not-a-cidr"]}),
        json!({}),
    );
    let m = build(&[s], &local_slices_named("web"), &ModelOptions::default());
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(m.warnings[0].contains("\"not-a-cidr\" is not a CIDR"));
    let want = ["198.18.7.0/120", "fd00::/8"];
    assert_eq!(ranges(&m, "198.19.6.1"), want);
    assert_eq!(
        ranges(&m, "198.19.5.2"),
        want,
        "LB IP also listed as externalIP"
    );
    assert!(ranges(&m, "198.19.0.10").is_empty(), "ClusterIP");
    assert!(ranges(&m, "198.19.5.1").is_empty(), "plain externalIP");

    let s = lb(
        json!({}),
        json!({"service.beta.kubernetes.io/load-balancer-source-ranges": "203.0.113.0/24, 198.18.0.0/15"}),
    );
    let m = build(&[s], &local_slices_named("web"), &ModelOptions::default());
    assert_eq!(
        ranges(&m, "198.19.6.1"),
        ["203.0.113.0/120", "198.18.0.0/111"]
    );

    // Only IPv6 ranges on an IPv4 LB IP: nobody gets in, and it is said.
    let s = lb(json!({"loadBalancerSourceRanges": ["fd00::/8"]}), json!({}));
    let m = build(&[s], &local_slices_named("web"), &ModelOptions::default());
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("no client can reach it")),
        "{:?}",
        m.warnings
    );
    assert!(!find(&m, "198.19.6.1", 80, Proto::Tcp).admits(&Addr::from_v4([198, 18, 7, 1])));
}

fn local_slices_named(service: &str) -> Vec<EndpointSlice> {
    vec![eps(
        "web-1",
        service,
        "IPv4",
        json!([{"name": "http", "port": 8080}]),
        json!([ready_ep("198.18.1.1", "node-a"), ready_ep("198.18.1.2", "node-b"), {"addresses": ["198.18.1.3"]}]),
    )]
}

#[test]
fn udp_and_sctp() {
    let m = run(
        vec![cluster_svc(
            "media",
            "198.19.0.40",
            json!([
            {"name": "rtp", "port": 5004, "protocol": "UDP"},
            {"name": "sig", "port": 3868, "protocol": "SCTP"}]),
        )],
        vec![eps(
            "media-1",
            "media",
            "IPv4",
            json!([{"name": "rtp", "port": 5004, "protocol": "UDP"}, {"name": "sig", "port": 3868, "protocol": "SCTP"}]),
            json!([ready_ep("198.18.3.1", "n1")]),
        )],
    );
    assert_eq!(m.services.len(), 2);
    let s = find(&m, "198.19.0.40", 5004, Proto::Udp);
    assert_eq!(
        s.backends,
        vec![be("198.18.3.1", 5004, BackendState::Ready)]
    );
    let s = find(&m, "198.19.0.40", 3868, Proto::Sctp);
    assert_eq!(
        s.backends,
        vec![be("198.18.3.1", 3868, BackendState::Ready)]
    );
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

/// An SCTP Service port is matched with the SCTP EndpointSlice port only:
/// a TCP port of the same name and number elsewhere is not its endpoint.
#[test]
fn sctp_ports_match_sctp_endpoint_ports_only() {
    let m = run(
        vec![cluster_svc(
            "diameter",
            "198.19.0.41",
            json!([{"name": "dia", "port": 3868, "protocol": "SCTP", "targetPort": "dia"}]),
        )],
        vec![
            eps(
                "diameter-1",
                "diameter",
                "IPv4",
                json!([{"name": "dia", "port": 3869, "protocol": "SCTP"}]),
                json!([ready_ep("198.18.3.2", "n1")]),
            ),
            eps(
                "diameter-2",
                "diameter",
                "IPv4",
                json!([{"name": "dia", "port": 3870, "protocol": "TCP"}]),
                json!([ready_ep("198.18.3.3", "n1")]),
            ),
        ],
    );
    let s = find(&m, "198.19.0.41", 3868, Proto::Sctp);
    assert_eq!(
        s.backends,
        vec![be("198.18.3.2", 3869, BackendState::Ready)]
    );
}

#[test]
fn bad_objects_are_skipped_with_warnings() {
    let bad_ip = cluster_svc("bad", "198.19.0.300", json!([{"port": 80}]));
    let zero_port = cluster_svc(
        "zero",
        "198.19.0.51",
        json!([{"name": "z", "port": 0}, {"name": "ok", "port": 81}]),
    );
    let good = cluster_svc("good", "198.19.0.50", json!([{"port": 80}]));
    let m = run(
        vec![bad_ip, zero_port, good],
        vec![
            eps(
                "good-1",
                "good",
                "IPv4",
                json!([{"port": 8080}]),
                json!([
            {"addresses": ["198.18.1.1"]},
            {"addresses": ["not-an-ip"]},
            {"addresses": []},
            {"addresses": ["fd00::1"]}]),
            ),
            eps(
                "good-2",
                "good",
                "IPv4",
                json!([{"port": null}, {"port": 70000}]),
                json!([{"addresses": ["198.18.1.2"]}]),
            ),
            eps(
                "good-3",
                "good",
                "IPv4",
                json!([]),
                json!([{"addresses": ["198.18.1.4"]}]),
            ),
            eps(
                "good-4",
                "good",
                "IPv9",
                json!([{"port": 8080}]),
                json!([{"addresses": ["198.18.1.5"]}]),
            ),
            eps(
                "typo-1",
                "goood",
                "IPv4",
                json!([{"port": 8080}]),
                json!([{"addresses": ["198.18.1.6"]}]),
            ),
        ],
    );
    let keys: Vec<_> = m.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(keys, ["shop/good:80", "shop/zero:ok"]);
    assert_eq!(
        find(&m, "198.19.0.50", 80, Proto::Tcp).backends,
        vec![be("198.18.1.1", 8080, BackendState::Ready)]
    );
    let expect = [
        ("good-1", "not-an-ip"),
        ("good-1", "no address"),
        ("good-1", "does not match addressType"),
        ("good-2", "no number"),
        ("good-2", "70000"),
        ("good-3", "no ports"),
        ("good-4", "IPv9"),
        ("shop/bad", "198.19.0.300"),
        ("shop/zero", "port z"),
        ("typo-1", "shop/goood is not in the input"),
    ];
    for (who, what) in expect {
        assert_eq!(
            m.warnings
                .iter()
                .filter(|w| w.contains(who) && w.contains(what))
                .count(),
            1,
            "want one warning with {who:?} and {what:?} in {:#?}",
            m.warnings
        );
    }
    assert_eq!(m.warnings.len(), expect.len(), "{:#?}", m.warnings);
}

#[test]
fn clashing_vips_first_by_name_wins_whatever_the_order() {
    let a = cluster_svc("a", "198.19.0.60", json!([{"port": 80}]));
    let b = svc(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "namespace": "shop"},
        "spec": {"clusterIP": "198.19.0.61", "externalIPs": ["198.19.0.60"], "ports": [{"port": 80}]}}),
    );
    for services in [vec![a.clone(), b.clone()], vec![b, a]] {
        let m = run(services, vec![]);
        assert_eq!(find(&m, "198.19.0.60", 80, Proto::Tcp).name, "shop/a:80");
        assert_eq!(find(&m, "198.19.0.61", 80, Proto::Tcp).name, "shop/b:80");
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert!(m.warnings[0].contains("shop/b:80") && m.warnings[0].contains("shop/a:80"));
    }
}

#[test]
fn duplicate_objects_are_reported_once() {
    let a = cluster_svc("a", "198.19.0.60", json!([{"port": 80}]));
    let s = eps(
        "a-1",
        "a",
        "IPv4",
        json!([{"port": 8080}]),
        json!([ready_ep("198.18.1.1", "n")]),
    );
    let m = run(vec![a.clone(), a], vec![s.clone(), s]);
    assert_eq!(m.services.len(), 1);
    assert_eq!(m.services[0].backends.len(), 1);
    assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
}

#[test]
fn output_is_sorted_and_independent_of_input_order() {
    let services = vec![
        cluster_svc("z", "198.19.0.2", json!([{"port": 80}, {"port": 22}])),
        cluster_svc("y", "198.19.0.1", json!([{"port": 443}])),
    ];
    let slices = vec![
        eps(
            "z-1",
            "z",
            "IPv4",
            json!([{"port": 8080}]),
            json!([ready_ep("198.18.1.9", "n"), ready_ep("198.18.1.3", "n")]),
        ),
        eps(
            "z-2",
            "z",
            "IPv4",
            json!([{"port": 8080}]),
            json!([ready_ep("198.18.1.5", "n")]),
        ),
    ];
    let m1 = run(services.clone(), slices.clone());
    let m2 = run(
        services.into_iter().rev().collect(),
        slices.into_iter().rev().collect(),
    );
    assert_eq!(m1.services, m2.services);
    let keys: Vec<_> = m1.services.iter().map(|s| s.key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 3);
}

/// A NodePort Service as the API server returns it (single-stack IPv4,
/// two ports with node ports, one without).
fn node_port_svc(policy: &str) -> Service {
    svc(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "NodePort", "clusterIP": "198.19.0.10", "clusterIPs": ["198.19.0.10"],
                 "ipFamilies": ["IPv4"], "externalTrafficPolicy": policy,
                 "ports": [{"name": "http", "port": 80, "nodePort": 30080, "targetPort": 8080},
                           {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}}),
    )
}

fn node_port_slices() -> Vec<EndpointSlice> {
    vec![eps(
        "web-1",
        "web",
        "IPv4",
        json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
        json!([
            ready_ep("198.18.1.1", "node-a"),
            ready_ep("198.18.1.2", "node-b")
        ]),
    )]
}

#[test]
fn node_ports_are_served_on_each_node_address_of_the_services_family() {
    let opts = ModelOptions {
        node_name: Some("node-a".into()),
        node_addresses: vec![ip("198.18.0.2"), ip("198.18.9.2"), ip("2001:db8::2")],
        ..ModelOptions::default()
    };
    let m = build(&[node_port_svc("Cluster")], &node_port_slices(), &opts);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let keys: Vec<String> = m
        .services
        .iter()
        .map(|s| format!("{}:{}/{}", s.key.vip, s.key.port, s.key.proto))
        .collect();
    // Both IPv4 node addresses at each node port, the ClusterIP at each
    // port; the IPv6 node address serves nothing of an IPv4-only Service.
    assert_eq!(
        keys,
        [
            "198.18.0.2:30053/UDP",
            "198.18.0.2:30080/TCP",
            "198.18.9.2:30053/UDP",
            "198.18.9.2:30080/TCP",
            "198.19.0.10:53/UDP",
            "198.19.0.10:80/TCP",
        ]
    );
    let np = find(&m, "198.18.9.2", 30080, Proto::Tcp);
    assert_eq!(np.name, "shop/web:http");
    // externalTrafficPolicy Cluster at a node port: masqueraded, as
    // kube-proxy does (the ClusterIP keeps the gateway's default).
    assert_eq!(np.forwarding, Forwarding::Snat);
    assert_eq!(
        find(&m, "198.19.0.10", 80, Proto::Tcp).forwarding,
        Forwarding::Dnat
    );
    // externalTrafficPolicy Cluster: every endpoint, at the target port.
    assert_eq!(
        np.backends,
        vec![
            be("198.18.1.1", 8080, BackendState::Ready),
            be("198.18.1.2", 8080, BackendState::Ready)
        ]
    );
    assert_eq!(
        find(&m, "198.18.0.2", 30053, Proto::Udp).backends[0],
        be("198.18.1.1", 5353, BackendState::Ready)
    );
}

#[test]
fn node_ports_follow_external_traffic_policy_local() {
    let at = |node: &str| ModelOptions {
        node_name: Some(node.into()),
        node_addresses: vec![ip("198.18.0.2")],
        ..ModelOptions::default()
    };
    let m = build(
        &[node_port_svc("Local")],
        &node_port_slices(),
        &at("node-a"),
    );
    // This node's endpoint only on the node port; the ClusterIP keeps all.
    assert_eq!(
        find(&m, "198.18.0.2", 30080, Proto::Tcp).backends,
        vec![be("198.18.1.1", 8080, BackendState::Ready)]
    );
    assert_eq!(find(&m, "198.19.0.10", 80, Proto::Tcp).backends.len(), 2);
    // Local keeps the client's address: not source-NATed.
    assert_eq!(
        find(&m, "198.18.0.2", 30080, Proto::Tcp).forwarding,
        Forwarding::Dnat
    );
    // A node with no endpoint of its own drops (kube-proxy), not rejects.
    let m = build(
        &[node_port_svc("Local")],
        &node_port_slices(),
        &at("node-c"),
    );
    let np = find(&m, "198.18.0.2", 30080, Proto::Tcp);
    assert!(np.backends.is_empty());
    assert_eq!(np.no_endpoints, NoEndpoints::Drop);
}

#[test]
fn node_ports_without_node_address_or_out_of_range_are_warned() {
    let m = run(vec![node_port_svc("Cluster")], node_port_slices());
    assert_eq!(m.services.len(), 2, "{:#?}", m.services);
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(
        m.warnings[0].contains("nodePort 30053, 30080 not served: no node address"),
        "{:?}",
        m.warnings
    );
    let mut bad = node_port_svc("Cluster");
    bad.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = Some(70000);
    let opts = ModelOptions {
        node_addresses: vec![ip("198.18.0.2")],
        ..ModelOptions::default()
    };
    let m = build(&[bad], &node_port_slices(), &opts);
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("shop/web") && w.contains("nodePort 70000 outside")),
        "{:?}",
        m.warnings
    );
    // The other port's node port is still served.
    find(&m, "198.18.0.2", 30053, Proto::Udp);
    assert!(!m
        .services
        .iter()
        .any(|s| s.key.port == (70000 % 65536) as u16));
}

#[test]
fn dual_stack_node_ports_use_each_familys_node_addresses() {
    let s = svc(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "NodePort", "clusterIPs": ["198.19.0.10", "fd00:19::10"],
                 "ipFamilies": ["IPv4", "IPv6"],
                 "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}),
    );
    let slices = vec![
        eps(
            "web-4",
            "web",
            "IPv4",
            json!([{"name": "http", "port": 8080}]),
            json!([ready_ep("198.18.1.1", "node-a")]),
        ),
        eps(
            "web-6",
            "web",
            "IPv6",
            json!([{"name": "http", "port": 8080}]),
            json!([ready_ep("fd00:18::1", "node-a")]),
        ),
    ];
    let opts = ModelOptions {
        node_addresses: vec![ip("198.18.0.2"), ip("2001:db8::2")],
        ..ModelOptions::default()
    };
    let m = build(&[s], &slices, &opts);
    assert_eq!(
        find(&m, "2001:db8::2", 30080, Proto::Tcp).backends,
        vec![be("fd00:18::1", 8080, BackendState::Ready)]
    );
    assert_eq!(
        find(&m, "198.18.0.2", 30080, Proto::Tcp).backends,
        vec![be("198.18.1.1", 8080, BackendState::Ready)]
    );
}

#[test]
fn forwarding_annotation_overrides_the_gateways_default() {
    let annotated = |name: &str, value: &str| {
        svc(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop",
                         "annotations": {"vipgate.io/forwarding": value}},
            "spec": {"clusterIP": "198.19.0.20", "ports": [{"port": 80}]}}))
    };
    let plain = cluster_svc("plain", "198.19.0.21", json!([{"port": 80}]));
    let mut snat_one = annotated("one", "SNAT");
    snat_one.spec.as_mut().unwrap().cluster_ip = Some("198.19.0.22".into());
    let bad = annotated("bad", "ipvs");
    let services = [plain, snat_one, bad];

    let m = build(&services, &[], &ModelOptions::default());
    let mode = |m: &Model, vip: &str| find(m, vip, 80, Proto::Tcp).forwarding;
    assert_eq!(mode(&m, "198.19.0.21"), Forwarding::Dnat, "the default");
    assert_eq!(
        mode(&m, "198.19.0.22"),
        Forwarding::Snat,
        "annotated (any case)"
    );
    assert_eq!(
        mode(&m, "198.19.0.20"),
        Forwarding::Dnat,
        "a bad value: the default"
    );
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("shop/bad") && w.contains("\"ipvs\" is not dnat or snat; ignored")),
        "{:?}",
        m.warnings
    );

    let opts = ModelOptions {
        forwarding: Forwarding::Snat,
        ..ModelOptions::default()
    };
    let m = build(&services, &[], &opts);
    assert_eq!(
        mode(&m, "198.19.0.21"),
        Forwarding::Snat,
        "--forwarding snat"
    );
    assert_eq!(mode(&m, "198.19.0.20"), Forwarding::Snat);
}
