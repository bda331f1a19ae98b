//! NodePort Services through `vipgate run`: kernel clients connect to the
//! gateway's own address (IPv4 and IPv6) at a Service's `nodePort` and
//! reach its endpoints, in both I/O modes; with `externalTrafficPolicy: Local` only
//! this node's endpoint answers. In AF_PACKET mode the kernel also gets a
//! copy of every frame and would answer the node port itself (RST): the
//! gateway's nftables drop table must be there while it runs, and gone
//! after. Root only; otherwise it says so loudly and passes.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bench::lab::{Lab, LabSpec, GW_CLIENT_V4, GW_CLIENT_V6};
use common::lab_test::{
    apply_services, backends_answering, http_service_list_yaml, http_slice_yaml, lab_or_skip,
    ready_endpoint_yaml, tcp_ask_in, Gateway, Servers,
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
const CLUSTER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xff, 0, 0, 0, 0, 0, 0x60);
const NODE_PORT: u16 = 30080;
/// Connections per check: with three endpoints, all landing on one by
/// chance has probability 3^-23.
const CONNECTIONS: usize = 24;
/// The node name the gateway runs as; backend 1 lives there.
const NODE: &str = "node-b";

/// The dual-stack NodePort Service over backends 0..3 (backend i on
/// node-{a,b,c}), with an IPv4 and an IPv6 EndpointSlice.
fn services(policy: &str) -> String {
    let eps = |v6: bool| -> String {
        (0..3)
            .map(|i| {
                let node = format!("nodeName: node-{}", ["a", "b", "c"][i]);
                ready_endpoint_yaml(Lab::backend_ip(i, v6), &[node])
            })
            .collect()
    };
    let spec = format!(
        "    type: NodePort\n    clusterIP: {CLUSTER_IP}\n    \
         clusterIPs: ['{CLUSTER_IP}', '{CLUSTER_IP6}']\n    ipFamilies: [IPv4, IPv6]\n    \
         externalTrafficPolicy: {policy}\n    ports:\n    \
         - {{name: http, port: 80, protocol: TCP, targetPort: http, nodePort: {NODE_PORT}}}\n"
    );
    let v6_slice = http_slice_yaml("edge", &eps(true))
        .replace("name: edge-v4", "name: edge-v6")
        .replace("addressType: IPv4", "addressType: IPv6");
    format!(
        "{}{v6_slice}",
        http_service_list_yaml("edge", &spec, &eps(false))
    )
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

    // externalTrafficPolicy Cluster: every endpoint (source-NATed).
    let all = backends_answering(&lab.client, to, CONNECTIONS);
    eprintln!("lab_node_port {io}: Cluster policy answered by {all:?}");
    assert!(all.len() >= 2, "{all:?}");
    // The same over IPv6, at the gateway's IPv6 address.
    let to6 = SocketAddr::new(IpAddr::V6(GW_CLIENT_V6), NODE_PORT);
    let t0 = Instant::now();
    while let Err(e) = tcp_ask_in(&lab.client, to6) {
        assert!(t0.elapsed() < Duration::from_secs(15), "{to6}: {e}");
    }
    let all6 = backends_answering(&lab.client, to6, CONNECTIONS);
    eprintln!("lab_node_port {io}: IPv6, Cluster policy answered by {all6:?}");
    assert!(all6.len() >= 2, "{all6:?}");

    // externalTrafficPolicy Local: this node's endpoint only.
    apply_services(&lab, admin, &path, &services("Local"));
    let local = backends_answering(&lab.client, to, CONNECTIONS);
    eprintln!("lab_node_port {io}: Local policy answered by {local:?}");
    assert_eq!(local, BTreeSet::from(["b1".to_string()]));
    let local6 = backends_answering(&lab.client, to6, CONNECTIONS);
    assert_eq!(local6, BTreeSet::from(["b1".to_string()]), "IPv6");

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
