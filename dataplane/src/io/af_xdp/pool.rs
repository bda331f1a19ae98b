//! The free frames of one UMEM, shared by every socket of a worker that
//! uses that UMEM (`XDP_SHARED_UMEM`).
//!
//! A frame received on one interface can then leave on another straight
//! from its UMEM address: it comes back on the egress socket's completion
//! ring, returns here, and whichever socket refills its fill ring next
//! takes it. All sockets of the pool live on one worker thread, so the pool
//! needs no lock (it sits in a `RefCell` behind an `Rc`).
//!
//! Past the single frames, the UMEM may end in *jumbo slots*: runs of
//! adjacent frames, each holding one frame larger than a UMEM frame. A
//! multi-buffer receive (a jumbo frame arriving as a chain of descriptors)
//! is gathered into one, so the pipeline sees it contiguous; it is sent
//! as descriptors split at UMEM frame boundaries, whose completions come
//! back one per descriptor.

/// Free frame addresses, with room for every frame so giving one back
/// never allocates.
#[derive(Debug)]
pub struct FramePool {
    free: Vec<u64>,
    frame_size: u64,
    total: usize,
    jumbo: JumboSlots,
    /// Addresses given back while every frame was already free (a
    /// bookkeeping bug somewhere): ignored rather than grown into.
    overflows: u64,
}

/// The jumbo slots at the end of the UMEM.
#[derive(Debug)]
struct JumboSlots {
    /// UMEM address of the first slot (past the single frames).
    base: u64,
    slot_bytes: u64,
    free: Vec<u32>,
    /// Per slot: 0 free, 1 held (rx ring, batch), n > 1 on a tx ring as
    /// n descriptors, whose completions each give the slot back once.
    refs: Vec<u8>,
}

impl FramePool {
    /// All `frame_count` frames of `frame_size` bytes free, lowest handed
    /// out first.
    pub fn new(frame_size: u32, frame_count: u32) -> FramePool {
        FramePool::with_jumbo(frame_size, frame_count, 0, 1)
    }

    /// As [`FramePool::new`], followed by `slots` jumbo slots of
    /// `slot_frames` frames each.
    pub fn with_jumbo(
        frame_size: u32,
        frame_count: u32,
        slots: u32,
        slot_frames: u32,
    ) -> FramePool {
        let mut free = Vec::with_capacity(frame_count as usize);
        free.extend((0..frame_count as u64).rev().map(|i| i * frame_size as u64));
        FramePool {
            free,
            frame_size: frame_size as u64,
            total: frame_count as usize,
            jumbo: JumboSlots {
                base: frame_count as u64 * frame_size as u64,
                slot_bytes: slot_frames as u64 * frame_size as u64,
                free: (0..slots).rev().collect(),
                refs: vec![0; slots as usize],
            },
            overflows: 0,
        }
    }

    /// A free jumbo slot's address, if any is left.
    #[inline]
    pub fn take_jumbo(&mut self) -> Option<u64> {
        let j = &mut self.jumbo;
        let slot = j.free.pop()?;
        j.refs[slot as usize] = 1;
        Some(j.base + slot as u64 * j.slot_bytes)
    }

    /// Whether UMEM address `addr` lies in a jumbo slot.
    #[inline]
    pub fn is_jumbo(&self, addr: u64) -> bool {
        addr >= self.jumbo.base
    }

    /// The jumbo slot holding `addr` goes on a tx ring as `descs`
    /// descriptors: it is free again after that many completions.
    #[inline]
    pub fn sent_as(&mut self, addr: u64, descs: u32) {
        if let Some(slot) = self.jumbo.slot_of(addr) {
            self.jumbo.refs[slot] = descs.clamp(1, u8::MAX as u32) as u8;
        }
    }

    /// Jumbo slots free now, and in all.
    pub fn jumbo_free(&self) -> (usize, usize) {
        (self.jumbo.free.len(), self.jumbo.refs.len())
    }

    /// A free frame's address, if any is left.
    #[inline]
    pub fn take(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// Returns the frame holding UMEM address `addr` (any offset inside it:
    /// the kernel hands back addresses past the headroom).
    #[inline]
    pub fn give(&mut self, addr: u64) {
        if self.is_jumbo(addr) {
            if !self.jumbo.give(addr) {
                self.overflows += 1;
            }
            return;
        }
        if self.free.len() == self.total {
            self.overflows += 1;
            return;
        }
        self.free.push(addr & !(self.frame_size - 1));
    }

    /// Frames free now.
    #[inline]
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Frames out of the pool: in a fill, rx, tx or completion ring, or in
    /// a batch.
    #[inline]
    pub fn out(&self) -> usize {
        self.total - self.free.len()
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn overflows(&self) -> u64 {
        self.overflows
    }
}

impl JumboSlots {
    fn slot_of(&self, addr: u64) -> Option<usize> {
        let slot = (addr.checked_sub(self.base)? / self.slot_bytes) as usize;
        (slot < self.refs.len()).then_some(slot)
    }

    /// One reference to the slot holding `addr` comes back; false when
    /// there was none (a bookkeeping bug, or an address past the UMEM).
    fn give(&mut self, addr: u64) -> bool {
        let Some(slot) = self.slot_of(addr) else {
            return false;
        };
        match self.refs[slot] {
            0 => false,
            1 => {
                self.refs[slot] = 0;
                self.free.push(slot as u32);
                true
            }
            _ => {
                self.refs[slot] -= 1;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// One socket's rings as plain queues: fill (user -> kernel), rx
    /// (kernel -> user), tx (user -> kernel), completion (kernel -> user).
    #[derive(Default)]
    struct Rings {
        fill: VecDeque<u64>,
        rx: VecDeque<u64>,
        tx: VecDeque<u64>,
        comp: VecDeque<u64>,
        cap: usize,
    }

    impl Rings {
        fn refill(&mut self, pool: &mut FramePool) {
            while self.fill.len() < self.cap {
                match pool.take() {
                    Some(a) => self.fill.push_back(a),
                    None => break,
                }
            }
        }
        /// The kernel receives a packet into a fill frame, past headroom.
        fn kernel_rx(&mut self) -> bool {
            match self.fill.pop_front() {
                Some(a) => {
                    self.rx.push_back(a + 256);
                    true
                }
                None => false,
            }
        }
        /// The kernel sends everything on tx and completes it.
        fn kernel_tx(&mut self) {
            self.comp.extend(self.tx.drain(..));
        }
        fn reap(&mut self, pool: &mut FramePool) {
            for a in self.comp.drain(..) {
                pool.give(a);
            }
        }
    }

    #[test]
    fn frames_hand_out_lowest_first_and_come_back_aligned() {
        let mut p = FramePool::new(2048, 4);
        assert_eq!(p.take(), Some(0));
        assert_eq!(p.take(), Some(2048));
        assert_eq!(p.out(), 2);
        p.give(2048 + 256 + 14);
        assert_eq!(p.take(), Some(2048));
        p.give(300);
        p.give(2048);
        assert_eq!((p.free(), p.out(), p.overflows()), (4, 0, 0));
        // A fifth frame back is a bug elsewhere: counted, not stored.
        p.give(4096);
        assert_eq!((p.free(), p.overflows()), (4, 1));
    }

    #[test]
    fn jumbo_slots_come_back_after_every_descriptor_completed() {
        // 4 single frames of 4096, then 2 slots of 3 frames.
        let mut p = FramePool::with_jumbo(4096, 4, 2, 3);
        let a = p.take_jumbo().unwrap();
        let b = p.take_jumbo().unwrap();
        assert_eq!((a, b), (4 * 4096, 7 * 4096));
        assert!(p.is_jumbo(a + 256) && !p.is_jumbo(3 * 4096 + 100));
        assert_eq!(p.take_jumbo(), None);
        // a leaves as three descriptors: free only after the third.
        p.sent_as(a + 256, 3);
        p.give(a + 256);
        p.give(a + 4096);
        assert_eq!(p.jumbo_free(), (0, 2));
        p.give(a + 8192);
        assert_eq!(p.jumbo_free(), (1, 2));
        // b is dropped: one give frees it; a second one is a bug, counted.
        p.give(b + 256);
        assert_eq!((p.jumbo_free(), p.overflows()), ((2, 2), 0));
        p.give(b + 256);
        p.give(10 * 4096);
        assert_eq!(p.overflows(), 2);
        // Single frames are untouched by all this.
        assert_eq!((p.free(), p.out()), (4, 0));
    }

    #[test]
    fn cross_port_cycles_leak_nothing() {
        let mut pool = FramePool::new(2048, 96);
        let mut a = Rings {
            cap: 32,
            ..Rings::default()
        };
        let mut b = Rings {
            cap: 32,
            ..Rings::default()
        };
        a.refill(&mut pool);
        b.refill(&mut pool);
        assert_eq!(pool.out(), 64);
        let mut forwarded = 0;
        // Mostly A -> B (requests), some B -> A (replies), some dropped.
        for round in 0..500u32 {
            for _ in 0..(round % 7 + 1) {
                a.kernel_rx();
            }
            for _ in 0..(round % 3) {
                b.kernel_rx();
            }
            // The worker: A's frames leave on B in place, B's on A; every
            // fifth one is dropped and goes straight back.
            for (i, f) in a.rx.drain(..).enumerate() {
                if i % 5 == 4 {
                    pool.give(f);
                } else {
                    b.tx.push_back(f);
                    forwarded += 1;
                }
            }
            for f in b.rx.drain(..) {
                a.tx.push_back(f);
                forwarded += 1;
            }
            // Completions only every other round: frames wait in flight.
            if round % 2 == 0 {
                a.kernel_tx();
                b.kernel_tx();
            }
            a.reap(&mut pool);
            b.reap(&mut pool);
            a.refill(&mut pool);
            b.refill(&mut pool);
            let in_rings = a.fill.len() + a.tx.len() + b.fill.len() + b.tx.len();
            assert_eq!(pool.out(), in_rings, "round {round}");
        }
        assert!(forwarded > 1000, "{forwarded}");
        a.kernel_tx();
        b.kernel_tx();
        a.reap(&mut pool);
        b.reap(&mut pool);
        // Only the fill rings still hold frames; draining them empties the pool.
        for f in a.fill.drain(..).chain(b.fill.drain(..)) {
            pool.give(f);
        }
        assert_eq!((pool.out(), pool.free(), pool.overflows()), (0, 96, 0));
    }
}
