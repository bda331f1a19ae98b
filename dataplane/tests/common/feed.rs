//! Workers over ports the test feeds by hand (a queue of frames per port)
//! that keep what they transmit, in order.
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use dataplane::io::{Batch, FrameDesc, PacketIo, TxStats, MAX_BURST};
use dataplane::verdict::Verdict;
use dataplane::worker::{ForeignTx, IdleWait};

const BUF: usize = 2048;

/// Frames to receive, or frames sent.
pub type Frames = Rc<RefCell<VecDeque<Vec<u8>>>>;

pub struct FeedIo {
    feed: Frames,
    sent: Frames,
    bufs: Vec<u8>,
}

impl FeedIo {
    /// A port, the queue it receives from and the frames it sent.
    pub fn new() -> (FeedIo, Frames, Frames) {
        let (feed, sent) = (Frames::default(), Frames::default());
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
                self.sent.borrow_mut().push_back(batch.frame(i).to_vec());
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
