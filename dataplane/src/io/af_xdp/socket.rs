//! One AF_XDP socket on one interface queue, with its own UMEM or one
//! shared with other sockets of the same worker, as a [`PacketIo`] backend.
//!
//! Frame ownership: every UMEM frame is at any time in exactly one place —
//! a fill ring, the kernel (rx path), an rx ring, a caller's [`Batch`], a
//! tx ring, a completion ring, or the UMEM's [`FramePool`]. The pool has
//! room for every frame, so moving frames never allocates.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use super::bpf::ifindex;
use super::error::AfXdpError;
use super::pool::FramePool;
use super::ring::{ConsRing, ProdRing};
use super::uapi::*;
use super::umem::Umem;
use crate::io::{Batch, FrameDesc, IoStats, PacketIo, TxStats, MAX_BURST};
use crate::verdict::Verdict;

/// Sizes and modes of one socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfXdpConfig {
    /// 2048 or 4096 bytes per frame.
    pub frame_size: u32,
    /// Frames in the UMEM. More than `ring_size` so the fill ring can stay
    /// full while frames sit in rx/tx rings and in the worker's batch.
    pub frame_count: u32,
    /// Entries of each of the four rings (power of two).
    pub ring_size: u32,
    /// Extra headroom in front of each frame, beyond XDP's own 256 bytes.
    pub headroom: u32,
    /// Ask the kernel to sleep until woken (XDP_USE_NEED_WAKEUP): saves
    /// the syscall per burst when the kernel is already running.
    pub need_wakeup: bool,
    /// Skip the zero-copy attempt.
    pub force_copy: bool,
    /// Bind with XDP_USE_SG, so frames larger than a UMEM frame (jumbo
    /// frames) arrive as descriptor chains instead of being dropped by the
    /// kernel. Kernels before 6.6 refuse it: the socket then binds without.
    pub multi_buffer: bool,
    /// Jumbo slots ([`JUMBO_SLOT_BYTES`] each) that chains are gathered
    /// into: the most jumbo frames a worker holds at once in batches and
    /// tx rings; a chain arriving when none is free is dropped, counted.
    pub jumbo_slots: u32,
}

/// Bytes of one jumbo slot: three 4 KiB UMEM frames, so after XDP's
/// headroom a frame of up to 12,032 bytes (MTU 9000 and more) fits.
pub const JUMBO_SLOT_BYTES: u32 = 3 * 4096;

impl AfXdpConfig {
    /// The largest frame one UMEM frame holds after the headroom.
    pub fn max_frame(&self) -> u32 {
        self.frame_size
            .saturating_sub(XDP_PACKET_HEADROOM + self.headroom)
    }

    /// The largest frame a jumbo slot holds after the headroom: what a
    /// multi-buffer socket receives whole.
    pub fn max_jumbo_frame(&self) -> u32 {
        JUMBO_SLOT_BYTES.saturating_sub(XDP_PACKET_HEADROOM + self.headroom)
    }

    /// UMEM frames per jumbo slot.
    fn slot_frames(&self) -> u32 {
        JUMBO_SLOT_BYTES / self.frame_size
    }
}

impl Default for AfXdpConfig {
    fn default() -> Self {
        AfXdpConfig {
            frame_size: 4096,
            frame_count: 4096,
            ring_size: 2048,
            headroom: 0,
            need_wakeup: true,
            force_copy: false,
            multi_buffer: true,
            jumbo_slots: 512,
        }
    }
}

/// How the socket ended up bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// The driver DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies between its buffers and the UMEM (veth, generic XDP).
    Copy,
}

/// Userspace counters of one socket (kernel ones: [`AfXdp::kernel_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfXdpStats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Tx-verdict frames dropped because the tx ring was full.
    pub tx_ring_full: u64,
    /// sendto() calls made because the tx ring asked for a wakeup.
    pub tx_kicks: u64,
    /// sendto() calls that failed with something other than EAGAIN/EBUSY.
    pub tx_kick_errors: u64,
    /// recvfrom() calls made because the fill ring asked for a wakeup.
    pub fill_wakeups: u64,
    /// Frames that arrived as descriptor chains and were gathered into a
    /// jumbo slot.
    pub rx_chains: u64,
    /// Chains dropped: no jumbo slot free, or longer than a slot holds.
    pub rx_chains_dropped: u64,
}

/// A UMEM and its free frames, shared by the sockets bound to it.
struct Frames {
    umem: Umem,
    pool: RefCell<FramePool>,
    /// Where the jumbo slots begin: a frame below never spans two UMEM
    /// frames.
    jumbo_base: u64,
    /// Bytes a jumbo slot's frame has after the headroom.
    jumbo_room: u32,
    /// The headroom the kernel leaves in front of received data.
    headroom: u32,
}

/// An AF_XDP socket bound to one queue of one interface.
pub struct AfXdp {
    // Field order is drop order: rings unmap, then the socket closes (the
    // kernel unpins the UMEM), then the UMEM unmaps with the last socket
    // sharing it.
    rx: ConsRing<XdpDesc>,
    tx: ProdRing<XdpDesc>,
    fill: ProdRing<u64>,
    comp: ConsRing<u64>,
    fd: OwnedFd,
    frames: Rc<Frames>,
    ifname: String,
    ifindex: u32,
    queue: u32,
    mode: BindMode,
    need_wakeup: bool,
    /// Bound with XDP_USE_SG (shared sockets: as their UMEM's first).
    multi_buffer: bool,
    stats: AfXdpStats,
}

// SAFETY: the raw pointers inside point into mappings this value owns; it
// moves to a worker thread whole and is used from one thread at a time.
// The `Rc` is shared only with sockets made by `open_shared`, whose
// contract keeps all of them on one thread together.
unsafe impl Send for AfXdp {}

impl AfXdp {
    /// Opens a socket on `ifname` queue `queue`: zero-copy if the driver
    /// has it (unless `cfg.force_copy`), copy mode otherwise. Frames only
    /// arrive once an XDP program redirects to it: see
    /// [`XdpSteering::register`](super::XdpSteering::register).
    pub fn open(ifname: &str, queue: u32, cfg: &AfXdpConfig) -> Result<AfXdp, AfXdpError> {
        validate(cfg)?;
        let idx = ifindex(ifname)?;
        if !cfg.force_copy {
            match AfXdp::open_mode(ifname, idx, queue, cfg, BindMode::ZeroCopy) {
                Ok(s) => return Ok(s),
                Err(AfXdpError::XdpNotSupported { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        AfXdp::open_mode(ifname, idx, queue, cfg, BindMode::Copy)
    }

    fn open_mode(
        ifname: &str,
        idx: u32,
        queue: u32,
        cfg: &AfXdpConfig,
        mode: BindMode,
    ) -> Result<AfXdp, AfXdpError> {
        // SAFETY: plain socket(2); the fd is owned right below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(AfXdpError::last_os("socket(AF_XDP)"));
        }
        // SAFETY: raw is a new fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let slot_frames = cfg.slot_frames();
        let umem = Umem::new(
            cfg.frame_size,
            cfg.frame_count + cfg.jumbo_slots * slot_frames,
        )?;
        umem.register(raw, cfg.headroom)?;
        let frames = Rc::new(Frames {
            pool: RefCell::new(FramePool::with_jumbo(
                cfg.frame_size,
                cfg.frame_count,
                cfg.jumbo_slots,
                slot_frames,
            )),
            umem,
            jumbo_base: cfg.frame_count as u64 * cfg.frame_size as u64,
            jumbo_room: cfg.max_jumbo_frame(),
            headroom: XDP_PACKET_HEADROOM + cfg.headroom,
        });
        let mut s = AfXdp::with_rings(fd, frames, ifname, idx, queue, cfg, mode)?;
        // Fill before bind so the first packets find buffers.
        s.refill();
        s.multi_buffer = cfg.multi_buffer && cfg.jumbo_slots > 0;
        if let Err(e) = s.bind(mode) {
            // A kernel without multi-buffer AF_XDP (before 6.6), or a
            // zero-copy driver without it, refuses the flag: bind without.
            if !s.multi_buffer {
                return Err(e);
            }
            s.multi_buffer = false;
            s.bind(mode)?;
        }
        if mode == BindMode::ZeroCopy && !s.kernel_zero_copy() {
            s.mode = BindMode::Copy;
        }
        Ok(s)
    }

    /// Opens a socket on `ifname` queue `queue` bound to `primary`'s UMEM
    /// (XDP_SHARED_UMEM, another device allowed), with its own fill and
    /// completion rings and frames from the same pool, so either socket
    /// transmits frames the other received in place
    /// ([`AfXdp::tx_in_place`]). The mode (copy, zero-copy) and need_wakeup
    /// follow `primary`; `cfg` gives the ring sizes. Size `primary`'s
    /// `frame_count` for every socket that will share it.
    ///
    /// # Safety
    /// The sockets sharing a UMEM share a non-atomic reference count and
    /// free list: `primary`, the new socket and every other socket sharing
    /// them must stay on one thread (move between threads only all together,
    /// as one worker's ports do) and be dropped there.
    pub unsafe fn open_shared(
        ifname: &str,
        queue: u32,
        cfg: &AfXdpConfig,
        primary: &AfXdp,
    ) -> Result<AfXdp, AfXdpError> {
        validate(cfg)?;
        let idx = ifindex(ifname)?;
        // SAFETY: plain socket(2); the fd is owned right below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(AfXdpError::last_os("socket(AF_XDP)"));
        }
        // SAFETY: raw is a new fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let frames = Rc::clone(&primary.frames);
        let mut s = AfXdp::with_rings(fd, frames, ifname, idx, queue, cfg, primary.mode)?;
        s.need_wakeup = primary.need_wakeup;
        s.multi_buffer = primary.multi_buffer;
        s.refill();
        s.bind_shared(primary.fd.as_raw_fd())?;
        Ok(s)
    }

    /// Sizes and maps the four rings of socket `fd`.
    fn with_rings(
        fd: OwnedFd,
        frames: Rc<Frames>,
        ifname: &str,
        idx: u32,
        queue: u32,
        cfg: &AfXdpConfig,
        mode: BindMode,
    ) -> Result<AfXdp, AfXdpError> {
        let raw = fd.as_raw_fd();
        for opt in [
            XDP_UMEM_FILL_RING,
            XDP_UMEM_COMPLETION_RING,
            XDP_RX_RING,
            XDP_TX_RING,
        ] {
            set_u32(raw, opt, cfg.ring_size, "setsockopt(XDP ring size)")?;
        }
        // Copy mode sends 32 frames per kick by default, so a full burst
        // took eight sendto() calls; one burst per kick where the kernel
        // has the option (6.17), the default elsewhere.
        let budget = cfg.ring_size.min(MAX_BURST as u32);
        let _ = set_u32(
            raw,
            XDP_MAX_TX_SKB_BUDGET,
            budget,
            "setsockopt(XDP_MAX_TX_SKB_BUDGET)",
        );
        let off = mmap_offsets(raw)?;
        let rx = ConsRing::map(raw, &off.rx, cfg.ring_size, XDP_PGOFF_RX_RING)?;
        let tx = ProdRing::map(raw, &off.tx, cfg.ring_size, XDP_PGOFF_TX_RING)?;
        let fill = ProdRing::map(raw, &off.fr, cfg.ring_size, XDP_UMEM_PGOFF_FILL_RING)?;
        let comp = ConsRing::map(raw, &off.cr, cfg.ring_size, XDP_UMEM_PGOFF_COMPLETION_RING)?;
        Ok(AfXdp {
            rx,
            tx,
            fill,
            comp,
            fd,
            frames,
            ifname: ifname.to_owned(),
            ifindex: idx,
            queue,
            mode,
            need_wakeup: cfg.need_wakeup,
            multi_buffer: false,
            stats: AfXdpStats::default(),
        })
    }

    fn bind_shared(&self, primary_fd: RawFd) -> Result<(), AfXdpError> {
        let sa = SockaddrXdp {
            family: libc::AF_XDP as u16,
            flags: XDP_SHARED_UMEM,
            ifindex: self.ifindex,
            queue_id: self.queue,
            shared_umem_fd: primary_fd as u32,
        };
        // SAFETY: sa is a live sockaddr_xdp and its size is passed with it.
        let r = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&sa as *const SockaddrXdp).cast(),
                std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        Err(match e.raw_os_error() {
            Some(libc::ENODEV) => AfXdpError::InterfaceNotFound(self.ifname.clone()),
            _ => AfXdpError::from_io("bind(AF_XDP, XDP_SHARED_UMEM)", e),
        })
    }

    fn bind(&self, mode: BindMode) -> Result<(), AfXdpError> {
        let mut flags = match mode {
            BindMode::ZeroCopy => XDP_ZEROCOPY,
            BindMode::Copy => XDP_COPY,
        };
        if self.need_wakeup {
            flags |= XDP_USE_NEED_WAKEUP;
        }
        if self.multi_buffer {
            flags |= XDP_USE_SG;
        }
        let sa = SockaddrXdp {
            family: libc::AF_XDP as u16,
            flags,
            ifindex: self.ifindex,
            queue_id: self.queue,
            shared_umem_fd: 0,
        };
        // SAFETY: sa is a live sockaddr_xdp and its size is passed with it.
        let r = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&sa as *const SockaddrXdp).cast(),
                std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        Err(match (mode, e.raw_os_error()) {
            (BindMode::ZeroCopy, Some(libc::EOPNOTSUPP | libc::EINVAL | libc::EPROTONOSUPPORT)) => {
                AfXdpError::XdpNotSupported {
                    op: "bind(AF_XDP, zero-copy)",
                    ifname: self.ifname.clone(),
                    source: e,
                }
            }
            (BindMode::Copy, Some(libc::EINVAL)) => AfXdpError::NoSuchQueue {
                ifname: self.ifname.clone(),
                queue: self.queue,
            },
            (_, Some(libc::ENODEV)) => AfXdpError::InterfaceNotFound(self.ifname.clone()),
            _ => AfXdpError::from_io("bind(AF_XDP)", e),
        })
    }

    fn kernel_zero_copy(&self) -> bool {
        let mut v: u32 = 0;
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: v and len are live and sized for XDP_OPTIONS' u32.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_XDP,
                XDP_OPTIONS,
                (&mut v as *mut u32).cast(),
                &mut len,
            )
        };
        r == 0 && v & XDP_OPTIONS_ZEROCOPY != 0
    }

    pub fn mode(&self) -> BindMode {
        self.mode
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn frame_size(&self) -> u32 {
        self.frames.umem.frame_size()
    }

    pub fn stats(&self) -> AfXdpStats {
        self.stats
    }

    /// Whether frames larger than a UMEM frame are received (gathered into
    /// jumbo slots) and sent: bound with XDP_USE_SG.
    pub fn multi_buffer(&self) -> bool {
        self.multi_buffer
    }

    /// Jumbo slots free now, and in all (shared with the UMEM's sockets).
    pub fn jumbo_slots_free(&self) -> (usize, usize) {
        self.frames.pool.borrow().jumbo_free()
    }

    /// Frames currently in the UMEM's pool (neither in a ring nor a
    /// batch); shared with the sockets sharing the UMEM.
    pub fn free_frames(&self) -> usize {
        self.frames.pool.borrow().free()
    }

    /// Frames of the UMEM in all (its pool, rings and batches).
    pub fn umem_frames(&self) -> usize {
        self.frames.pool.borrow().total()
    }

    /// Whether `other` transmits this socket's frames in place.
    pub fn shares_umem_with(&self, other: &AfXdp) -> bool {
        Rc::ptr_eq(&self.frames, &other.frames)
    }

    /// The kernel's drop counters for this socket.
    pub fn kernel_stats(&self) -> Result<XdpStatistics, AfXdpError> {
        let mut st = XdpStatistics::default();
        let mut len = std::mem::size_of::<XdpStatistics>() as libc::socklen_t;
        // SAFETY: st and len are live and sized for the kernel's struct.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_XDP,
                XDP_STATISTICS,
                (&mut st as *mut XdpStatistics).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(AfXdpError::last_os("getsockopt(XDP_STATISTICS)"));
        }
        Ok(st)
    }

    /// Moves free frames into the fill ring, as many as fit.
    fn refill(&mut self) {
        let mut pool = self.frames.pool.borrow_mut();
        let want = pool.free() as u32;
        if want == 0 {
            return;
        }
        let n = self.fill.free(want).min(want);
        for i in 0..n {
            let addr = pool.take().expect("n <= free frames");
            self.fill.write(i, addr);
        }
        self.fill.submit(n);
    }

    /// Takes transmitted frames back from the completion ring.
    fn reap_completions(&mut self) {
        let n = self.comp.available(self.comp.size());
        let mut pool = self.frames.pool.borrow_mut();
        for i in 0..n {
            pool.give(self.comp.read(i));
        }
        drop(pool);
        self.comp.release(n);
    }

    /// Asks the kernel to process the tx ring. Copy mode sends at most a
    /// small batch (32 frames) per call and answers EAGAIN while more are
    /// left, so keep kicking, boundedly.
    fn kick_tx(&mut self, pending: u32) {
        for _ in 0..pending / 16 + 2 {
            self.stats.tx_kicks += 1;
            // SAFETY: a zero-length sendto with no buffer: only a wakeup.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r >= 0 {
                return;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => continue,
                // The device is busy or the driver is still draining: the
                // frames stay on the ring for the next kick.
                Some(libc::EBUSY) | Some(libc::ENOBUFS) => return,
                _ => {
                    self.stats.tx_kick_errors += 1;
                    return;
                }
            }
        }
    }

    fn wake_fill(&mut self) {
        self.stats.fill_wakeups += 1;
        // SAFETY: a zero-length non-blocking recvfrom: only a wakeup.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Puts frames `idx` of `batch` (received on any socket sharing this
    /// UMEM) on this socket's tx ring as they are, no copy; their
    /// completions come back here and go to the shared pool. Returns how
    /// many went out: a prefix of `idx`, shorter when the ring is full (the
    /// rest stay the caller's). None when `batch` is not in this UMEM.
    pub fn tx_in_place(&mut self, batch: &Batch, idx: &[u16]) -> Option<u32> {
        if !self.owns(batch) {
            return None;
        }
        let descs = batch.descs();
        let wanted: u32 = idx.iter().map(|&i| self.tx_descs(&descs[i as usize])).sum();
        let mut room = self.tx.free(wanted).min(wanted);
        let mut used = 0;
        let mut sent = 0;
        for &i in idx {
            let d = &descs[i as usize];
            if self.tx_descs(d) > room {
                break;
            }
            let n = self.write_tx(used, d);
            used += n;
            room -= n;
            sent += 1;
        }
        self.tx.submit(used);
        if used > 0 && (!self.need_wakeup || self.tx.needs_wakeup()) {
            self.kick_tx(used);
        }
        self.stats.tx_frames += sent as u64;
        self.stats.tx_ring_full += (idx.len() - sent) as u64;
        self.reap_completions();
        self.refill();
        Some(sent as u32)
    }

    /// Tx ring descriptors frame `d` takes: one per UMEM frame it spans,
    /// which is more than one only for a jumbo slot's frame.
    #[inline]
    fn tx_descs(&self, d: &FrameDesc) -> u32 {
        if d.offset < self.frames.jumbo_base {
            return 1;
        }
        let size = self.frames.umem.frame_size() as u64;
        let last = d.offset + (d.len.min(d.cap).max(1) as u64) - 1;
        (last / size - d.offset / size + 1) as u32
    }

    /// Writes frame `d` to the tx ring from entry `at`, as
    /// [`tx_descs`](Self::tx_descs) descriptors split at UMEM frame
    /// boundaries (XDP_PKT_CONTD on all but the last: a jumbo slot's
    /// frames are adjacent, so the frame's bytes need no copy). Returns how
    /// many entries it wrote.
    fn write_tx(&mut self, at: u32, d: &FrameDesc) -> u32 {
        let mut len = d.len.min(d.cap);
        if d.offset < self.frames.jumbo_base {
            self.tx.write(
                at,
                XdpDesc {
                    addr: d.offset,
                    len,
                    options: 0,
                },
            );
            return 1;
        }
        let mut addr = d.offset;
        let mut n = 0;
        loop {
            let part = len.min(self.frames.umem.room_after(addr));
            len -= part;
            let options = if len > 0 { XDP_PKT_CONTD } else { 0 };
            self.tx.write(
                at + n,
                XdpDesc {
                    addr,
                    len: part,
                    options,
                },
            );
            n += 1;
            addr += part as u64;
            if len == 0 {
                break;
            }
        }
        self.frames.pool.borrow_mut().sent_as(d.offset, n);
        n
    }

    /// Gathers the chain of `n` rx descriptors from entry `first` (one
    /// frame larger than a UMEM frame) into a jumbo slot and adds it to
    /// `batch`; the chain's UMEM frames go back to the pool. Dropped,
    /// counted, when no slot is free or the frame is longer than a slot.
    fn gather(&mut self, first: u32, n: u32, batch: &mut Batch) {
        let total: u64 = (first..first + n).map(|i| self.rx.read(i).len as u64).sum();
        let mut pool = self.frames.pool.borrow_mut();
        let slot = if total <= self.frames.jumbo_room as u64 {
            pool.take_jumbo()
        } else {
            None
        };
        let Some(slot) = slot else {
            for i in first..first + n {
                pool.give(self.rx.read(i).addr);
            }
            self.stats.rx_chains_dropped += 1;
            return;
        };
        let start = slot + self.frames.headroom as u64;
        let mut at = start;
        let base = self.frames.umem.base();
        for i in first..first + n {
            let d = self.rx.read(i);
            // SAFETY: both ranges lie in the UMEM (the kernel's descriptor
            // was checked against it below; the slot holds `total` bytes
            // after the headroom), the chain's frames are ours until given
            // back, and a slot never overlaps a single frame.
            let in_umem = d.addr + d.len as u64 <= self.frames.jumbo_base;
            if in_umem {
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        base.add(d.addr as usize),
                        base.add(at as usize),
                        d.len as usize,
                    )
                };
            }
            at += d.len as u64;
            pool.give(d.addr);
        }
        drop(pool);
        let desc = FrameDesc {
            offset: start,
            len: total as u32,
            cap: self.frames.jumbo_room,
            tag: self.queue,
            offload: Default::default(),
        };
        if batch.push(desc) {
            self.stats.rx_chains += 1;
        } else {
            self.frames.pool.borrow_mut().give(start);
            self.stats.rx_chains_dropped += 1;
        }
    }

    /// Entries in the chain starting at rx entry `first`, reading more of
    /// the ring (`seen` entries so far) when it runs past them. None when
    /// its end is not there: the kernel publishes whole packets, so only a
    /// broken ring gets here.
    fn chain_len(&mut self, first: u32, seen: &mut u32) -> Option<u32> {
        let mut i = first;
        loop {
            if i >= *seen {
                *seen = self.rx.available(self.rx.size());
                if i >= *seen {
                    return None;
                }
            }
            if self.rx.read(i).options & XDP_PKT_CONTD == 0 {
                return Some(i - first + 1);
            }
            i += 1;
        }
    }

    /// Whether `batch`'s frames are in our UMEM (an empty batch holds
    /// nothing of anyone's). Batch does not expose its base, so derive it
    /// from the first frame.
    fn owns(&self, batch: &Batch) -> bool {
        match batch.descs().first() {
            None => true,
            Some(d) => {
                batch.frame(0).as_ptr().wrapping_sub(d.offset as usize)
                    == self.frames.umem.base().cast_const()
            }
        }
    }
}

impl PacketIo for AfXdp {
    /// Frames left in `batch` from an earlier rx_burst without a tx_burst
    /// are recycled (as if dropped) rather than leaked.
    fn rx_burst(&mut self, batch: &mut Batch, max: usize) -> usize {
        if self.owns(batch) {
            let mut pool = self.frames.pool.borrow_mut();
            for d in batch.descs() {
                pool.give(d.offset);
            }
        }
        // SAFETY: the UMEM lives as long as self; frames handed to the
        // batch are owned by neither the kernel nor our free list until
        // tx_burst takes them back.
        unsafe { batch.reset(self.frames.umem.base(), self.frames.umem.len()) };
        self.reap_completions();
        self.refill();

        let room = max.min(MAX_BURST);
        let mut seen = self.rx.available(room as u32);
        let mut n = 0;
        while n < seen && batch.len() < room {
            let d = self.rx.read(n);
            if d.options & XDP_PKT_CONTD != 0 {
                // A frame larger than a UMEM frame (multi-buffer).
                match self.chain_len(n, &mut seen) {
                    Some(len) => {
                        self.gather(n, len, batch);
                        n += len;
                        continue;
                    }
                    None => break,
                }
            }
            n += 1;
            let desc = FrameDesc {
                offset: d.addr,
                len: d.len,
                cap: self.frames.umem.room_after(d.addr),
                tag: self.queue,
                offload: Default::default(),
            };
            // A descriptor reaching past the single frames is not one the
            // kernel hands out: never give out memory we do not own.
            if d.addr + d.len as u64 > self.frames.jumbo_base || !batch.push(desc) {
                self.frames.pool.borrow_mut().give(d.addr);
            }
        }
        self.rx.release(n);
        self.stats.rx_frames += batch.len() as u64;
        if n > 0 {
            self.refill();
        } else if self.need_wakeup && self.fill.needs_wakeup() {
            self.wake_fill();
        }
        batch.len()
    }

    /// Tx-verdict frames go on the tx ring in place (the port index is not
    /// consulted: one socket is one port). Pass and Drop frames return to
    /// the fill ring: a Pass frame cannot be re-injected into the kernel
    /// from here, which is why the XDP program only steers service traffic.
    fn tx_burst(&mut self, batch: &mut Batch) -> TxStats {
        let mut st = TxStats::default();
        if !self.owns(batch) {
            batch.clear();
            return st;
        }
        let wanted: u32 = batch
            .descs()
            .iter()
            .zip(batch.verdicts())
            .filter(|(_, v)| matches!(v, Verdict::Tx(_)))
            .map(|(d, _)| self.tx_descs(d))
            .sum();
        let mut room = self.tx.free(wanted).min(wanted);
        let mut used = 0;
        for (d, v) in batch.descs().iter().zip(batch.verdicts()) {
            match v {
                Verdict::Tx(_) if self.tx_descs(d) <= room => {
                    let n = self.write_tx(used, d);
                    used += n;
                    room -= n;
                    st.sent += 1;
                }
                Verdict::Tx(_) => {
                    st.dropped += 1;
                    self.frames.pool.borrow_mut().give(d.offset);
                }
                _ => self.frames.pool.borrow_mut().give(d.offset),
            }
        }
        self.tx.submit(used);
        if used > 0 && (!self.need_wakeup || self.tx.needs_wakeup()) {
            self.kick_tx(used);
        }
        self.stats.tx_frames += st.sent as u64;
        self.stats.tx_ring_full += st.dropped as u64;
        batch.clear();
        self.reap_completions();
        self.refill();
        st
    }

    fn kind(&self) -> &'static str {
        "af_xdp"
    }

    /// A UMEM frame after XDP's headroom, or a jumbo slot's when bound
    /// for multi-buffer: what rx can hand over (the caller's extra
    /// headroom, 0 by default, is not subtracted: an upper bound).
    fn max_frame(&self) -> usize {
        if self.multi_buffer {
            return self.frames.jumbo_room as usize;
        }
        self.frames
            .umem
            .room_after(0)
            .saturating_sub(XDP_PACKET_HEADROOM) as usize
    }

    /// From XDP_STATISTICS; a socket whose statistics cannot be read
    /// reports none rather than failing the shutdown.
    fn io_stats(&mut self) -> IoStats {
        let k = self.kernel_stats().unwrap_or_default();
        IoStats {
            rx_ring_drops: k.rx_ring_full + k.rx_dropped,
            rx_fill_empty: k.rx_fill_ring_empty_descs,
            rx_skipped: k.rx_invalid_descs + self.stats.rx_chains_dropped,
            rx_csum_unfixed: 0,
            rx_gso: 0,
            rx_multi_buffer: self.stats.rx_chains,
        }
    }
}

impl AsRawFd for AfXdp {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn validate(cfg: &AfXdpConfig) -> Result<(), AfXdpError> {
    if !cfg.ring_size.is_power_of_two() || cfg.ring_size < 64 {
        return Err(AfXdpError::Config(format!(
            "ring size {} must be a power of two >= 64",
            cfg.ring_size
        )));
    }
    if cfg.frame_count < 2 * MAX_BURST as u32 {
        return Err(AfXdpError::Config(format!(
            "frame count {} is below {} (two bursts)",
            cfg.frame_count,
            2 * MAX_BURST
        )));
    }
    if cfg.headroom + XDP_PACKET_HEADROOM + 1514 > cfg.frame_size {
        return Err(AfXdpError::Config(format!(
            "headroom {} leaves no room for a 1514-byte frame in {}-byte frames",
            cfg.headroom, cfg.frame_size
        )));
    }
    Ok(())
}

fn set_u32(fd: RawFd, opt: libc::c_int, v: u32, op: &'static str) -> Result<(), AfXdpError> {
    // SAFETY: v is a live u32 and its size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            opt,
            (&v as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(AfXdpError::last_os(op));
    }
    Ok(())
}

fn mmap_offsets(fd: RawFd) -> Result<MmapOffsets, AfXdpError> {
    let mut off = MmapOffsets::default();
    let mut len = std::mem::size_of::<MmapOffsets>() as libc::socklen_t;
    // SAFETY: off and len are live and sized for xdp_mmap_offsets.
    let r = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_MMAP_OFFSETS,
            (&mut off as *mut MmapOffsets).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(AfXdpError::last_os("getsockopt(XDP_MMAP_OFFSETS)"));
    }
    if len as usize != std::mem::size_of::<MmapOffsets>() {
        return Err(AfXdpError::Config(format!(
            "kernel returned {len}-byte ring offsets (pre-5.4 layout without flags); a newer kernel is needed"
        )));
    }
    Ok(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_problem() {
        let ok = AfXdpConfig::default();
        assert!(validate(&ok).is_ok());
        let bad = AfXdpConfig {
            ring_size: 1000,
            ..ok.clone()
        };
        assert!(validate(&bad)
            .unwrap_err()
            .to_string()
            .contains("power of two"));
        let bad = AfXdpConfig {
            frame_count: 10,
            ..ok.clone()
        };
        assert!(validate(&bad)
            .unwrap_err()
            .to_string()
            .contains("frame count"));
        let bad = AfXdpConfig {
            frame_size: 2048,
            headroom: 512,
            ..ok
        };
        assert!(validate(&bad).unwrap_err().to_string().contains("headroom"));
    }

    #[test]
    fn opening_a_missing_interface_says_so() {
        let e = AfXdp::open("vgx-missing0", 0, &AfXdpConfig::default())
            .err()
            .unwrap();
        assert!(matches!(e, AfXdpError::InterfaceNotFound(_)), "{e}");
    }
}
