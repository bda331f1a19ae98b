//! A worker's counters, published for other threads to read.
//!
//! The owner keeps plain counters and, once per burst, copies them into a
//! cache-line-aligned block of relaxed atomics with plain stores: no
//! read-modify-write, no shared line between workers. Readers (the admin
//! endpoint, the final summary) load each field; a reading may mix two
//! bursts, which is fine for counters that only grow.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::counters::Counters;
use crate::io::IoStats;
use crate::verdict::DropReason;

/// What one worker has done: the pipeline's counters, in which frames the
/// worker dropped after the verdict (no_neighbour, tx_full,
/// bad_checksum_offload) moved from forwarded / reversed / rejected to
/// their drop reason (each frame counted once), plus I/O.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    pub pipeline: Counters,
    /// Frames handed to a device (in place or copied to another port).
    pub tx_sent: u64,
    /// Of those, frames sent on an interface other than the one they came
    /// in on (in place or copied).
    pub tx_cross: u64,
    /// Of `tx_cross`, frames sent in place from a UMEM the rx and egress
    /// sockets share: no copy.
    pub tx_cross_zc: u64,
    /// Frames sent through a copy sender (a send-only packet socket that
    /// copies them): cross-interface ones without shared memory and
    /// frames handed over by other workers. Held frames (`neigh_held_sent`)
    /// are not included.
    pub tx_copied: u64,
    /// Times the idle worker slept in poll() instead of spinning.
    pub idle_waits: u64,
    /// Frames received here and copied to the worker owning their flow.
    pub handoff_out: u64,
    /// Frames other workers handed here (processed by this pipeline).
    pub handoff_in: u64,
    /// Frames dropped because the owner's inbox lane was full.
    pub handoff_full: u64,
    /// Frames dropped because they do not fit a handoff slot.
    pub handoff_oversize: u64,
    /// Frames that waited for their next hop's MAC and were then sent
    /// (included in `tx_sent`, and in `tx_cross` when they changed
    /// interface), through a copy sender or, with one interface, a port.
    pub neigh_held_sent: u64,
    /// The kernel side of the worker's sockets (ring drops and the like),
    /// read once when the worker stops: only in the counters `run`
    /// returns, not in the per-burst published block.
    pub io: IoStats,
}

impl WorkerCounters {
    pub fn add(&mut self, o: &WorkerCounters) {
        self.pipeline.add(&o.pipeline);
        self.tx_sent += o.tx_sent;
        self.tx_cross += o.tx_cross;
        self.tx_cross_zc += o.tx_cross_zc;
        self.tx_copied += o.tx_copied;
        self.idle_waits += o.idle_waits;
        self.handoff_out += o.handoff_out;
        self.handoff_in += o.handoff_in;
        self.handoff_full += o.handoff_full;
        self.handoff_oversize += o.handoff_oversize;
        self.neigh_held_sent += o.neigh_held_sent;
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

/// Fields in publication order; `DropReason::COUNT` drop counters follow.
const FIXED: usize = 17;
const FIELDS: usize = FIXED + DropReason::COUNT;

/// The published block of one worker. Share it in an `Arc`.
#[derive(Debug)]
#[repr(align(64))]
pub struct SharedCounters {
    cells: [AtomicU64; FIELDS],
}

impl Default for SharedCounters {
    fn default() -> Self {
        SharedCounters {
            cells: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl SharedCounters {
    /// Owner only: publishes the current values (plain relaxed stores).
    #[inline]
    pub fn store(&self, c: &WorkerCounters) {
        let p = &c.pipeline;
        let fixed = [
            p.packets,
            p.forwarded,
            p.reversed,
            p.rejected,
            p.passed,
            p.flows,
            p.bursts,
            c.tx_sent,
            c.tx_cross,
            c.idle_waits,
            c.handoff_out,
            c.handoff_in,
            c.handoff_full,
            c.handoff_oversize,
            c.tx_cross_zc,
            c.tx_copied,
            c.neigh_held_sent,
        ];
        for (cell, v) in self.cells.iter().zip(fixed.iter().chain(p.dropped.iter())) {
            cell.store(*v, Ordering::Relaxed);
        }
    }

    /// Any thread: the last published values.
    pub fn load(&self) -> WorkerCounters {
        let v: [u64; FIELDS] = std::array::from_fn(|i| self.cells[i].load(Ordering::Relaxed));
        let mut p = Counters {
            packets: v[0],
            forwarded: v[1],
            reversed: v[2],
            rejected: v[3],
            passed: v[4],
            flows: v[5],
            bursts: v[6],
            ..Counters::default()
        };
        p.dropped.copy_from_slice(&v[FIXED..]);
        WorkerCounters {
            pipeline: p,
            tx_sent: v[7],
            tx_cross: v[8],
            idle_waits: v[9],
            handoff_out: v[10],
            handoff_in: v[11],
            handoff_full: v[12],
            handoff_oversize: v[13],
            tx_cross_zc: v[14],
            tx_copied: v[15],
            neigh_held_sent: v[16],
            io: IoStats::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_round_trips_every_field() {
        let mut c = WorkerCounters::default();
        let p = &mut c.pipeline;
        (p.packets, p.forwarded, p.reversed, p.rejected, p.passed) = (1, 2, 3, 4, 5);
        (p.flows, p.bursts) = (6, 7);
        for (i, d) in p.dropped.iter_mut().enumerate() {
            *d = 100 + i as u64;
        }
        (c.tx_sent, c.tx_cross, c.idle_waits) = (8, 9, 10);
        (
            c.handoff_out,
            c.handoff_in,
            c.handoff_full,
            c.handoff_oversize,
        ) = (11, 12, 13, 14);
        (c.tx_cross_zc, c.tx_copied, c.neigh_held_sent) = (15, 16, 17);
        let s = SharedCounters::default();
        s.store(&c);
        assert_eq!(s.load(), c);
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
