//! healthCheckNodePort through `vipgate run`: a LoadBalancer Service with
//! `externalTrafficPolicy: Local` gets kube-proxy's health check on the
//! gateway node's addresses, asked over HTTP from the client namespace as
//! a load balancer would: 200 while this node (`--node-name`) has ready
//! endpoints, 503 when they all sit on other nodes, no listener once the
//! Service is Cluster policy again. Both I/O modes (with AF_XDP the
//! steering program must hand the probes to the kernel). Root only;
//! otherwise it says so loudly and passes.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bench::lab::{self, in_netns, LabSpec, GW_CLIENT_V4, GW_CLIENT_V6};
use common::lab_test::{
    apply_services, http_service_list_yaml, lab_or_skip, ready_endpoint_yaml, Gateway,
};

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

const HEALTH_PORT: u16 = 32100;
const NODE: &str = "gw-node";

/// The Service with its endpoints on `nodes` (one backend each) and the
/// given external traffic policy.
fn services(nodes: &[&str], policy: &str) -> String {
    let eps: String = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| ready_endpoint_yaml(lab::backend_v4(i), &[format!("nodeName: {node}")]))
        .collect();
    let body = format!(
        "    type: LoadBalancer\n    clusterIP: 198.19.0.40\n    externalTrafficPolicy: {policy}\n    \
         healthCheckNodePort: {HEALTH_PORT}\n    ports:\n    \
         - {{name: http, port: 80, protocol: TCP, targetPort: http, nodePort: 30080}}\n  \
         status:\n    loadBalancer:\n      ingress: [{{ip: 198.19.6.40}}]\n"
    );
    http_service_list_yaml("edge", &body, &eps)
}

/// `GET /healthz` from the client namespace: (status, body), or the error.
fn probe(ns: &str, to: SocketAddr) -> Result<(u16, String), String> {
    in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok::<_, std::io::Error>(out)
    })?
    .map_err(|e| e.to_string())
    .map(|out| {
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    })
}

/// Polls (bounded) until `ok` holds for the probe's result.
fn until(
    ns: &str,
    to: SocketAddr,
    what: &str,
    ok: impl Fn(&Result<(u16, String), String>) -> bool,
) -> Result<(u16, String), String> {
    let t0 = Instant::now();
    loop {
        let r = probe(ns, to);
        if ok(&r) {
            return r;
        }
        // IPv6 addresses of a fresh namespace answer only after DAD (~2 s).
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{to}: {what}: last {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn health_check_node_port_answers_the_load_balancer_af_packet() {
    health_check_node_port_answers_the_load_balancer("af_packet");
}

#[test]
fn health_check_node_port_answers_the_load_balancer_af_xdp() {
    health_check_node_port_answers_the_load_balancer("af_xdp");
}

fn health_check_node_port_answers_the_load_balancer(io: &str) {
    let Some(lab) = lab_or_skip(&format!("lab_health_check ({io})"), LabSpec::default()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(&path, services(&[NODE, "other", NODE], "Local")).unwrap();
    let gw = Gateway::start_with(&lab, io, &path, &["--node-name", NODE]);
    let admin = gw.admin_addr();
    let v4 = SocketAddr::new(IpAddr::V4(GW_CLIENT_V4), HEALTH_PORT);
    let v6 = SocketAddr::new(IpAddr::V6(GW_CLIENT_V6), HEALTH_PORT);

    // Two of the three endpoints are on this node; both families answer.
    for to in [v4, v6] {
        let (status, body) = until(&lab.client, to, "200", |r| matches!(r, Ok((200, _)))).unwrap();
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["service"]["namespace"], "lab");
        assert_eq!(v["service"]["name"], "edge");
        assert_eq!(v["localEndpoints"], 2);
        assert_eq!(v["serviceProxyHealthy"], true);
    }

    // Every endpoint elsewhere: 503, so the load balancer skips this node.
    apply_services(&lab, admin, &path, &services(&["other", "other"], "Local"));
    let (_, body) = until(&lab.client, v4, "503", |r| matches!(r, Ok((503, _)))).unwrap();
    assert!(body.contains("\"localEndpoints\": 0"), "{body}");

    // Cluster policy: no health check, the port is closed.
    apply_services(&lab, admin, &path, &services(&[NODE], "Cluster"));
    let r = until(&lab.client, v4, "refused", |r| r.is_err()).unwrap_err();
    assert!(r.to_lowercase().contains("refused"), "{r}");

    let (ok, out) = gw.terminate();
    assert!(ok, "{out}");
}
