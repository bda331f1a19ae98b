//! AF_XDP transmit for `vipgate send`: a tx-only socket with its own UMEM,
//! a tx ring and a completion ring (the kernel also insists on a fill
//! ring, which stays empty). Frames are copied into free UMEM frames, put
//! on the tx ring in bursts and the kernel is kicked with `sendto`; frames
//! come back through the completion ring.
//!
//! The dataplane's `AfXdp` hands out UMEM frames only from rx, so a pure
//! sender needs its own socket; it reuses the dataplane's UMEM and ABI.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dataplane::io::af_xdp::bpf::ifindex;
use dataplane::io::af_xdp::uapi::*;
use dataplane::io::af_xdp::umem::Umem;

use crate::send::{Frames, SendConfig, SendStats};

/// UMEM frame size: a full-size Ethernet frame fits after the headroom.
const FRAME_SIZE: u32 = 2048;
/// UMEM frames, all available to tx.
const FRAME_COUNT: u32 = 4096;
/// Tx and completion ring entries.
const RING: u32 = 2048;
/// The fill ring's size: it must exist, but a sender never fills it.
const FILL_RING: u32 = 64;
/// How long the kernel may take no frame before the send gives up.
const STALL_LIMIT: Duration = Duration::from_secs(2);

/// One mapped ring: producer, consumer, descriptors.
struct Ring<T> {
    map: NonNull<u8>,
    map_len: usize,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
}

impl<T: Copy> Ring<T> {
    fn map(fd: RawFd, off: &RingOffset, size: u32, pgoff: libc::off_t) -> Result<Self, String> {
        let map_len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: mapping the socket's ring region the kernel sized from
        // the ring-size option; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "mmap(xsk ring): {}",
                std::io::Error::last_os_error()
            ));
        }
        let base = p.cast::<u8>();
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS for this very
        // mapping, so each field lies inside it and is suitably aligned.
        unsafe {
            Ok(Ring {
                map: NonNull::new_unchecked(base),
                map_len,
                producer: NonNull::new_unchecked(base.add(off.producer as usize).cast()),
                consumer: NonNull::new_unchecked(base.add(off.consumer as usize).cast()),
                descs: NonNull::new_unchecked(base.add(off.desc as usize).cast()),
                mask: size - 1,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping; the kernel accesses it
        // atomically too.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`.
        unsafe { self.consumer.as_ref() }
    }

    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: the masked index is inside the descriptor array.
        unsafe { self.descs.as_ptr().add((idx & self.mask) as usize) }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped, once.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}

/// The tx-only socket. Field order is drop order: rings, socket, UMEM.
struct XskTx {
    tx: Ring<XdpDesc>,
    comp: Ring<u64>,
    fd: OwnedFd,
    umem: Umem,
    free: Vec<u64>,
    /// Frames on the tx ring or not yet completed.
    in_flight: u32,
}

fn set_u32(fd: RawFd, opt: libc::c_int, v: u32) -> Result<(), String> {
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
        return Err(format!(
            "setsockopt(SOL_XDP, {opt}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

impl XskTx {
    fn open(iface: &str) -> Result<XskTx, String> {
        let idx = ifindex(iface).map_err(|e| e.to_string())?;
        // SAFETY: plain socket(2); owned right below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(format!(
                "socket(AF_XDP): {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: raw is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Umem::new(FRAME_SIZE, FRAME_COUNT).map_err(|e| e.to_string())?;
        umem.register(raw, 0).map_err(|e| e.to_string())?;
        set_u32(raw, XDP_UMEM_FILL_RING, FILL_RING)?;
        set_u32(raw, XDP_UMEM_COMPLETION_RING, RING)?;
        set_u32(raw, XDP_TX_RING, RING)?;
        let mut off = MmapOffsets::default();
        let mut len = std::mem::size_of::<MmapOffsets>() as libc::socklen_t;
        // SAFETY: off and len are live and sized for the kernel's struct.
        let r = unsafe {
            libc::getsockopt(
                raw,
                SOL_XDP,
                XDP_MMAP_OFFSETS,
                (&mut off as *mut MmapOffsets).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(format!(
                "getsockopt(XDP_MMAP_OFFSETS): {}",
                std::io::Error::last_os_error()
            ));
        }
        let tx = Ring::map(raw, &off.tx, RING, XDP_PGOFF_TX_RING)?;
        let comp = Ring::map(raw, &off.cr, RING, XDP_UMEM_PGOFF_COMPLETION_RING)?;
        let s = XskTx {
            tx,
            comp,
            fd,
            free: (0..u64::from(FRAME_COUNT))
                .rev()
                .map(|i| i * u64::from(FRAME_SIZE))
                .collect(),
            umem,
            in_flight: 0,
        };
        let mut last = String::new();
        // Zero-copy where the driver has it, copy mode otherwise (veth).
        for flags in [XDP_ZEROCOPY, XDP_COPY] {
            let sa = SockaddrXdp {
                family: libc::AF_XDP as u16,
                flags: flags | XDP_USE_NEED_WAKEUP,
                ifindex: idx,
                queue_id: 0,
                shared_umem_fd: 0,
            };
            // SAFETY: sa is a live sockaddr_xdp and its size is passed along.
            let r = unsafe {
                libc::bind(
                    raw,
                    (&sa as *const SockaddrXdp).cast(),
                    std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
                )
            };
            if r == 0 {
                return Ok(s);
            }
            last = std::io::Error::last_os_error().to_string();
        }
        Err(format!("bind(AF_XDP) on {iface} queue 0: {last}"))
    }

    /// Takes completed frames back.
    fn reap(&mut self) {
        let prod = self.comp.producer().load(Ordering::Acquire);
        let cons = self.comp.consumer().load(Ordering::Relaxed);
        let n = prod.wrapping_sub(cons);
        for i in 0..n {
            // SAFETY: entries between consumer and producer are published
            // by the kernel and not rewritten until we release them.
            let addr = unsafe { self.comp.slot(cons.wrapping_add(i)).read() };
            self.free.push(addr & !(u64::from(FRAME_SIZE) - 1));
        }
        self.comp
            .consumer()
            .store(cons.wrapping_add(n), Ordering::Release);
        self.in_flight -= n;
    }

    /// Queues up to `frames.len()` frames; returns how many went on the ring.
    fn queue(&mut self, frames: &[&[u8]]) -> usize {
        let prod = self.tx.producer().load(Ordering::Relaxed);
        let cons = self.tx.consumer().load(Ordering::Acquire);
        let room = RING - prod.wrapping_sub(cons);
        let n = frames.len().min(room as usize).min(self.free.len());
        let base = self.umem.base();
        for (i, f) in frames[..n].iter().enumerate() {
            let addr = self.free.pop().expect("n <= free.len()");
            // SAFETY: addr is a free frame of our UMEM (not on any ring),
            // and f fits a frame (Frames keeps frames within the MTU).
            unsafe {
                std::ptr::copy_nonoverlapping(f.as_ptr(), base.add(addr as usize), f.len());
                self.tx.slot(prod.wrapping_add(i as u32)).write(XdpDesc {
                    addr,
                    len: f.len() as u32,
                    options: 0,
                });
            }
        }
        self.tx
            .producer()
            .store(prod.wrapping_add(n as u32), Ordering::Release);
        self.in_flight += n as u32;
        n
    }

    /// Asks the kernel to transmit what is on the ring. Copy mode (veth)
    /// transmits only inside this call, a few dozen frames per call, so
    /// it is made whenever frames are outstanding, need_wakeup or not.
    fn kick(&self) {
        if self.in_flight == 0 {
            return;
        }
        // SAFETY: a zero-length sendto with no buffer is only a wakeup.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
    }
}

/// Sends `frames` on an AF_XDP tx ring, as `cfg` bounds it. A frame counts
/// as sent once the kernel completed it.
pub fn send(frames: &mut Frames, cfg: &SendConfig) -> Result<SendStats, String> {
    if frames.is_empty() {
        return Err("nothing to send".into());
    }
    if (0..frames.len())
        .any(|i| frames.frame(i).len() > (FRAME_SIZE - XDP_PACKET_HEADROOM) as usize)
    {
        return Err(format!(
            "a frame is longer than {} bytes: too big for an AF_XDP frame",
            FRAME_SIZE - XDP_PACKET_HEADROOM
        ));
    }
    let mut x = XskTx::open(&cfg.iface)?;
    let n = frames.len();
    let budget = cfg.budget(n as u64);
    let mut st = SendStats::default();
    let mut queued = 0u64;
    let mut pos = 0usize;
    let mut burst: Vec<&[u8]> = Vec::with_capacity(cfg.burst);
    let t0 = Instant::now();
    let mut last_progress = t0;
    loop {
        let before = x.in_flight;
        x.reap();
        let done = u64::from(before - x.in_flight);
        st.sent += done;
        if done > 0 {
            last_progress = Instant::now();
        }
        let elapsed = t0.elapsed();
        let time_up = cfg.duration.is_some_and(|d| elapsed >= d);
        let budget_done = budget.is_some_and(|b| queued >= b);
        if time_up || budget_done {
            // Let queued frames complete (boundedly) so they are counted.
            if x.in_flight == 0 || last_progress.elapsed() > Duration::from_millis(200) {
                break;
            }
            x.kick();
            std::thread::yield_now();
            continue;
        }
        let mut want = cfg.burst as u64;
        if let Some(b) = budget {
            want = want.min(b - queued);
        }
        if let Some(rate) = cfg.rate_pps {
            let due = (rate * elapsed.as_secs_f64()) as u64 + 1;
            want = want.min(due.saturating_sub(queued));
        }
        burst.clear();
        for k in 0..want as usize {
            burst.push(frames.frame((pos + k) % n));
        }
        let q = if burst.is_empty() { 0 } else { x.queue(&burst) };
        for k in 0..q {
            st.bytes += frames.frame((pos + k) % n).len() as u64;
        }
        let before_pos = pos;
        pos = (pos + q) % n;
        if q > 0 && pos <= before_pos {
            st.loops_done += 1;
        }
        queued += q as u64;
        x.kick();
        if q == 0 {
            if last_progress.elapsed() > STALL_LIMIT && x.in_flight > 0 {
                return Err(format!(
                    "{}: AF_XDP completed no frame for {STALL_LIMIT:?}",
                    cfg.iface
                ));
            }
            std::thread::yield_now();
        }
    }
    st.seconds = t0.elapsed().as_secs_f64();
    // Bytes were counted as queued; frames that never completed are not sent.
    if queued > st.sent && queued > 0 {
        st.bytes = st.bytes * st.sent / queued;
    }
    Ok(st)
}
