//! A fault under load: `vipgate run` stopped with SIGTERM and started again
//! while 20 TCP transfers run through it. They survive without any state
//! handed between the two processes: the new one builds the same Maglev
//! rings from the same objects and seed, and picks up a mid-stream TCP
//! segment without a SYN as a new flow (netfilter's loose pickup), so each
//! connection lands on the backend it had; the segments lost while no
//! gateway ran are retransmitted by TCP.
//!
//! What this does not cover (see the README, "Faults under load"): a
//! backend set that changes while the gateway is down re-maps the flows of
//! the changed Services; ClientIP affinity state and UDP flows re-pick the
//! same way. Root only; otherwise it says so loudly and passes.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bench::lab::{in_netns, LabSpec};
use common::lab_test::{lab_or_skip, services_yaml, summary_count, Gateway, Servers, VIP_WEB};

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}
use common::bulk;

const TRANSFERS: usize = 20;
/// Each upload: 1 MiB in 64 KiB steps 150 ms apart, about 2.4 s.
const BYTES: usize = 1 << 20;
const PACE: (usize, Duration) = (64 << 10, Duration::from_millis(150));

#[test]
fn transfers_survive_a_gateway_restart() {
    let Some(lab) = lab_or_skip(
        "lab_restart",
        LabSpec {
            backends: 3,
            ipv6: true,
            ..Default::default()
        },
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("services.yaml");
    std::fs::write(&yaml, services_yaml()).unwrap();
    let _servers = Servers::start(&lab);
    let first = Gateway::start(&lab, "af-packet", &yaml);

    let to = SocketAddr::new(IpAddr::V4(VIP_WEB), 81);
    let transfers = in_netns(&lab.client, move || {
        bulk::start_paced(to, TRANSFERS, 500, BYTES, PACE)
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));

    let t0 = Instant::now();
    let (ok, stdout) = first.terminate();
    assert!(ok, "{stdout}");
    let before = summary_count(&stdout, "flows created").expect("flows line");
    let second = Gateway::start(&lab, "af-packet", &yaml);
    let gap = t0.elapsed();

    let errors = bulk::join_all(transfers);
    let (ok, stdout) = second.terminate();
    assert!(ok, "{stdout}");
    let picked_up = summary_count(&stdout, "flows created").expect("flows line");
    eprintln!(
        "lab_restart: {TRANSFERS} transfers; first gateway created {before} flows, stopped, \
         the second ran {:.2} s later and picked up {picked_up} flows mid-stream; {} failed",
        gap.as_secs_f64(),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "transfers broke over the restart: {errors:?}"
    );
    assert!(
        before >= TRANSFERS as u64,
        "the transfers did not start before the restart: {before} flows"
    );
    assert!(
        picked_up >= TRANSFERS as u64,
        "the second gateway never saw the running transfers: {picked_up} flows"
    );
}
