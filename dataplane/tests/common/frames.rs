//! Running single frames through a pipeline, for tests that look at one
//! verdict and one output frame at a time.

use dataplane::pipeline::Pipeline;
use dataplane::table::ServiceTable;
use dataplane::verdict::Verdict;

/// Runs `frame` (copied into a roomy buffer, as rx rings give, so that an
/// answer may be longer) at dataplane second 1; returns the verdict and
/// the frame as it leaves.
pub fn run(p: &mut Pipeline, table: &ServiceTable, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let (v, n) = p.process_frame(table, &mut buf, frame.len(), 1);
    buf.truncate(n);
    (v, buf)
}
