//! `vipgate conntrack`: the flows a running gateway tracks, like
//! `conntrack -L` or `ipvsadm -Lnc`, read from its admin endpoint. The
//! workers list their tables between bursts, a chunk at a time, so asking
//! never stops the traffic.

use std::net::SocketAddr;

use clap::Args;
use control::admin::{render_flows, Endpoint, FlowFilter, DEFAULT_ADMIN_ADDR};

use super::admin_get;

#[derive(Args, Debug)]
pub struct ConntrackArgs {
    /// Admin endpoint of the running gateway (`vipgate run --admin-addr`).
    #[arg(long, default_value = DEFAULT_ADMIN_ADDR, value_name = "ADDR")]
    admin_addr: SocketAddr,
    /// Only flows to this VIP (an address, or address:port).
    #[arg(long, value_name = "A", value_parser = Endpoint::parse)]
    vip: Option<Endpoint>,
    /// Only flows from this client (an address, or address:port).
    #[arg(long, value_name = "A", value_parser = Endpoint::parse)]
    client: Option<Endpoint>,
    /// List at most this many flows (all matching ones are counted).
    #[arg(long, value_name = "N", default_value_t = control::admin::flows::DEFAULT_LIMIT)]
    limit: usize,
    /// Print JSON (the admin endpoint's /conntrack) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ConntrackArgs) -> Result<(), String> {
    let filter = FlowFilter {
        vip: args.vip,
        client: args.client,
        limit: args.limit,
    };
    let q = filter.to_query();
    let path = if q.is_empty() {
        "/conntrack".to_string()
    } else {
        format!("/conntrack?{q}")
    };
    let v = admin_get::get(args.admin_addr, &path)?;
    admin_get::print(&v, args.json, render_flows);
    Ok(())
}
