//! Handing a frame to the worker that owns its flow.
//!
//! Fanout (AF_PACKET) or RSS (AF_XDP) spreads frames by a hash the kernel or
//! NIC picks, so a reply can reach a worker whose conntrack never saw the
//! forward packet. The receiving worker copies such a frame into the owner's
//! inbox and the owner runs it through its own pipeline.
//!
//! Each ordered pair (from, to) has a lane of two lock-free rings: `full`
//! carries filled slots from the producer to the consumer, `free` brings
//! them back. The slots live in one preallocated slab per consumer, so a
//! handoff is a slot pop, a copy and a push: no allocation, no lock, and a
//! slot belongs to exactly one side at any time (whoever popped it last).
//! Per producer, frames arrive in the order they were sent.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::io::af_packet::AfPacket;
use crate::io::af_xdp::AfXdp;
use crate::io::memory::MemoryIo;
use crate::io::{Batch, FrameDesc, OffloadMeta, MAX_BURST};

/// Bytes per slot unless the group is built for larger frames
/// ([`Handoff::for_frames`]): an MTU-1500 frame with two VLAN tags plus room
/// for a reject answer to grow in place (the memory backend's buffers use
/// the same size, so anything they hold fits).
pub const SLOT_BYTES: usize = 2048;
/// Slots per lane of small slots: four maximal bursts, so a producer can
/// run a few bursts ahead of an owner that is busy or briefly asleep in its
/// idle back-off.
pub const LANE_SLOTS: usize = 4 * MAX_BURST;
/// Memory per lane for its large slots, in groups whose backend hands out
/// frames bigger than [`SLOT_BYTES`] (jumbo frames, 64 KiB GSO
/// super-frames): 8 MiB keeps ~120 super-frames (~5,000 wire frames of
/// data) in flight per lane beside the [`LANE_SLOTS`] small slots, which
/// still carry every frame that fits them.
pub const LANE_LARGE_BYTES: usize = 8 << 20;
/// Fewest large slots a lane gets, however large they are: a quarter burst.
pub const MIN_LARGE_SLOTS: usize = MAX_BURST / 4;

/// Why a frame could not be handed over (the caller counts it as a drop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffError {
    /// Every slot of the lane is in flight: the owner is behind.
    Full,
    /// The frame does not fit a slot.
    Oversize,
    /// No such worker (or the sender itself).
    BadOwner,
}

/// Whether a backend's `tx_burst` transmits frames of a batch that another
/// backend (or the handoff inbox) filled. AF_PACKET and memory copy frames
/// out through the batch; AF_XDP only sends frames of its own UMEM, so a
/// worker on AF_XDP sends handed-over frames through a copy sender.
///
/// It also carries the one other thing the worker must know about a
/// backend's frames (it is the backend trait every worker already needs):
/// which [`FrameDesc::tag`] bit marks a partial checksum.
pub trait ForeignTx {
    const SENDS_FOREIGN: bool;

    /// The [`FrameDesc::tag`] bit this backend sets on a frame whose L4
    /// checksum is partial (left to offload) and was not completed; 0 when
    /// it never hands out such frames. Tags are backend-specific (a replay
    /// index, a queue number), so the worker reads only this bit, and only
    /// when the backend names it.
    const CSUM_PARTIAL_TAG: u32 = 0;

    /// Transmits frames `idx` of `batch`, received on another port of the
    /// same worker, in place when this port shares that port's frame memory
    /// (AF_XDP sockets on one UMEM). Returns how many went out, a prefix of
    /// `idx` (the rest found the ring full and stay the caller's), or None
    /// when the memory is not shared and the caller must copy them out.
    fn tx_shared(&mut self, _batch: &Batch, _idx: &[u16]) -> Option<u32> {
        None
    }
}

impl ForeignTx for AfPacket {
    const SENDS_FOREIGN: bool = true;
    const CSUM_PARTIAL_TAG: u32 = crate::io::af_packet::TAG_CSUM_PARTIAL;
}

impl ForeignTx for AfXdp {
    const SENDS_FOREIGN: bool = false;

    fn tx_shared(&mut self, batch: &Batch, idx: &[u16]) -> Option<u32> {
        self.tx_in_place(batch, idx)
    }
}

impl ForeignTx for MemoryIo<'_> {
    const SENDS_FOREIGN: bool = true;
}

/// One handed-over frame as it travels through a `full` ring.
#[derive(Clone, Copy, Debug)]
struct Handed {
    slot: u32,
    len: u32,
    tag: u32,
    /// The frame's offload state (partial checksum, GSO) travels with it.
    offload: OffloadMeta,
    /// Interface (neighbour-table position) the frame arrived on: the
    /// one-armed fallback for its egress.
    iface: u8,
}

/// Zeroed, page-aligned memory shared by the two sides of an inbox.
struct Slab {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the slab is plain bytes. Each slot is written only by the side
// that popped its index from a ring (the producer from `free`, the
// consumer from `full`), and the rings' push/pop order those accesses
// (release on push, acquire on pop), so no two threads touch a slot at once.
unsafe impl Send for Slab {}
// SAFETY: as above.
unsafe impl Sync for Slab {}

impl Slab {
    fn new(bytes: usize) -> Slab {
        let layout = Layout::from_size_align(bytes.max(1), 4096).expect("slab layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Slab { ptr, layout }
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

struct Lane {
    full: ArrayQueue<Handed>,
    free: ArrayQueue<u32>,
    /// Free large slots (empty ring when the group has none).
    free_large: ArrayQueue<u32>,
}

/// One size of slot: how many each lane has, how big, where they start.
#[derive(Clone, Copy, Debug)]
struct SlotClass {
    per_lane: usize,
    bytes: usize,
    /// First slot id of the class (small slots come first).
    first_id: usize,
    /// Byte offset of the class's first slot in the slab.
    base: usize,
}

impl SlotClass {
    #[inline]
    fn contains(&self, id: usize, workers: usize) -> bool {
        id >= self.first_id && id < self.first_id + workers * self.per_lane
    }

    #[inline]
    fn offset(&self, id: usize) -> usize {
        self.base + (id - self.first_id) * self.bytes
    }

    /// The producer (lane) a slot id of this class belongs to.
    #[inline]
    fn lane_of(&self, id: usize) -> usize {
        (id - self.first_id) / self.per_lane.max(1)
    }
}

/// What one worker receives: a lane per other worker over one slab.
struct Inbox {
    slab: Slab,
    /// Indexed by the producer; None for the worker itself.
    lanes: Vec<Option<Lane>>,
}

/// The inboxes of a group of workers. Share it in an `Arc`; each worker
/// takes its [`HandoffTx`] and [`HandoffRx`].
pub struct Handoff {
    workers: usize,
    small: SlotClass,
    /// Large slots: `per_lane` is 0 when frames never exceed [`SLOT_BYTES`].
    large: SlotClass,
    inboxes: Vec<Inbox>,
}

impl Handoff {
    /// Inboxes for `workers` workers with [`LANE_SLOTS`] slots of
    /// [`SLOT_BYTES`] per lane.
    pub fn new(workers: usize) -> Arc<Handoff> {
        Handoff::with_lane_slots(workers, LANE_SLOTS)
    }

    /// Inboxes for frames of up to `max_frame` bytes (the largest buffer
    /// the workers' backend hands out): [`LANE_SLOTS`] small slots per
    /// lane, plus, when `max_frame` exceeds [`SLOT_BYTES`], large slots of
    /// `max_frame` bytes ([`LANE_LARGE_BYTES`] per lane, at least
    /// [`MIN_LARGE_SLOTS`]).
    pub fn for_frames(workers: usize, max_frame: usize) -> Arc<Handoff> {
        if max_frame <= SLOT_BYTES {
            return Handoff::new(workers);
        }
        let bytes = max_frame.next_multiple_of(64);
        let large = (LANE_LARGE_BYTES / bytes).max(MIN_LARGE_SLOTS);
        Handoff::build(workers, LANE_SLOTS, large, bytes)
    }

    /// As [`Handoff::new`] with `lane_slots` (>= 1) slots per lane. All
    /// memory is allocated here.
    pub fn with_lane_slots(workers: usize, lane_slots: usize) -> Arc<Handoff> {
        Handoff::build(workers, lane_slots, 0, SLOT_BYTES)
    }

    fn build(
        workers: usize,
        lane_slots: usize,
        large_slots: usize,
        large_bytes: usize,
    ) -> Arc<Handoff> {
        let workers = workers.max(1);
        let small = SlotClass {
            per_lane: lane_slots.max(1),
            bytes: SLOT_BYTES,
            first_id: 0,
            base: 0,
        };
        let large = SlotClass {
            per_lane: large_slots,
            bytes: large_bytes,
            first_id: workers * small.per_lane,
            base: workers * small.per_lane * SLOT_BYTES,
        };
        let slab_bytes = large.base + workers * large.per_lane * large.bytes;
        let ring = |class: &SlotClass, from: usize| {
            let q = ArrayQueue::new(class.per_lane.max(1));
            let first = class.first_id + from * class.per_lane;
            for id in first..first + class.per_lane {
                let _ = q.push(id as u32);
            }
            q
        };
        let inboxes = (0..workers)
            .map(|to| Inbox {
                // The worker's own lane range stays untouched: the pages are
                // zeroed lazily by the kernel, so it costs address space only.
                slab: Slab::new(slab_bytes),
                lanes: (0..workers)
                    .map(|from| {
                        (from != to).then(|| Lane {
                            full: ArrayQueue::new(small.per_lane + large.per_lane),
                            free: ring(&small, from),
                            free_large: ring(&large, from),
                        })
                    })
                    .collect(),
            })
            .collect();
        Arc::new(Handoff {
            workers,
            small,
            large,
            inboxes,
        })
    }

    /// The slab region every slot lies in.
    fn slab_bytes(&self) -> usize {
        self.large.base + self.workers * self.large.per_lane * self.large.bytes
    }

    /// Byte offset and size of slot `id`.
    #[inline]
    fn slot(&self, id: u32) -> (usize, usize) {
        let id = id as usize;
        if self.small.contains(id, self.workers) {
            (self.small.offset(id), self.small.bytes)
        } else {
            (self.large.offset(id), self.large.bytes)
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The largest frame a slot holds.
    pub fn slot_bytes(&self) -> usize {
        if self.large.per_lane > 0 {
            self.large.bytes
        } else {
            SLOT_BYTES
        }
    }

    /// The sending side of worker `me`.
    pub fn sender(self: &Arc<Self>, me: usize) -> HandoffTx {
        HandoffTx {
            shared: Arc::clone(self),
            me,
        }
    }

    /// The receiving side of worker `me`.
    pub fn receiver(self: &Arc<Self>, me: usize) -> HandoffRx {
        HandoffRx {
            shared: Arc::clone(self),
            me,
            held: Box::new(
                [Handed {
                    slot: 0,
                    len: 0,
                    tag: 0,
                    offload: OffloadMeta::NONE,
                    iface: 0,
                }; MAX_BURST],
            ),
            n_held: 0,
            next_lane: 0,
        }
    }

    /// Frames waiting in worker `to`'s inbox (for tests and shutdown).
    pub fn pending(&self, to: usize) -> usize {
        self.inboxes
            .get(to)
            .map_or(0, |i| i.lanes.iter().flatten().map(|l| l.full.len()).sum())
    }
}

/// Worker `me`'s way into the other workers' inboxes.
pub struct HandoffTx {
    shared: Arc<Handoff>,
    me: usize,
}

impl HandoffTx {
    /// Copies `frame` into worker `to`'s inbox. `iface` is the interface it
    /// arrived on, `desc` its descriptor, whose tag and offload state travel
    /// with it.
    #[inline]
    pub fn send(
        &self,
        to: usize,
        frame: &[u8],
        desc: &FrameDesc,
        iface: u8,
    ) -> Result<(), HandoffError> {
        let Some(Some(lane)) = self
            .shared
            .inboxes
            .get(to)
            .map(|i| i.lanes.get(self.me).and_then(Option::as_ref))
        else {
            return Err(HandoffError::BadOwner);
        };
        let shared = &*self.shared;
        let free = if frame.len() <= SLOT_BYTES {
            &lane.free
        } else if shared.large.per_lane > 0 && frame.len() <= shared.large.bytes {
            &lane.free_large
        } else {
            return Err(HandoffError::Oversize);
        };
        let slot = free.pop().ok_or(HandoffError::Full)?;
        let (at, _) = shared.slot(slot);
        let slab = &shared.inboxes[to].slab;
        // SAFETY: `slot` came off this lane's free ring, so this side owns it
        // until it is pushed to `full`; slots are in bounds of the slab
        // (workers * lane_slots of them) and `frame` fits one.
        unsafe {
            std::ptr::copy_nonoverlapping(frame.as_ptr(), slab.ptr.add(at), frame.len());
        }
        let h = Handed {
            slot,
            len: frame.len() as u32,
            tag: desc.tag,
            offload: desc.offload,
            iface,
        };
        if lane.full.push(h).is_err() {
            // Cannot happen (`full` holds every slot of the lane), but
            // never lose the slot if it did.
            let _ = free.push(slot);
            return Err(HandoffError::Full);
        }
        Ok(())
    }
}

/// Worker `me`'s inbox: drained into a batch, released after transmit.
pub struct HandoffRx {
    shared: Arc<Handoff>,
    me: usize,
    /// The slots of the current batch, in batch order.
    held: Box<[Handed; MAX_BURST]>,
    n_held: usize,
    /// Lane drained first next time, so no producer starves the others.
    next_lane: usize,
}

impl HandoffRx {
    /// Points `batch` at this inbox and fills it with up to `max` waiting
    /// frames. Releases the previous batch's slots first if the caller
    /// did not.
    pub fn drain(&mut self, batch: &mut Batch, max: usize) -> usize {
        self.release();
        let inbox = &self.shared.inboxes[self.me];
        let region = self.shared.slab_bytes();
        // SAFETY: the slab lives as long as `shared`, which this value keeps.
        // The batch only ever forms slices over the slots it is given below,
        // which this side owns (popped from `full`) until `release`.
        unsafe { batch.reset(inbox.slab.ptr, region) };
        let max = max.min(MAX_BURST);
        let workers = self.shared.workers;
        for k in 0..workers {
            let from = (self.next_lane + k) % workers;
            let Some(lane) = &inbox.lanes[from] else {
                continue;
            };
            while self.n_held < max {
                let Some(h) = lane.full.pop() else { break };
                let (at, cap) = self.shared.slot(h.slot);
                let pushed = batch.push(FrameDesc {
                    offset: at as u64,
                    len: h.len,
                    cap: cap as u32,
                    tag: h.tag,
                    offload: h.offload,
                });
                debug_assert!(pushed, "slot outside the slab");
                self.held[self.n_held] = h;
                self.n_held += 1;
            }
        }
        self.next_lane = (self.next_lane + 1) % workers;
        self.n_held
    }

    /// Interface the `i`-th frame of the drained batch arrived on.
    #[inline]
    pub fn iface(&self, i: usize) -> usize {
        self.held[..self.n_held][i].iface as usize
    }

    /// Gives the drained slots back to their producers. Call once the
    /// frames are transmitted (the batch must not be used afterwards).
    pub fn release(&mut self) {
        let inbox = &self.shared.inboxes[self.me];
        let (small, large, workers) = (self.shared.small, self.shared.large, self.shared.workers);
        for h in &self.held[..self.n_held] {
            let id = h.slot as usize;
            let is_small = small.contains(id, workers);
            let from = if is_small {
                small.lane_of(id)
            } else {
                large.lane_of(id)
            };
            if let Some(lane) = &inbox.lanes[from] {
                // Never full: only this lane's slots exist.
                let free = if is_small {
                    &lane.free
                } else {
                    &lane.free_large
                };
                let _ = free.push(h.slot);
            }
        }
        self.n_held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(tag: u32) -> FrameDesc {
        FrameDesc {
            tag,
            ..FrameDesc::default()
        }
    }

    fn frame(seq: u32, len: usize) -> Vec<u8> {
        let mut f = vec![(seq % 251) as u8; len];
        f[..4].copy_from_slice(&seq.to_be_bytes());
        f
    }

    fn seq_of(f: &[u8]) -> u32 {
        u32::from_be_bytes(f[..4].try_into().unwrap())
    }

    #[test]
    fn frames_arrive_whole_and_in_order_with_tag_and_iface() {
        let h = Handoff::with_lane_slots(2, 8);
        let tx = h.sender(0);
        let mut rx = h.receiver(1);
        for s in 0..5u32 {
            tx.send(
                1,
                &frame(s, 60 + s as usize),
                &tagged(100 + s),
                (s % 2) as u8,
            )
            .unwrap();
        }
        assert_eq!(h.pending(1), 5);
        let mut b = Batch::new();
        assert_eq!(rx.drain(&mut b, 64), 5);
        for i in 0..5 {
            let s = i as u32;
            assert_eq!(b.frame(i), &frame(s, 60 + i)[..]);
            assert_eq!(b.descs()[i].tag, 100 + s);
            assert_eq!(b.descs()[i].cap as usize, SLOT_BYTES);
            assert_eq!(rx.iface(i), i % 2);
        }
        rx.release();
        assert_eq!(h.pending(1), 0);
        assert_eq!(rx.drain(&mut b, 64), 0);
    }

    #[test]
    fn large_frames_take_large_slots_with_their_offload_state() {
        use crate::io::offload::{F_NEEDS_CSUM, GSO_TCPV4};
        let big = 65_536 + 256;
        let h = Handoff::for_frames(2, big);
        assert_eq!(h.slot_bytes(), big);
        let large = (LANE_LARGE_BYTES / big).max(MIN_LARGE_SLOTS);
        let tx = h.sender(0);
        let mut rx = h.receiver(1);
        let gso = FrameDesc {
            tag: 7,
            offload: OffloadMeta {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
                hdr_len: 66,
            },
            ..FrameDesc::default()
        };
        // Every large slot, then one more: Full; small frames still pass.
        for s in 0..large as u32 {
            tx.send(1, &frame(s, 60_000 + s as usize), &gso, 0).unwrap();
        }
        assert_eq!(
            tx.send(1, &frame(0, 9000), &gso, 0),
            Err(HandoffError::Full)
        );
        tx.send(1, &frame(999, 100), &tagged(1), 1).unwrap();
        assert_eq!(
            tx.send(1, &vec![0; big + 1], &gso, 0),
            Err(HandoffError::Oversize)
        );
        let mut b = Batch::new();
        let mut seen = 0;
        while seen < large + 1 {
            let n = rx.drain(&mut b, 64);
            assert!(n > 0, "frames missing after {seen}");
            for i in 0..n {
                let f = b.frame(i);
                if f.len() == 100 {
                    assert_eq!(seq_of(f), 999);
                    assert_eq!(b.descs()[i].offload, OffloadMeta::NONE);
                    assert_eq!(b.descs()[i].cap as usize, SLOT_BYTES);
                } else {
                    let s = seq_of(f);
                    assert_eq!(f, &frame(s, 60_000 + s as usize)[..]);
                    assert_eq!(b.descs()[i].offload, gso.offload);
                    assert_eq!(b.descs()[i].cap as usize, big);
                }
            }
            seen += n;
            rx.release();
        }
        // Released large slots are usable again.
        tx.send(1, &frame(5, 30_000), &gso, 0).unwrap();
    }

    #[test]
    fn a_full_lane_refuses_until_released() {
        let h = Handoff::with_lane_slots(2, 4);
        let tx = h.sender(1);
        let mut rx = h.receiver(0);
        for s in 0..4 {
            tx.send(0, &frame(s, 64), &tagged(0), 0).unwrap();
        }
        assert_eq!(
            tx.send(0, &frame(9, 64), &tagged(0), 0),
            Err(HandoffError::Full)
        );
        let mut b = Batch::new();
        // Drained but not released: the slots are still the consumer's.
        assert_eq!(rx.drain(&mut b, 2), 2);
        assert_eq!(
            tx.send(0, &frame(9, 64), &tagged(0), 0),
            Err(HandoffError::Full)
        );
        rx.release();
        tx.send(0, &frame(4, 64), &tagged(0), 0).unwrap();
        tx.send(0, &frame(5, 64), &tagged(0), 0).unwrap();
        assert_eq!(
            tx.send(0, &frame(9, 64), &tagged(0), 0),
            Err(HandoffError::Full)
        );
        let got: Vec<u32> = (0..rx.drain(&mut b, 64))
            .map(|i| seq_of(b.frame(i)))
            .collect();
        assert_eq!(got, vec![2, 3, 4, 5]);
    }

    #[test]
    fn bad_owner_and_oversize_are_refused() {
        let h = Handoff::with_lane_slots(3, 4);
        let tx = h.sender(1);
        assert_eq!(
            tx.send(1, &[0; 64], &tagged(0), 0),
            Err(HandoffError::BadOwner)
        );
        assert_eq!(
            tx.send(3, &[0; 64], &tagged(0), 0),
            Err(HandoffError::BadOwner)
        );
        assert_eq!(
            tx.send(0, &vec![0; SLOT_BYTES + 1], &tagged(0), 0),
            Err(HandoffError::Oversize)
        );
        tx.send(0, &vec![7; SLOT_BYTES], &tagged(0), 0).unwrap();
        assert_eq!(h.pending(0), 1);
    }

    #[test]
    fn lanes_are_drained_fairly_and_keep_per_producer_order() {
        let h = Handoff::with_lane_slots(3, 16);
        let (t0, t1) = (h.sender(0), h.sender(1));
        let mut rx = h.receiver(2);
        for s in 0..10 {
            t0.send(2, &frame(s, 64), &tagged(0), 0).unwrap();
            t1.send(2, &frame(1000 + s, 64), &tagged(0), 1).unwrap();
        }
        let mut b = Batch::new();
        let mut from0 = Vec::new();
        let mut from1 = Vec::new();
        for _ in 0..10 {
            let n = rx.drain(&mut b, 4);
            for i in 0..n {
                let s = seq_of(b.frame(i));
                if s >= 1000 {
                    assert_eq!(rx.iface(i), 1);
                    from1.push(s - 1000);
                } else {
                    from0.push(s);
                }
            }
            rx.release();
        }
        assert_eq!(from0, (0..10).collect::<Vec<_>>());
        assert_eq!(from1, (0..10).collect::<Vec<_>>());
    }

    /// Two producer threads against one consumer: nothing accepted is lost
    /// or reordered, and every refusal is reported as Full.
    #[test]
    fn concurrent_producers_lose_nothing_they_were_told_was_sent() {
        const PER_PRODUCER: u32 = 50_000;
        let h = Handoff::with_lane_slots(3, 64);
        let mut rx = h.receiver(0);
        let producers: Vec<_> = (1..3)
            .map(|me| {
                let tx = h.sender(me);
                std::thread::spawn(move || {
                    let (mut sent, mut full) = (0u32, 0u64);
                    let mut f = frame(0, 80);
                    f[4] = me as u8;
                    while sent < PER_PRODUCER {
                        f[..4].copy_from_slice(&sent.to_be_bytes());
                        match tx.send(0, &f, &tagged(sent), me as u8) {
                            Ok(()) => sent += 1,
                            Err(HandoffError::Full) => {
                                full += 1;
                                std::thread::yield_now();
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    full
                })
            })
            .collect();
        let mut b = Batch::new();
        let mut next = [0u32; 3];
        let t0 = std::time::Instant::now();
        while next[1] + next[2] < 2 * PER_PRODUCER {
            assert!(t0.elapsed().as_secs() < 60, "stuck at {next:?}");
            let n = rx.drain(&mut b, 32);
            for i in 0..n {
                let f = b.frame(i);
                let from = f[4] as usize;
                assert_eq!(rx.iface(i), from);
                assert_eq!(seq_of(f), next[from], "order from producer {from}");
                assert_eq!(b.descs()[i].tag, next[from]);
                assert_eq!(f.len(), 80);
                next[from] += 1;
            }
            rx.release();
            if n == 0 {
                std::thread::yield_now();
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(next, [0, PER_PRODUCER, PER_PRODUCER]);
        assert_eq!(h.pending(0), 0);
    }
}
