//! An owned memory mapping: the kernel's rx ring, or our anonymous frame arena.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;

/// A mapping unmapped on drop. Raw pointer only: the kernel writes the ring
/// concurrently, so Rust references must never cover it as a whole.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; which thread
// touches it is governed by the owner (one worker at a time).
unsafe impl Send for Mapping {}

impl Mapping {
    /// Anonymous, zeroed, private memory of `len` bytes.
    pub(crate) fn anonymous(len: usize) -> io::Result<Mapping> {
        Self::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
    }

    /// Shared mapping of a packet socket's ring.
    pub(crate) fn packet_ring(fd: RawFd, len: usize) -> io::Result<Mapping> {
        // Ring pages are kernel memory and never swapped; MAP_POPULATE only
        // spares the first pass over the ring its page-table faults.
        Self::map(len, libc::MAP_SHARED | libc::MAP_POPULATE, fd)
    }

    fn map(len: usize, flags: libc::c_int, fd: RawFd) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL) cannot
        // alias any existing Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(Mapping { ptr, len })
    }

    #[inline]
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned, unmapped only here.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
