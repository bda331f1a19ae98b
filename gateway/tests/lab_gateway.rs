//! A gateway started as a library value, no binary: in a veth lab it
//! loads a services file, forwards a client's UDP datagrams to the backends
//! and their answers back, shows them in its live counters and flow
//! listing while it runs, and returns them when shut down.
//! Root only (namespaces); otherwise it says so loudly and passes.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use bench::lab::{self, in_netns, Lab, LabSpec, GW_BACKEND_IF, GW_CLIENT_IF};
use dataplane::io::af_packet::RingKind;
use dataplane::worker::WorkerCounters;
use gateway::{Ended, Gateway, GatewayConfig, IoMode, PacketRing, ServiceSource};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 30);
const BACKEND_PORT: u16 = 8080;
const DATAGRAMS: usize = 10;

use dataplane::io::af_packet::is_root;

fn services_yaml(backends: usize) -> String {
    let endpoints: String = (0..backends)
        .map(|i| {
            format!(
                "  - addresses: ['{}']\n    conditions: {{ready: true}}\n",
                lab::backend_v4(i)
            )
        })
        .collect();
    format!(
        "apiVersion: v1\nkind: List\nitems:\n\
         - apiVersion: v1\n  kind: Service\n  metadata: {{name: echo, namespace: lab}}\n\
         \x20 spec:\n    clusterIP: {VIP}\n    ports:\n    - {{name: echo, port: 80, protocol: UDP, targetPort: {BACKEND_PORT}}}\n\
         - apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n\
         \x20 metadata:\n    name: echo-1\n    namespace: lab\n    labels: {{kubernetes.io/service-name: echo}}\n\
         \x20 addressType: IPv4\n  ports:\n  - {{name: echo, port: {BACKEND_PORT}, protocol: UDP}}\n  endpoints:\n{endpoints}"
    )
}

/// UDP echo servers on every backend, answering with their name.
fn start_echo(lab: &Lab, stop: &'static AtomicBool) {
    for (i, ns) in lab.backends.iter().enumerate() {
        let sock = in_netns(ns, || UdpSocket::bind(("0.0.0.0", BACKEND_PORT)))
            .unwrap()
            .expect("bind echo");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(format!("b{i}").as_bytes(), from);
                }
            }
        });
    }
}

#[test]
fn a_gateway_started_as_a_library_forwards_and_reports() {
    if !is_root() {
        eprintln!("\n*** SKIPPED lab_gateway: needs root (network namespaces) ***\n");
        return;
    }
    let lab = Lab::up(LabSpec {
        backends: 2,
        ipv6: false,
        ..Default::default()
    })
    .expect("lab up");
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let echo_stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    start_echo(&lab, echo_stop);
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("services.yaml");
    std::fs::write(&yaml, services_yaml(2)).unwrap();

    let cfg = GatewayConfig {
        ifaces: vec![GW_CLIENT_IF.into(), GW_BACKEND_IF.into()],
        io: IoMode::AfPacket,
        ring: PacketRing {
            kind: RingKind::Frames,
            slots: 64,
        },
        workers: 1,
        cores: vec![],
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        source: ServiceSource::File(yaml),
        worker: Default::default(),
        table: Default::default(),
        model: Default::default(),
        health_check_addrs: vec![],
    };
    // The gateway lives on a thread inside the gateway namespace: its
    // sockets, netlink and interface checks belong there.
    let (tx, rx) = mpsc::channel();
    let gw_ns = lab.gw.clone();
    let runner = std::thread::spawn(move || {
        in_netns(&gw_ns, move || {
            let mut gw = Gateway::start(cfg, stop)?;
            tx.send(gw.metrics().clone()).unwrap();
            let ended = gw.serve();
            Ok::<_, String>((ended, gw.shutdown()))
        })
    });
    let metrics = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(m) => m,
        // Its thread ended: say why it did not start.
        Err(_) => match runner.join() {
            Ok(Ok(Err(e))) => panic!("the gateway did not start: {e}"),
            other => panic!("the gateway did not start: {other:?}"),
        },
    };

    let client = in_netns(&lab.client, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let vip = SocketAddr::from((VIP, 80));
    let mut answered = 0;
    // The first datagrams may wait for the backends' neighbours.
    for _ in 0..50 {
        client.send_to(b"ping", vip).unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, from)) = client.recv_from(&mut buf) {
            assert_eq!(from, vip, "the answer comes from the VIP");
            assert!(buf[..n].starts_with(b"b"));
            answered += 1;
            if answered == DATAGRAMS {
                break;
            }
        }
    }
    assert_eq!(answered, DATAGRAMS, "the VIP answered {answered} datagrams");

    // Live, while it runs: counters (published after each burst, so the
    // last answer may be on the wire a moment before it is counted) and
    // the flow.
    let t0 = std::time::Instant::now();
    loop {
        let stats = metrics.stats_json();
        let t = &stats["total"];
        if t["forwarded"].as_u64() >= Some(DATAGRAMS as u64)
            && t["reversed"].as_u64() >= Some(DATAGRAMS as u64)
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{stats}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let flows = control::admin::flows::flows_json(&metrics.workers(), &Default::default()).unwrap();
    assert!(
        flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["vip"] == vip.to_string() && f["proto"] == "UDP"),
        "{flows}"
    );

    stop.store(true, Ordering::Relaxed);
    let (ended, done) = runner.join().unwrap().unwrap().unwrap();
    echo_stop.store(true, Ordering::Relaxed);
    assert_eq!(ended, Ended::Stopped);
    assert!(done.panicked.is_empty());
    let total = WorkerCounters::total(&done.counters);
    assert!(total.pipeline.balanced(), "{total:?}");
    assert!(total.pipeline.forwarded >= DATAGRAMS as u64, "{total:?}");
    assert!(total.pipeline.reversed >= DATAGRAMS as u64, "{total:?}");
    eprintln!(
        "lab_gateway: {DATAGRAMS} answered; forwarded {}, reversed {}, {} flows",
        total.pipeline.forwarded, total.pipeline.reversed, total.pipeline.flows
    );
}
