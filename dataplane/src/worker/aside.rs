//! Frames taken out of a received burst before the pipeline sees it
//! (handed to another worker, or copied into a store to wait), and put
//! back with a `Pass` verdict before transmit, so that the backend gets
//! their buffers back (AF_XDP returns them to its fill ring).

use crate::io::{Batch, FrameDesc, MAX_BURST};

/// The frames of one burst taken out of it.
pub struct Aside {
    away: Box<[FrameDesc; MAX_BURST]>,
    n_away: usize,
}

impl Default for Aside {
    fn default() -> Self {
        Aside {
            away: Box::new([FrameDesc::default(); MAX_BURST]),
            n_away: 0,
        }
    }
}

impl Aside {
    /// Takes every frame of `batch` for which `take(desc, frame, side)`
    /// says so out of it, keeping the others in order (until
    /// [`Aside::restore`]). `side`, empty or one entry per frame (passed
    /// to `take`), is kept in step with the batch. Call before any verdict
    /// is set. Returns how many it took.
    #[inline]
    pub fn take_out(
        &mut self,
        batch: &mut Batch,
        side: &mut [u8],
        mut take: impl FnMut(&FrameDesc, &[u8], Option<u8>) -> bool,
    ) -> usize {
        let n = batch.len();
        let mut keep = 0;
        for i in 0..n {
            let d = batch.descs()[i];
            if take(&d, batch.frame(i), side.get(i).copied()) {
                self.away[self.n_away] = d;
                self.n_away += 1;
                continue;
            }
            if keep != i {
                // Moves a descriptor of this batch's own region down.
                batch.move_frame(i, keep);
                if let Some(&s) = side.get(i) {
                    side[keep] = s;
                }
            }
            keep += 1;
        }
        batch.truncate(keep);
        n - keep
    }

    /// Puts the frames taken out back into `batch` with a `Pass` verdict.
    pub fn restore(&mut self, batch: &mut Batch) {
        for d in &self.away[..self.n_away] {
            batch.push(*d);
        }
        self.n_away = 0;
    }
}
