//! Setup errors of the AF_XDP backend. Each message names the likely fix,
//! because these reach an operator starting the gateway, not a developer.

use std::io;

/// Everything that can go wrong while loading the steering program or
/// opening a socket. Hot-path failures are counted in `TxStats`, never here.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error(
        "{op}: permission denied; run as root or grant CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW"
    )]
    Permission { op: &'static str },

    #[error("interface {0:?} not found in this network namespace; check the name (ip link)")]
    InterfaceNotFound(String),

    #[error("{op} on {ifname}: XDP is not supported in this mode ({source}); try generic (SKB) mode or another driver")]
    XdpNotSupported {
        op: &'static str,
        ifname: String,
        source: io::Error,
    },

    #[error("{ifname} already has an XDP program attached; detach it first (ip link set dev {ifname} xdp off)")]
    AlreadyAttached { ifname: String },

    #[error("queue {queue} does not exist on {ifname}; use a queue below its channel count (ethtool -l)")]
    NoSuchQueue { ifname: String, queue: u32 },

    #[error("UMEM registration failed ({source}); raise RLIMIT_MEMLOCK (ulimit -l) or grant CAP_IPC_LOCK")]
    Memlock { source: io::Error },

    #[error("the kernel verifier rejected the steering program ({source}):\n{log}")]
    Verifier { source: io::Error, log: String },

    #[error("invalid AF_XDP configuration: {0}")]
    Config(String),

    #[error("{op} failed: {source}")]
    Os { op: &'static str, source: io::Error },
}

impl AfXdpError {
    /// Wraps the errno left by a failed syscall, turning EPERM/EACCES into
    /// the capability hint every operator needs first.
    pub(crate) fn last_os(op: &'static str) -> AfXdpError {
        AfXdpError::from_io(op, io::Error::last_os_error())
    }

    pub(crate) fn from_io(op: &'static str, source: io::Error) -> AfXdpError {
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => AfXdpError::Permission { op },
            _ => AfXdpError::Os { op, source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eperm_becomes_a_capability_hint() {
        let e = AfXdpError::from_io("bpf(MAP_CREATE)", io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(e, AfXdpError::Permission { .. }));
        assert!(e.to_string().contains("CAP_BPF"), "{e}");
        let e = AfXdpError::from_io("mmap", io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(matches!(e, AfXdpError::Os { .. }));
    }
}
