//! The four single-producer/single-consumer rings shared with the kernel.
//!
//! Each ring is an mmap of the socket: a producer index, a consumer index, a
//! flags word and a power-of-two array of entries. We are the producer of
//! the fill and tx rings and the consumer of the rx and completion rings.
//! Indices are free-running u32s; `index & mask` picks the slot.
//!
//! Ordering: entries are written before the producer index is published
//! with Release, and read after the producer index is loaded with Acquire;
//! the consumer index is published with Release after the entries were read
//! (so the kernel may overwrite them) and loaded with Acquire before slots
//! are reused. Indices are cached locally so the shared cache line is only
//! touched when the cached view runs out.

use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::error::AfXdpError;
use super::uapi::{RingOffset, XDP_RING_NEED_WAKEUP};

/// One ring mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap and are unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The shared parts of a ring, common to both directions.
struct Raw<T> {
    _map: Mapping,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    size: u32,
}

impl<T: Copy> Raw<T> {
    /// Maps the ring of `size` entries selected by `pgoff` on socket `fd`.
    fn map(
        fd: RawFd,
        off: &RingOffset,
        size: u32,
        pgoff: libc::off_t,
    ) -> Result<Raw<T>, AfXdpError> {
        if !size.is_power_of_two() {
            return Err(AfXdpError::Config(format!(
                "ring size {size} is not a power of two"
            )));
        }
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: a fresh shared mapping of the socket's ring; the kernel
        // validates pgoff and len against the ring it created.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(AfXdpError::last_os("mmap(xdp ring)"));
        }
        let base = NonNull::new(p.cast::<u8>()).expect("mmap never returns NULL on success");
        let map = Mapping { ptr: base, len };
        // SAFETY: the kernel's offsets lie inside the mapping, and the
        // index words are 4-byte aligned u32s the kernel also accesses
        // atomically.
        let at = |o: u64| unsafe { base.add(o as usize) };
        Ok(Raw {
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            descs: at(off.desc).cast(),
            mask: size - 1,
            size,
            _map: map,
        })
    }

    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (see `map`).
        unsafe { self.producer.as_ref() }
    }

    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`.
        unsafe { self.consumer.as_ref() }
    }

    #[inline]
    fn needs_wakeup(&self) -> bool {
        // SAFETY: as in `producer`.
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }

    #[inline]
    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: masked index < size, inside the descriptor array.
        unsafe { self.descs.as_ptr().add((idx & self.mask) as usize) }
    }
}

/// A ring we produce into (fill, tx).
pub struct ProdRing<T> {
    raw: Raw<T>,
    cached_prod: u32,
    cached_cons: u32,
}

impl<T: Copy> ProdRing<T> {
    pub(crate) fn map(
        fd: RawFd,
        off: &RingOffset,
        size: u32,
        pgoff: libc::off_t,
    ) -> Result<Self, AfXdpError> {
        let raw = Raw::map(fd, off, size, pgoff)?;
        let cached_prod = raw.producer().load(Ordering::Relaxed);
        let cached_cons = raw.consumer().load(Ordering::Acquire);
        Ok(ProdRing {
            raw,
            cached_prod,
            cached_cons,
        })
    }

    /// Free slots, refreshing the consumer index only when fewer than
    /// `want` are known to be free.
    #[inline]
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.raw.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = self.raw.consumer().load(Ordering::Acquire);
        self.raw.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes entry `i` past the producer index. `i` must be below what
    /// `free` returned since the last `submit`.
    #[inline]
    pub fn write(&mut self, i: u32, v: T) {
        debug_assert!(i < self.raw.size - self.cached_prod.wrapping_sub(self.cached_cons));
        // SAFETY: the slot lies in the ring and, being past the producer
        // index and within the free count, is not read by the kernel now.
        unsafe { self.raw.slot(self.cached_prod.wrapping_add(i)).write(v) };
    }

    /// Publishes `n` written entries to the kernel.
    #[inline]
    pub fn submit(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.raw
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }

    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        self.raw.needs_wakeup()
    }

    pub fn size(&self) -> u32 {
        self.raw.size
    }

    /// Entries submitted and not yet consumed by the kernel.
    pub fn outstanding(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.raw.consumer().load(Ordering::Acquire))
    }
}

/// A ring we consume from (rx, completion).
pub struct ConsRing<T> {
    raw: Raw<T>,
    cached_prod: u32,
    cached_cons: u32,
}

impl<T: Copy> ConsRing<T> {
    pub(crate) fn map(
        fd: RawFd,
        off: &RingOffset,
        size: u32,
        pgoff: libc::off_t,
    ) -> Result<Self, AfXdpError> {
        let raw = Raw::map(fd, off, size, pgoff)?;
        let cached_prod = raw.producer().load(Ordering::Acquire);
        let cached_cons = raw.consumer().load(Ordering::Relaxed);
        Ok(ConsRing {
            raw,
            cached_prod,
            cached_cons,
        })
    }

    /// Entries ready to read, at most `max`.
    #[inline]
    pub fn available(&mut self, max: u32) -> u32 {
        let mut n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n < max {
            self.cached_prod = self.raw.producer().load(Ordering::Acquire);
            n = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        n.min(max)
    }

    /// Entry `i` past the consumer index; `i` below what `available` returned.
    #[inline]
    pub fn read(&self, i: u32) -> T {
        debug_assert!(i < self.cached_prod.wrapping_sub(self.cached_cons));
        // SAFETY: the slot was published by the kernel (Acquire in
        // `available`) and is not reused until `release`.
        unsafe { self.raw.slot(self.cached_cons.wrapping_add(i)).read() }
    }

    /// Gives `n` read entries back to the kernel.
    #[inline]
    pub fn release(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.raw
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }

    pub fn size(&self) -> u32 {
        self.raw.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring over anonymous memory, laid out like the kernel's: the test
    /// plays the kernel's side through the same index words.
    fn anon<T: Copy>(size: u32) -> Raw<T> {
        let off = RingOffset {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        let len = 192 + size as usize * std::mem::size_of::<T>();
        // SAFETY: a fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let base = NonNull::new(p.cast::<u8>()).unwrap();
        // SAFETY: offsets inside the mapping, as in Raw::map.
        let at = |o: u64| unsafe { base.add(o as usize) };
        Raw {
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            descs: at(off.desc).cast(),
            mask: size - 1,
            size,
            _map: Mapping { ptr: base, len },
        }
    }

    #[test]
    fn producer_wraps_and_waits_for_the_consumer() {
        let raw = anon::<u64>(8);
        // Start just below the u32 wrap to prove index arithmetic wraps.
        let start = u32::MAX - 2;
        raw.producer().store(start, Ordering::Relaxed);
        raw.consumer().store(start, Ordering::Relaxed);
        let mut r = ProdRing {
            cached_prod: start,
            cached_cons: start,
            raw,
        };
        assert_eq!(r.free(8), 8);
        for i in 0..6 {
            r.write(i, 100 + i as u64);
        }
        r.submit(6);
        assert_eq!(
            r.raw.producer().load(Ordering::Relaxed),
            start.wrapping_add(6)
        );
        assert_eq!(r.free(8), 2, "kernel consumed nothing yet");
        assert_eq!(r.outstanding(), 6);
        // The "kernel" consumes 4: the entries it sees are ours, in order.
        for i in 0..4u32 {
            // SAFETY: reading a slot inside the ring.
            let v = unsafe { r.raw.slot(start.wrapping_add(i)).read() };
            assert_eq!(v, 100 + i as u64);
        }
        r.raw
            .consumer()
            .store(start.wrapping_add(4), Ordering::Release);
        assert_eq!(r.free(3), 6, "refreshes the consumer when short");
        assert!(!r.needs_wakeup());
        // SAFETY: the flags word is inside the mapping.
        unsafe { r.raw.flags.as_ref() }.store(XDP_RING_NEED_WAKEUP, Ordering::Relaxed);
        assert!(r.needs_wakeup());
    }

    #[test]
    fn consumer_sees_only_published_entries() {
        let raw = anon::<u64>(4);
        let start = u32::MAX - 1;
        raw.producer().store(start, Ordering::Relaxed);
        raw.consumer().store(start, Ordering::Relaxed);
        let mut r = ConsRing {
            cached_prod: start,
            cached_cons: start,
            raw,
        };
        assert_eq!(r.available(4), 0);
        for i in 0..3u32 {
            // SAFETY: writing a slot inside the ring, as the kernel would.
            unsafe { r.raw.slot(start.wrapping_add(i)).write(7 + i as u64) };
        }
        assert_eq!(r.available(4), 0, "written but not published");
        r.raw
            .producer()
            .store(start.wrapping_add(3), Ordering::Release);
        assert_eq!(r.available(2), 2, "capped at max");
        assert_eq!(r.available(4), 3);
        assert_eq!((r.read(0), r.read(1), r.read(2)), (7, 8, 9));
        r.release(2);
        assert_eq!(
            r.raw.consumer().load(Ordering::Relaxed),
            start.wrapping_add(2)
        );
        assert_eq!(r.available(4), 1);
        assert_eq!(r.read(0), 9);
    }

    #[test]
    fn non_power_of_two_sizes_are_refused() {
        let off = RingOffset::default();
        assert!(matches!(
            Raw::<u64>::map(-1, &off, 1000, 0),
            Err(AfXdpError::Config(_))
        ));
    }
}
