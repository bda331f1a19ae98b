//! `vipgate services`: the live table of a running gateway, read from its
//! admin endpoint.

use std::net::SocketAddr;

use clap::Args;
use control::admin::{render_services_table, DEFAULT_ADMIN_ADDR};

use super::admin_get;

#[derive(Args, Debug)]
pub struct ServicesArgs {
    /// Admin endpoint of the running gateway (`vipgate run --admin-addr`).
    #[arg(long, default_value = DEFAULT_ADMIN_ADDR, value_name = "ADDR")]
    admin_addr: SocketAddr,
    /// Print the raw JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ServicesArgs) -> Result<(), String> {
    let v = admin_get::get(args.admin_addr, "/services")?;
    admin_get::print(&v, args.json, render_services_table);
    Ok(())
}
