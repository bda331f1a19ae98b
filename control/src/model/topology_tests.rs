//! Topology hints (`hints.forZones`, `hints.forNodes`) and the health
//! checks of `externalTrafficPolicy: Local` Services, over objects shaped
//! like the API server's. The rules are kube-proxy's (pkg/proxy/topology.go,
//! healthcheck/service_health.go); each test names the one it checks.

use super::tests::{be, cluster_svc, eps, find, ready_ep, svc};
use super::*;
use dataplane::addr::Proto;
use dataplane::service::BackendState;
use serde_json::{json, Value};

/// An endpoint as the EndpointSlice controller writes it for
/// `trafficDistribution: PreferClose`: in a zone, hinted for that zone.
fn zoned(addr: &str, node: &str, zone: &str, hint_zones: &[&str]) -> Value {
    let mut ep = ready_ep(addr, node);
    ep["zone"] = json!(zone);
    ep["hints"] =
        json!({"forZones": hint_zones.iter().map(|z| json!({"name": z})).collect::<Vec<_>>()});
    ep
}

fn web_svc() -> Service {
    let mut s = cluster_svc(
        "web",
        "198.19.0.10",
        json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]),
    );
    s.spec.as_mut().unwrap().traffic_distribution = Some("PreferClose".into());
    s
}

fn web_slice(endpoints: Value) -> EndpointSlice {
    eps(
        "web-abc",
        "web",
        "IPv4",
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        endpoints,
    )
}

fn at(node: Option<&str>, zone: Option<&str>) -> ModelOptions {
    ModelOptions {
        node_name: node.map(str::to_string),
        zone: zone.map(str::to_string),
        ..ModelOptions::default()
    }
}

fn backends_of(m: &Model) -> Vec<String> {
    find(m, "198.19.0.10", 80, Proto::Tcp)
        .backends
        .iter()
        .map(|b| b.addr.to_string())
        .collect()
}

fn three_zones() -> Value {
    json!([
        zoned("198.18.1.1", "n-a", "zone-a", &["zone-a"]),
        zoned("198.18.1.2", "n-b", "zone-b", &["zone-b"]),
        zoned("198.18.1.3", "n-c", "zone-c", &["zone-c", "zone-a"]),
    ])
}

#[test]
fn zone_hints_keep_the_endpoints_hinted_for_this_zone() {
    let m = build(
        &[web_svc()],
        &[web_slice(three_zones())],
        &at(Some("n-x"), Some("zone-a")),
    );
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    // A hint for the zone counts, not the endpoint's own zone.
    assert_eq!(backends_of(&m), ["198.18.1.1", "198.18.1.3"]);
    let m = build(
        &[web_svc()],
        &[web_slice(three_zones())],
        &at(None, Some("zone-b")),
    );
    assert_eq!(backends_of(&m), ["198.18.1.2"]);
}

#[test]
fn zone_hints_fall_back_to_all_when_a_ready_endpoint_has_none() {
    let mut e = three_zones();
    e.as_array_mut()
        .unwrap()
        .push(ready_ep("198.18.1.4", "n-d"));
    let m = build(&[web_svc()], &[web_slice(e)], &at(None, Some("zone-a")));
    assert_eq!(
        backends_of(&m),
        ["198.18.1.1", "198.18.1.2", "198.18.1.3", "198.18.1.4"]
    );
}

#[test]
fn only_ready_endpoints_decide_and_are_filtered() {
    // An unhinted endpoint that is not ready does not disable the hints;
    // not-ready endpoints stay in the spec (they take no new flows there).
    let mut e = three_zones();
    e.as_array_mut().unwrap().push(json!({
        "addresses": ["198.18.1.4"], "nodeName": "n-d",
        "conditions": {"ready": false, "serving": true, "terminating": true}}));
    let m = build(&[web_svc()], &[web_slice(e)], &at(None, Some("zone-b")));
    let spec = find(&m, "198.19.0.10", 80, Proto::Tcp);
    assert_eq!(
        spec.backends,
        vec![
            be("198.18.1.2", 8080, BackendState::Ready),
            be("198.18.1.4", 8080, BackendState::ServingTerminating),
        ]
    );
}

#[test]
fn zone_hints_fall_back_to_all_when_none_is_for_this_zone_or_no_zone_is_known() {
    let all = ["198.18.1.1", "198.18.1.2", "198.18.1.3"];
    for opts in [
        at(None, Some("zone-q")),
        at(Some("n-a"), None),
        at(None, None),
    ] {
        let m = build(&[web_svc()], &[web_slice(three_zones())], &opts);
        assert_eq!(backends_of(&m), all, "{opts:?}");
    }
}

#[test]
fn no_ready_endpoint_uses_terminating_ones_whatever_their_hints() {
    // kube-proxy: with nothing ready, the topology is not used and every
    // serving-terminating endpoint is a candidate.
    let term = |addr: &str, zone: &str| {
        let mut ep = zoned(addr, "n-a", zone, &[zone]);
        ep["conditions"] = json!({"ready": false, "serving": true, "terminating": true});
        ep
    };
    let m = build(
        &[web_svc()],
        &[web_slice(json!([
            term("198.18.1.1", "zone-a"),
            term("198.18.1.2", "zone-b")
        ]))],
        &at(None, Some("zone-a")),
    );
    assert_eq!(backends_of(&m), ["198.18.1.1", "198.18.1.2"]);
}

#[test]
fn trafficdistribution_without_hints_is_every_endpoint() {
    // kube-proxy reads hints, not trafficDistribution: slices the
    // controller has not hinted (yet) balance over every endpoint.
    let e = json!([ready_ep("198.18.1.1", "n-a"), ready_ep("198.18.1.2", "n-b")]);
    let m = build(
        &[web_svc()],
        &[web_slice(e)],
        &at(Some("n-a"), Some("zone-a")),
    );
    assert_eq!(backends_of(&m), ["198.18.1.1", "198.18.1.2"]);
}

fn node_hinted(addr: &str, node: &str, zone: &str) -> Value {
    let mut ep = zoned(addr, node, zone, &[zone]);
    ep["hints"]["forNodes"] = json!([{"name": node}]);
    ep
}

#[test]
fn node_hints_come_before_zone_hints() {
    // trafficDistribution: PreferSameNode (hints.forNodes, with zone hints too).
    let e = json!([
        node_hinted("198.18.1.1", "n-a", "zone-a"),
        node_hinted("198.18.1.2", "n-b", "zone-a"),
        node_hinted("198.18.1.3", "n-c", "zone-b"),
    ]);
    let m = build(
        &[web_svc()],
        &[web_slice(e.clone())],
        &at(Some("n-b"), Some("zone-a")),
    );
    assert_eq!(backends_of(&m), ["198.18.1.2"]);
    // No endpoint for this node: the zone hints decide.
    let m = build(
        &[web_svc()],
        &[web_slice(e.clone())],
        &at(Some("n-q"), Some("zone-a")),
    );
    assert_eq!(backends_of(&m), ["198.18.1.1", "198.18.1.2"]);
    // One ready endpoint without a node hint: node hints are ignored.
    let mut e = e;
    e.as_array_mut()
        .unwrap()
        .push(zoned("198.18.1.4", "n-d", "zone-b", &["zone-b"]));
    let m = build(
        &[web_svc()],
        &[web_slice(e)],
        &at(Some("n-c"), Some("zone-b")),
    );
    assert_eq!(backends_of(&m), ["198.18.1.3", "198.18.1.4"]);
}

#[test]
fn local_traffic_policy_wins_over_hints() {
    let mut s = web_svc();
    s.spec.as_mut().unwrap().internal_traffic_policy = Some("Local".into());
    // n-b is in zone-a but hosts zone-b's endpoint: Local keeps it anyway.
    let e = json!([
        zoned("198.18.1.1", "n-a", "zone-a", &["zone-a"]),
        zoned("198.18.1.2", "n-b", "zone-b", &["zone-b"]),
    ]);
    let m = build(&[s], &[web_slice(e)], &at(Some("n-b"), Some("zone-a")));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert_eq!(backends_of(&m), ["198.18.1.2"]);
}

fn lb_local(health_check_port: Value) -> Service {
    svc(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "edge", "namespace": "shop"},
        "spec": {"type": "LoadBalancer", "clusterIP": "198.19.0.20", "clusterIPs": ["198.19.0.20"],
                 "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
                 "externalTrafficPolicy": "Local", "healthCheckNodePort": health_check_port,
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                           {"name": "https", "port": 443, "targetPort": 8443}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "198.19.6.2"}]}}
    }))
}

fn edge_slices() -> Vec<EndpointSlice> {
    let ports = json!([{"name": "http", "port": 8080, "protocol": "TCP"},
                       {"name": "https", "port": 8443, "protocol": "TCP"}]);
    vec![
        eps(
            "edge-v4",
            "edge",
            "IPv4",
            ports.clone(),
            json!([ready_ep("198.18.1.1", "n-a"), ready_ep("198.18.1.2", "n-a"),
                   ready_ep("198.18.1.3", "n-b"),
                   {"addresses": ["198.18.1.4"], "nodeName": "n-a",
                    "conditions": {"ready": false, "serving": true, "terminating": true}}]),
        ),
        eps(
            "edge-v6",
            "edge",
            "IPv6",
            ports,
            json!([ready_ep("fd00::1:1", "n-a")]),
        ),
        // A slice of another Service on the same node does not count.
        eps(
            "other-1",
            "other",
            "IPv4",
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
            json!([ready_ep("198.18.1.9", "n-a")]),
        ),
    ]
}

#[test]
fn health_check_counts_this_nodes_ready_addresses() {
    // kube-proxy's LocalReadyEndpoints: distinct addresses over ports and
    // families; a terminating endpoint does not count.
    let m = build(
        &[lb_local(json!(31999))],
        &edge_slices(),
        &at(Some("n-a"), None),
    );
    let hc = |n| HealthCheck {
        namespace: "shop".into(),
        name: "edge".into(),
        port: 31999,
        local_endpoints: n,
    };
    assert_eq!(m.health_checks, vec![hc(3)]);
    let m = build(
        &[lb_local(json!(31999))],
        &edge_slices(),
        &at(Some("n-b"), None),
    );
    assert_eq!(m.health_checks, vec![hc(1)]);
    let m = build(
        &[lb_local(json!(31999))],
        &edge_slices(),
        &at(Some("n-z"), None),
    );
    assert_eq!(m.health_checks, vec![hc(0)]);
}

#[test]
fn health_check_only_for_load_balancer_local_with_a_node_name() {
    // Cluster policy, or not a LoadBalancer: kube-proxy serves none.
    let mut cluster = lb_local(json!(31999));
    cluster.spec.as_mut().unwrap().external_traffic_policy = Some("Cluster".into());
    let mut node_port = lb_local(json!(31999));
    node_port.spec.as_mut().unwrap().type_ = Some("NodePort".into());
    for s in [cluster, node_port] {
        let m = build(&[s], &edge_slices(), &at(Some("n-a"), None));
        assert!(m.health_checks.is_empty(), "{:?}", m.health_checks);
    }
    // No node name: nothing to count, said so.
    let m = build(&[lb_local(json!(31999))], &edge_slices(), &at(None, None));
    assert!(m.health_checks.is_empty());
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("shop/edge") && w.contains("healthCheckNodePort 31999 not served")),
        "{:?}",
        m.warnings
    );
    // A port out of range is reported, not served.
    let m = build(
        &[lb_local(json!(70000))],
        &edge_slices(),
        &at(Some("n-a"), None),
    );
    assert!(m.health_checks.is_empty());
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("healthCheckNodePort 70000")),
        "{:?}",
        m.warnings
    );
}
