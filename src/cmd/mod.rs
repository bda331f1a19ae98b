//! One file per subcommand, plus what they share.

/// The demo capture and services file built into the binary.
pub mod embedded;
/// `vipgate replay`.
pub mod replay;
/// Loading a services file into dataplane specs, printing its warnings.
pub mod services;
/// Table and pipeline options shared by the subcommands.
pub mod tuning;
