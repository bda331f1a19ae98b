//! Wire-level helpers on top of `smoltcp::wire`: classification, incremental
//! checksums, in-place NAT rewrites and generated answers (RST, ICMP, SCTP ABORT).

/// Internet checksums: RFC 1624 incremental updates and RFC 1071 sums.
pub mod checksum;
/// In-place NAT rewrites: endpoints, TTL, ICMP errors about NATed flows.
pub mod nat;
/// The classify step: validate headers once, record offsets and fields.
pub mod parse;
/// Generated answers for Services without endpoints: TCP RST, SCTP ABORT,
/// ICMP unreachable.
pub mod reject;
/// SCTP: common header, chunk summary, CRC32c.
pub mod sctp;
