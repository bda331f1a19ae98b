//! Copy-transmit on an interface other than the one a frame arrived on.
//!
//! A frame received on one port lives in that port's memory (an AF_XDP
//! UMEM, an AF_PACKET arena); another port's backend cannot transmit it in
//! place. A plain AF_PACKET socket bound to the egress interface with
//! protocol 0 (it receives nothing) sends such frames in one `sendmmsg`
//! per burst; the kernel copies them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::io::{Batch, MAX_BURST};

/// One egress interface's copy sender, with its message arrays allocated once.
pub struct CopySender {
    fd: OwnedFd,
    msgs: Box<[libc::mmsghdr; MAX_BURST]>,
    iovs: Box<[libc::iovec; MAX_BURST]>,
}

// SAFETY: the raw pointers in `msgs`/`iovs` are only filled and used
// inside `send`, on whichever single thread owns the sender.
unsafe impl Send for CopySender {}

impl CopySender {
    /// A send-only packet socket on `ifindex` (in the caller's netns).
    pub fn open(ifindex: u32) -> io::Result<CopySender> {
        // SAFETY: plain socket(2); checked below. Protocol 0: no rx at all.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
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
        // SAFETY: mmsghdr and iovec are plain data; null/zero is valid
        // until `send` fills them.
        let (msgs, iovs) = unsafe { (Box::new(std::mem::zeroed()), Box::new(std::mem::zeroed())) };
        Ok(CopySender { fd, msgs, iovs })
    }

    /// Sends the frames of `batch` whose index `pick` accepts. Returns
    /// (sent, failed): one retry of the unsent rest, then the rest is failed.
    pub fn send(&mut self, batch: &Batch, pick: impl Fn(usize) -> bool) -> (u32, u32) {
        let mut n = 0;
        for i in 0..batch.len() {
            if !pick(i) {
                continue;
            }
            let f = batch.frame(i);
            self.iovs[n] = libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            };
            n += 1;
        }
        for i in 0..n {
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut sent = 0usize;
        for _attempt in 0..2 {
            if sent == n {
                break;
            }
            // SAFETY: msgs[sent..n] point at iovecs over frames of `batch`,
            // which stay borrowed (alive, unchanged) for this call.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    self.msgs.as_mut_ptr().add(sent),
                    (n - sent) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                continue;
            }
            sent += r as usize;
        }
        (sent as u32, (n - sent) as u32)
    }
}
