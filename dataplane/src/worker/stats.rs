//! A worker's counters, published for other threads to read.
//!
//! The owner keeps plain counters and, once per burst, copies them into a
//! cache-line-aligned block of relaxed atomics with plain stores: no
//! read-modify-write, no shared line between workers. Which fields there
//! are, and what each means, is declared once (`counter_set!`). Readers
//! export only values that never go down (see `Counters::by_verdict`). Readers (the admin
//! endpoint, the final summary) load each field; a reading may mix two
//! bursts, which is fine for counters that only grow.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::conntrack;
use crate::counters::{Counters, RECOUNTABLE};
use crate::io::IoStats;
use crate::verdict::DropReason;

crate::counter_set! {
    /// What one worker has done: the pipeline's counters, in which frames the
    /// worker dropped after the verdict (no_neighbour, tx_full,
    /// bad_checksum_offload) moved from forwarded / reversed / rejected to
    /// their drop reason (each frame counted once), plus transmit, handoff,
    /// conntrack and I/O.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct WorkerCounters {
        /// Frames handed to a device (in place or copied to another port).
        tx_sent: Counter "vipgate_tx_frames" => "transmitted",
        /// Of those, frames sent on an interface other than the one they came
        /// in on (in place or copied).
        tx_cross: Counter "vipgate_tx_cross_iface_frames" => "  to another iface",
        /// Of `tx_cross`, frames sent in place from a UMEM the rx and egress
        /// sockets share: no copy.
        tx_cross_zc: Counter "vipgate_tx_cross_iface_zero_copy_frames" => "    zero-copy",
        /// Frames sent through a copy sender (a send-only packet socket that
        /// copies them): cross-interface ones without shared memory and
        /// frames handed over by other workers. Held frames (`neigh_held_sent`)
        /// are not included.
        tx_copied: Counter "vipgate_tx_copied_frames" => "  via copy sender",
        /// Frames that waited for their next hop's MAC and were then sent
        /// (included in `tx_sent`, and in `tx_cross` when they changed
        /// interface), through a copy sender or, with one interface, a port.
        neigh_held_sent: Counter "vipgate_neighbour_wait_sent_frames"
            => "  after neighbour wait",
        /// Times the idle worker slept in poll() instead of spinning.
        idle_waits: Counter "vipgate_idle_waits",
        /// Frames received here and copied to the worker owning their flow.
        handoff_out: Counter "vipgate_handoff_frames" [direction = "out"]
            => "handed to owner" if Handoff,
        /// Frames other workers handed here (processed by this pipeline).
        handoff_in: Counter "vipgate_handoff_frames" [direction = "in"],
        /// Frames dropped because the owner's inbox lane was full.
        handoff_full: Counter "vipgate_handoff_drops" [reason = "inbox_full"]
            => "  dropped: inbox full" if Handoff,
        /// Frames dropped because they do not fit a handoff slot.
        handoff_oversize: Counter "vipgate_handoff_drops" [reason = "oversize"]
            => "  dropped: oversize" if Handoff,
        /// Live conntrack entries.
        conntrack_entries: Gauge "vipgate_conntrack_entries",
        /// Conntrack entries the table can hold.
        conntrack_capacity: Gauge "vipgate_conntrack_capacity",
    }
    extra {
        pub pipeline: Counters,
        /// What the worker's conntrack table did.
        pub conntrack: conntrack::Stats,
        /// The kernel side of the worker's sockets (ring drops and the like),
        /// summed over its ports: sampled about once a second while it runs
        /// and read once more when it stops.
        pub io: IoStats,
    }
}

impl WorkerCounters {
    pub fn add(&mut self, o: &WorkerCounters) {
        self.add_scalars(o);
        self.pipeline.add(&o.pipeline);
        self.conntrack.add_scalars(&o.conntrack);
        self.io.add(&o.io);
    }

    /// Received frames that never reached a pipeline (handoff drops).
    pub fn handoff_dropped(&self) -> u64 {
        self.handoff_full + self.handoff_oversize
    }

    pub fn total<'a>(all: impl IntoIterator<Item = &'a WorkerCounters>) -> WorkerCounters {
        let mut t = WorkerCounters::default();
        for c in all {
            t.add(c);
        }
        t
    }
}

/// Cells of the published block, in order: the worker's own fields, the
/// pipeline's, its drop reasons, its recounts, conntrack's.
const W: usize = WorkerCounters::SCALARS;
const P: usize = Counters::SCALARS;
const D: usize = DropReason::COUNT;
const R: usize = RECOUNTABLE;
const C: usize = conntrack::Stats::SCALARS;
const FIELDS: usize = W + P + D + R + C;

/// One port's kernel-side counters, as last sampled.
#[derive(Debug)]
struct SharedPort {
    ifindex: u32,
    cells: [AtomicU64; IoStats::SCALARS],
}

/// The published block of one worker. Share it in an `Arc`.
#[derive(Debug)]
#[repr(align(64))]
pub struct SharedCounters {
    cells: [AtomicU64; FIELDS],
    ports: Box<[SharedPort]>,
}

impl Default for SharedCounters {
    fn default() -> Self {
        SharedCounters::for_ports(&[])
    }
}

fn store_all(cells: &[AtomicU64], values: impl IntoIterator<Item = u64>) {
    for (cell, v) in cells.iter().zip(values) {
        cell.store(v, Ordering::Relaxed);
    }
}

fn load_all<const N: usize>(cells: &[AtomicU64]) -> [u64; N] {
    std::array::from_fn(|i| cells[i].load(Ordering::Relaxed))
}

impl SharedCounters {
    /// A block with a kernel-counter slot per port (by ifindex, in the
    /// worker's port order).
    pub fn for_ports(ifindexes: &[u32]) -> SharedCounters {
        SharedCounters {
            cells: std::array::from_fn(|_| AtomicU64::new(0)),
            ports: ifindexes
                .iter()
                .map(|&ifindex| SharedPort {
                    ifindex,
                    cells: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
        }
    }

    /// Owner only: publishes the current values (plain relaxed stores).
    #[inline]
    pub fn store(&self, c: &WorkerCounters) {
        let (w, rest) = self.cells.split_at(W);
        let (p, rest) = rest.split_at(P);
        let (d, rest) = rest.split_at(D);
        let (r, ct) = rest.split_at(R);
        store_all(w, c.scalars());
        store_all(p, c.pipeline.scalars());
        store_all(d, c.pipeline.dropped);
        store_all(r, c.pipeline.recounted);
        store_all(ct, c.conntrack.scalars());
    }

    /// Owner only: publishes port `i`'s kernel-side counters. They are
    /// cumulative, so a sample below the last one (a getsockopt that
    /// failed and read as zero) keeps the last one.
    pub fn store_port(&self, i: usize, io: &IoStats) {
        if let Some(p) = self.ports.get(i) {
            // Single writer: a plain load and store, no read-modify-write.
            for (cell, v) in p.cells.iter().zip(io.scalars()) {
                if v > cell.load(Ordering::Relaxed) {
                    cell.store(v, Ordering::Relaxed);
                }
            }
        }
    }

    /// Any thread: the last published values; `io` is the sum of the
    /// ports' last samples.
    pub fn load(&self) -> WorkerCounters {
        let mut c = WorkerCounters::default();
        c.set_scalars(&load_all(&self.cells[..W]));
        c.pipeline.set_scalars(&load_all(&self.cells[W..W + P]));
        c.pipeline.dropped = load_all(&self.cells[W + P..W + P + D]);
        c.pipeline.recounted = load_all(&self.cells[W + P + D..W + P + D + R]);
        c.conntrack
            .set_scalars(&load_all(&self.cells[W + P + D + R..]));
        for (_, io) in self.load_ports() {
            c.io.add(&io);
        }
        c
    }

    /// Any thread: each port's ifindex and last sampled kernel counters.
    pub fn load_ports(&self) -> Vec<(u32, IoStats)> {
        self.ports
            .iter()
            .map(|p| {
                let mut io = IoStats::default();
                io.set_scalars(&load_all(&p.cells));
                (p.ifindex, io)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_round_trips_every_field() {
        // Distinct values in every declared field, so a field stored in
        // the wrong cell or not at all shows.
        let mut n = 0u64;
        let mut next = || {
            n += 1;
            n
        };
        let mut c = WorkerCounters::default();
        c.set_scalars(&std::array::from_fn(|_| next()));
        c.pipeline.set_scalars(&std::array::from_fn(|_| next()));
        c.pipeline.dropped = std::array::from_fn(|_| next());
        c.pipeline.recounted = std::array::from_fn(|_| next());
        c.conntrack.set_scalars(&std::array::from_fn(|_| next()));
        let mut io = [IoStats::default(); 2];
        for p in &mut io {
            p.set_scalars(&std::array::from_fn(|_| next()));
        }
        c.io = IoStats::default();
        c.io.add(&io[0]);
        c.io.add(&io[1]);
        let s = SharedCounters::for_ports(&[7, 9]);
        s.store(&c);
        s.store_port(0, &io[0]);
        s.store_port(1, &io[1]);
        s.store_port(2, &io[1]); // no such port: ignored
        assert_eq!(s.load(), c);
        assert_eq!(s.load_ports(), vec![(7, io[0]), (9, io[1])]);
        assert_eq!(std::mem::align_of::<SharedCounters>(), 64);
    }

    #[test]
    fn total_sums_workers() {
        let mut a = WorkerCounters::default();
        a.pipeline.packets = 3;
        a.tx_cross = 1;
        a.tx_cross_zc = 1;
        a.neigh_held_sent = 4;
        let mut b = a;
        b.pipeline.dropped[DropReason::NoNeighbour as usize] = 2;
        let t = WorkerCounters::total([&a, &b]);
        assert_eq!(t.pipeline.packets, 6);
        assert_eq!(t.tx_cross, 2);
        assert_eq!(t.tx_cross_zc, 2);
        assert_eq!(t.neigh_held_sent, 8);
        assert_eq!(t.pipeline.dropped(DropReason::NoNeighbour), 2);
    }
}
