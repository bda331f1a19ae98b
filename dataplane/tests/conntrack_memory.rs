//! A conntrack of 1M flows in memory: its resident size with every entry
//! live is measured (the goal: at most 256 MB for 1M flows). That inserts
//! allocate nothing is tested in conntrack_alloc.rs.
//! Alone in its test binary, so no other test's memory is counted.

use dataplane::addr::{Addr, Proto, Tuple};
use dataplane::conntrack::{Config, Conntrack};

const FLOWS: u32 = 1 << 20;
const GOAL_MIB: u64 = 256;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .expect("VmRSS")
}

#[test]
fn a_million_flows_fit_in_256_mib() {
    let before = rss_kib();
    let mut ct = Conntrack::new(Config {
        capacity: FLOWS,
        ..Config::default()
    });
    for i in 0..FLOWS {
        let t = Tuple {
            src: Addr::from_v4([198, 18, (i >> 16) as u8, (i >> 8) as u8]),
            dst: Addr::from_v4([198, 19, 0, 10]),
            sport: (i & 0xff) as u16 + 1024,
            dport: 80,
            proto: Proto::Tcp,
        };
        ct.insert(&t, Addr::from_v4([198, 18, 1, 1]), 8080, 0x02, 1)
            .expect("room for every flow");
    }
    assert_eq!(ct.len(), FLOWS as usize);
    let after = rss_kib();
    let mib = (after - before) as f64 / 1024.0;
    println!(
        "conntrack: {FLOWS} live flows, resident {mib:.1} MiB ({:.0} bytes a flow); goal <= {GOAL_MIB} MiB",
        (after - before) as f64 * 1024.0 / f64::from(FLOWS)
    );
    assert!(mib <= GOAL_MIB as f64, "{mib:.1} MiB for {FLOWS} flows");
}
