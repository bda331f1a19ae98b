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
    /// Run the gateway on real interfaces (AF_XDP or AF_PACKET) until
    /// SIGINT/SIGTERM, then print its counters.
    Run(cmd::run::RunArgs),
    /// Benchmarks: `vipgate bench replay` runs traffic mixes x table sizes x
    /// workers through the pipeline and writes a report.
    Bench(cmd::bench::BenchArgs),
    /// Show the live service table of a running gateway (from its admin endpoint).
    Services(cmd::list::ServicesArgs),
    /// Transmit a capture on an interface (AF_PACKET or AF_XDP), paced or
    /// at top speed, bounded by loops and time; print the rate reached.
    Send(cmd::send::SendArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => cmd::replay::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Services(args) => cmd::list::run(args),
        Command::Send(args) => cmd::send::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vipgate: error: {e}");
            ExitCode::FAILURE
        }
    }
}
