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
use super::slots::HeldFrames;
use crate::addr::Addr;
use crate::counters::Counted;
use crate::io::{Batch, FrameDesc, MAX_BURST};
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

/// What is kept about one held frame.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    dst: Addr,
    /// Interface the frame came in on: the one-armed egress fallback.
    rx_iface: u8,
    /// Its `Tx` verdict.
    verdict: Verdict,
    counted: Counted,
    arrived_ns: u64,
}

const EMPTY: Waiting = Waiting {
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
    /// Held frames in arrival order.
    frames: HeldFrames<Waiting, HELD_SLOTS>,
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
            frames: HeldFrames::new(max_frame, MIN_HELD_SLOTS, EMPTY),
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
        self.frames.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Whether a frame to a destination that snapshot `generation` knows
    /// may still have to queue behind held frames to the same destination
    /// (the snapshot changed since the store was last looked at).
    #[inline]
    pub fn may_hold_known(&self, generation: u64) -> bool {
        !self.frames.is_empty() && generation != self.seen_gen
    }

    /// Whether a frame to `dst` is held.
    pub fn holds(&self, dst: &Addr) -> bool {
        self.frames.metas().any(|h| h.dst == *dst)
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
        let waiting = Waiting {
            dst,
            rx_iface,
            verdict,
            counted,
            arrived_ns: now_ns,
        };
        if !self.frames.hold(frame, &desc, waiting) {
            return false;
        }
        if self.frames.len() == 1 {
            self.seen_gen = generation;
        }
        true
    }

    /// Whether [`Pending::release`] has anything to do: frames are held and
    /// either the neighbour snapshot changed or the oldest frame expired.
    #[inline]
    pub fn due(&self, generation: u64, now_ns: u64) -> bool {
        self.frames.first().is_some_and(|oldest| {
            generation != self.seen_gen || now_ns.saturating_sub(oldest.arrived_ns) >= HOLD_NS
        })
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
        let Pending {
            frames,
            batch,
            ledger,
            egress,
            rx_iface,
            ..
        } = self;
        frames.attach(batch);
        frames.retain(|h, desc| {
            if now_ns.saturating_sub(h.arrived_ns) >= HOLD_NS {
                pipeline.recount(h.counted, DropReason::NoNeighbour);
                r.expired += 1;
                return false;
            }
            let out = snap.egress(&h.dst, h.rx_iface as usize);
            let Some((src_mac, dst_mac)) = snap.next_hop(out, &h.dst) else {
                return true;
            };
            let i = batch.len();
            let pushed = batch.push(desc);
            debug_assert!(pushed, "HELD_SLOTS <= MAX_BURST");
            batch.set_verdict(i, h.verdict);
            l2::set_macs(batch.frame_mut(i), &src_mac, &dst_mac);
            ledger.counted[i] = h.counted;
            egress[i] = out as u8;
            rx_iface[i] = h.rx_iface;
            r.ready += 1;
            // Its slot is reused only by a later `hold`, after the batch is sent.
            false
        });
        r
    }

    /// Drops every held frame (the worker stops): recounted as
    /// `no_neighbour`. Returns how many.
    pub fn drop_all(&mut self, pipeline: &mut Pipeline) -> u64 {
        let n = self.frames.len() as u64;
        self.frames.retain(|h, _| {
            pipeline.recount(h.counted, DropReason::NoNeighbour);
            false
        });
        n
    }
}

const _: () = assert!(HELD_SLOTS <= MAX_BURST);
