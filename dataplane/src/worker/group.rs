//! A worker's part in a group of workers: frames of a received burst whose
//! flow another worker owns leave the burst for the owner's inbox, and the
//! worker's own inbox is drained into a second batch it processes like a
//! received one.
//!
//! Handed-off frames are copies; the originals stay in the backend's
//! memory. They are put back into the burst as `Pass` before transmit so
//! the backend recycles them ([`Aside`]).

use std::sync::Arc;

use super::aside::Aside;
use super::handoff::{Handoff, HandoffError, HandoffRx, HandoffTx};
use crate::io::Batch;
use crate::steer::FragmentOwners;
use crate::table::ServiceTable;

/// What steering a burst did, added to the worker's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Steered {
    pub out: u64,
    pub full: u64,
    pub oversize: u64,
}

/// Worker `me` of `workers`.
pub struct Group {
    me: usize,
    workers: usize,
    tx: HandoffTx,
    pub(super) rx: HandoffRx,
    /// Frames handed to this worker, drained from its inbox.
    pub(super) batch: Box<Batch>,
    away: Aside,
    /// Where this worker sent recent first fragments.
    fragments: FragmentOwners,
}

impl Group {
    pub fn new(handoff: &Arc<Handoff>, me: usize) -> Group {
        Group {
            me,
            workers: handoff.workers(),
            tx: handoff.sender(me),
            rx: handoff.receiver(me),
            batch: Box::new(Batch::new()),
            away: Aside::default(),
            fragments: FragmentOwners::default(),
        }
    }

    pub fn me(&self) -> usize {
        self.me
    }

    /// Copies every frame of `batch` that another worker owns into that
    /// worker's inbox and takes it out of `batch` (until [`Group::restore`]).
    /// A frame that cannot be handed over is taken out too: it is counted
    /// as dropped, since this worker's conntrack would mishandle it.
    /// Frames came in on `rx_iface`, or, when `per_frame` is not empty,
    /// frame `i` on `per_frame[i]` (kept in step with the batch).
    pub fn steer_away(
        &mut self,
        batch: &mut Batch,
        table: &ServiceTable,
        rx_iface: u8,
        per_frame: &mut [u8],
    ) -> Steered {
        let mut st = Steered::default();
        let (me, workers) = (self.me, self.workers);
        let (fragments, tx) = (&mut self.fragments, &mut self.tx);
        self.away.take_out(batch, per_frame, |d, frame, from| {
            let owner = fragments.owner(frame, table, workers);
            if owner == me {
                return false;
            }
            match tx.send(owner, frame, d, from.unwrap_or(rx_iface)) {
                Ok(()) => st.out += 1,
                Err(HandoffError::Oversize) => st.oversize += 1,
                // BadOwner cannot happen (owner < workers, != me): count it
                // with Full rather than lose it silently.
                Err(HandoffError::Full | HandoffError::BadOwner) => st.full += 1,
            }
            true
        });
        st
    }

    /// Puts the frames `steer_away` took out back into `batch` with a
    /// `Pass` verdict, so the backend gets its buffers back on transmit.
    pub fn restore(&mut self, batch: &mut Batch) {
        self.away.restore(batch);
    }
}
