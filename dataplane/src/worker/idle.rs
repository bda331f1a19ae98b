//! How an idle worker sleeps on a port until frames may have arrived,
//! instead of spinning a core a 2-core lab needs for its traffic.

use std::os::fd::{AsRawFd, RawFd};

use crate::io::af_packet::AfPacket;
use crate::io::af_xdp::AfXdp;
use crate::io::memory::MemoryIo;

/// A backend an idle worker can wait on.
pub trait IdleWait {
    /// Returns when frames may be ready or after `timeout_ms`.
    fn idle_wait(&mut self, timeout_ms: i32);

    /// A descriptor that turns readable when frames arrive, so that a
    /// worker with several ports waits on all of them in one poll() and
    /// wakes for whichever gets traffic first.
    fn wait_fd(&self) -> Option<RawFd> {
        None
    }
}

/// Waits on every descriptor in `fds` at once (reusing the caller's array:
/// no allocation); returns when one is readable or after `timeout_ms`.
pub fn wait_any(fds: &mut [libc::pollfd], timeout_ms: i32) {
    for p in fds.iter_mut() {
        p.revents = 0;
    }
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
}

impl IdleWait for AfPacket {
    fn idle_wait(&mut self, timeout_ms: i32) {
        self.wait_rx(timeout_ms);
    }

    fn wait_fd(&self) -> Option<RawFd> {
        Some(self.raw_fd())
    }
}

impl IdleWait for AfXdp {
    fn idle_wait(&mut self, timeout_ms: i32) {
        let mut p = libc::pollfd {
            fd: self.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the result only says whether to look.
        unsafe { libc::poll(&mut p, 1, timeout_ms) };
    }

    fn wait_fd(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }
}

impl IdleWait for MemoryIo<'_> {
    fn idle_wait(&mut self, timeout_ms: i32) {
        std::thread::sleep(std::time::Duration::from_millis(timeout_ms.max(0) as u64));
    }
}
