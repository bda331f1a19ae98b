//! The final counters of `vipgate run`, in the replay summary's layout.

use std::fmt::Write;

use dataplane::verdict::DropReason;
use dataplane::worker::WorkerCounters;

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / of as f64)
    }
}

pub fn to_text(c: &WorkerCounters, workers: usize, seconds: f64) -> String {
    let t = &c.pipeline;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "processed {} packets in {:.1} s on {} worker{}",
        t.packets,
        seconds,
        workers,
        if workers == 1 { "" } else { "s" }
    );
    let _ = writeln!(s);
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
    let _ = writeln!(s, "  {:<22} {:>12}", "transmitted", c.tx_sent);
    let _ = writeln!(s, "  {:<22} {:>12}", "  to another iface", c.tx_cross);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_verdicts_and_nonzero_drop_reasons() {
        let mut c = WorkerCounters::default();
        c.pipeline.packets = 10;
        c.pipeline.forwarded = 4;
        c.pipeline.dropped[DropReason::NoNeighbour as usize] = 1;
        c.tx_sent = 4;
        let s = to_text(&c, 1, 2.0);
        assert!(s.contains("processed 10 packets"), "{s}");
        assert!(s.contains("forwarded (DNAT)"), "{s}");
        assert!(s.contains("40.0%"), "{s}");
        assert!(s.contains("no_neighbour"), "{s}");
        assert!(!s.contains("tx_full"), "{s}");
    }
}
