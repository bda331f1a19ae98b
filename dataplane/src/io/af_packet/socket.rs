//! The packet socket itself: creation, options, binding, fanout, statistics.
//! Thin, checked wrappers over the syscalls; policy lives in `mod.rs`.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::error::AfPacketError;

pub(crate) struct PacketSocket {
    fd: OwnedFd,
}

fn eth_p_all() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

/// The interface index of `name` in the caller's network namespace.
pub(crate) fn ifindex(name: &str) -> Result<u32, AfPacketError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(AfPacketError::InvalidInterfaceName(name.into()));
    }
    let c = CString::new(name).map_err(|_| AfPacketError::InvalidInterfaceName(name.into()))?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(AfPacketError::InterfaceNotFound(name.into()));
    }
    Ok(idx)
}

impl PacketSocket {
    /// A raw packet socket that receives nothing yet: protocol 0 until
    /// `bind`, so no packet is queued before the ring exists.
    pub(crate) fn new() -> Result<PacketSocket, AfPacketError> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => AfPacketError::PermissionDenied(e),
                _ => AfPacketError::Os {
                    what: "socket(AF_PACKET, SOCK_RAW)",
                    source: e,
                },
            });
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(PacketSocket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// setsockopt(SOL_PACKET, opt, value) for any plain C value.
    pub(crate) fn set<T>(&self, opt: libc::c_int, value: &T) -> io::Result<()> {
        // SAFETY: value points to size_of::<T>() readable bytes.
        let r = unsafe {
            libc::setsockopt(
                self.raw(),
                libc::SOL_PACKET,
                opt,
                (value as *const T).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(crate) fn set_int(&self, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
        self.set(opt, &v)
    }

    /// SO_SNDBUFFORCE (root), else SO_SNDBUF (capped by wmem_max).
    pub(crate) fn set_sndbuf(&self, bytes: libc::c_int) -> io::Result<()> {
        let set = |opt| {
            // SAFETY: setsockopt reads one int of the size given.
            let r = unsafe {
                libc::setsockopt(
                    self.raw(),
                    libc::SOL_SOCKET,
                    opt,
                    (&bytes as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        set(libc::SO_SNDBUFFORCE).or_else(|_| set(libc::SO_SNDBUF))
    }

    /// Receives every protocol on `ifindex` only.
    pub(crate) fn bind(&self, ifindex: u32) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = eth_p_all();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll of the given length.
        let r = unsafe {
            libc::bind(
                self.raw(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Drop counters since the previous call (the kernel resets them on read).
    pub(crate) fn take_stats(&self) -> io::Result<libc::tpacket_stats_v3> {
        // SAFETY: plain integers; zero is valid.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: st/len describe a writable buffer of the right size.
        let r = unsafe {
            libc::getsockopt(
                self.raw(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if r == 0 {
            Ok(st)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Waits until the ring may hold a block, for at most `timeout_ms`.
    pub(crate) fn poll_in(&self, timeout_ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.raw(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        r > 0
    }
}
