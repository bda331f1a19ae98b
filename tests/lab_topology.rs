//! Topology hints through `vipgate run --zone`: a ClusterIP whose
//! EndpointSlice hints each endpoint for its zone (what the EndpointSlice
//! controller writes for `trafficDistribution: PreferClose`) sends every
//! kernel client connection to the endpoints hinted for the gateway's
//! zone; once one ready endpoint has no hint, kube-proxy's fallback
//! spreads them over every endpoint again. Root only; otherwise it says so
//! loudly and passes.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bench::lab::{self, LabSpec};
use common::lab_test::{
    apply_services, backends_answering, http_service_list_yaml, lab_or_skip, ready_endpoint_yaml,
    tcp_ask_in, Gateway, Servers,
};

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 50);
/// Connections per check: with three backends, all landing on one by
/// chance has probability 3^-23.
const CONNECTIONS: usize = 24;

/// The Service, its endpoints (backends 0..3) hinted for these zones
/// (`None`: no hint).
fn services(hints: [Option<&str>; 3]) -> String {
    let eps: String = hints
        .iter()
        .enumerate()
        .map(|(i, zone)| {
            let extra: Vec<String> = zone
                .iter()
                .flat_map(|z| {
                    [
                        format!("zone: {z}"),
                        format!("hints: {{forZones: [{{name: {z}}}]}}"),
                    ]
                })
                .collect();
            ready_endpoint_yaml(lab::backend_v4(i), &extra)
        })
        .collect();
    let spec = format!(
        "    type: ClusterIP\n    clusterIP: {VIP}\n    trafficDistribution: PreferClose\n    \
         ports:\n    - {{name: http, port: 80, protocol: TCP, targetPort: http}}\n"
    );
    http_service_list_yaml("near", &spec, &eps)
}

#[test]
fn zone_hints_keep_new_flows_in_the_gateways_zone() {
    let spec = LabSpec {
        backends: 3,
        ..LabSpec::default()
    };
    let Some(lab) = lab_or_skip("lab_topology", spec) else {
        return;
    };
    let _servers = Servers::start(&lab);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    let hinted = [Some("zone-a"), Some("zone-b"), Some("zone-a")];
    std::fs::write(&path, services(hinted)).unwrap();
    let gw = Gateway::start_with(&lab, "af_packet", &path, &["--zone", "zone-b"]);
    let admin = gw.admin_addr();
    let to = SocketAddr::new(IpAddr::V4(VIP), 80);
    // The first connection also resolves the neighbours.
    let t0 = Instant::now();
    while let Err(e) = tcp_ask_in(&lab.client, to) {
        assert!(t0.elapsed() < Duration::from_secs(15), "{to}: {e}");
    }

    // Only backend 1 is hinted for zone-b.
    assert_eq!(
        backends_answering(&lab.client, to, CONNECTIONS),
        BTreeSet::from(["b1".to_string()])
    );

    // Backend 1 loses its hint: every endpoint takes new flows again.
    apply_services(
        &lab,
        admin,
        &path,
        &services([Some("zone-a"), None, Some("zone-a")]),
    );
    let spread = backends_answering(&lab.client, to, CONNECTIONS);
    assert!(spread.len() >= 2, "{spread:?}");

    // Hinted for zone-a only: no endpoint for zone-b, so all of them.
    apply_services(
        &lab,
        admin,
        &path,
        &services([Some("zone-a"), Some("zone-a"), Some("zone-a")]),
    );
    let spread = backends_answering(&lab.client, to, CONNECTIONS);
    assert!(spread.len() >= 2, "{spread:?}");

    let (ok, out) = gw.terminate();
    assert!(ok, "{out}");
}
