//! One file per subcommand, plus what they share.

/// GET a running gateway's admin endpoint (services, stats, conntrack).
pub mod admin_get;
/// `vipgate bench replay`: the replay matrix and its report.
pub mod bench;
/// `vipgate bench lab`: kernel paths against vipgate in a veth lab.
pub mod bench_lab;
/// `vipgate conntrack`: the live flows of a running gateway.
pub mod conntrack;
/// The demo capture and services file built into the binary.
pub mod embedded;
/// `vipgate explain`: what happens to a new flow, and why.
pub mod explain;
/// `vipgate services`: the live table of a running gateway.
pub mod list;
/// `vipgate replay`.
pub mod replay;
/// `vipgate run`: the gateway on real interfaces.
pub mod run;
/// `vipgate send`: transmit a capture on an interface.
pub mod send;
/// Loading a services file into dataplane specs, printing its warnings.
pub mod services;
/// `vipgate stats`: the live counters of a running gateway.
pub mod stats;
/// Table and pipeline options shared by the subcommands.
pub mod tuning;
