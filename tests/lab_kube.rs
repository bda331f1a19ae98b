//! `vipgate run --kubeconfig` end to end: a veth lab, the test Kubernetes
//! API server (real list/watch protocol) listening inside the gateway's
//! namespace, real TCP servers on the backends and real clients. Endpoint
//! changes made through the API steer new connections; with the API gone,
//! the last tables keep serving; SIGTERM ends it cleanly.
//! Root only (namespaces); otherwise it says so loudly and passes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench::lab::{self, in_netns, Lab, LabSpec, GW_BACKEND_IF, GW_CLIENT_IF};
use common::lab_test::{is_root, tcp_ask_in, KillOnDrop, Servers};

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}
use control::test_api_server::{fixtures, ApiServer};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 20);
const PORT: u16 = 8080;

fn slice(backends: &[usize]) -> serde_json::Value {
    let addrs: Vec<IpAddr> = backends
        .iter()
        .map(|&i| IpAddr::V4(lab::backend_v4(i)))
        .collect();
    fixtures::endpoint_slice("lab", "web-1", "web", &addrs, PORT)
}

/// One connection to the VIP from the client namespace; the backend's name.
fn ask(lab: &Lab) -> Result<String, String> {
    tcp_ask_in(&lab.client, SocketAddr::from((VIP, 80)))
}

/// Asks `n` times; the set of backends that answered.
fn answers(lab: &Lab, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|_| ask(lab).expect("the VIP answers")).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn run_follows_the_kubernetes_api() {
    if !is_root() {
        eprintln!("\n*** SKIPPED lab_kube: needs root (network namespaces) ***\n");
        return;
    }
    let lab = Lab::up(LabSpec {
        backends: 3,
        ipv6: false,
        ..Default::default()
    })
    .expect("lab up");

    // Backend servers: the answer names the backend.
    let _servers = Servers::start(&lab);

    // The API server listens on the gateway namespace's loopback.
    let server = in_netns(&lab.gw, || ApiServer::start().expect("api server")).unwrap();
    server
        .apply(fixtures::service("lab", "web", IpAddr::V4(VIP), 80))
        .unwrap();
    server.apply(slice(&[0])).unwrap();
    let dir = std::env::temp_dir().join(format!("vipgate-labkube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = server.write_kubeconfig(&dir).unwrap();

    let child = Lab::command(&lab.gw, env!("CARGO_BIN_EXE_vipgate"))
        .args([
            "run",
            "--iface",
            &format!("{GW_CLIENT_IF},{GW_BACKEND_IF}"),
            "--io",
            "af-packet",
            "--admin-addr",
            "127.0.0.1:0",
            "--namespace",
            "lab",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start vipgate");
    // Killed if the test fails before its SIGTERM: a gateway left behind
    // busy-polls a core for as long as it lives.
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // Wait (bounded) until it answers through the VIP.
    let t0 = Instant::now();
    let first = loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("vipgate exited early: {st}");
        }
        match ask(&lab) {
            Ok(b) => break b,
            Err(_) if t0.elapsed() < Duration::from_secs(15) => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("the VIP never answered: {e}"),
        }
    };
    assert_eq!(first, "b0");
    // The running line follows the interface facts lines.
    let admin: SocketAddr = std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(5)).ok())
        .take(20)
        .find_map(|l| {
            l.split("admin http://")
                .nth(1)
                .and_then(|a| a.trim().parse().ok())
        })
        .expect("the running line names the admin address");
    let readyz = |lab: &Lab| {
        in_netns(&lab.gw, move || {
            control::admin::http_request(admin, "GET", "/readyz")
        })
        .unwrap()
        .expect("/readyz answers")
    };
    let r = readyz(&lab);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("source error"), "{}", r.body);
    assert_eq!(answers(&lab, 10), ["b0"]);

    // Endpoints move to b1 and b2 through the API: new connections follow.
    server.apply(slice(&[1, 2])).unwrap();
    let t0 = Instant::now();
    loop {
        let a = answers(&lab, 20);
        if a == ["b1", "b2"] {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "new endpoints not used after 10 s: {a:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The API server goes away: the last good tables keep serving, and
    // /readyz says what is wrong.
    server.shutdown();
    let t0 = Instant::now();
    loop {
        let r = readyz(&lab);
        if r.body.contains("source error") {
            assert_eq!(r.status, 200, "ready stays (kube-proxy's rule): {}", r.body);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the outage never showed in /readyz: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(answers(&lab, 20), ["b1", "b2"]);

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "vipgate exit status {status}");
    let _ = std::fs::remove_dir_all(&dir);
}
