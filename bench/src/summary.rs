//! The replay summary: a readable table for people, one JSON object for
//! scripts (`--json`).

use std::fmt::Write;

use dataplane::counters::Counters;
use dataplane::verdict::DropReason;
use serde_json::{json, Map, Value};

use crate::replay::ReplayResult;

fn dropped_object(c: &Counters) -> Value {
    let mut m = Map::new();
    for r in DropReason::ALL {
        m.insert(r.name().to_string(), json!(c.dropped(r)));
    }
    Value::Object(m)
}

/// The summary as one JSON object.
pub fn to_json(r: &ReplayResult) -> Value {
    let t = &r.total;
    let per_worker: Vec<Value> = r
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let p = w.counters.packets as f64;
            json!({
                "worker": i,
                "core": w.core,
                "packets": w.counters.packets,
                "seconds": w.seconds,
                "busy_seconds": w.seconds,
                "mpps": if w.seconds > 0.0 { p / w.seconds / 1e6 } else { 0.0 },
                "ns_per_packet": if p > 0.0 { w.seconds * 1e9 / p } else { 0.0 },
            })
        })
        .collect();
    // The pipeline's counters under their declared names (`counter_set!`),
    // drops by reason as one object.
    let mut doc: Map<String, Value> = Counters::DEFS
        .iter()
        .zip(t.scalars())
        .map(|(d, v)| (d.key.to_string(), json!(v)))
        .collect();
    doc.insert("dropped".into(), dropped_object(t));
    let rest = json!({
        "seconds": r.seconds,
        "wall_seconds": r.seconds,
        "busy_seconds": r.busy_seconds(),
        "mpps": r.mpps(),
        "ns_per_packet": r.ns_per_packet(),
        "workers": r.workers.len(),
        "per_worker": per_worker,
        "capture_packets": r.capture_packets,
        "loops": r.loops,
    });
    if let Value::Object(rest) = rest {
        doc.extend(rest);
    }
    Value::Object(doc)
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / of as f64)
    }
}

/// The verdict rows (with drops by reason) and flows created: the part of
/// the summary `vipgate replay` and `vipgate run` share.
pub fn verdict_table(t: &Counters) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "  {:<22} {:>12} {:>8}", "verdict", "packets", "share");
    let rows = [
        ("forwarded (DNAT)", t.forwarded),
        ("reversed (un-DNAT)", t.reversed),
        ("rejected (RST/ICMP)", t.rejected),
        ("passed to kernel", t.passed),
        ("dropped", t.dropped_total()),
    ];
    for (name, n) in rows {
        let _ = writeln!(s, "  {:<22} {:>12} {:>8}", name, n, pct(n, t.packets));
    }
    for reason in DropReason::ALL {
        let n = t.dropped(reason);
        if n > 0 {
            let _ = writeln!(
                s,
                "    {:<20} {:>12} {:>8}",
                reason.name(),
                n,
                pct(n, t.packets)
            );
        }
    }
    let _ = writeln!(s, "  {:<22} {:>12}", "flows created", t.flows);
    s
}

/// The summary as a table.
pub fn to_text(r: &ReplayResult) -> String {
    let t = &r.total;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "replayed {} packets ({} in the capture x {} loop{}) on {} worker{}",
        t.packets,
        r.capture_packets,
        r.loops,
        if r.loops == 1 { "" } else { "s" },
        r.workers.len(),
        if r.workers.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(s);
    s.push_str(&verdict_table(t));
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "  {:<8} {:>6} {:>12} {:>10} {:>10} {:>10}",
        "worker", "core", "packets", "Mpps", "ns/pkt", "busy s"
    );
    for (i, w) in r.workers.iter().enumerate() {
        let p = w.counters.packets as f64;
        let mpps = if w.seconds > 0.0 {
            p / w.seconds / 1e6
        } else {
            0.0
        };
        let ns = if p > 0.0 { w.seconds * 1e9 / p } else { 0.0 };
        let core = w.core.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "  {:<8} {:>6} {:>12} {:>10.2} {:>10.1} {:>10.3}",
            i, core, w.counters.packets, mpps, ns, w.seconds
        );
    }
    let _ = writeln!(
        s,
        "  {:<8} {:>6} {:>12} {:>10.2} {:>10.1} {:>10.3}",
        "all",
        "",
        t.packets,
        r.mpps(),
        r.ns_per_packet(),
        r.busy_seconds()
    );
    let _ = writeln!(
        s,
        "\n  Mpps = packets / busy s (time in the worker loop; for all: the slowest\n  worker's). ns/pkt = busy s / packets per core. Wall time {:.3} s also\n  counts thread start-up and table setup.",
        r.seconds
    );
    s
}
