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
use super::slots::HeldFrames;
use crate::fragments::{FragKey, FragTable, FRAGMENT_TIMEOUT_S};
use crate::io::{Batch, MAX_BURST};
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

/// What is kept about one held fragment.
#[derive(Clone, Copy, Debug)]
struct Early {
    key: FragKey,
    to_vip: bool,
    /// Its first fragment came.
    ready: bool,
    rx_iface: u8,
    arrived_ns: u64,
}

const EMPTY: Early = Early {
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
    /// Held fragments in arrival order, `n_ready` of which have seen their
    /// first fragment.
    frames: HeldFrames<Early, FRAG_HOLD_SLOTS>,
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
            frames: HeldFrames::new(max_frame, MIN_FRAG_HOLD_SLOTS, EMPTY),
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
        self.frames.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
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
        // Most bursts have no fragment: one cheap look at each frame.
        if !(0..batch.len()).any(|i| maybe_fragment(batch.frame(i))) {
            return st;
        }
        let now = (now_ns / 1_000_000_000) as u32;
        let half = self.frames.capacity() / 2;
        let Self {
            frames,
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
                for h in frames.metas_mut() {
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
            let early = Early {
                key,
                to_vip,
                ready: false,
                rx_iface,
                arrived_ns: now_ns,
            };
            if !((to_vip || frames.len() < half) && frames.hold(frame, d, early)) {
                st.full += 1;
                return false;
            }
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
        let Self {
            frames,
            batch,
            rx_iface,
            ..
        } = self;
        frames.attach(batch);
        frames.retain(|h, desc| {
            if !h.ready {
                return true;
            }
            let i = batch.len();
            let pushed = batch.push(desc);
            debug_assert!(pushed, "FRAG_HOLD_SLOTS <= MAX_BURST");
            rx_iface[i] = h.rx_iface;
            // Its slot is reused only by a later `sift`, after the batch is sent.
            false
        });
        self.n_ready = 0;
        self.batch.len()
    }

    /// Drops the fragments that waited [`FRAG_HOLD_NS`] for their first
    /// one, counted in `pipeline` (see the module's counting). Cheap
    /// unless the oldest expired. Returns how many.
    pub fn expire(&mut self, now_ns: u64, pipeline: &mut Pipeline) -> u64 {
        let due = |h: &Early| now_ns.saturating_sub(h.arrived_ns) >= FRAG_HOLD_NS;
        if !self.frames.first().is_some_and(due) {
            return 0;
        }
        self.drop_where(pipeline, |h| !h.ready && due(h))
    }

    /// Drops every held fragment (the worker stops), counted as expired.
    pub fn drop_all(&mut self, pipeline: &mut Pipeline) -> u64 {
        self.drop_where(pipeline, |_| true)
    }

    fn drop_where(&mut self, pipeline: &mut Pipeline, gone: impl Fn(&Early) -> bool) -> u64 {
        let mut dropped = 0;
        let n_ready = &mut self.n_ready;
        self.frames.retain(|h, _| {
            if !gone(h) {
                return true;
            }
            pipeline.count_fragment_expired(h.to_vip);
            *n_ready -= usize::from(h.ready);
            dropped += 1;
            false
        });
        dropped
    }
}

const _: () = assert!(FRAG_HOLD_SLOTS <= MAX_BURST);
