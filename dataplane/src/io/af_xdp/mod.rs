//! AF_XDP backend: a hand-assembled XDP program steers service traffic
//! (VIP ports, backend replies) to AF_XDP sockets and passes everything
//! else to the kernel; each socket has its four rings and a UMEM, its own
//! or one shared with the worker's other sockets (so a frame received on
//! one interface leaves on another without a copy), and implements
//! [`PacketIo`](crate::io::PacketIo) with in-place transmit.
//!
//! Typical use, once per interface:
//! ```no_run
//! # use dataplane::io::af_xdp::*;
//! # use dataplane::addr::{Addr, Proto};
//! let mut steer = XdpSteering::load(&SteeringConfig::default())?;
//! let _link = steer.attach_best("eth0")?; // detaches when dropped
//! let sock = AfXdp::open("eth0", 0, &AfXdpConfig::default())?;
//! steer.register(&sock)?;
//! steer.maps_mut().add_vip(Addr::from_v4([198, 19, 0, 10]), 80, Proto::Tcp)?;
//! # Ok::<(), AfXdpError>(())
//! ```
//! Needs CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW; no clang, libbpf or bpffs.

/// The eBPF instruction encoding and a label-resolving assembler.
pub mod asm;
/// Raw bpf() syscalls: maps, program load, XDP links, test runs.
pub mod bpf;
/// Setup errors with the fix in the message.
pub mod error;
/// Free frames of a UMEM shared by one worker's sockets.
pub mod pool;
/// The steering XDP program, written with the assembler.
pub mod program;
/// Producer/consumer views of the rings shared with the kernel.
pub mod ring;
/// AF_XDP sockets as a burst I/O backend.
pub mod socket;
/// Loading, attaching and feeding the steering program.
pub mod steering;
/// if_xdp.h constants and structs.
pub mod uapi;
/// The frame area registered with a socket.
pub mod umem;

/// The steering program run over hand-built frames (BPF_PROG_TEST_RUN).
#[cfg(test)]
mod steering_tests;

pub use bpf::{AttachMode, XdpLink};
pub use error::AfXdpError;
pub use socket::{AfXdp, AfXdpConfig, AfXdpStats, BindMode};
pub use steering::{SteeringConfig, SteeringMaps, XdpSteering};
