//! Setup errors of the AF_PACKET backend. Each message names the fix, since
//! the operator reading it is usually starting the gateway by hand.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    #[error(
        "opening an AF_PACKET socket was refused ({0}): run as root or grant CAP_NET_RAW \
         (setcap cap_net_raw,cap_net_admin+ep, or securityContext.capabilities.add: [NET_RAW])"
    )]
    PermissionDenied(io::Error),

    #[error("interface {0:?} not found: check `ip link` in this network namespace")]
    InterfaceNotFound(String),

    #[error("interface name {0:?} is invalid (empty, longer than 15 bytes or contains NUL)")]
    InvalidInterfaceName(String),

    #[error("interface {0:?} is down: `ip link set dev {0} up` first")]
    InterfaceDown(String),

    #[error("invalid AF_PACKET config: {0}")]
    InvalidConfig(String),

    #[error(
        "joining fanout group {group} failed ({source}): every worker of an interface must use \
         the same mode, and the group id must not be used by another interface"
    )]
    Fanout { group: u16, source: io::Error },

    #[error(
        "mapping the {bytes}-byte rx ring failed ({source}): lower block_size/block_count \
         or raise `ulimit -l`"
    )]
    RingMap { bytes: usize, source: io::Error },

    #[error("{what} failed: {source}")]
    Os {
        what: &'static str,
        source: io::Error,
    },
}
