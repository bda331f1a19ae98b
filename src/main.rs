//! vipgate: a kernel-bypass load balancer for Kubernetes Services.
//!
//! This binary is argument parsing and wiring only; the work lives in the
//! `dataplane`, `control` and `bench` crates.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod cmd;
mod log;

/// Kernel-bypass load balancer for Kubernetes Services: ClusterIP DNAT with
/// connection tracking and Maglev consistent hashing.
#[derive(Parser, Debug)]
#[command(name = "vipgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output: -v debug, -vv trace (on stderr; default info).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log level (error, warn, info, debug, trace); overrides -v and
    /// RUST_LOG. Without either, RUST_LOG applies (e.g. RUST_LOG=kube=debug),
    /// else info.
    #[arg(long, value_name = "LEVEL", global = true)]
    log_level: Option<tracing::Level>,
    /// Log line format: text (`vipgate: warning: ...`) or json (one object
    /// per line, for log shippers).
    #[arg(long, value_enum, default_value_t = log::LogFormat::Text, global = true)]
    log_format: log::LogFormat,
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
    /// Show the live counters of a running gateway (from its admin
    /// endpoint); `--watch 1` adds rates per second. Prometheus scrapes
    /// the same counters on `/metrics`.
    Stats(cmd::stats::StatsArgs),
    /// List the flows a running gateway tracks (client, VIP, backend, TCP
    /// state, seconds to expiry, worker), like `conntrack -L`.
    Conntrack(cmd::conntrack::ConntrackArgs),
    /// Explain what happens to a new flow: the Service it matches, the
    /// Maglev slot and backend it gets and why, the reply. From a services
    /// file (--services) or a running gateway.
    Explain(cmd::explain::ExplainArgs),
    /// Transmit a capture on an interface (AF_PACKET or AF_XDP), paced or
    /// at top speed, bounded by loops and time; print the rate reached.
    Send(cmd::send::SendArgs),
    /// Print a shell completion script: `vipgate completions bash >
    /// /etc/bash_completion.d/vipgate` (also zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `vipgate man > vipgate.1; man ./vipgate.1`.
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(cli.log_level, cli.verbose, cli.log_format);
    let result = match cli.command {
        Command::Replay(args) => cmd::replay::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Services(args) => cmd::list::run(args),
        Command::Stats(args) => cmd::stats::run(args),
        Command::Conntrack(args) => cmd::conntrack::run(args),
        Command::Explain(args) => cmd::explain::run(args),
        Command::Send(args) => cmd::send::run(args),
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics on a write error
            // (`| head`), a closed pipe should be a plain error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vipgate", &mut script);
            write_stdout(&script, "the completion script")
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| format!("rendering the man page: {e}"))
                .and_then(|()| write_stdout(&page, "the man page"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vipgate: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_stdout(bytes: &[u8], what: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing {what}: {e}"))
}
