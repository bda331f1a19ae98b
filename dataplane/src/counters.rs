//! Per-worker packet counters. Each worker owns one block (cache-line
//! aligned so two workers never share a line); totals are summed when read.

use crate::verdict::DropReason;

/// What one worker has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(align(64))]
pub struct Counters {
    /// Frames seen.
    pub packets: u64,
    /// Client -> backend, DNATed (and ICMP errors towards backends).
    pub forwarded: u64,
    /// Backend -> client, reverse-NATed (and ICMP errors towards clients).
    pub reversed: u64,
    /// To a Service without endpoints: answered with RST / ICMP unreachable.
    pub rejected: u64,
    /// Handed to the kernel.
    pub passed: u64,
    /// Dropped, by reason (index = `DropReason as usize`).
    pub dropped: [u64; DropReason::COUNT],
    /// Conntrack entries created.
    pub flows: u64,
    /// Bursts processed.
    pub bursts: u64,
}

impl Counters {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn dropped(&self, r: DropReason) -> u64 {
        self.dropped[r as usize]
    }

    /// Adds another worker's counters into this one.
    pub fn add(&mut self, o: &Counters) {
        self.packets += o.packets;
        self.forwarded += o.forwarded;
        self.reversed += o.reversed;
        self.rejected += o.rejected;
        self.passed += o.passed;
        for (a, b) in self.dropped.iter_mut().zip(o.dropped.iter()) {
            *a += b;
        }
        self.flows += o.flows;
        self.bursts += o.bursts;
    }

    /// What happened since `earlier` (a copy of these counters taken then).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut d = Counters {
            packets: self.packets - earlier.packets,
            forwarded: self.forwarded - earlier.forwarded,
            reversed: self.reversed - earlier.reversed,
            rejected: self.rejected - earlier.rejected,
            passed: self.passed - earlier.passed,
            dropped: [0; DropReason::COUNT],
            flows: self.flows - earlier.flows,
            bursts: self.bursts - earlier.bursts,
        };
        for (i, x) in d.dropped.iter_mut().enumerate() {
            *x = self.dropped[i] - earlier.dropped[i];
        }
        d
    }

    /// Sum of a set of workers' counters.
    pub fn total<'a>(all: impl IntoIterator<Item = &'a Counters>) -> Counters {
        let mut t = Counters::default();
        for c in all {
            t.add(c);
        }
        t
    }
}
