//! vipgate: a kernel-bypass load balancer for Kubernetes Services.
//!
//! This binary is argument parsing and wiring only; the work lives in the
//! `dataplane`, `control` and `bench` crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Kernel-bypass load balancer for Kubernetes Services: ClusterIP DNAT with
/// connection tracking and Maglev consistent hashing.
#[derive(Parser, Debug)]
#[command(name = "vipgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay a capture through the real pipeline in memory and report
    /// verdicts and throughput (without arguments: the bundled demo).
    Replay(cmd::replay::ReplayArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => cmd::replay::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vipgate: error: {e}");
            ExitCode::FAILURE
        }
    }
}
