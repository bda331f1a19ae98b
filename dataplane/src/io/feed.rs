//! A port fed by hand, for tests: frames the caller queues come in, and
//! what the worker transmits is kept, in order. Single-threaded (shared
//! through `Rc`): for driving workers step by step.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::{Batch, FrameDesc, PacketIo, TxStats, MAX_BURST};
use crate::verdict::Verdict;
use crate::worker::{ForeignTx, IdleWait};

const BUF: usize = 2048;

/// Frames to receive.
pub type Frames = Rc<RefCell<VecDeque<Vec<u8>>>>;
/// Frames sent, in order.
pub type Sent = Rc<RefCell<Vec<Vec<u8>>>>;

/// A port fed from a queue the caller fills; keeps what it transmits.
pub struct FeedIo {
    feed: Frames,
    sent: Sent,
    bufs: Vec<u8>,
}

impl FeedIo {
    /// A port, the queue it receives from and the frames it sent.
    pub fn new() -> (FeedIo, Frames, Sent) {
        let (feed, sent) = (Frames::default(), Sent::default());
        let io = FeedIo {
            feed: Rc::clone(&feed),
            sent: Rc::clone(&sent),
            bufs: vec![0; MAX_BURST * BUF],
        };
        (io, feed, sent)
    }
}

impl PacketIo for FeedIo {
    fn rx_burst(&mut self, batch: &mut Batch, max: usize) -> usize {
        // SAFETY: `bufs` is owned by self and only used through the batch
        // until the next rx_burst.
        unsafe { batch.reset(self.bufs.as_mut_ptr(), self.bufs.len()) };
        let mut n = 0;
        while n < max.min(MAX_BURST) {
            let Some(f) = self.feed.borrow_mut().pop_front() else {
                break;
            };
            self.bufs[n * BUF..n * BUF + f.len()].copy_from_slice(&f);
            batch.push(FrameDesc {
                offset: (n * BUF) as u64,
                len: f.len() as u32,
                cap: BUF as u32,
                tag: n as u32,
                offload: Default::default(),
            });
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, batch: &mut Batch) -> TxStats {
        let mut st = TxStats::default();
        for (i, v) in batch.verdicts().iter().enumerate() {
            if matches!(v, Verdict::Tx(_)) {
                self.sent.borrow_mut().push(batch.frame(i).to_vec());
                st.sent += 1;
            }
        }
        batch.clear();
        st
    }

    fn kind(&self) -> &'static str {
        "feed"
    }

    fn max_frame(&self) -> usize {
        BUF
    }
}

impl IdleWait for FeedIo {
    fn idle_wait(&mut self, _timeout_ms: i32) {}
}

impl ForeignTx for FeedIo {
    const SENDS_FOREIGN: bool = true;
}
