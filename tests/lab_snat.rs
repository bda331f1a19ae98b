//! Source NAT where a real cluster needs it: a one-armed gateway whose
//! backends do NOT route their replies through it (they reach the client
//! directly on the shared segment, as pods on other nodes do). Kernel
//! clients' connections through a VIP:
//! - fail with `--forwarding dnat` (the backend answers the client from its
//!   own address, which the client's kernel resets), as documented;
//! - work when the Service is annotated `vipgate.io/forwarding: snat`
//!   (published to the running gateway), and with `--forwarding snat`;
//! - a backend calling its own Service and landing on itself works
//!   (hairpin, source-NATed whatever the mode).
//!
//! Both I/O modes, one worker and two. Root only; otherwise it says so loudly and passes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bench::lab::{self, Lab, LabSpec};
use common::lab_test::{
    apply_services, backends_answering, is_root, ready_endpoint_yaml, tcp_ask_in, Gateway, Servers,
    TCP_PORT,
};

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

/// Three backends.
const WEB: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 70);
/// Backend 0 only: its own calls land on itself.
const SELF: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 71);
const BACKENDS: usize = 3;
const CONNECTIONS: usize = 20;

/// Service `name` at `vip`:80 over `backends`, with `annotation` (a
/// `key: value` line) if any.
fn service(name: &str, vip: Ipv4Addr, backends: &[usize], annotation: Option<&str>) -> String {
    let eps: String = backends
        .iter()
        .map(|&i| ready_endpoint_yaml(lab::backend_v4(i), &[]))
        .collect();
    let annotations = annotation.map_or(String::new(), |a| format!("\n    annotations: {{{a}}}"));
    format!(
        "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: {name}\n    namespace: lab{annotations}\n  \
         spec:\n    type: ClusterIP\n    clusterIP: {vip}\n    clusterIPs: ['{vip}']\n    ports:\n    \
         - {{name: http, port: 80, protocol: TCP, targetPort: {TCP_PORT}}}\n\
         - apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  metadata:\n    name: {name}-v4\n    \
         namespace: lab\n    labels: {{kubernetes.io/service-name: {name}}}\n  addressType: IPv4\n  \
         ports:\n  - {{name: http, port: {TCP_PORT}, protocol: TCP}}\n  endpoints:\n{eps}"
    )
}

fn services(web_annotation: Option<&str>) -> String {
    format!(
        "apiVersion: v1\nkind: List\nitems:\n{}{}",
        service("web", WEB, &[0, 1, 2], web_annotation),
        service("self", SELF, &[0], None)
    )
}

/// The one-armed lab with the backends' replies to the client's subnet
/// sent straight to it on the shared segment, not through the gateway.
fn direct_return_lab() -> Option<Lab> {
    if !is_root() {
        eprintln!("\n*** SKIPPED lab_snat: needs root (network namespaces) ***\n");
        return None;
    }
    let lab = Lab::up_one_armed(LabSpec {
        backends: BACKENDS,
        ipv6: false,
        ..LabSpec::default()
    })
    .expect("one-armed lab up");
    for b in &lab.backends {
        lab::ip(&["-n", b, "route", "add", "198.18.0.0/24", "dev", "eth0"]).unwrap();
    }
    Some(lab)
}

/// The first connection, which also resolves the neighbours: within 15 s.
fn first_connection(ns: &str, to: SocketAddr) -> String {
    let t0 = Instant::now();
    loop {
        match tcp_ask_in(ns, to) {
            Ok(answer) => return answer,
            Err(e) => assert!(t0.elapsed() < Duration::from_secs(15), "{to}: {e}"),
        }
    }
}

fn snat_with_direct_return(io: &str) {
    let Some(lab) = direct_return_lab() else {
        return;
    };
    let _servers = Servers::start(&lab);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(&path, services(None)).unwrap();
    let path_arg = path.to_string_lossy().to_string();
    let iface = lab.gw_ifaces().join(",");
    let web = SocketAddr::new(IpAddr::V4(WEB), 80);

    // DNAT: the backend answers from its own address, straight to the client.
    let gw = Gateway::spawn(
        &lab,
        &["--iface", &iface, "--io", io, "--services", &path_arg],
    );
    let admin = gw.admin_addr();
    let dnat = tcp_ask_in(&lab.client, web);
    eprintln!("lab_snat {io}: dnat with direct return: {dnat:?}");
    assert!(
        dnat.is_err(),
        "DNAT worked though replies bypass the gateway: {dnat:?}"
    );

    // The annotation switches the Service to snat in the running gateway.
    apply_services(
        &lab,
        admin,
        &path,
        &services(Some("vipgate.io/forwarding: snat")),
    );
    first_connection(&lab.client, web);
    let answered = backends_answering(&lab.client, web, CONNECTIONS);
    eprintln!("lab_snat {io}: annotated snat answered by {answered:?}");
    assert!(answered.len() >= 2, "{answered:?}");

    // Hairpin: backend 0 reaches its own Service, landing on itself.
    let own = SocketAddr::new(IpAddr::V4(SELF), 80);
    assert_eq!(first_connection(&lab.backends[0], own), "b0");
    let (ok, out) = gw.terminate();
    assert!(ok, "{out}");

    // --forwarding snat: every Service without an annotation; two workers,
    // so replies must reach the worker whose port share the flow took.
    std::fs::write(&path, services(None)).unwrap();
    let gw = Gateway::spawn(
        &lab,
        &[
            "--iface",
            &iface,
            "--io",
            io,
            "--services",
            &path_arg,
            "--forwarding",
            "snat",
            "--workers",
            "2",
        ],
    );
    first_connection(&lab.client, web);
    let answered = backends_answering(&lab.client, web, CONNECTIONS);
    eprintln!("lab_snat {io}: --forwarding snat answered by {answered:?}");
    assert!(answered.len() >= 2, "{answered:?}");
    // `vipgate conntrack` shows each flow's source-NAT endpoint: the
    // gateway's first address and a port of the default range.
    let out = Lab::command(&lab.gw, env!("CARGO_BIN_EXE_vipgate"))
        .args([
            "conntrack",
            "--json",
            "--admin-addr",
            &gw.admin_addr().to_string(),
        ])
        .args(["--vip", &WEB.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let flows = listed["flows"].as_array().unwrap();
    assert!(flows.len() >= CONNECTIONS, "{listed}");
    for f in flows {
        let snat: SocketAddr = f["source_nat"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .unwrap_or_else(|_| panic!("{f}"));
        assert_eq!(snat.ip(), IpAddr::V4(lab::GW_CLIENT_V4), "{f}");
        assert!((61000..=65535).contains(&snat.port()), "{f}");
    }
    let (ok, out) = gw.terminate();
    assert!(ok, "{out}");
}

#[test]
fn snat_with_direct_return_af_packet() {
    snat_with_direct_return("af_packet");
}

#[test]
fn snat_with_direct_return_af_xdp() {
    snat_with_direct_return("af_xdp");
}
