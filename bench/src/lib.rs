//! Benchmarks users run: replay captures through the real pipeline at full
//! speed, and (later) veth labs against the kernel's own paths.

/// veth labs: namespaces for client, gateway and backends, torn down on drop.
pub mod lab;
/// `vipgate bench lab`: kube-proxy's iptables and nftables paths against
/// vipgate in a veth lab, measured in one run.
pub mod labbench;
/// Synthetic traffic mixes and service tables for the replay matrix.
pub mod matrix;
/// Replaying a capture through the pipeline on pinned worker threads.
pub mod replay;
/// The replay matrix's report: report.json, report.md and SVG plots.
pub mod report;
/// Transmitting a capture on an interface (`vipgate send`).
pub mod send;
/// AF_XDP transmit for `send`.
pub mod send_xdp;
/// `vipgate bench send`: `vipgate send` against `tcpreplay --topspeed`.
pub mod sendbench;
/// The replay summary as a table and as JSON.
pub mod summary;
