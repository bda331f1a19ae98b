//! The `/services` document: one generation's table as JSON.

use dataplane::service::{Affinity, BackendState};
use dataplane::table::{ServiceEntry, ServiceTable};
use serde_json::{json, Value};

/// `{"generation": N, "services": [...]}`, services sorted by key
/// (VIP, port, protocol), backends in the order the model produced them.
pub fn services_json(table: &ServiceTable) -> Value {
    let services: Vec<Value> = table.entries().into_iter().map(entry_json).collect();
    json!({
        "generation": table.generation(),
        "services": services,
    })
}

/// The wire name of a backend state, shared with the table renderer.
pub fn state_name(state: BackendState) -> &'static str {
    match state {
        BackendState::Ready => "ready",
        BackendState::ServingTerminating => "serving-terminating",
        BackendState::NotServing => "not-serving",
    }
}

fn entry_json(e: &ServiceEntry) -> Value {
    let spec = &e.spec;
    let backends: Vec<Value> = spec
        .backends
        .iter()
        .map(|b| {
            json!({
                "addr": b.addr.to_string(),
                "port": b.port,
                "weight": b.weight,
                "state": state_name(b.state),
                "active": e.is_active(&b.addr, b.port),
            })
        })
        .collect();
    // Kubernetes' own `sessionAffinity` words, so operators can compare
    // with `kubectl get svc -o yaml` at a glance.
    let (affinity, timeout) = match spec.affinity {
        Affinity::None => ("None", Value::Null),
        Affinity::ClientIp { timeout_s } => ("ClientIP", json!(timeout_s)),
    };
    json!({
        "name": spec.name,
        "vip": spec.key.vip.to_string(),
        "port": spec.key.port,
        "protocol": spec.key.proto.name(),
        "affinity": affinity,
        "affinity_timeout_s": timeout,
        "table_size": e.maglev.size(),
        "forwarding": spec.forwarding.name(),
        "retired": e.is_retired(),
        "source_ranges": spec
            .source_ranges
            .iter()
            .map(|r| {
                let bits = if r.net.is_v4() { r.bits - 96 } else { r.bits };
                format!("{}/{bits}", r.net)
            })
            .collect::<Vec<_>>(),
        "backends": backends,
    })
}
