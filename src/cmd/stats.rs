//! `vipgate stats`: the live counters of a running gateway, read from its
//! admin endpoint's `/stats`; with `--watch`, again every interval with
//! rates per second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use control::admin::{render_stats, DEFAULT_ADMIN_ADDR};

use super::admin_get;

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Admin endpoint of the running gateway (`vipgate run --admin-addr`).
    #[arg(long, default_value = DEFAULT_ADMIN_ADDR, value_name = "ADDR")]
    admin_addr: SocketAddr,
    /// Print the raw JSON instead of a table.
    #[arg(long, conflicts_with = "watch")]
    json: bool,
    /// Read again every SECONDS and show rates per second (until Ctrl-C,
    /// or --count readings).
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    watch: Option<Duration>,
    /// With --watch: stop after this many tables.
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.05..=3600.0).contains(&secs) {
        return Err("the interval must be between 0.05 and 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn run(args: StatsArgs) -> Result<(), String> {
    let fetch = || admin_get::get(args.admin_addr, "/stats");
    let mut last = fetch()?;
    let mut at = Instant::now();
    let Some(every) = args.watch else {
        admin_get::print(&last, args.json, |v| render_stats(v, None));
        return Ok(());
    };
    let mut shown = 0u64;
    while args.count.is_none_or(|n| shown < n) {
        std::thread::sleep(every);
        let now = fetch()?;
        let secs = at.elapsed().as_secs_f64();
        at = Instant::now();
        if shown > 0 {
            println!();
        }
        print!("{}", render_stats(&now, Some((&last, secs))));
        last = now;
        shown += 1;
    }
    Ok(())
}
