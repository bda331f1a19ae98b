//! Copies of frames a worker keeps past their burst: a preallocated slab
//! of equal slots, each sized for the largest frame the worker's backend
//! hands out, and a free list. Shared by the stores that hold frames
//! (waiting for a neighbour, [`super::pending`]; later fragments waiting
//! for their first one, [`super::frag_hold`]). Nothing is allocated after
//! [`FrameSlots::new`].

use crate::io::{Batch, FrameDesc, OffloadMeta};

/// Bytes per slot unless the worker's backend hands out larger frames:
/// the largest AF_XDP frame size.
pub const SLOT_BYTES: usize = 4096;

/// Up to `N` slots of equal size.
pub struct FrameSlots<const N: usize> {
    slab: Box<[u8]>,
    slot_bytes: usize,
    /// Unused slots (`n_free` of them).
    free: Box<[u16; N]>,
    n_free: usize,
}

impl<const N: usize> FrameSlots<N> {
    /// Slots for frames of up to `max_frame` bytes (at least
    /// [`SLOT_BYTES`]): `N` while they fit `N * SLOT_BYTES` bytes, fewer
    /// (at least `min`) beyond, for jumbo frames and GSO super-frames.
    pub fn new(max_frame: usize, min: usize) -> FrameSlots<N> {
        const { assert!(N <= u16::MAX as usize + 1) };
        let slot_bytes = max_frame.max(SLOT_BYTES).next_multiple_of(64);
        let slots = (N * SLOT_BYTES / slot_bytes).clamp(min.min(N), N);
        FrameSlots {
            slab: vec![0u8; slots * slot_bytes].into_boxed_slice(),
            slot_bytes,
            free: Box::new(std::array::from_fn(|i| {
                (slots.saturating_sub(1 + i)) as u16
            })),
            n_free: slots,
        }
    }

    /// Slots in all.
    pub fn capacity(&self) -> usize {
        self.slab.len() / self.slot_bytes
    }

    /// Copies `frame` into a free slot; None when none is free or the
    /// frame does not fit one.
    #[inline]
    pub fn put(&mut self, frame: &[u8]) -> Option<u16> {
        if self.n_free == 0 || frame.len() > self.slot_bytes {
            return None;
        }
        self.n_free -= 1;
        let slot = self.free[self.n_free];
        let at = slot as usize * self.slot_bytes;
        self.slab[at..at + frame.len()].copy_from_slice(frame);
        Some(slot)
    }

    /// Gives a slot back. A batch still pointing at it must be sent before
    /// the next [`FrameSlots::put`].
    #[inline]
    pub fn free(&mut self, slot: u16) {
        self.free[self.n_free] = slot;
        self.n_free += 1;
    }

    /// Points `batch` at the slab, empty, to take [`FrameSlots::desc`]s.
    pub fn attach(&mut self, batch: &mut Batch) {
        // SAFETY: `slab` is owned by self and outlives the batch's use (the
        // caller sends and clears it before the next call that writes into
        // the slab); nothing else reads or writes it meanwhile.
        unsafe { batch.reset(self.slab.as_mut_ptr(), self.slab.len()) };
    }

    /// The descriptor of a frame of `len` bytes in `slot`.
    #[inline]
    pub fn desc(&self, slot: u16, len: u32, tag: u32, offload: OffloadMeta) -> FrameDesc {
        FrameDesc {
            offset: (slot as usize * self.slot_bytes) as u64,
            len,
            cap: self.slot_bytes as u32,
            tag,
            offload,
        }
    }
}
