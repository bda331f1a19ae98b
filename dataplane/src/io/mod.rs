//! Burst I/O: one trait over AF_XDP, AF_PACKET and in-memory backends, so
//! tests, benchmarks and the gateway run the same worker code.
//!
//! Frames live in one contiguous region the backend owns (an AF_XDP UMEM, an
//! arena of fixed-size buffers). A [`Batch`] holds descriptors into that
//! region; the worker rewrites frames in place through [`Batch::frame_mut`]
//! and sets a verdict for each, and the backend transmits or recycles them.
//! Batches are caller-owned and reused: nothing is allocated per burst.

/// AF_PACKET sockets: TPACKET_V3 rx ring, batched tx, fanout.
pub mod af_packet;
/// AF_XDP sockets, UMEM and the steering XDP program.
pub mod af_xdp;
/// A port fed by hand (tests).
pub mod feed;
/// An interface's MTU and offloads, and what they mean per I/O mode.
pub mod iface;
/// Packets preloaded in memory (replay and per-core benchmarks).
pub mod memory;
/// Per-frame offload state (partial checksum, GSO) from rx to tx.
pub mod offload;
/// pcap / pcapng files to and from memory.
pub mod pcap;

use crate::verdict::Verdict;
pub use offload::OffloadMeta;

/// Upper bound on a burst. DPDK and AF_XDP samples use 32-64; 256 leaves room
/// for the replay path, which amortises more per burst.
pub const MAX_BURST: usize = 256;

/// One frame in the backend's region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameDesc {
    /// Byte offset of the frame's first byte from the region base.
    pub offset: u64,
    /// Frame length in bytes.
    pub len: u32,
    /// Bytes available from `offset` (the frame may grow up to this, e.g.
    /// when a reject answer is longer than the packet it answers).
    pub cap: u32,
    /// Backend-specific tag (e.g. the rx port, or a replay sequence number).
    pub tag: u32,
    /// What the sender's offloads left undone (AF_PACKET with a vnet
    /// header: partial checksum, GSO); [`OffloadMeta::NONE`] elsewhere.
    pub offload: OffloadMeta,
}

/// A reusable burst of frames with their verdicts.
pub struct Batch {
    base: *mut u8,
    region_len: usize,
    len: usize,
    descs: [FrameDesc; MAX_BURST],
    verdicts: [Verdict; MAX_BURST],
}

// SAFETY: a Batch is a set of descriptors plus a pointer to a region that
// its backend keeps alive; it moves to a worker thread together with that
// backend and is used from one thread at a time.
unsafe impl Send for Batch {}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            base: std::ptr::null_mut(),
            region_len: 0,
            len: 0,
            descs: [FrameDesc::default(); MAX_BURST],
            verdicts: [Verdict::Pass; MAX_BURST],
        }
    }

    /// Points the batch at a backend's frame region and empties it.
    ///
    /// # Safety
    /// `base..base + region_len` must stay valid for reads and writes, and
    /// not be accessed by anything else, while frames of this batch are used.
    pub unsafe fn reset(&mut self, base: *mut u8, region_len: usize) {
        self.base = base;
        self.region_len = region_len;
        self.len = 0;
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == MAX_BURST
    }

    /// Adds a frame. Returns false (and adds nothing) when the batch is full
    /// or the descriptor lies outside the region.
    #[inline]
    pub fn push(&mut self, desc: FrameDesc) -> bool {
        let end = desc.offset as usize + desc.cap.max(desc.len) as usize;
        if self.len == MAX_BURST || end > self.region_len {
            return false;
        }
        self.descs[self.len] = desc;
        self.verdicts[self.len] = Verdict::Pass;
        self.len += 1;
        true
    }

    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the first `len` frames (no-op when there are not more).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    #[inline]
    pub fn descs(&self) -> &[FrameDesc] {
        &self.descs[..self.len]
    }

    /// Sets frame `i`'s offload state (checksum / GSO metadata). The
    /// descriptor's place in the region is not writable from safe code:
    /// `frame()` relies on every descriptor being one `push` checked.
    #[inline]
    pub fn set_offload(&mut self, i: usize, offload: OffloadMeta) {
        self.descs[..self.len][i].offload = offload;
    }

    /// Moves frame `from` (descriptor and verdict) to slot `to`, e.g. to
    /// close the gap left by frames taken out; slot `to`'s old frame is
    /// forgotten by the batch (the caller keeps its descriptor).
    #[inline]
    pub fn move_frame(&mut self, from: usize, to: usize) {
        let n = self.len;
        self.descs[..n][to] = self.descs[..n][from];
        self.verdicts[..n][to] = self.verdicts[..n][from];
    }

    #[inline]
    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts[..self.len]
    }

    #[inline]
    pub fn set_verdict(&mut self, i: usize, v: Verdict) {
        self.verdicts[..self.len][i] = v;
    }

    /// Frame `i`'s bytes (its current length).
    #[inline]
    pub fn frame(&self, i: usize) -> &[u8] {
        let d = self.descs[..self.len][i];
        // SAFETY: `push` checked the descriptor lies inside the region that
        // `reset`'s contract keeps valid and exclusive.
        unsafe { std::slice::from_raw_parts(self.base.add(d.offset as usize), d.len as usize) }
    }

    /// Frame `i`'s whole buffer (capacity) for in-place rewriting; its
    /// length is `descs()[i].len`, changed with [`Batch::set_len`].
    #[inline]
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        let d = self.descs[..self.len][i];
        let cap = d.cap.max(d.len) as usize;
        // SAFETY: as in `frame`; descriptors of a batch never overlap (each
        // backend hands out distinct buffers), so no two `&mut` alias.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(d.offset as usize), cap) }
    }

    /// Sets frame `i`'s length (at most its capacity).
    #[inline]
    pub fn set_len(&mut self, i: usize, len: usize) {
        let d = &mut self.descs[..self.len][i];
        d.len = len.min(d.cap.max(d.len) as usize) as u32;
    }
}

/// Transmit outcome of one burst.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Frames handed to the device/ring.
    pub sent: u32,
    /// Frames with a Tx verdict that did not fit (ring full): counted, never silent.
    pub dropped: u32,
}

crate::counter_set! {
    /// What the kernel side of a port lost or refused. Sampled by the
    /// worker about once a second and when it stops (a getsockopt per
    /// socket), never per packet: the operator's answer to "did the rings
    /// overflow?".
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct IoStats {
        /// Packets the kernel dropped because the socket's rx ring was full or
        /// had no buffer for them (AF_PACKET `tp_drops`; AF_XDP `rx_ring_full`
        /// + `rx_dropped`): the worker did not keep up.
        rx_ring_drops: Counter "vipgate_io_kernel_drops" [kind = "rx_ring_full"]
            => "kernel rx ring drops",
        /// AF_XDP: times the kernel found the fill ring empty (frames did not
        /// come back from transmit fast enough).
        rx_fill_empty: Counter "vipgate_io_kernel_drops" [kind = "fill_ring_empty"]
            => "  fill ring empty" if Nonzero,
        /// Frames skipped on receive: larger than a buffer (GRO/LRO super-frames,
        /// jumbo frames) or invalid descriptors.
        rx_skipped: Counter "vipgate_io_kernel_drops" [kind = "rx_skipped"]
            => "rx frames skipped" if Nonzero,
        /// AF_PACKET: frames whose offloaded (partial) checksum could not be
        /// completed; NATed ones among them are `bad_checksum_offload` drops.
        rx_csum_unfixed: Counter "vipgate_io_kernel_drops" [kind = "csum_unfixed"]
            => "partial csum unfixed" if Nonzero,
        /// AF_PACKET with vnet headers: GSO/GRO super-frames received, NATed
        /// once and sent on whole (not a loss: work saved).
        rx_gso: Counter "vipgate_io_gso_frames" => "GSO super-frames" if Nonzero,
        /// AF_XDP with multi-buffer: frames larger than a UMEM frame (jumbo
        /// frames) received as descriptor chains and gathered into one.
        rx_multi_buffer: Counter "vipgate_io_multi_buffer_frames"
            => "multi-buffer frames" if Nonzero,
    }
}

impl IoStats {
    pub fn add(&mut self, o: &IoStats) {
        self.add_scalars(o);
    }
}

/// A burst packet I/O backend (one per worker and interface queue).
pub trait PacketIo {
    /// Receives up to `max` (<= MAX_BURST) frames into `batch`, replacing its
    /// content. Returns how many. Must not block for long: a worker polls.
    fn rx_burst(&mut self, batch: &mut Batch, max: usize) -> usize;

    /// Transmits every frame of `batch` whose verdict is `Tx(_)`, and gives
    /// all frames of the batch back to the backend. Frames with a `Pass`
    /// verdict are handed to the kernel where the backend can do that
    /// (AF_XDP cannot after the fact: such frames are steered out by the XDP
    /// program in the first place). Empties the batch.
    fn tx_burst(&mut self, batch: &mut Batch) -> TxStats;

    /// A short name for logs ("af_xdp", "af_packet", "memory").
    fn kind(&self) -> &'static str;

    /// The kernel side's losses so far (a syscall: not for the hot path).
    /// Backends without a kernel side have none.
    fn io_stats(&mut self) -> IoStats {
        IoStats::default()
    }

    /// The largest frame this backend hands out or takes back, in bytes:
    /// what a worker sizes its held-frame slots by.
    fn max_frame(&self) -> usize {
        memory::FRAME_BUF_SIZE
    }
}
