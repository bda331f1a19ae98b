//! Keeping a worker's counters exact after the pipeline's verdict.
//!
//! The pipeline counts a frame once, under its verdict: forwarded,
//! reversed or rejected for every `Tx`. The worker may still drop such a
//! frame (no next hop, a partial checksum, a full ring). Adding a drop on
//! top would count it twice, so the frame moves from its verdict's counter
//! to the drop reason instead, and `forwarded + reversed + rejected +
//! passed + dropped == packets` holds for every worker.
//!
//! A `Tx` verdict does not say which counter took the frame; the ledger
//! keeps, parallel to the burst, what the pipeline counted each frame as.

use crate::counters::Counted;
use crate::io::{Batch, MAX_BURST};
use crate::pipeline::Pipeline;
use crate::verdict::{DropReason, Verdict};

/// What each frame of the burst in flight is counted as.
pub struct Ledger {
    /// Parallel to the batch until [`Ledger::before_tx`]; then the `Tx`
    /// frames' entries only, in batch order.
    pub(super) counted: [Counted; MAX_BURST],
    tx_frames: usize,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            counted: [Counted::default(); MAX_BURST],
            tx_frames: 0,
        }
    }
}

impl Ledger {
    /// Takes the pipeline's record of the burst it just processed.
    #[inline]
    pub fn load(&mut self, pipeline: &Pipeline) {
        let c = pipeline.counted();
        self.counted[..c.len()].copy_from_slice(c);
        self.tx_frames = 0;
    }

    /// What frame `i` is counted as.
    #[inline]
    pub fn get(&self, i: usize) -> Counted {
        self.counted[i]
    }

    /// Moves every frame whose verdict the worker turned into a drop from
    /// its verdict's counter to that drop reason. Idempotent: a frame is
    /// moved once.
    pub fn settle(&mut self, pipeline: &mut Pipeline, batch: &Batch) {
        for (i, v) in batch.verdicts().iter().enumerate() {
            if let Verdict::Drop(r) = *v {
                if self.counted[i].is_tx() {
                    pipeline.recount(self.counted[i], r);
                    self.counted[i] = Counted::Dropped;
                }
            }
        }
    }

    /// Call right before the port's `tx_burst` (which empties the batch):
    /// remembers the `Tx` frames' counters, in order.
    pub fn before_tx(&mut self, batch: &Batch) {
        let mut n = 0;
        for (i, v) in batch.verdicts().iter().enumerate() {
            if matches!(v, Verdict::Tx(_)) {
                self.counted[n] = self.counted[i];
                n += 1;
            }
        }
        self.tx_frames = n;
    }

    /// Call with the `dropped` count of that `tx_burst`: the ring took a
    /// prefix of the `Tx` frames (AF_XDP and AF_PACKET fill in batch order
    /// and stop when full; AF_PACKET's other refusal, a frame shorter than
    /// an Ethernet header, never comes out of the pipeline), so the last
    /// `dropped` ones move to `tx_full`. Were a backend to refuse frames
    /// from the middle, the total would still be exact; only the split
    /// between forwarded / reversed / rejected could be off.
    pub fn after_tx(&mut self, pipeline: &mut Pipeline, dropped: u32) {
        let n = self.tx_frames;
        let from = n.saturating_sub(dropped as usize);
        for c in &mut self.counted[from..n] {
            pipeline.recount(*c, DropReason::TxFull);
            *c = Counted::Dropped;
        }
        self.tx_frames = 0;
    }
}
