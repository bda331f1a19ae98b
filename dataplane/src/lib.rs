//! vipgate's per-packet path. Nothing here allocates, locks or makes a
//! syscall per packet; nothing here knows Kubernetes or tokio.

/// Addresses (16-byte, v4-mapped), protocols and 5-tuples.
pub mod addr;
/// ClientIP session affinity: each client's backend and last-seen time.
pub mod affinity;
/// Connection tracking: bounded table, TCP state machine, timeouts, eviction.
pub mod conntrack;
/// One declaration per counter (`counter_set!`): help, metric, kind, label.
pub mod counter_decl;
/// Per-worker counters.
pub mod counters;
/// What the pipeline would do with a new flow, and why (`vipgate explain`).
pub mod explain;
/// IP fragments: later fragments follow their first one's owner and NAT.
pub mod fragments;
/// The published table generation: atomically swapped, loaded per burst.
pub mod generation;
/// Stable, seeded hashes shared by every gateway (Maglev, flow picks).
pub mod hash;
/// Burst packet I/O: the backend trait and its implementations.
pub mod io;
/// Maglev consistent-hash tables (Eisenbud et al., NSDI 2016) with weights.
pub mod maglev;
/// Next hops: egress interface, its MAC and the neighbour's, from netlink.
pub mod neigh;
/// The per-packet pipeline: classify, conntrack, Maglev pick, NAT.
pub mod pipeline;
/// Cache prefetch hints, so a burst overlaps its packets' cache misses.
pub mod prefetch;
/// Desired state of a Service port: what `control` hands the dataplane.
pub mod service;
/// Flow ownership: which worker's conntrack a packet belongs to.
pub mod steer;
/// One generation's service table: keys to Maglev rings.
pub mod table;
/// Packet verdicts and drop reasons.
pub mod verdict;
/// Packet classification, checksums and in-place rewrites.
pub mod wire;
/// The `vipgate run` worker loop: poll ports, pipeline, next hop, transmit.
pub mod worker;
