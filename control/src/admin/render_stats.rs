//! `vipgate stats`: a running gateway's `/stats` as a table, in the order
//! the counters are declared, with rates per second between two readings
//! when watching.

use std::fmt::Write;

use dataplane::conntrack;
use dataplane::counter_decl::{CounterDef, Kind};
use dataplane::counters::Counters;
use dataplane::io::IoStats;
use dataplane::worker::WorkerCounters;
use serde_json::Value;

/// Renders the `total` (and each interface's kernel counters) of a `/stats`
/// reading; with `earlier` (a reading `seconds` before), adds a rate column.
pub fn render_stats(now: &Value, earlier: Option<(&Value, f64)>) -> String {
    let mut rows: Vec<(String, u64, Option<f64>)> = Vec::new();
    let rate = |path: &[&str], v: u64| {
        earlier.and_then(|(e, secs)| {
            let before = path.iter().fold(e, |v, k| &v[*k]).as_u64()?;
            (secs > 0.0).then(|| v.saturating_sub(before) as f64 / secs)
        })
    };
    let block = |rows: &mut Vec<_>, prefix: &[&str], defs: &[CounterDef], label: &str| {
        let obj = prefix.iter().fold(now, |v, k| &v[*k]);
        for d in defs {
            let Some(v) = obj[d.key].as_u64() else {
                continue;
            };
            let mut path = prefix.to_vec();
            path.push(d.key);
            // A rate of a level (entries, capacity) means nothing.
            let r = match d.kind {
                Kind::Counter => rate(&path, v),
                Kind::Gauge => None,
            };
            rows.push((format!("{label}{}", d.key), v, r));
        }
    };
    block(&mut rows, &["total"], Counters::DEFS, "");
    if let Some(v) = now["total"]["dropped"].as_u64() {
        rows.push(("dropped".into(), v, rate(&["total", "dropped"], v)));
    }
    if let Some(drops) = now["total"]["drops"].as_object() {
        for (reason, v) in drops {
            let v = v.as_u64().unwrap_or(0);
            // Reasons that never happened would only add noise.
            if v > 0 {
                rows.push((
                    format!("  {reason}"),
                    v,
                    rate(&["total", "drops", reason], v),
                ));
            }
        }
    }
    block(&mut rows, &["total"], WorkerCounters::DEFS, "");
    block(
        &mut rows,
        &["total", "conntrack"],
        conntrack::Stats::DEFS,
        "conntrack ",
    );
    if let Some(ifaces) = now["interfaces"].as_object() {
        for name in ifaces.keys() {
            block(
                &mut rows,
                &["interfaces", name],
                IoStats::DEFS,
                &format!("{name} "),
            );
        }
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(8).max(8);
    let mut s = String::new();
    let workers = now["workers"].as_array().map_or(0, Vec::len);
    let uptime = now["uptime_seconds"].as_f64().unwrap_or(0.0);
    let _ = writeln!(
        s,
        "{workers} worker{}, up {uptime:.0} s",
        if workers == 1 { "" } else { "s" }
    );
    let _ = write!(s, "  {:<width$} {:>14}", "counter", "value");
    if earlier.is_some() {
        let _ = write!(s, " {:>14}", "per second");
    }
    s.push('\n');
    for (name, v, r) in rows {
        let _ = write!(s, "  {name:<width$} {v:>14}");
        if earlier.is_some() {
            match r {
                Some(r) => {
                    let _ = write!(s, " {r:>14.1}");
                }
                None => {
                    let _ = write!(s, " {:>14}", "-");
                }
            }
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(forwarded: u64, malformed: u64) -> Value {
        serde_json::json!({
            "uptime_seconds": 12.0,
            "total": {
                "packets": forwarded + malformed, "forwarded": forwarded, "dropped": malformed,
                "drops": {"malformed": malformed, "tx_full": 0},
                "conntrack_entries": 3,
                "conntrack": {"inserted": 3},
            },
            "workers": [{}, {}],
            "interfaces": {"eth0": {"rx_ring_drops": 4}},
        })
    }

    fn row<'a>(s: &'a str, name: &str) -> Vec<&'a str> {
        s.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in\n{s}"))
            .split_whitespace()
            .collect()
    }

    #[test]
    fn lists_declared_counters_and_nonzero_drops() {
        let s = render_stats(&reading(10, 2), None);
        assert!(s.starts_with("2 workers, up 12 s"), "{s}");
        assert_eq!(row(&s, "forwarded"), ["forwarded", "10"]);
        assert_eq!(row(&s, "malformed"), ["malformed", "2"]);
        assert!(!s.contains("tx_full"), "{s}");
        assert_eq!(row(&s, "conntrack_entries"), ["conntrack_entries", "3"]);
        assert!(s.contains("conntrack inserted"), "{s}");
        assert!(s.contains("eth0 rx_ring_drops"), "{s}");
        assert!(!s.contains("per second"), "{s}");
    }

    #[test]
    fn watching_adds_rates_per_second() {
        let s = render_stats(&reading(30, 2), Some((&reading(10, 2), 2.0)));
        assert!(s.contains("per second"), "{s}");
        assert_eq!(row(&s, "forwarded"), ["forwarded", "30", "10.0"]);
        assert_eq!(row(&s, "malformed"), ["malformed", "2", "0.0"]);
        assert_eq!(
            row(&s, "conntrack_entries"),
            ["conntrack_entries", "3", "-"]
        );
    }
}
