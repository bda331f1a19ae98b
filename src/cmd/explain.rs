//! `vipgate explain CLIENT VIP:PORT[/PROTO]`: which Service a new flow
//! matches, which Maglev slot and backend it gets and why, and what the
//! reply looks like; from a services file (`--services`, the same tables
//! `replay` builds) or from a running gateway's live table.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use control::admin::{explain_json, render_explain, Question, DEFAULT_ADMIN_ADDR};
use dataplane::table::ServiceTable;

use super::admin_get;
use super::services;
use super::tuning::Tuning;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The client's address:port.
    #[arg(value_name = "CLIENT")]
    client: String,
    /// The Service's address:port, optionally /tcp (default), /udp or /sctp.
    #[arg(value_name = "VIP:PORT[/PROTO]")]
    vip: String,
    /// Answer from this services file (`kubectl get svc,endpointslices -A
    /// -o yaml`) instead of a running gateway.
    #[arg(long, value_name = "FILE")]
    services: Option<PathBuf>,
    /// Admin endpoint of the running gateway to ask (without --services).
    #[arg(long, default_value = DEFAULT_ADMIN_ADDR, value_name = "ADDR", conflicts_with = "services")]
    admin_addr: SocketAddr,
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tuning: Tuning,
}

pub fn run(args: ExplainArgs) -> Result<(), String> {
    let q = Question::parse(&args.client, &args.vip)?;
    let v = match &args.services {
        Some(path) => {
            let specs = services::load_file(path, &args.tuning.model_options())?;
            let table = ServiceTable::from_specs(specs, args.tuning.table_config());
            explain_json(&table, &q)
        }
        None => admin_get::get(args.admin_addr, &format!("/explain?{}", q.to_query()))?,
    };
    admin_get::print(&v, args.json, render_explain);
    Ok(())
}
