//! NodePort Services through `vipgate run`: kernel clients connect to the
//! gateway's own address at a Service's `nodePort` and reach its
//! endpoints, in both I/O modes; with `externalTrafficPolicy: Local` only
//! this node's endpoint answers. In AF_PACKET mode the kernel also gets a
//! copy of every frame and would answer the node port itself (RST): the
//! gateway's nftables drop table must be there while it runs, and gone
//! after. Root only; otherwise it says so loudly and passes.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bench::lab::{self, Lab, LabSpec, GW_CLIENT_V4};
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

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 60);
const NODE_PORT: u16 = 30080;
/// Connections per check: with three endpoints, all landing on one by
/// chance has probability 3^-23.
const CONNECTIONS: usize = 24;
/// The node name the gateway runs as; backend 1 lives there.
const NODE: &str = "node-b";

/// The NodePort Service over backends 0..3 (backend i on node-{a,b,c}).
fn services(policy: &str) -> String {
    let eps: String = (0..3)
        .map(|i| {
            let node = format!("nodeName: node-{}", ["a", "b", "c"][i]);
            ready_endpoint_yaml(lab::backend_v4(i), &[node])
        })
        .collect();
    let spec = format!(
        "    type: NodePort\n    clusterIP: {CLUSTER_IP}\n    clusterIPs: ['{CLUSTER_IP}']\n    \
         externalTrafficPolicy: {policy}\n    ports:\n    \
         - {{name: http, port: 80, protocol: TCP, targetPort: http, nodePort: {NODE_PORT}}}\n"
    );
    http_service_list_yaml("edge", &spec, &eps)
}

/// Whether the gateway namespace holds vipgate's node-port table.
fn guard_table_present(lab: &Lab) -> bool {
    Lab::exec(&lab.gw, "nft", &["list", "table", "inet", "vipgate"])
        .is_ok_and(|o| o.status.success())
}

fn node_port_through(io: &str) {
    let spec = LabSpec {
        backends: 3,
        ..LabSpec::default()
    };
    let Some(lab) = lab_or_skip(&format!("lab_node_port {io}"), spec) else {
        return;
    };
    let _servers = Servers::start(&lab);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(&path, services("Cluster")).unwrap();
    let gw = Gateway::start_with(&lab, io, &path, &["--node-name", NODE]);
    let admin = gw.admin_addr();
    let to = SocketAddr::new(IpAddr::V4(GW_CLIENT_V4), NODE_PORT);
    // The first connection also resolves the neighbours.
    let t0 = Instant::now();
    while let Err(e) = tcp_ask_in(&lab.client, to) {
        assert!(t0.elapsed() < Duration::from_secs(15), "{to}: {e}");
    }
    if io == "af_packet" {
        assert!(
            guard_table_present(&lab),
            "no nftables drop table in AF_PACKET mode"
        );
    }

    // externalTrafficPolicy Cluster: every endpoint.
    let all = backends_answering(&lab.client, to, CONNECTIONS);
    eprintln!("lab_node_port {io}: Cluster policy answered by {all:?}");
    assert!(all.len() >= 2, "{all:?}");

    // externalTrafficPolicy Local: this node's endpoint only.
    apply_services(&lab, admin, &path, &services("Local"));
    let local = backends_answering(&lab.client, to, CONNECTIONS);
    eprintln!("lab_node_port {io}: Local policy answered by {local:?}");
    assert_eq!(local, BTreeSet::from(["b1".to_string()]));

    let (ok, out) = gw.terminate();
    assert!(ok, "{out}");
    assert!(
        !guard_table_present(&lab),
        "the nftables drop table outlived the gateway"
    );
}

#[test]
fn node_port_through_af_packet() {
    node_port_through("af_packet");
}

#[test]
fn node_port_through_af_xdp() {
    node_port_through("af_xdp");
}
