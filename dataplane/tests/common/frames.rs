//! Running single frames through a pipeline, for tests that look at one
//! verdict and one output frame at a time.
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::table::ServiceTable;
use dataplane::verdict::Verdict;

/// Runs `frame` (copied into a roomy buffer, as rx rings give, so that an
/// answer may be longer) at dataplane second 1; returns the verdict and
/// the frame as it leaves.
pub fn run(p: &mut Pipeline, table: &ServiceTable, frame: &[u8]) -> (Verdict, Vec<u8>) {
    run_at(p, table, frame, 1)
}

/// [`run`] at dataplane second `now`.
pub fn run_at(
    p: &mut Pipeline,
    table: &ServiceTable,
    frame: &[u8],
    now: u32,
) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let (v, n) = p.process_frame(table, &mut buf, frame.len(), now);
    buf.truncate(n);
    (v, buf)
}

/// A pipeline with a small (1024-entry) conntrack and defaults otherwise.
pub fn small_pipeline() -> Pipeline {
    Pipeline::new(PipelineConfig {
        conntrack: dataplane::conntrack::Config {
            capacity: 1024,
            ..Default::default()
        },
        ..Default::default()
    })
}
