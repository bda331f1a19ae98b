//! Benchmarks users run: replay captures through the real pipeline at full
//! speed, and (later) veth labs against the kernel's own paths.

/// veth labs: namespaces for client, gateway and backends, torn down on drop.
pub mod lab;
/// Synthetic traffic mixes and service tables for the replay matrix.
pub mod matrix;
/// Replaying a capture through the pipeline on pinned worker threads.
pub mod replay;
/// The replay matrix's report: report.json, report.md and SVG plots.
pub mod report;
/// The replay summary as a table and as JSON.
pub mod summary;
