//! vipgate's gateway runtime, the library behind `vipgate run`: it owns the
//! sockets, the pinned workers, the service source, the admin endpoint and
//! the XDP steering maps, so the CLI only parses flags and prints, and
//! tests start a gateway without the binary.

/// The gateway as one value: start, serve, shut down.
pub mod gateway;
/// AF_PACKET: an nftables table that keeps the kernel off served node
/// ports and source-NAT replies.
pub mod kernel_guard;
/// Opening sockets per I/O mode, with the AF_XDP -> AF_PACKET fallback.
pub mod ports;
/// Services from a file or the Kubernetes API, published as tables.
pub mod source;
/// XDP steering maps kept equal to the published table.
pub mod steer_sync;
/// Worker threads: built in one handoff group, pinned, run until stopped.
pub mod workers;

pub use gateway::{Ended, Finished, Gateway, GatewayConfig};
pub use ports::{IoMode, PacketRing};
pub use source::ServiceSource;
