//! Copy-transmit on an interface other than the one a frame arrived on.
//!
//! A frame received on one port lives in that port's memory (an AF_XDP
//! UMEM, an AF_PACKET arena); another port's backend cannot transmit it in
//! place. A plain AF_PACKET socket bound to the egress interface with
//! protocol 0 (it receives nothing) sends such frames in one `sendmmsg`
//! per burst; the kernel copies them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::io::af_packet::TxQueue;
use crate::io::Batch;

/// One egress interface's copy sender, with its message arrays allocated once.
pub struct CopySender {
    fd: OwnedFd,
    queue: TxQueue,
}

impl CopySender {
    /// A send-only packet socket on `ifindex` (in the caller's netns). It
    /// takes a vnet header with each frame where the kernel allows
    /// (PACKET_VNET_HDR), so GSO super-frames and partial checksums that
    /// came in over AF_PACKET leave as they came.
    pub fn open(ifindex: u32) -> io::Result<CopySender> {
        // SAFETY: plain socket(2); checked below. Protocol 0: no rx at all.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let vnet = set_int(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1).is_ok();
        // A super-frame is ~64 KiB of send buffer until the device takes
        // it: give a burst of them room (SNDBUFFORCE as root, else capped).
        let _ = set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SNDBUF)
            .or_else(|_| set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, SNDBUF));
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: binds to a fully initialised sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(CopySender {
            fd,
            queue: TxQueue::new(vnet),
        })
    }

    /// Sends the frames of `batch` whose index `pick` accepts. Returns
    /// (sent, failed): one retry of the unsent rest, then the rest is failed.
    pub fn send(&mut self, batch: &Batch, pick: impl Fn(usize) -> bool) -> (u32, u32) {
        self.queue.send_prefix(self.fd.as_raw_fd(), batch, pick)
    }
}

/// Send buffer of a copy sender, in bytes: a burst of 64 super-frames.
const SNDBUF: libc::c_int = 4 << 20;

fn set_int(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads one int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
