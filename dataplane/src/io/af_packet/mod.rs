//! AF_PACKET backend: an mmap rx ring per worker (TPACKET_V2 frame slots by
//! default, TPACKET_V3 blocks as an option: see [`RingKind`]), frames
//! copied into a private arena, batched transmit with `sendmmsg`, vnet
//! headers both ways so offloaded frames pass whole, and PACKET_FANOUT so
//! the workers of one interface share its traffic.
//!
//! AF_PACKET gives us a *copy* of each packet: the kernel keeps processing
//! the original. Hence [`Verdict::Pass`] needs no action here (the kernel
//! already has the packet), and the host must not route VIP traffic itself
//! ([`check_host`] says so). Frames the pipeline rewrites are its own copies
//! in the arena; the ring is handed back to the kernel block by block.
//!
//! [`Verdict::Pass`]: crate::verdict::Verdict::Pass

/// Socket tunables and fanout modes, with gateway defaults.
pub mod config;
/// Completing partial (offloaded) TCP/UDP checksums on rx.
pub(crate) mod csum;
/// Setup errors, each naming its fix.
pub mod error;
/// The TPACKET_V2 rx ring walker (one slot per frame).
mod frame_ring;
/// Host checks (forwarding, GRO/LRO, MTU) and offload switches.
pub mod host;
/// Owned memory mappings: the rx ring and the frame arena.
mod mem;
/// The TPACKET_V3 rx ring walker (frames packed in blocks).
mod ring;
/// Ring to arena copy with its skip rules.
mod rx;
/// Packet socket syscalls.
mod socket;
/// Per-socket counters.
pub mod stats;
/// Batched transmit with sendmmsg.
mod tx;

pub use config::{AfPacketConfig, Fanout, FanoutMode, RingKind};
pub use error::AfPacketError;
pub use host::{
    check_host, driver, interface_exists, interface_name, is_root, mtu, offload, set_offload,
    Offload,
};
pub use rx::TAG_CSUM_PARTIAL;
pub use stats::AfPacketStats;
pub(crate) use tx::TxQueue;

use std::io;

use crate::io::{Batch, IoStats, PacketIo, TxStats, MAX_BURST};
use frame_ring::FrameRing;
use mem::Mapping;
use ring::{RxFrame, RxRing, RxWalk};
use rx::{Arena, RxMode, Taken};
use socket::PacketSocket;
use stats::RxCounters;

/// Whether `batch`'s frames lie in memory based at `base` (an empty batch
/// holds nothing of anyone's). Batch does not expose its base, so derive it
/// from the first frame.
fn owns(batch: &Batch, base: *mut u8) -> bool {
    match batch.descs().first() {
        None => true,
        Some(d) => batch.frame(0).as_ptr().wrapping_sub(d.offset as usize) == base.cast_const(),
    }
}

/// Send buffer per socket in bytes: a burst of 64 KiB super-frames.
const SNDBUF: libc::c_int = 4 << 20;

/// One worker's AF_PACKET socket on one interface.
/// The rx ring of either layout.
enum Ring {
    Blocks(RxRing),
    Frames(FrameRing),
}

impl RxWalk for Ring {
    #[inline]
    fn peek(&mut self) -> Option<RxFrame> {
        match self {
            Ring::Blocks(r) => r.peek(),
            Ring::Frames(r) => r.peek(),
        }
    }

    #[inline]
    fn advance(&mut self) {
        match self {
            Ring::Blocks(r) => r.advance(),
            Ring::Frames(r) => r.advance(),
        }
    }

    fn errors(&self) -> u64 {
        match self {
            Ring::Blocks(r) => r.errors,
            Ring::Frames(r) => r.errors,
        }
    }
}

pub struct AfPacket {
    // Field order is drop order: the ring walker and arena hold raw pointers
    // into the mappings, which go before the socket that backs the ring.
    ring: Ring,
    /// Frame ring slots the current batch holds in place.
    taken: Taken,
    arena: Arena,
    tx: TxQueue,
    rx: RxCounters,
    tx_sent: u64,
    tx_dropped: u64,
    kernel_drops: u64,
    kernel_freezes: u64,
    mode: RxMode,
    ifname: String,
    ifindex: u32,
    _arena_map: Mapping,
    _ring_map: Mapping,
    sock: PacketSocket,
}

// SAFETY: the raw pointers inside `ring`, `arena` and `tx` point into
// mappings and boxes this value owns; moving it to another thread moves
// them along, and it is used by one thread at a time (&mut self).
unsafe impl Send for AfPacket {}

impl AfPacket {
    /// Opens a socket on `ifname` (in the calling thread's network
    /// namespace) with an rx ring as `cfg` describes, joined to
    /// `cfg.fanout`'s group if set.
    pub fn open(ifname: &str, cfg: &AfPacketConfig) -> Result<AfPacket, AfPacketError> {
        cfg.validate()?;
        let ifindex = socket::ifindex(ifname)?;
        let sock = PacketSocket::new()?;
        let os = |what: &'static str| move |source: io::Error| AfPacketError::Os { what, source };

        let version = match cfg.ring {
            RingKind::Frames => libc::tpacket_versions::TPACKET_V2,
            RingKind::Blocks => libc::tpacket_versions::TPACKET_V3,
        };
        sock.set_int(libc::PACKET_VERSION, version as libc::c_int)
            .map_err(os(
                "setsockopt(PACKET_VERSION, TPACKET_V2/V3) (kernel >= 3.2 needed)",
            ))?;
        // Before the ring exists (the kernel refuses it after): every frame
        // then comes with, and goes out with, its virtio_net_hdr.
        let vnet = cfg.vnet_hdr && sock.set_int(libc::PACKET_VNET_HDR, 1).is_ok();
        // A 64 KiB super-frame holds that much send buffer until the device
        // takes it; room for a burst of them (root may force it).
        let _ = sock.set_sndbuf(SNDBUF);
        let ring_bytes = cfg.ring_bytes();
        let ring_err = |source| AfPacketError::RingMap {
            bytes: ring_bytes,
            source,
        };
        match cfg.ring {
            RingKind::Frames => {
                // One frame per block: slots are whole pages anyway.
                let req = libc::tpacket_req {
                    tp_block_size: cfg.slot_size(),
                    tp_block_nr: cfg.frame_slots,
                    tp_frame_size: cfg.slot_size(),
                    tp_frame_nr: cfg.frame_slots,
                };
                sock.set(libc::PACKET_RX_RING, &req).map_err(ring_err)?;
            }
            RingKind::Blocks => {
                let frames_per_block = cfg.block_size / cfg.frame_size;
                let req = libc::tpacket_req3 {
                    tp_block_size: cfg.block_size,
                    tp_block_nr: cfg.block_count,
                    tp_frame_size: cfg.frame_size,
                    tp_frame_nr: frames_per_block * cfg.block_count,
                    tp_retire_blk_tov: cfg.retire_timeout_ms,
                    tp_sizeof_priv: 0,
                    tp_feature_req_word: 0,
                };
                sock.set(libc::PACKET_RX_RING, &req).map_err(ring_err)?;
            }
        }
        let ring_map = Mapping::packet_ring(sock.raw(), ring_bytes).map_err(|source| {
            AfPacketError::RingMap {
                bytes: ring_bytes,
                source,
            }
        })?;
        if cfg.qdisc_bypass {
            sock.set_int(libc::PACKET_QDISC_BYPASS, 1).map_err(os(
                "setsockopt(PACKET_QDISC_BYPASS) (kernel >= 3.14 needed)",
            ))?;
        }
        // Best effort: before 4.20 the kernel lacks it, and the sll_pkttype
        // check on rx drops outgoing frames instead.
        let _ = sock.set_int(libc::PACKET_IGNORE_OUTGOING, 1);

        sock.bind(ifindex).map_err(|e| match e.raw_os_error() {
            Some(libc::ENETDOWN) => AfPacketError::InterfaceDown(ifname.into()),
            Some(libc::ENODEV) => AfPacketError::InterfaceNotFound(ifname.into()),
            _ => AfPacketError::Os {
                what: "bind(AF_PACKET)",
                source: e,
            },
        })?;
        if let Some(f) = cfg.fanout {
            // A fanout group replaces its members' own packet hooks with the
            // group's, so the per-socket PACKET_IGNORE_OUTGOING no longer
            // applies: the group needs the flag. No PACKET_FANOUT_FLAG_DEFRAG:
            // it would hand the workers reassembled datagrams larger than the
            // MTU, which they cannot send on; the hash mode already keeps a
            // datagram's fragments on one member (the kernel hashes them by
            // addresses only), and the workers steer later fragments after
            // their first one (`crate::fragments`).
            let flags = libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
            let arg = f.group_id as u32 | ((f.mode.kernel_mode() | flags) << 16);
            sock.set_int(libc::PACKET_FANOUT, arg as libc::c_int)
                .map_err(|source| AfPacketError::Fanout {
                    group: f.group_id,
                    source,
                })?;
        }

        let arena_map = Mapping::anonymous(cfg.buf_size as usize * MAX_BURST)
            .map_err(os("mmap of the frame arena"))?;
        // SAFETY: the ring mapping is ring_bytes laid out by the kernel as
        // the requested TPACKET version's blocks or slots, page-aligned,
        // owned by the returned value (dropped after the walker), read by
        // nothing else.
        let ring = unsafe {
            match cfg.ring {
                RingKind::Frames => Ring::Frames(FrameRing::new(
                    ring_map.as_ptr(),
                    cfg.slot_size() as usize,
                    cfg.frame_slots as usize,
                )),
                RingKind::Blocks => Ring::Blocks(RxRing::new(
                    ring_map.as_ptr(),
                    cfg.block_size as usize,
                    cfg.block_count as usize,
                )),
            }
        };
        Ok(AfPacket {
            ring,
            arena: Arena {
                base: arena_map.as_ptr(),
                buf_size: cfg.buf_size as usize,
            },
            tx: TxQueue::new(vnet),
            taken: Taken::new(),
            rx: RxCounters::default(),
            tx_sent: 0,
            tx_dropped: 0,
            kernel_drops: 0,
            kernel_freezes: 0,
            mode: RxMode {
                vnet,
                complete_csum: cfg.complete_partial_csum,
            },
            ifname: ifname.into(),
            ifindex,
            _arena_map: arena_map,
            _ring_map: ring_map,
            sock,
        })
    }

    /// The interface this socket is bound to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether frames carry their offload state (PACKET_VNET_HDR took):
    /// GSO super-frames and partial checksums then pass whole.
    pub fn vnet_hdr(&self) -> bool {
        self.mode.vnet
    }

    /// Sleeps until the ring may have a block ready, at most `timeout_ms`:
    /// how an idle worker backs off instead of spinning.
    pub fn wait_rx(&self, timeout_ms: i32) -> bool {
        self.sock.poll_in(timeout_ms)
    }

    /// The socket's descriptor, readable when a block is ready (for a
    /// worker that waits on several sockets in one poll()).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.sock.raw()
    }

    /// Counters since open. Reads (and accumulates) the kernel's drop
    /// counters, which reset on every read: not for the hot path.
    pub fn stats(&mut self) -> AfPacketStats {
        if let Ok(k) = self.sock.take_stats() {
            self.kernel_drops += k.tp_drops as u64;
            self.kernel_freezes += k.tp_freeze_q_cnt as u64;
        }
        AfPacketStats {
            rx_packets: self.rx.packets,
            rx_kernel_drops: self.kernel_drops,
            rx_ring_full: self.kernel_freezes,
            rx_oversize: self.rx.oversize,
            rx_csum_partial: self.rx.csum_partial,
            rx_csum_unfixed: self.rx.csum_unfixed,
            rx_outgoing_skipped: self.rx.outgoing_skipped,
            rx_ring_errors: self.rx.ring_errors,
            rx_gso: self.rx.gso,
            rx_offload_skipped: self.rx.offload_skipped,
            tx_sent: self.tx_sent,
            tx_dropped: self.tx_dropped,
        }
    }
}

impl PacketIo for AfPacket {
    /// Frame ring: up to `max` frames in place in the ring's slots, which
    /// go back to the kernel on the next `tx_burst` (or `rx_burst`). Block
    /// ring: copies them into the arena (buffer `i` holds frame `i`).
    /// Either way the previous burst's frames are gone.
    fn rx_burst(&mut self, batch: &mut Batch, max: usize) -> usize {
        match &mut self.ring {
            Ring::Frames(r) => rx::fill_in_place(
                r,
                &mut self.taken,
                self.arena.buf_size,
                batch,
                max,
                self.mode,
                &mut self.rx,
            ),
            ring @ Ring::Blocks(_) => {
                rx::fill_batch(ring, &self.arena, batch, max, self.mode, &mut self.rx)
            }
        }
    }

    /// Sends every `Tx(_)` frame (whatever the port index: routing between
    /// ports is the worker's job) in one `sendmmsg`. `Pass` frames need
    /// nothing: the kernel got the original when we got our copy. Works for
    /// batches filled by any backend, since frames are addressed through
    /// the batch.
    fn tx_burst(&mut self, batch: &mut Batch) -> TxStats {
        let st = self.tx.send(self.sock.raw(), batch);
        self.tx_sent += st.sent as u64;
        self.tx_dropped += st.dropped as u64;
        // The kernel copied what it sent: the slots of our own rx burst
        // (not those of a batch another backend filled) can go back.
        if let Ring::Frames(r) = &mut self.ring {
            if owns(batch, r.region().0) {
                self.taken.give_back(r);
            }
        }
        batch.clear();
        st
    }

    fn kind(&self) -> &'static str {
        "af_packet"
    }

    fn max_frame(&self) -> usize {
        self.arena.buf_size
    }

    fn io_stats(&mut self) -> IoStats {
        let s = self.stats();
        IoStats {
            rx_ring_drops: s.rx_kernel_drops,
            rx_fill_empty: 0,
            rx_skipped: s.rx_oversize + s.rx_ring_errors + s.rx_offload_skipped,
            rx_csum_unfixed: s.rx_csum_unfixed,
            rx_gso: s.rx_gso,
            rx_multi_buffer: 0,
        }
    }
}
