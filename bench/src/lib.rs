//! Benchmarks users run: replay captures through the real pipeline at full
//! speed, and (later) veth labs against the kernel's own paths.

/// Replaying a capture through the pipeline on pinned worker threads.
pub mod replay;
/// The replay summary as a table and as JSON.
pub mod summary;
/// Synthetic traffic mixes and service tables for the replay matrix.
pub mod matrix;
/// The replay matrix's report: report.json, report.md and SVG plots.
pub mod report;
