//! The incremental publisher must publish exactly what the full model
//! gives for the same objects, after any sequence of changes: Services and
//! slices added, changed, deleted, and VIP:port clashes between Services.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use control::model::{self, ModelOptions};
use control::publish::Publisher;
use control::test_api_server::fixtures;
use dataplane::generation::Tables;
use dataplane::service::ServiceSpec;
use dataplane::table::TableConfig;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// SplitMix64: a fixed sequence, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn service(i: u64, vip: u64, rv: u64) -> Arc<Service> {
    let ip = IpAddr::V4(Ipv4Addr::new(198, 19, 0, vip as u8));
    let mut v = fixtures::service(&format!("ns-{}", i % 3), &format!("svc-{i}"), ip, 80);
    v["metadata"]["resourceVersion"] = serde_json::json!(rv.to_string());
    // Every other Service wants a health check (counted on NODE).
    if i % 2 == 1 {
        v["spec"]["type"] = serde_json::json!("LoadBalancer");
        v["spec"]["externalTrafficPolicy"] = serde_json::json!("Local");
        v["spec"]["healthCheckNodePort"] = serde_json::json!(32000 + i);
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

/// The node the publisher runs on; endpoints alternate between it and another.
const NODE: &str = "node-a";

fn opts() -> ModelOptions {
    ModelOptions {
        node_name: Some(NODE.into()),
        ..ModelOptions::default()
    }
}

fn slice(i: u64, part: u64, first: u64, n: u64, rv: u64) -> Arc<EndpointSlice> {
    let addrs: Vec<IpAddr> = (first..first + n)
        .map(|h| IpAddr::V4(Ipv4Addr::new(198, 18, 1, (h % 250 + 1) as u8)))
        .collect();
    let name = format!("svc-{i}");
    let mut v = fixtures::endpoint_slice(
        &format!("ns-{}", i % 3),
        &format!("{name}-{part}"),
        &name,
        &addrs,
        8080,
    );
    for (j, ep) in v["endpoints"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        ep["nodeName"] = serde_json::json!(if (first + j as u64).is_multiple_of(2) {
            NODE
        } else {
            "node-b"
        });
    }
    v["metadata"]["resourceVersion"] = serde_json::json!(rv.to_string());
    Arc::new(serde_json::from_value(v).unwrap())
}

fn specs_of(tables: &Tables) -> Vec<ServiceSpec> {
    tables
        .current()
        .entries()
        .into_iter()
        // Removed ports stay a while, retired: not part of the model.
        .filter(|e| !e.is_retired())
        .map(|e| e.spec.clone())
        .collect()
}

#[test]
fn incremental_equals_full_after_random_changes() {
    let mut rng = Rng(7);
    let tables = Tables::empty(TableConfig::default());
    let mut publisher = Publisher::new(tables.clone(), opts());
    // Live objects, keyed by index: Arcs are replaced on change, as a
    // reflector store does.
    let mut services: Vec<Option<Arc<Service>>> = vec![None; 12];
    let mut slices: Vec<Option<Arc<EndpointSlice>>> = vec![None; 24];
    let mut rv = 0;
    let mut checks_with_local_endpoints = 0;
    for step in 0..300 {
        rv += 1;
        match rng.below(5) {
            0 | 1 => {
                let i = rng.below(12);
                // Few VIPs for 12 services: clashes happen.
                services[i as usize] = Some(service(i, rng.below(8), rv));
            }
            2 => services[rng.below(12) as usize] = None,
            3 => {
                let k = rng.below(24);
                slices[k as usize] =
                    Some(slice(k % 12, k / 12, rng.below(40), 1 + rng.below(4), rv));
            }
            _ => slices[rng.below(24) as usize] = None,
        }
        let svcs: Vec<Arc<Service>> = services.iter().flatten().cloned().collect();
        let sls: Vec<Arc<EndpointSlice>> = slices.iter().flatten().cloned().collect();
        let p = publisher.publish_shared(&svcs, &sls);
        assert!(
            p.recomputed <= 2,
            "step {step}: one change recomputed {} services",
            p.recomputed
        );

        let owned_s: Vec<Service> = svcs.iter().map(|s| (**s).clone()).collect();
        let owned_e: Vec<EndpointSlice> = sls.iter().map(|s| (**s).clone()).collect();
        let full = model::build(&owned_s, &owned_e, &opts());
        assert_eq!(
            specs_of(&tables),
            full.services,
            "step {step}: incremental and full disagree"
        );
        assert_eq!(
            p.health_checks, full.health_checks,
            "step {step}: health checks disagree"
        );
        checks_with_local_endpoints += full
            .health_checks
            .iter()
            .filter(|c| c.local_endpoints > 0)
            .count();
    }
    assert!(
        checks_with_local_endpoints > 0,
        "no health check was exercised"
    );
}
