//! `vipgate services` against a real admin endpoint serving a real table.

use std::process::Command;
use std::sync::Arc;

use control::admin::{AdminServer, Health};
use dataplane::addr::{Addr, Proto};
use dataplane::generation::Tables;
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};

#[test]
fn prints_the_live_table_and_json() {
    let spec = ServiceSpec {
        key: ServiceKey {
            vip: Addr::from_v4([198, 19, 0, 10]),
            port: 80,
            proto: Proto::Tcp,
        },
        name: "default/web:http".into(),
        backends: vec![BackendSpec {
            addr: Addr::from_v4([198, 18, 1, 10]),
            port: 8080,
            weight: 1,
            state: BackendState::Ready,
        }],
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    };
    let tables = Tables::new(ServiceTable::from_specs(vec![spec], TableConfig::default()));
    let health = Arc::new(Health::default());
    health.add_skipped(2);
    let server =
        AdminServer::start("127.0.0.1:0".parse().unwrap(), tables, Arc::clone(&health)).unwrap();
    let addr = server.local_addr().to_string();

    let out = Command::new(env!("CARGO_BIN_EXE_vipgate"))
        .args(["services", "--admin-addr", &addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("default/web:http"), "{text}");
    assert!(text.contains("198.19.0.10:80"), "{text}");
    assert!(text.contains("198.18.1.10:8080"), "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_vipgate"))
        .args(["services", "--json", "--admin-addr", &addr])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["generation"], 1);
    assert_eq!(v["services"][0]["backends"][0]["state"], "ready");
    assert_eq!(v["skipped_objects_total"], 2, "skipped objects are counted");
}

#[test]
fn no_gateway_is_a_one_line_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_vipgate"))
        .args(["services", "--admin-addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
