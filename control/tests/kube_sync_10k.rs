//! Initial sync time of 10,000 Services + 10,000 EndpointSlices (10
//! endpoints each) through the real kube client, from `start()` to the
//! first snapshot. A measurement, not a pass/fail timing: run it with
//! `cargo test --release -p vipgate-control --test kube_sync_10k -- --ignored --nocapture`.

mod kube_common;

use std::net::IpAddr;
use std::time::Instant;

use control::test_api_server::{fixtures, ApiServer, Resource};
use kube_common::*;

const SERVICES: u32 = 10_000;
const ENDPOINTS: u32 = 10;

#[test]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
fn initial_sync_of_10k_services() {
    let server = ApiServer::start().unwrap();
    let t = Instant::now();
    let objects = (0..SERVICES).flat_map(|i| {
        let ns = format!("ns-{}", i % 50);
        let name = format!("svc-{i}");
        let addrs: Vec<IpAddr> = (0..ENDPOINTS).map(|j| backend(i * ENDPOINTS + j)).collect();
        [
            fixtures::service(&ns, &name, vip(i), 80),
            fixtures::endpoint_slice(&ns, &format!("{name}-x1"), &name, &addrs, 8080),
        ]
    });
    server.apply_all(objects).unwrap();
    eprintln!(
        "bulk load of {} objects: {:?}",
        server.count(Resource::Service) + server.count(Resource::EndpointSlice),
        t.elapsed()
    );

    let t = Instant::now();
    let w = watch(&server, None);
    let first = w.until("the first snapshot", |_| true);
    let elapsed = t.elapsed();
    assert_eq!(first.services.len(), SERVICES as usize);
    assert_eq!(first.slices.len(), SERVICES as usize);
    let endpoints: usize = first
        .slices
        .iter()
        .map(|s| s.endpoints.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(endpoints, (SERVICES * ENDPOINTS) as usize);
    eprintln!(
        "initial sync of {SERVICES} services + {SERVICES} slices ({endpoints} endpoints): {elapsed:?} from start() to the first snapshot"
    );
}
