//! Deterministic pcap fixtures for vipgate, the generator that writes them,
//! and an independent checksum checker for what the pipeline writes.
//!
//! Each fixture `X` is `X.pcap` (input), `X-services.yaml` (what `kubectl
//! get svc,endpointslices -A -o yaml` prints), `X.expected.json` (verdict
//! counts of `vipgate replay --json`) and, where every output follows from
//! the rules alone, `X.expected.pcap`. Expected frames are built from the
//! same packet descriptions as the inputs, never by running the pipeline.

use std::io;
use std::path::{Path, PathBuf};

/// Steps (input, verdict, expected output) and the files written from them.
pub mod fixture;
/// Conversations through the balancer: NAT pairs, TCP sequence numbers, rejections.
pub mod flow;
/// basic in other link types and with damaged records.
pub mod linktypes;
/// Frame builders with full checksums.
pub mod packet;
/// Seeded SplitMix64, stable forever.
pub mod rng;
/// The `affinity` fixture: ClientIP session affinity, dual-stack.
pub mod scenario_affinity;
/// The `basic` fixture: one backend per service, every rule once.
pub mod scenario_basic;
/// The `demo` fixture: thousands of interleaved flows, Maglev-picked backends.
pub mod scenario_demo;
/// The `sctp` fixture: SCTP associations, dual-stack, and ABORT answers.
pub mod scenario_sctp;
/// Independent full-recompute checksum verification.
pub mod verify;
/// Service and EndpointSlice YAML as kubectl prints it.
pub mod yaml;

pub use verify::check_frame;

/// Absolute path of the `pcap-fixtures/` directory, where the committed
/// fixture files live.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes every fixture into `dir` (which must exist).
pub fn generate_all(dir: &Path) -> io::Result<()> {
    let basic = scenario_basic::steps();
    let yaml = yaml::services_yaml(&scenario_basic::services(), 0xb);
    fixture::write_fixture(dir, "basic", &basic, &yaml, true)?;
    linktypes::write_all(dir, &basic)?;
    let demo = scenario_demo::steps();
    let yaml = yaml::services_yaml(&scenario_demo::services(), 0xd);
    fixture::write_fixture(dir, "demo", &demo, &yaml, false)?;
    let affinity = scenario_affinity::steps();
    let yaml = yaml::services_yaml(&scenario_affinity::services(), 0xa);
    fixture::write_fixture(dir, "affinity", &affinity, &yaml, true)?;
    let sctp = scenario_sctp::steps();
    let yaml = yaml::services_yaml(&scenario_sctp::services(), 0x5c);
    fixture::write_fixture(dir, "sctp", &sctp, &yaml, true)?;
    Ok(())
}
