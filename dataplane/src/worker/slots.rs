//! Copies of frames a worker keeps past their burst: a preallocated slab
//! of equal slots, each sized for the largest frame the worker's backend
//! hands out, a free list, and the held frames in arrival order with what
//! their store keeps about each ([`HeldFrames`]). Shared by the stores
//! that hold frames (waiting for a neighbour, [`super::pending`]; later
//! fragments waiting for their first one, [`super::frag_hold`]). Nothing
//! is allocated after [`HeldFrames::new`].

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

/// One held frame: where its copy is, and what its store keeps about it.
#[derive(Clone, Copy, Debug)]
struct Entry<M> {
    slot: u16,
    len: u32,
    tag: u32,
    offload: OffloadMeta,
    meta: M,
}

/// Up to `N` frame copies in arrival order, each with a `M`.
pub struct HeldFrames<M: Copy, const N: usize> {
    slots: FrameSlots<N>,
    held: Box<[Entry<M>; N]>,
    n: usize,
}

impl<M: Copy, const N: usize> HeldFrames<M, N> {
    /// See [`FrameSlots::new`]; `empty` fills the unused entries.
    pub fn new(max_frame: usize, min: usize, empty: M) -> HeldFrames<M, N> {
        let e = Entry {
            slot: 0,
            len: 0,
            tag: 0,
            offload: OffloadMeta::NONE,
            meta: empty,
        };
        HeldFrames {
            slots: FrameSlots::new(max_frame, min),
            held: Box::new([e; N]),
            n: 0,
        }
    }

    /// Frames held now.
    #[inline]
    pub fn len(&self) -> usize {
        self.n
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Most frames held at once.
    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// What is kept about the oldest held frame.
    #[inline]
    pub fn first(&self) -> Option<&M> {
        self.held[..self.n].first().map(|e| &e.meta)
    }

    /// What is kept about each held frame, oldest first.
    pub fn metas_mut(&mut self) -> impl Iterator<Item = &mut M> {
        self.held[..self.n].iter_mut().map(|e| &mut e.meta)
    }

    /// What is kept about each held frame, oldest first.
    pub fn metas(&self) -> impl Iterator<Item = &M> {
        self.held[..self.n].iter().map(|e| &e.meta)
    }

    /// Copies `frame` (described by `desc`) in, with `meta`. Returns false
    /// (holding nothing) when no slot is free or the frame does not fit.
    #[inline]
    pub fn hold(&mut self, frame: &[u8], desc: &FrameDesc, meta: M) -> bool {
        let Some(slot) = self.slots.put(frame) else {
            return false;
        };
        self.held[self.n] = Entry {
            slot,
            len: frame.len() as u32,
            tag: desc.tag,
            offload: desc.offload,
            meta,
        };
        self.n += 1;
        true
    }

    /// Points `batch` at the copies, empty, for [`HeldFrames::retain`] to
    /// fill with descriptors it is given.
    pub fn attach(&mut self, batch: &mut Batch) {
        self.slots.attach(batch);
    }

    /// Visits the held frames oldest first with their descriptor (over
    /// the slots, see [`HeldFrames::attach`]) and keeps those for which
    /// `keep` says so, in order. The others' slots are free again: a batch
    /// still holding one must be sent before the next [`HeldFrames::hold`].
    pub fn retain(&mut self, mut keep: impl FnMut(&mut M, FrameDesc) -> bool) {
        let mut kept = 0;
        for k in 0..self.n {
            let mut e = self.held[k];
            let desc = self.slots.desc(e.slot, e.len, e.tag, e.offload);
            if keep(&mut e.meta, desc) {
                self.held[kept] = e;
                kept += 1;
            } else {
                self.slots.free(e.slot);
            }
        }
        self.n = kept;
    }
}
