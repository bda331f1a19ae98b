//! What an operator asks a running gateway, as they ask it: a real
//! Prometheus server (Debian's package) scrapes `vipgate run` in a veth lab
//! while real TCP clients talk to a Service through it; Prometheus' HTTP
//! API then shows the packet counters that `/stats` and `vipgate stats`
//! show, the flows in the conntrack gauge, and a network-programming-latency
//! sample after an EndpointSlice change (with its trigger-time annotation)
//! through the test Kubernetes API server. `vipgate conntrack` lists a live
//! connection with the backend that then answers on it, and `vipgate
//! explain` names the backend each of a dozen connections reached.
//! Root only (namespaces); otherwise it says so loudly and passes.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench::lab::{self, in_netns, Lab, LabSpec, GW_BACKEND_IF, GW_CLIENT_IF};
use common::lab_test::{lab_or_skip, tcp_ask_from, tcp_ask_in, KillOnDrop, Servers};

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}
use control::admin::http_request;
use control::test_api_server::{fixtures, ApiServer};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 21);
const PORT: u16 = 8080;
/// Connections made through the VIP before the counters are compared.
const CONNECTIONS: usize = 20;

/// The EndpointSlice, stamped as the EndpointSlice controller does with
/// the time of the change that caused it.
fn slice(backends: &[usize]) -> serde_json::Value {
    let addrs: Vec<IpAddr> = backends
        .iter()
        .map(|&i| IpAddr::V4(lab::backend_v4(i)))
        .collect();
    let mut s = fixtures::endpoint_slice("lab", "web-1", "web", &addrs, PORT);
    let now = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    let now = String::from_utf8(now.stdout).unwrap().trim().to_string();
    s["metadata"]["annotations"] =
        serde_json::json!({"endpoints.kubernetes.io/last-change-trigger-time": now});
    s
}

/// One connection to the VIP from the client namespace; the backend's name.
fn ask(lab: &Lab) -> Result<String, String> {
    tcp_ask_in(&lab.client, SocketAddr::from((VIP, 80)))
}

/// Percent-encodes a PromQL query for a URL.
fn url_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of a PromQL query with one result, or None (no data yet).
fn query(lab: &Lab, prom: SocketAddr, q: &str) -> Option<f64> {
    let path = format!("/api/v1/query?query={}", url_encode(q));
    let r = in_netns(&lab.gw, move || http_request(prom, "GET", &path))
        .ok()?
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Polls `q` until `ok` holds for its value (bounded: 30 s).
fn wait_for(lab: &Lab, prom: SocketAddr, q: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let t0 = Instant::now();
    loop {
        let v = query(lab, prom, q);
        if let Some(v) = v.filter(|v| ok(*v)) {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "Prometheus never showed the expected {q}: last {v:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The count line `vipgate conntrack` ends its table with.
fn listed_count(table: &str) -> usize {
    table
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count line:\n{table}"))
}

/// A free TCP port on the gateway namespace's loopback.
fn free_port(lab: &Lab) -> u16 {
    in_netns(&lab.gw, || {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
    })
    .unwrap()
    .unwrap()
}

#[test]
fn an_operator_sees_metrics_stats_and_flows_of_a_running_gateway() {
    let Some(lab) = lab_or_skip(
        "lab_observe",
        LabSpec {
            backends: 2,
            ipv6: false,
            ..Default::default()
        },
    ) else {
        return;
    };
    assert!(
        Command::new("prometheus")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "prometheus not installed: Debian's prometheus package (.ci/run installs it)"
    );
    let _servers = Servers::start(&lab);
    let api = in_netns(&lab.gw, || ApiServer::start().expect("api server")).unwrap();
    api.apply(fixtures::service("lab", "web", IpAddr::V4(VIP), 80))
        .unwrap();
    api.apply(slice(&[0])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path()).unwrap();

    let admin = SocketAddr::from(([127, 0, 0, 1], free_port(&lab)));
    let gw = Lab::command(&lab.gw, env!("CARGO_BIN_EXE_vipgate"))
        .args([
            "run",
            "--iface",
            &format!("{GW_CLIENT_IF},{GW_BACKEND_IF}"),
            "--io",
            "af-packet",
            "--admin-addr",
            &admin.to_string(),
            "--namespace",
            "lab",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .spawn()
        .expect("start vipgate");
    let mut gw = KillOnDrop(gw);

    let prom = SocketAddr::from(([127, 0, 0, 1], free_port(&lab)));
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
             scrape_configs:\n  - job_name: vipgate\n    static_configs:\n      - targets: ['{admin}']\n"
        ),
    )
    .unwrap();
    let prometheus = Lab::command(&lab.gw, "prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _prometheus = KillOnDrop(prometheus);

    // The gateway serves (bounded wait), then a known number of connections.
    let t0 = Instant::now();
    while ask(&lab).is_err() {
        if let Some(st) = gw.0.try_wait().unwrap() {
            panic!("vipgate exited early: {st}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the VIP never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..CONNECTIONS {
        assert_eq!(ask(&lab).expect("the VIP answers"), "b0");
    }

    // Prometheus scraped it: the target is up and the counters are there.
    wait_for(&lab, prom, "up{job=\"vipgate\"}", |v| v == 1.0);
    // Quiet now: the scraped total settles at what /stats says.
    let stats = |lab: &Lab| {
        in_netns(&lab.gw, move || control::admin::fetch_json(admin, "/stats"))
            .unwrap()
            .expect("/stats")
    };
    let forwarded = stats(&lab)["total"]["forwarded"].as_u64().unwrap();
    // Every connection is a SYN, its data and its FIN at least.
    assert!(
        forwarded >= 3 * CONNECTIONS as u64,
        "forwarded {forwarded} for {CONNECTIONS} connections"
    );
    let scraped = wait_for(
        &lab,
        prom,
        "sum(vipgate_packets_total{verdict=\"forwarded\"})",
        |v| v == forwarded as f64,
    );
    eprintln!(
        "lab_observe: {CONNECTIONS} connections, forwarded {forwarded}, Prometheus {scraped}"
    );
    let reversed = wait_for(
        &lab,
        prom,
        "sum(vipgate_packets_total{verdict=\"reversed\"})",
        |v| v >= 2.0 * CONNECTIONS as f64,
    );
    let inserts = wait_for(&lab, prom, "sum(vipgate_conntrack_inserts_total)", |v| {
        v >= CONNECTIONS as f64
    });
    // Closed connections linger in TIME_WAIT: the gauge shows them.
    let entries = wait_for(&lab, prom, "sum(vipgate_conntrack_entries)", |v| v >= 1.0);
    eprintln!("lab_observe: reversed {reversed}, conntrack inserts {inserts}, entries {entries}");
    wait_for(&lab, prom, "vipgate_services", |v| v == 1.0);
    wait_for(&lab, prom, "vipgate_backends{state=\"ready\"}", |v| {
        v == 1.0
    });

    // `vipgate stats` shows the same counter.
    let out = Lab::command(&lab.gw, env!("CARGO_BIN_EXE_vipgate"))
        .args(["stats", "--admin-addr", &admin.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("forwarded"))
        .unwrap_or_else(|| panic!("no forwarded row:\n{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(row, ["forwarded", &forwarded.to_string()], "{text}");

    // A connection held open: `vipgate conntrack` lists it, ESTABLISHED,
    // with the backend that then answers on it.
    let mut conn = in_netns(&lab.client, || {
        TcpStream::connect_timeout(&SocketAddr::from((VIP, 80)), Duration::from_secs(3))
    })
    .unwrap()
    .expect("connect to the VIP");
    let me = conn.local_addr().unwrap();
    let out = Lab::command(&lab.gw, env!("CARGO_BIN_EXE_vipgate"))
        .args(["conntrack", "--json", "--admin-addr", &admin.to_string()])
        .args(["--client", &me.to_string(), "--vip", &VIP.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let flows = listed["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{listed}");
    let flow = &flows[0];
    assert_eq!(flow["proto"], "TCP", "{flow}");
    assert_eq!(flow["client"], me.to_string(), "{flow}");
    assert_eq!(flow["vip"], format!("{VIP}:80"), "{flow}");
    assert_eq!(flow["state"], "ESTABLISHED", "{flow}");
    assert!(flow["source_nat"].is_null(), "a DNAT flow: {flow}");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"hi\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let served: usize = answer.trim().trim_start_matches('b').parse().unwrap();
    assert_eq!(
        flow["backend"],
        format!("{}:{PORT}", lab::backend_v4(served)),
        "{flow}"
    );
    // And the table form, filtered to that VIP, lists the same flow.
    let out = Lab::command(&lab.gw, env!("CARGO_BIN_EXE_vipgate"))
        .args(["conntrack", "--admin-addr", &admin.to_string()])
        .args(["--vip", &format!("{VIP}:80")])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.contains(&me.to_string())
                && l.contains(&format!("{}", lab::backend_v4(served)))),
        "{table}"
    );
    let total_flows = listed_count(&table);
    assert!(total_flows > CONNECTIONS, "{table}");
    eprintln!("lab_observe: vipgate conntrack lists {total_flows} flows to the VIP; the open one on b{served}");

    // An EndpointSlice change: one network-programming-latency sample.
    api.apply(slice(&[0, 1])).unwrap();
    let n = wait_for(
        &lab,
        prom,
        "vipgate_network_programming_duration_seconds_count",
        |v| v >= 1.0,
    );
    let sum = query(
        &lab,
        prom,
        "vipgate_network_programming_duration_seconds_sum",
    )
    .unwrap();
    eprintln!("lab_observe: {n} programming-latency sample(s), sum {sum:.3} s");
    // The annotation has whole seconds: the latency is below ~1 s + sync.
    assert!((0.0..10.0).contains(&sum), "{sum}");
    wait_for(&lab, prom, "vipgate_backends{state=\"ready\"}", |v| {
        v == 2.0
    });

    // `vipgate explain`, asked of the running gateway about each flow's
    // tuple, names the backend that flow reached.
    let mut reached = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let (answer, me) = in_netns(&lab.client, || tcp_ask_from(SocketAddr::from((VIP, 80))))
            .unwrap()
            .expect("the VIP answers");
        let served: usize = answer.trim_start_matches('b').parse().unwrap();
        reached.insert(served);
        let out = Lab::command(&lab.gw, env!("CARGO_BIN_EXE_vipgate"))
            .args(["explain", "--json", "--admin-addr", &admin.to_string()])
            .args([me.to_string(), format!("{VIP}:80/tcp")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["verdict"], "forwarded", "{v}");
        assert_eq!(
            v["backend"],
            format!("{}:{PORT}", lab::backend_v4(served)),
            "{v}"
        );
    }
    eprintln!("lab_observe: vipgate explain agreed on 12 flows over backends {reached:?}");
}
