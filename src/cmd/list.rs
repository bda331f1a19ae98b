//! `vipgate services`: the live table of a running gateway, read from its
//! admin endpoint.

use std::net::SocketAddr;

use clap::Args;
use control::admin::{fetch_services, render_services_table, DEFAULT_ADMIN_ADDR};

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
    let v = fetch_services(args.admin_addr).map_err(|e| {
        format!(
            "{e} (is `vipgate run` running with --admin-addr {}?)",
            args.admin_addr
        )
    })?;
    if args.json {
        println!("{v}");
    } else {
        print!("{}", render_services_table(&v));
    }
    Ok(())
}
