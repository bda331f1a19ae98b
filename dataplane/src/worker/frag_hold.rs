//! Later IP fragments that arrive before their datagram's first fragment.
//!
//! Only the first fragment carries the ports, so a later one can only
//! follow what was done to it ([`crate::fragments`]). One that comes first
//! (reordered on the way, or from a sender that emits the last fragment
//! first) used to be dropped. The receiving worker now keeps a copy in a
//! small preallocated store, before steering and the pipeline see it, and
//! lets it go when the first fragment of its datagram (same source,
//! destination, protocol and identification: [`FragKey`]) is received:
//! after that first fragment's burst, in arrival order, the held copies run
//! like a received burst of their own (steered to the first fragment's
//! owner, behind it in its FIFO inbox; or processed here), so they are
//! translated and counted like in-order later fragments
//! (`fragments_followed`).
//!
//! All fragments of a datagram reach one receiving worker (RSS and the
//! kernel's fanout hash fragments by addresses only), so the receiver is
//! where "has its first fragment come?" is known, with one worker or many.
//! The receiver remembers the first fragments it saw ([`FIRSTS_SEEN`]
//! datagrams, [`FRAGMENT_TIMEOUT_S`]); a later fragment of one of those
//! goes on at once, as before.
//!
//! Bounds:
//! - [`FRAG_HOLD_NS`] (500 ms): reordering on a path is microseconds to
//!   milliseconds; a copy that waited longer most likely lost its first
//!   fragment, and UDP resolvers and TCP retransmit by then anyway. Linux
//!   keeps reassembly queues 30 s, but it holds every fragment of the
//!   datagram; here only early ones wait.
//! - [`FRAG_HOLD_SLOTS`] copies (256 KiB with 4 KiB slots). When full, the
//!   newest fragment is not held and goes on as before (dropped as
//!   `fragment` if addressed to a VIP): those held are nearer to their
//!   first fragment, and a burst of stray fragments cannot flush them.
//!   Fragments not addressed to a VIP (a backend's reply, or not ours)
//!   take at most half the slots, so VIP traffic keeps room.
//!
//! Counting: a held frame is not counted as a packet until it leaves the
//! store, so `forwarded + reversed + rejected + passed + dropped ==
//! packets` holds at every moment. Released, it is counted by the pipeline
//! that processes it (here or at the owner); expired (or still held when
//! the worker stops), it is counted here as the pipeline would have
//! counted it on arrival: dropped (`fragment`) if addressed to a VIP,
//! else passed (its original buffer was passed back when it was held).

use super::aside::Aside;
use super::slots::FrameSlots;
use crate::fragments::{FragKey, FragTable, FRAGMENT_TIMEOUT_S};
use crate::io::{Batch, OffloadMeta, MAX_BURST};
use crate::pipeline::Pipeline;
use crate::table::ServiceTable;
use crate::wire::parse::{maybe_fragment, parse};

/// Fragments held per worker.
pub const FRAG_HOLD_SLOTS: usize = 64;
/// Fewest slots, however large the backend's frames.
pub const MIN_FRAG_HOLD_SLOTS: usize = 8;
/// How long a fragment waits for its first one, nanoseconds.
pub const FRAG_HOLD_NS: u64 = 500_000_000;
/// Datagrams whose first fragment a receiving worker remembers seeing.
pub const FIRSTS_SEEN: usize = 1024;

/// One held fragment.
#[derive(Clone, Copy, Debug)]
struct Early {
    slot: u16,
    len: u32,
    tag: u32,
    offload: OffloadMeta,
    key: FragKey,
    to_vip: bool,
    ready: bool,
    rx_iface: u8,
    arrived_ns: u64,
}

const EMPTY: Early = Early {
    slot: 0,
    len: 0,
    tag: 0,
    offload: OffloadMeta::NONE,
    key: FragKey {
        src: crate::addr::Addr([0; 16]),
        dst: crate::addr::Addr([0; 16]),
        id: 0,
        proto: 0,
    },
    to_vip: false,
    ready: false,
    rx_iface: 0,
    arrived_ns: 0,
};

/// What [`FragHold::sift`] did to a burst.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sifted {
    /// Frames taken out of the burst and held.
    pub held: u64,
    /// Early fragments the store could not take (left in the burst).
    pub full: u64,
}

/// A receiving worker's store of early later fragments, all memory
/// allocated when the worker is built.
pub struct FragHold {
    slots: FrameSlots<FRAG_HOLD_SLOTS>,
    /// Held fragments in arrival order (`n` of them, `n_ready` of which
    /// have seen their first fragment).
    held: Box<[Early; FRAG_HOLD_SLOTS]>,
    n: usize,
    n_ready: usize,
    /// Datagrams whose first fragment this worker received (seconds clock).
    firsts: FragTable<()>,
    aside: Aside,
    /// Fragments released by [`FragHold::release`], over the slots: a
    /// burst to process and send before the next [`FragHold::sift`].
    pub batch: Box<Batch>,
    /// Interface each frame of `batch` came in on.
    pub rx_iface: [u8; MAX_BURST],
}

impl Default for FragHold {
    fn default() -> Self {
        FragHold::for_frames(0)
    }
}

impl FragHold {
    /// A store for frames of up to `max_frame` bytes.
    pub fn for_frames(max_frame: usize) -> FragHold {
        FragHold {
            slots: FrameSlots::new(max_frame, MIN_FRAG_HOLD_SLOTS),
            held: Box::new([EMPTY; FRAG_HOLD_SLOTS]),
            n: 0,
            n_ready: 0,
            firsts: FragTable::new(FIRSTS_SEEN, FRAGMENT_TIMEOUT_S),
            aside: Aside::default(),
            batch: Box::new(Batch::new()),
            rx_iface: [0; MAX_BURST],
        }
    }

    /// Fragments held now.
    #[inline]
    pub fn len(&self) -> usize {
        self.n
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Looks at the fragments of a received burst: notes first fragments
    /// (their held later fragments become ready to go) and takes later
    /// fragments whose first fragment this worker has not received out of
    /// the burst into the store (until [`FragHold::restore`]). Counts in
    /// `pipeline` what it held and what it could not. Call before the
    /// burst is steered or processed; send [`FragHold::batch`] first.
    pub fn sift(
        &mut self,
        batch: &mut Batch,
        table: &ServiceTable,
        rx_iface: u8,
        now_ns: u64,
        pipeline: &mut Pipeline,
    ) -> Sifted {
        let mut st = Sifted::default();
        let now = (now_ns / 1_000_000_000) as u32;
        let half = self.slots.capacity() / 2;
        let Self {
            slots,
            held,
            n,
            n_ready,
            firsts,
            aside,
            ..
        } = self;
        aside.take_out(batch, &mut [], |d, frame, _| {
            if !maybe_fragment(frame) {
                return false;
            }
            let Ok(p) = parse(frame) else {
                return false;
            };
            if !p.fragment {
                return false;
            }
            let key = FragKey::of(&p);
            if p.frag_first {
                firsts.insert(key, (), now);
                for h in held[..*n].iter_mut() {
                    if h.key == key && !h.ready {
                        h.ready = true;
                        *n_ready += 1;
                    }
                }
                return false;
            }
            if firsts.get(&key, now).is_some() {
                return false;
            }
            let to_vip = table.is_vip(&p.dst);
            let slot = if to_vip || *n < half {
                slots.put(frame)
            } else {
                None
            };
            let Some(slot) = slot else {
                st.full += 1;
                return false;
            };
            held[*n] = Early {
                slot,
                len: d.len,
                tag: d.tag,
                offload: d.offload,
                key,
                to_vip,
                ready: false,
                rx_iface,
                arrived_ns: now_ns,
            };
            *n += 1;
            st.held += 1;
            true
        });
        if st != Sifted::default() {
            pipeline.count_fragment_hold(st.held, st.full);
        }
        st
    }

    /// Puts the frames [`FragHold::sift`] took out back into `batch` with
    /// a `Pass` verdict (their copies are held), so the backend recycles them.
    pub fn restore(&mut self, batch: &mut Batch) {
        self.aside.restore(batch);
    }

    /// Whether fragments wait to be released.
    #[inline]
    pub fn has_ready(&self) -> bool {
        self.n_ready > 0
    }

    /// Puts the held fragments whose first fragment came into
    /// [`FragHold::batch`], in arrival order; returns how many. Process,
    /// send and clear the batch before the next [`FragHold::sift`]: its
    /// frames live in slots that reuses.
    pub fn release(&mut self) -> usize {
        if self.n_ready == 0 {
            return 0;
        }
        self.slots.attach(&mut self.batch);
        let mut kept = 0;
        for k in 0..self.n {
            let h = self.held[k];
            if !h.ready {
                self.held[kept] = h;
                kept += 1;
                continue;
            }
            let i = self.batch.len();
            let pushed = self
                .batch
                .push(self.slots.desc(h.slot, h.len, h.tag, h.offload));
            debug_assert!(pushed, "FRAG_HOLD_SLOTS <= MAX_BURST");
            self.rx_iface[i] = h.rx_iface;
            // Reused only by a later `sift`, after the batch is sent.
            self.slots.free(h.slot);
        }
        self.n = kept;
        self.n_ready = 0;
        self.batch.len()
    }

    /// Drops the fragments that waited [`FRAG_HOLD_NS`] for their first
    /// one, counted in `pipeline` (see the module's counting). Cheap
    /// unless the oldest expired. Returns how many.
    pub fn expire(&mut self, now_ns: u64, pipeline: &mut Pipeline) -> u64 {
        if self.n == 0 || now_ns.saturating_sub(self.held[0].arrived_ns) < FRAG_HOLD_NS {
            return 0;
        }
        self.drop_where(pipeline, |h| {
            !h.ready && now_ns.saturating_sub(h.arrived_ns) >= FRAG_HOLD_NS
        })
    }

    /// Drops every held fragment (the worker stops), counted as expired.
    pub fn drop_all(&mut self, pipeline: &mut Pipeline) -> u64 {
        self.drop_where(pipeline, |_| true)
    }

    fn drop_where(&mut self, pipeline: &mut Pipeline, gone: impl Fn(&Early) -> bool) -> u64 {
        let mut kept = 0;
        let mut dropped = 0;
        for k in 0..self.n {
            let h = self.held[k];
            if gone(&h) {
                pipeline.count_fragment_expired(h.to_vip);
                self.slots.free(h.slot);
                self.n_ready -= usize::from(h.ready);
                dropped += 1;
            } else {
                self.held[kept] = h;
                kept += 1;
            }
        }
        self.n = kept;
        dropped
    }
}

const _: () = assert!(FRAG_HOLD_SLOTS <= MAX_BURST);
