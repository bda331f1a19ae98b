//! `/metrics` and `/stats` over real TCP: worker blocks with known values
//! published the way workers publish them, a table, a publication with an
//! EndpointSlice trigger time; the exposition read back, its values
//! checked, and the whole text checked by Prometheus' own `promtool`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use control::admin::{http_request, AdminServer, Health, Metrics, Publication, WorkerHandle};
use dataplane::addr::{Addr, Proto};
use dataplane::counters::Counted;
use dataplane::generation::Tables;
use dataplane::io::IoStats;
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::DropReason;
use dataplane::worker::{SharedCounters, WorkerCounters};

fn spec() -> ServiceSpec {
    let b = |last, state| BackendSpec {
        addr: Addr::from_v4([198, 18, 1, last]),
        port: 8080,
        weight: 1,
        state,
    };
    ServiceSpec {
        key: ServiceKey {
            vip: Addr::from_v4([198, 19, 0, 10]),
            port: 80,
            proto: Proto::Tcp,
        },
        name: "default/web:http".into(),
        backends: vec![
            b(1, BackendState::Ready),
            b(2, BackendState::Ready),
            b(3, BackendState::NotServing),
        ],
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    }
}

/// Every sample line `name{labels} value` as a map from `name{labels}`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn worker(forwarded: u64, malformed: u64, ct_entries: u64) -> Arc<SharedCounters> {
    // ifindex 1 is the loopback interface in every namespace.
    let shared = Arc::new(SharedCounters::for_ports(&[1]));
    let mut c = WorkerCounters::default();
    c.pipeline.packets = forwarded + malformed;
    c.pipeline.forwarded = forwarded;
    c.pipeline.dropped[DropReason::Malformed as usize] = malformed;
    if malformed > 0 {
        // One forwarded frame then found no next hop: moved to a drop
        // reason in the worker's own counts.
        assert!(c
            .pipeline
            .recount(Counted::Forwarded, DropReason::NoNeighbour));
    }
    c.pipeline.flows = ct_entries;
    c.conntrack_entries = ct_entries;
    c.conntrack_capacity = 1000;
    c.conntrack.inserted = ct_entries;
    c.conntrack.evicted_unreplied = 2;
    shared.store(&c);
    shared.store_port(
        0,
        &IoStats {
            rx_ring_drops: 5,
            ..IoStats::default()
        },
    );
    shared
}

#[test]
fn metrics_and_stats_show_the_workers_and_the_table() {
    let tables = Tables::new(ServiceTable::from_specs(
        vec![spec()],
        TableConfig::default(),
    ));
    let health = Arc::new(Health::new());
    health.add_skipped(3);
    let metrics = Arc::new(Metrics::new(
        "starting",
        tables.clone(),
        Arc::clone(&health),
    ));
    metrics.set_workers(
        "af_packet",
        vec![
            WorkerHandle {
                shared: worker(10, 1, 4),
                flows: Default::default(),
            },
            WorkerHandle {
                shared: worker(20, 0, 6),
                flows: Default::default(),
            },
        ],
    );
    // A change triggered after the gateway started, live 250 ms later.
    std::thread::sleep(Duration::from_millis(300));
    let trigger = SystemTime::now() - Duration::from_millis(250);
    metrics.observe_publication(&Publication {
        took: Duration::from_millis(3),
        rebuilt: 1,
        rebuild_time: Duration::from_micros(60),
        triggers: &[trigger],
    });
    // From before the process started: not a programming latency.
    metrics.observe_publication(&Publication {
        took: Duration::from_millis(2),
        rebuilt: 0,
        rebuild_time: Duration::ZERO,
        triggers: &[SystemTime::UNIX_EPOCH + Duration::from_secs(1)],
    });
    let server = AdminServer::start_with_metrics(
        "127.0.0.1:0".parse().unwrap(),
        tables,
        health,
        Arc::clone(&metrics),
    )
    .unwrap();
    let r = http_request(server.local_addr(), "GET", "/metrics").unwrap();
    assert_eq!(r.status, 200);
    let text = r.body;
    let s = samples(&text);
    let get = |k: &str| {
        *s.get(k)
            .unwrap_or_else(|| panic!("no sample {k} in\n{text}"))
    };
    // Verdicts as first counted (a counter never goes down): the frame
    // moved to no_neighbour stays forwarded here and is a drop too.
    assert_eq!(
        get(r#"vipgate_packets_total{worker="0",verdict="forwarded"}"#),
        10.0
    );
    assert_eq!(
        get(r#"vipgate_drops_total{worker="0",reason="no_neighbour"}"#),
        1.0
    );
    assert_eq!(
        get(r#"vipgate_packets_total{worker="1",verdict="forwarded"}"#),
        20.0
    );
    assert_eq!(
        get(r#"vipgate_packets_total{worker="0",verdict="dropped"}"#),
        1.0
    );
    assert_eq!(
        get(r#"vipgate_drops_total{worker="0",reason="malformed"}"#),
        1.0
    );
    assert_eq!(get(r#"vipgate_rx_packets_total{worker="0"}"#), 11.0);
    assert_eq!(get(r#"vipgate_conntrack_entries{worker="1"}"#), 6.0);
    assert_eq!(get(r#"vipgate_conntrack_capacity{worker="1"}"#), 1000.0);
    assert_eq!(
        get(r#"vipgate_conntrack_evictions_total{worker="0",kind="unassured"}"#),
        2.0
    );
    // Both workers' ports are on lo: summed per interface.
    assert_eq!(
        get(r#"vipgate_io_kernel_drops_total{iface="lo",kind="rx_ring_full"}"#),
        10.0
    );
    assert_eq!(get("vipgate_services"), 1.0);
    assert_eq!(get(r#"vipgate_backends{state="ready"}"#), 2.0);
    assert_eq!(get(r#"vipgate_backends{state="not_serving"}"#), 1.0);
    assert_eq!(get("vipgate_table_generation"), 1.0);
    assert_eq!(get("vipgate_skipped_objects_total"), 3.0);
    assert_eq!(get("vipgate_maglev_rebuilds_total"), 1.0);
    // Only the publication that rebuilt a ring is a rebuild-time sample.
    assert_eq!(get("vipgate_maglev_rebuild_duration_seconds_count"), 1.0);
    assert_eq!(get("vipgate_maglev_rebuild_duration_seconds_sum"), 0.00006);
    assert_eq!(get("vipgate_sync_duration_seconds_count"), 2.0);
    assert_eq!(
        get("vipgate_network_programming_duration_seconds_count"),
        1.0
    );
    let p = get("vipgate_network_programming_duration_seconds_sum");
    assert!((0.2..60.0).contains(&p), "{p}");
    assert!(get("vipgate_last_sync_timestamp_seconds") > 1.7e9);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        get(&format!(
            r#"vipgate_build_info{{version="{version}",io_mode="af_packet"}}"#
        )),
        1.0
    );
    // Help comes from the counters' declarations.
    assert!(
        text.contains("# HELP vipgate_flows_created_total Conntrack entries created.\n"),
        "{text}"
    );

    let r = http_request(server.local_addr(), "GET", "/stats").unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    // /stats keeps the worker's own balance: the moved frame is a drop.
    assert_eq!(v["total"]["forwarded"], 29);
    assert_eq!(v["total"]["dropped"], 2);
    assert_eq!(v["total"]["drops"]["malformed"], 1);
    assert_eq!(v["total"]["conntrack_entries"], 10);
    assert_eq!(v["workers"][1]["conntrack"]["inserted"], 6);
    assert_eq!(v["interfaces"]["lo"]["rx_ring_drops"], 10);

    promtool_accepts(&text);
    dashboard_queries_exist(&text);

    // What Prometheus asks for: OpenMetrics, the same samples.
    let open = openmetrics(server.local_addr());
    assert!(
        open.contains("# TYPE vipgate_flows_created counter\n"),
        "{open}"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert_eq!(samples(&open).len(), s.len());
}

/// Every metric deploy/grafana/vipgate-dashboard.json queries is one /metrics has.
fn dashboard_queries_exist(text: &str) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/vipgate-dashboard.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queried = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("vipgate_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried.push(name);
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    for name in queried {
        // The whole name: a sample line is `name{labels} v` or `name v`.
        assert!(
            text.lines().any(|l| !l.starts_with('#')
                && l.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))),
            "the dashboard queries {name}, which /metrics does not have"
        );
    }
}

/// GET /metrics as Prometheus does, with an OpenMetrics Accept header.
fn openmetrics(addr: std::net::SocketAddr) -> String {
    use std::io::Read;
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    body.to_string()
}

/// `promtool check metrics` (Debian's prometheus package; `.ci/run`
/// installs it) lints the exposition as Prometheus reads it.
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if dataplane::io::af_packet::is_root() => {
            panic!(
                "promtool not runnable ({e}): install Debian's prometheus package (.ci/run does)"
            )
        }
        Err(_) => {
            eprintln!(
                "\n*** SKIPPED promtool check: promtool not installed (CI installs it) ***\n"
            );
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A conntrack listing waits for the workers to walk their tables; the
/// probes and scrapes on the same endpoint must not wait behind it.
#[test]
fn a_pending_conntrack_listing_does_not_stall_the_probes() {
    let tables = Tables::new(ServiceTable::from_specs(
        vec![spec()],
        TableConfig::default(),
    ));
    let health = Arc::new(Health::new());
    let metrics = Arc::new(Metrics::new("none", tables.clone(), Arc::clone(&health)));
    // A worker that never serves its listing (as if busy elsewhere).
    let flows: Arc<dataplane::worker::FlowDump> = Default::default();
    metrics.set_workers(
        "memory",
        vec![WorkerHandle {
            shared: worker(1, 0, 1),
            flows: Arc::clone(&flows),
        }],
    );
    let server =
        AdminServer::start_with_metrics("127.0.0.1:0".parse().unwrap(), tables, health, metrics)
            .unwrap();
    let addr = server.local_addr();
    let listing = std::thread::spawn(move || http_request(addr, "GET", "/conntrack"));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(http_request(addr, "GET", "/healthz").unwrap().status, 200);
    assert_eq!(http_request(addr, "GET", "/metrics").unwrap().status, 200);
    assert!(
        !listing.is_finished(),
        "the listing should still be waiting for its worker"
    );
    // The worker stops: the listing ends at once, saying why.
    flows.close();
    let r = listing.join().unwrap().unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("stopped"), "{}", r.body);
}
