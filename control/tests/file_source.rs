//! The services file as a live source: published at start, republished
//! when the file changes, and a broken write keeps the serving tables.

use std::sync::mpsc::channel;
use std::time::Duration;

use control::file_source::{FileEvent, FileSource};
use control::model::ModelOptions;
use control::publish::Publisher;
use dataplane::addr::{Addr, Proto};
use dataplane::generation::Tables;
use dataplane::table::TableConfig;

fn dump(backends: &[&str]) -> String {
    let eps: String = backends
        .iter()
        .map(|b| format!("  - addresses: [\"{b}\"]\n    conditions: {{ready: true}}\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\nspec:\n  clusterIP: 198.19.0.10\n  clusterIPs: [198.19.0.10]\n  ports: [{{name: http, port: 80, protocol: TCP, targetPort: 8080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n{eps}"
    )
}

fn backends(t: &Tables) -> usize {
    t.current()
        .lookup(&Addr::from_v4([198, 19, 0, 10]), 80, Proto::Tcp)
        .map_or(0, |e| e.active.len())
}

#[test]
fn reloads_on_change_and_keeps_tables_on_a_bad_write() {
    let dir = std::env::temp_dir().join(format!("vipgate-filesrc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("services.yaml");
    std::fs::write(&path, dump(&["198.18.1.10"])).unwrap();

    let tables = Tables::empty(TableConfig::default());
    let publisher = Publisher::new(tables.clone(), ModelOptions::default());
    let (tx, rx) = channel();
    let (source, first) = FileSource::start(
        path.clone(),
        publisher,
        Duration::from_millis(20),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .unwrap();
    assert_eq!(first.generation, 1);
    assert_eq!(backends(&tables), 1);

    std::fs::write(&path, dump(&["198.18.1.10", "198.18.1.11", "198.18.1.12"])).unwrap();
    match rx.recv_timeout(Duration::from_secs(10)).expect("a reload") {
        FileEvent::Loaded(p) => assert_eq!(p.generation, 2),
        FileEvent::Failed(e) => panic!("{e}"),
    }
    assert_eq!(backends(&tables), 3);

    std::fs::write(&path, "{ this is: [not valid").unwrap();
    match rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a failed reload")
    {
        FileEvent::Failed(e) => assert!(e.contains("services.yaml"), "{e}"),
        FileEvent::Loaded(_) => panic!("garbage must not load"),
    }
    assert_eq!(backends(&tables), 3, "the last good tables keep serving");
    assert_eq!(tables.current().generation(), 2);
    source.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreadable_file_fails_at_start() {
    let tables = Tables::empty(TableConfig::default());
    let publisher = Publisher::new(tables, ModelOptions::default());
    let err = FileSource::start(
        "/nonexistent/services.yaml".into(),
        publisher,
        Duration::from_millis(20),
        |_| {},
    )
    .err()
    .expect("must fail");
    assert!(err.contains("/nonexistent/services.yaml"), "{err}");
}
