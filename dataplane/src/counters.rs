//! Per-worker packet counters. Each worker owns one block (cache-line
//! aligned so two workers never share a line); totals are summed when read.
//!
//! Every frame the pipeline sees is counted exactly once, under its verdict:
//! `forwarded + reversed + rejected + passed + dropped_total() == packets`.
//! A frame the pipeline decided to transmit but that the worker could not
//! send (no neighbour, ring full, ...) is moved to a drop reason with
//! [`Counters::recount`], not counted a second time. Moving lowers a
//! verdict counter, which Prometheus must never see: `recounted` keeps how
//! many left each verdict, and [`Counters::by_verdict`] gives the
//! pipeline's verdicts as first counted, each only growing.

use crate::verdict::DropReason;

crate::counter_set! {
    /// What one worker's pipeline has done.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(align(64))]
    pub struct Counters {
        /// Frames the pipeline saw.
        packets: Counter "vipgate_rx_packets",
        /// Client -> backend, DNATed (and ICMP errors towards backends).
        forwarded: Counter "vipgate_packets" [verdict = "forwarded"],
        /// Backend -> client, reverse-NATed (and ICMP errors towards clients).
        reversed: Counter "vipgate_packets" [verdict = "reversed"],
        /// Answered by the gateway instead of forwarded: to a Service without
        /// endpoints (RST / ICMP unreachable), or TTL run out (ICMP time exceeded).
        rejected: Counter "vipgate_packets" [verdict = "rejected"],
        /// Handed to the kernel.
        passed: Counter "vipgate_packets" [verdict = "passed"],
        /// Conntrack entries created.
        flows: Counter "vipgate_flows_created",
        /// Bursts processed.
        bursts: Counter "vipgate_bursts",
        /// ICMP time exceeded sent for client packets towards a VIP whose TTL
        /// ran out here (from --node-address; within --icmp-per-second).
        time_exceeded_sent: Counter "vipgate_icmp_time_exceeded_sent",
        /// IP fragments past the first translated as their datagram's first
        /// fragment was (to its backend, or back to its VIP).
        fragments_followed: Counter "vipgate_fragments_followed",
        /// Fragmented datagrams displaced from the worker's bounded fragment
        /// table while their fragments could still come (those are dropped).
        fragment_evictions: Counter "vipgate_fragment_evictions" => "fragment table evictions" if Nonzero,
        /// IP fragments past the first that came before their first one and
        /// were held until it came (then translated and counted like any
        /// packet) or [`FRAG_HOLD_NS`](crate::worker::frag_hold::FRAG_HOLD_NS) passed.
        fragments_held: Counter "vipgate_fragments_held",
        /// Held fragments whose first fragment never came in time: counted
        /// then as dropped (`fragment`) if addressed to a VIP, else passed.
        fragment_hold_expired: Counter "vipgate_fragment_hold_expired" => "held fragments expired" if Nonzero,
        /// Early fragments the full hold could not take (treated as before:
        /// dropped as `fragment` if addressed to a VIP, else passed).
        fragment_hold_full: Counter "vipgate_fragment_hold_full" => "fragment hold full" if Nonzero,
        /// UDP flows of a removed Service port, flushed when their next
        /// packet came (as kube-proxy deletes them with the Service).
        retired_flushed: Counter "vipgate_retired_udp_flows_flushed",
        /// New flows source-NATed because their Service forwards with snat.
        snat_flows: Counter "vipgate_snat_flows" [why = "mode"],
        /// New flows source-NATed because the backend picked is the client
        /// itself (a pod calling its own Service), as kube-proxy masquerades.
        snat_hairpin: Counter "vipgate_snat_flows" [why = "hairpin"],
        /// New DNAT flows source-NATed because another live flow's replies
        /// already arrive as theirs would (one client port to two VIPs on
        /// one backend), as netfilter remaps a clashing source port.
        snat_clash: Counter "vipgate_snat_flows" [why = "clash"],
        /// ClientIP affinity: new flows sent to the client's remembered backend.
        affinity_hits: Counter "vipgate_affinity_lookups" [result = "hit"],
        /// ClientIP affinity: new flows of a client not remembered (first
        /// contact, or displaced from the table), placed by the Maglev pick.
        affinity_unknown: Counter "vipgate_affinity_lookups" [result = "unknown"],
        /// ClientIP affinity: new flows of a client last seen longer ago than
        /// the Service's timeoutSeconds, placed afresh.
        affinity_expired: Counter "vipgate_affinity_lookups" [result = "expired"],
        /// ClientIP affinity: new flows of a client whose remembered backend
        /// no longer takes new flows, placed afresh.
        affinity_moved: Counter "vipgate_affinity_lookups" [result = "backend_gone"],
        /// ClientIP affinity: clients displaced from the full table while
        /// still within their timeout (the table is bounded; see --affinity-entries).
        affinity_evictions: Counter "vipgate_affinity_evictions" => "affinity evictions" if Nonzero,
    }
    extra {
        /// Dropped, by reason (index = `DropReason as usize`); exported as
        /// `vipgate_packets{verdict="dropped"}` (their sum) and
        /// `vipgate_drops{reason}`.
        pub dropped: [u64; DropReason::COUNT],
        /// Frames moved by [`Counters::recount`] away from forwarded,
        /// reversed, rejected and passed (index = `Counted as usize`).
        pub recounted: [u64; RECOUNTABLE],
    }
}

/// Verdicts a frame can be moved away from (all but dropped).
pub const RECOUNTABLE: usize = 4;

/// Which counter the pipeline put a frame under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Counted {
    Forwarded = 0,
    Reversed = 1,
    Rejected = 2,
    #[default]
    Passed = 3,
    Dropped = 4,
}

impl Counted {
    /// Counted as a frame to transmit.
    #[inline]
    pub fn is_tx(self) -> bool {
        matches!(
            self,
            Counted::Forwarded | Counted::Reversed | Counted::Rejected
        )
    }
}

impl Counters {
    /// Moves one frame counted as `was` to the drop counter of `reason`,
    /// keeping the total equal to `packets`. A frame already counted as
    /// dropped stays under its first reason (returns false: nothing moved).
    #[inline]
    pub fn recount(&mut self, was: Counted, reason: DropReason) -> bool {
        let from = match was {
            Counted::Forwarded => &mut self.forwarded,
            Counted::Reversed => &mut self.reversed,
            Counted::Rejected => &mut self.rejected,
            Counted::Passed => &mut self.passed,
            Counted::Dropped => return false,
        };
        // Saturating: a caller recounting a frame it never had counted must
        // not wrap a counter to 2^64.
        if *from == 0 {
            return false;
        }
        *from -= 1;
        self.recounted[was as usize] += 1;
        self.dropped[reason as usize] += 1;
        true
    }

    /// The pipeline's verdicts as it first counted them: forwarded,
    /// reversed, rejected, passed, dropped. They add up to `packets` and
    /// only ever grow (what `vipgate_packets_total{verdict}` exports); a
    /// frame dropped after its verdict stays under that verdict here and
    /// is in its drop reason too.
    pub fn by_verdict(&self) -> [u64; 5] {
        let r = &self.recounted;
        [
            self.forwarded + r[Counted::Forwarded as usize],
            self.reversed + r[Counted::Reversed as usize],
            self.rejected + r[Counted::Rejected as usize],
            self.passed + r[Counted::Passed as usize],
            self.dropped_total() - r.iter().sum::<u64>(),
        ]
    }

    /// The identity every worker's counters keep.
    pub fn balanced(&self) -> bool {
        self.forwarded + self.reversed + self.rejected + self.passed + self.dropped_total()
            == self.packets
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn dropped(&self, r: DropReason) -> u64 {
        self.dropped[r as usize]
    }

    /// Adds another worker's counters into this one.
    pub fn add(&mut self, o: &Counters) {
        self.add_scalars(o);
        for (a, b) in self.dropped.iter_mut().zip(o.dropped.iter()) {
            *a += b;
        }
        for (a, b) in self.recounted.iter_mut().zip(o.recounted.iter()) {
            *a += b;
        }
    }

    /// What happened since `earlier` (a copy of these counters taken then).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut d = *self;
        d.sub_scalars(earlier);
        for (x, e) in d.dropped.iter_mut().zip(earlier.dropped.iter()) {
            *x = x.saturating_sub(*e);
        }
        for (x, e) in d.recounted.iter_mut().zip(earlier.recounted.iter()) {
            *x = x.saturating_sub(*e);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recount_moves_one_frame_from_its_verdict_to_a_drop_reason() {
        let mut c = Counters {
            packets: 6,
            forwarded: 2,
            reversed: 1,
            rejected: 1,
            passed: 1,
            ..Counters::default()
        };
        c.dropped[DropReason::Malformed as usize] = 1;
        assert!(c.balanced());
        assert!(c.recount(Counted::Forwarded, DropReason::NoNeighbour));
        assert!(c.recount(Counted::Reversed, DropReason::TxFull));
        assert!(c.recount(Counted::Rejected, DropReason::NoNeighbour));
        assert!(!c.recount(Counted::Dropped, DropReason::TxFull));
        assert_eq!((c.forwarded, c.reversed, c.rejected), (1, 0, 0));
        assert_eq!(c.dropped(DropReason::NoNeighbour), 2);
        assert_eq!(c.dropped(DropReason::TxFull), 1);
        assert_eq!(c.dropped(DropReason::Malformed), 1);
        assert!(c.balanced());
        // As first counted: nothing went down, and they still add up.
        assert_eq!(c.by_verdict(), [2, 1, 1, 1, 1]);
        assert_eq!(c.by_verdict().iter().sum::<u64>(), c.packets);
        // Nothing left under `reversed`: refused, no wrap-around.
        assert!(!c.recount(Counted::Reversed, DropReason::TxFull));
        assert_eq!(c.reversed, 0);
        assert!(c.balanced());
    }
}
