//! The final counters of `vipgate run`, in the replay summary's layout.

use std::fmt::Write;

use dataplane::counter_decl::{CounterDef, Show};
use dataplane::io::IoStats;
use dataplane::worker::WorkerCounters;

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
    s.push_str(&bench::summary::verdict_table(t));
    // The rows below are the fields declared with a summary label
    // (`counter_set!`): transmit paths, then what the sockets' kernel side
    // lost (ring drops mean the workers did not keep up: more workers, a
    // bigger --burst, or fewer other tasks on their cores; the rest only
    // when it happened), then handoffs when there are several workers.
    let handoff = workers > 1 || c.handoff_out + c.handoff_dropped() > 0;
    let rows = |defs: &[CounterDef], values: &[u64], group: bool| {
        let mut out = String::new();
        for (d, v) in defs.iter().zip(values) {
            let Some((label, show)) = d.summary else {
                continue;
            };
            let shown = match show {
                Show::Always => !group,
                Show::Nonzero => !group && *v > 0,
                Show::Handoff => group && handoff,
            };
            if shown {
                let _ = writeln!(out, "  {label:<22} {v:>12}");
            }
        }
        out
    };
    s.push_str(&rows(WorkerCounters::DEFS, &c.scalars(), false));
    s.push_str(&rows(IoStats::DEFS, &c.io.scalars(), false));
    s.push_str(&rows(WorkerCounters::DEFS, &c.scalars(), true));
    s
}

/// One line per worker: how the traffic and the handoffs spread.
pub fn per_worker(all: &[WorkerCounters]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n  {:<8} {:>12} {:>12} {:>12} {:>12}",
        "worker", "packets", "flows", "handed out", "handed in"
    );
    for (w, c) in all.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {:<8} {:>12} {:>12} {:>12} {:>12}",
            w, c.pipeline.packets, c.pipeline.flows, c.handoff_out, c.handoff_in
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::verdict::DropReason;

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
        assert!(!s.contains("handed to owner"), "{s}");
    }

    #[test]
    fn shows_zero_copy_and_copied_transmits() {
        let c = WorkerCounters {
            tx_sent: 9,
            tx_cross: 7,
            tx_cross_zc: 5,
            tx_copied: 2,
            neigh_held_sent: 3,
            ..WorkerCounters::default()
        };
        let s = to_text(&c, 1, 1.0);
        let last = |label: &str| {
            let l = s.lines().find(|l| l.trim_start().starts_with(label));
            l.and_then(|l| l.split_whitespace().last())
                .map(str::to_owned)
        };
        assert_eq!(last("zero-copy").as_deref(), Some("5"), "{s}");
        assert_eq!(last("via copy sender").as_deref(), Some("2"), "{s}");
        assert_eq!(last("to another iface").as_deref(), Some("7"), "{s}");
        assert_eq!(last("after neighbour wait").as_deref(), Some("3"), "{s}");
    }

    #[test]
    fn shows_kernel_ring_drops_always_and_other_losses_when_any() {
        let mut c = WorkerCounters::default();
        let s = to_text(&c, 1, 1.0);
        let line = s
            .lines()
            .find(|l| l.contains("kernel rx ring drops"))
            .unwrap();
        assert_eq!(line.split_whitespace().last(), Some("0"), "{s}");
        assert!(!s.contains("skipped") && !s.contains("unfixed"), "{s}");
        c.io.rx_ring_drops = 42;
        c.io.rx_skipped = 3;
        c.io.rx_csum_unfixed = 2;
        let s = to_text(&c, 1, 1.0);
        let last = |label: &str| {
            let l = s.lines().find(|l| l.contains(label)).unwrap();
            l.split_whitespace().last().unwrap().to_owned()
        };
        assert_eq!(last("kernel rx ring drops"), "42", "{s}");
        assert_eq!(last("rx frames skipped"), "3", "{s}");
        assert_eq!(last("partial csum unfixed"), "2", "{s}");
        assert!(!s.contains("fill ring empty"), "{s}");
    }

    #[test]
    fn several_workers_show_handoffs() {
        let mut a = WorkerCounters::default();
        a.pipeline.packets = 7;
        a.handoff_out = 3;
        a.handoff_full = 1;
        let mut b = WorkerCounters::default();
        b.pipeline.packets = 5;
        b.handoff_in = 3;
        let t = WorkerCounters::total([&a, &b]);
        let s = to_text(&t, 2, 1.0);
        assert!(s.contains("on 2 workers"), "{s}");
        let line = s.lines().find(|l| l.contains("handed to owner")).unwrap();
        assert_eq!(line.split_whitespace().last(), Some("3"), "{s}");
        let full = s.lines().find(|l| l.contains("inbox full")).unwrap();
        assert_eq!(full.split_whitespace().last(), Some("1"), "{s}");
        let p = per_worker(&[a, b]);
        let rows: Vec<Vec<&str>> = p
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["0", "7", "0", "3", "0"]);
        assert_eq!(rows[1], ["1", "5", "0", "0", "3"]);
    }
}
