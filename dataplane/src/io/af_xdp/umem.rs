//! The UMEM: one page-aligned anonymous mapping cut into equal frames,
//! registered with an AF_XDP socket. Packets are received into and
//! transmitted from these frames in place.

use std::os::fd::RawFd;
use std::ptr::NonNull;

use super::error::AfXdpError;
use super::uapi::{UmemReg, SOL_XDP, XDP_UMEM_REG};

/// Frame sizes the kernel accepts in aligned mode that also fit an MTU-1500
/// frame after the 256-byte XDP headroom.
pub const FRAME_SIZES: [u32; 2] = [2048, 4096];

/// The frame area. Unmapped on drop, after the socket that pinned it closed.
pub struct Umem {
    area: NonNull<u8>,
    len: usize,
    frame_size: u32,
    frame_count: u32,
}

impl Umem {
    /// Maps `frame_count` frames of `frame_size` bytes.
    pub fn new(frame_size: u32, frame_count: u32) -> Result<Umem, AfXdpError> {
        if !FRAME_SIZES.contains(&frame_size) {
            return Err(AfXdpError::Config(format!(
                "frame size {frame_size} must be one of {FRAME_SIZES:?}"
            )));
        }
        if frame_count == 0 {
            return Err(AfXdpError::Config("frame count must be positive".into()));
        }
        let len = frame_size as usize * frame_count as usize;
        // SAFETY: a fresh anonymous mapping; mmap returns page-aligned memory,
        // which is what XDP_UMEM_REG requires of the area's start.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(AfXdpError::last_os("mmap(umem)"));
        }
        Ok(Umem {
            area: NonNull::new(p.cast()).expect("mmap never returns NULL on success"),
            len,
            frame_size,
            frame_count,
        })
    }

    /// Registers the area with socket `fd` (XDP_UMEM_REG).
    pub fn register(&self, fd: RawFd, headroom: u32) -> Result<(), AfXdpError> {
        let reg = UmemReg {
            addr: self.area.as_ptr() as u64,
            len: self.len as u64,
            chunk_size: self.frame_size,
            headroom,
            flags: 0,
            tx_metadata_len: 0,
        };
        // SAFETY: reg is a live UmemReg and its size is passed with it.
        let r = unsafe {
            libc::setsockopt(
                fd,
                SOL_XDP,
                XDP_UMEM_REG,
                (&reg as *const UmemReg).cast(),
                std::mem::size_of::<UmemReg>() as libc::socklen_t,
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::ENOMEM) => AfXdpError::Memlock { source: e },
                _ => AfXdpError::from_io("setsockopt(XDP_UMEM_REG)", e),
            });
        }
        Ok(())
    }

    #[inline]
    pub fn base(&self) -> *mut u8 {
        self.area.as_ptr()
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
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    #[inline]
    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// The start of the frame holding UMEM address `addr` (aligned mode:
    /// frames are power-of-two sized and start at multiples of their size).
    #[inline]
    pub fn frame_of(&self, addr: u64) -> u64 {
        addr & !(self.frame_size as u64 - 1)
    }

    /// Bytes from `addr` to the end of its frame.
    #[inline]
    pub fn room_after(&self, addr: u64) -> u32 {
        (self.frame_of(addr) + self.frame_size as u64 - addr) as u32
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: area/len came from a successful mmap and are unmapped once.
        unsafe { libc::munmap(self.area.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_page_aligned_and_addressable() {
        let u = Umem::new(2048, 8).unwrap();
        assert_eq!(u.base() as usize % 4096, 0);
        assert_eq!(u.len(), 2048 * 8);
        assert_eq!(u.frame_of(2048 + 256 + 14), 2048);
        assert_eq!(u.room_after(2048 + 256), 2048 - 256);
        assert_eq!(u.room_after(0), 2048);
    }

    #[test]
    fn odd_frame_sizes_are_refused() {
        assert!(matches!(Umem::new(3000, 8), Err(AfXdpError::Config(_))));
        assert!(matches!(Umem::new(2048, 0), Err(AfXdpError::Config(_))));
    }
}
