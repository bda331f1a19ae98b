//! Frames waiting for their next hop's MAC address.
//!
//! The first frame to a backend the kernel has not resolved yet (a new pod)
//! would otherwise be dropped, and its sender would wait for a TCP
//! retransmission (1 s) or lose a UDP request outright. Like the kernel's
//! own `unres_qlen` queue, the worker keeps a copy of such frames in a
//! small preallocated store while the control side has the neighbour
//! resolved, and sends them when a newer neighbour snapshot knows it.
//!
//! A held frame stays counted as the pipeline counted it (forwarded,
//! reversed, rejected): sent later it is right as it is; expired, or never
//! held because the store was full, it moves to `no_neighbour`, as before.
//! Frames leave in arrival order, so one destination's frames keep theirs.

use super::l2;
use super::ledger::Ledger;
use super::slots::FrameSlots;
use crate::addr::Addr;
use crate::counters::Counted;
use crate::io::{Batch, FrameDesc, OffloadMeta, MAX_BURST};
use crate::neigh::{NeighTable, RESOLUTION_TIME};
use crate::pipeline::Pipeline;
use crate::verdict::{DropReason, Verdict};

/// Frames held per worker: the kernel's default `unres_qlen_bytes` (212992)
/// is ~100 full-size frames per neighbour; one burst's worth for all of
/// them lets a whole burst to a new backend wait, and the store drains in
/// one transmit batch.
pub const HELD_SLOTS: usize = MAX_BURST;
/// Fewest slots the store has, however large its frames.
pub const MIN_HELD_SLOTS: usize = 16;
/// How long a frame is held before it is dropped as `no_neighbour`.
pub const HOLD_NS: u64 = RESOLUTION_TIME.as_nanos() as u64;

/// One held frame.
#[derive(Clone, Copy, Debug)]
struct Held {
    slot: u16,
    len: u32,
    tag: u32,
    offload: OffloadMeta,
    dst: Addr,
    /// Interface the frame came in on: the one-armed egress fallback.
    rx_iface: u8,
    /// Its `Tx` verdict.
    verdict: Verdict,
    counted: Counted,
    arrived_ns: u64,
}

const EMPTY: Held = Held {
    slot: 0,
    len: 0,
    tag: 0,
    offload: OffloadMeta::NONE,
    dst: Addr([0; 16]),
    rx_iface: 0,
    verdict: Verdict::Pass,
    counted: Counted::Passed,
    arrived_ns: 0,
};

/// What one look at the store did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Frames put into [`Pending::batch`] to send.
    pub ready: usize,
    /// Frames dropped (moved to `no_neighbour`) because they waited too long.
    pub expired: u64,
}

/// A worker's store of frames waiting for a neighbour, all memory
/// allocated when the worker is built.
pub struct Pending {
    slots: FrameSlots<HELD_SLOTS>,
    /// Held frames in arrival order (`n` of them).
    held: Box<[Held; HELD_SLOTS]>,
    n: usize,
    /// Neighbour generation the held frames were last looked up in: every
    /// held destination was unknown there.
    seen_gen: u64,
    /// Frames released by [`Pending::release`], over the slots, to send.
    pub batch: Box<Batch>,
    /// What each frame of `batch` is counted as.
    pub ledger: Box<Ledger>,
    /// Egress interface of each frame of `batch`.
    pub egress: [u8; MAX_BURST],
    /// Interface each frame of `batch` came in on.
    pub rx_iface: [u8; MAX_BURST],
}

impl Default for Pending {
    fn default() -> Self {
        Pending::new()
    }
}

impl Pending {
    pub fn new() -> Pending {
        Pending::for_frames(0)
    }

    /// A store for frames of up to `max_frame` bytes (the largest buffer
    /// the worker's backend hands out): [`HELD_SLOTS`] slots of 4 KiB,
    /// fewer (at least [`MIN_HELD_SLOTS`]) for larger frames.
    pub fn for_frames(max_frame: usize) -> Pending {
        Pending {
            slots: FrameSlots::new(max_frame, MIN_HELD_SLOTS),
            held: Box::new([EMPTY; HELD_SLOTS]),
            n: 0,
            seen_gen: 0,
            batch: Box::new(Batch::new()),
            ledger: Box::default(),
            egress: [0; MAX_BURST],
            rx_iface: [0; MAX_BURST],
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

    /// Whether a frame to a destination that snapshot `generation` knows
    /// may still have to queue behind held frames to the same destination
    /// (the snapshot changed since the store was last looked at).
    #[inline]
    pub fn may_hold_known(&self, generation: u64) -> bool {
        self.n > 0 && generation != self.seen_gen
    }

    /// Whether a frame to `dst` is held.
    pub fn holds(&self, dst: &Addr) -> bool {
        self.held[..self.n].iter().any(|h| h.dst == *dst)
    }

    /// Copies a frame to hold. Returns false (holding nothing) when the
    /// store is full or the frame does not fit a slot. `generation`: the
    /// neighbour snapshot that did not know `dst`.
    #[allow(clippy::too_many_arguments)]
    pub fn hold(
        &mut self,
        frame: &[u8],
        desc: FrameDesc,
        dst: Addr,
        rx_iface: u8,
        verdict: Verdict,
        counted: Counted,
        generation: u64,
        now_ns: u64,
    ) -> bool {
        let Some(slot) = self.slots.put(frame) else {
            return false;
        };
        if self.n == 0 {
            self.seen_gen = generation;
        }
        self.held[self.n] = Held {
            slot,
            len: frame.len() as u32,
            tag: desc.tag,
            offload: desc.offload,
            dst,
            rx_iface,
            verdict,
            counted,
            arrived_ns: now_ns,
        };
        self.n += 1;
        true
    }

    /// Whether [`Pending::release`] has anything to do: frames are held and
    /// either the neighbour snapshot changed or the oldest frame expired.
    #[inline]
    pub fn due(&self, generation: u64, now_ns: u64) -> bool {
        self.n > 0
            && (generation != self.seen_gen
                || now_ns.saturating_sub(self.held[0].arrived_ns) >= HOLD_NS)
    }

    /// Looks every held frame up in `snap`, in arrival order: a frame that
    /// waited [`HOLD_NS`] is dropped (recounted as `no_neighbour` in
    /// `pipeline`), one whose next hop is known gets its MACs and goes into
    /// [`Pending::batch`] with its egress, the rest stay held. Send the
    /// batch and settle it with [`Pending::ledger`] before the next `hold`:
    /// the batch's frames live in slots `hold` reuses.
    pub fn release(&mut self, snap: &NeighTable, now_ns: u64, pipeline: &mut Pipeline) -> Released {
        let mut r = Released::default();
        self.seen_gen = snap.generation();
        self.slots.attach(&mut self.batch);
        let mut kept = 0;
        for k in 0..self.n {
            let h = self.held[k];
            if now_ns.saturating_sub(h.arrived_ns) >= HOLD_NS {
                pipeline.recount(h.counted, DropReason::NoNeighbour);
                r.expired += 1;
                self.slots.free(h.slot);
                continue;
            }
            let out = snap.egress(&h.dst, h.rx_iface as usize);
            let Some((src_mac, dst_mac)) = snap.next_hop(out, &h.dst) else {
                self.held[kept] = h;
                kept += 1;
                continue;
            };
            let i = self.batch.len();
            let pushed = self
                .batch
                .push(self.slots.desc(h.slot, h.len, h.tag, h.offload));
            debug_assert!(pushed, "HELD_SLOTS <= MAX_BURST");
            self.batch.set_verdict(i, h.verdict);
            l2::set_macs(self.batch.frame_mut(i), &src_mac, &dst_mac);
            self.ledger.counted[i] = h.counted;
            self.egress[i] = out as u8;
            self.rx_iface[i] = h.rx_iface;
            // Reused only by a later `hold`, after the batch is sent.
            self.slots.free(h.slot);
            r.ready += 1;
        }
        self.n = kept;
        r
    }

    /// Drops every held frame (the worker stops): recounted as
    /// `no_neighbour`. Returns how many.
    pub fn drop_all(&mut self, pipeline: &mut Pipeline) -> u64 {
        for k in 0..self.n {
            let h = self.held[k];
            pipeline.recount(h.counted, DropReason::NoNeighbour);
            self.slots.free(h.slot);
        }
        let n = self.n as u64;
        self.n = 0;
        n
    }
}

const _: () = assert!(HELD_SLOTS <= MAX_BURST);
