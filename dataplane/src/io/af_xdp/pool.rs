//! The free frames of one UMEM, shared by every socket of a worker that
//! uses that UMEM (`XDP_SHARED_UMEM`).
//!
//! A frame received on one interface can then leave on another straight
//! from its UMEM address: it comes back on the egress socket's completion
//! ring, returns here, and whichever socket refills its fill ring next
//! takes it. All sockets of the pool live on one worker thread, so the pool
//! needs no lock (it sits in a `RefCell` behind an `Rc`).

/// Free frame addresses, with room for every frame so giving one back
/// never allocates.
#[derive(Debug)]
pub struct FramePool {
    free: Vec<u64>,
    frame_size: u64,
    total: usize,
    /// Addresses given back while every frame was already free (a
    /// bookkeeping bug somewhere): ignored rather than grown into.
    overflows: u64,
}

impl FramePool {
    /// All `frame_count` frames of `frame_size` bytes free, lowest handed
    /// out first.
    pub fn new(frame_size: u32, frame_count: u32) -> FramePool {
        let mut free = Vec::with_capacity(frame_count as usize);
        free.extend((0..frame_count as u64).rev().map(|i| i * frame_size as u64));
        FramePool {
            free,
            frame_size: frame_size as u64,
            total: frame_count as usize,
            overflows: 0,
        }
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
