//! What becomes of every packet, and why packets are dropped.
//!
//! A drop reason is a counter index: the hot path never formats or allocates.

/// The fate of one frame after the pipeline has seen it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Transmit the (rewritten) frame on the port with this index. In replay
    /// there is one port (0); a gateway routing between a client-side and a
    /// backend-side interface has two.
    Tx(u8),
    /// Not ours: hand it to the kernel unchanged (ARP, SSH, non-service traffic).
    Pass,
    /// Dropped, counted under the reason.
    Drop(DropReason),
}

/// Why a packet was dropped. The discriminant indexes the drop counters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum DropReason {
    /// Truncated or inconsistent headers.
    Malformed = 0,
    /// TTL / hop limit would reach zero.
    TtlExceeded,
    /// New flow refused: conntrack full of live established flows.
    ConntrackFull,
    /// IP fragment to a VIP that cannot be translated: a later fragment
    /// whose first fragment was not seen (or not translated, or came after
    /// it), or a first fragment too short to hold its ports.
    Fragment,
    /// ICMP error about a flow we do not track.
    IcmpUntracked,
    /// The next hop's MAC address is not known yet.
    NoNeighbour,
    /// The transmit ring was full.
    TxFull,
    /// The frame's L4 checksum was left to offload (partial) and could not
    /// be completed: NATed and sent, it would leave with a wrong checksum.
    BadChecksumOffload,
    /// A TCP RST to a Service without endpoints: a RST is never answered
    /// (see `Pipeline::reject`), so the segment ends here.
    RstNoEndpoints,
    /// A new flow to a Service whose `Local` traffic policy leaves no
    /// endpoint on this node while it has some elsewhere: kube-proxy drops
    /// it (a reject would tell the client the Service is down).
    NoLocalEndpoints,
    /// A new flow to a load-balancer IP from a client outside the Service's
    /// `loadBalancerSourceRanges`: kube-proxy drops it.
    SourceRange,
    /// An SCTP packet other than an INIT to a VIP port, matching no tracked
    /// association: only an INIT opens one (as only a SYN would for TCP
    /// without loose pickup), and a backend would not know the rest.
    SctpNoAssociation,
    /// An SCTP ABORT, SHUTDOWN COMPLETE or (COOKIE) ERROR to a Service
    /// without endpoints: never answered (RFC 9260 8.4), so it ends here.
    SctpNoEndpointsUnanswered,
    /// A new flow that needed source NAT (its Service forwards with snat,
    /// it is a hairpin, or its DNAT reply tuple was taken) found no free
    /// port in this worker's share of the pool for its backend, or no
    /// source-NAT address of its family: never a reused live tuple.
    SnatExhausted,
}

impl DropReason {
    pub const COUNT: usize = 14;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::TtlExceeded,
        DropReason::ConntrackFull,
        DropReason::Fragment,
        DropReason::IcmpUntracked,
        DropReason::NoNeighbour,
        DropReason::TxFull,
        DropReason::BadChecksumOffload,
        DropReason::RstNoEndpoints,
        DropReason::NoLocalEndpoints,
        DropReason::SourceRange,
        DropReason::SctpNoAssociation,
        DropReason::SctpNoEndpointsUnanswered,
        DropReason::SnatExhausted,
    ];

    /// The name used in counters, JSON and reports.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::ConntrackFull => "conntrack_full",
            DropReason::Fragment => "fragment",
            DropReason::IcmpUntracked => "icmp_untracked",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::TxFull => "tx_full",
            DropReason::BadChecksumOffload => "bad_checksum_offload",
            DropReason::RstNoEndpoints => "rst_no_endpoints",
            DropReason::NoLocalEndpoints => "no_local_endpoints",
            DropReason::SourceRange => "source_range",
            DropReason::SctpNoAssociation => "sctp_no_association",
            DropReason::SctpNoEndpointsUnanswered => "sctp_no_endpoints_unanswered",
            DropReason::SnatExhausted => "snat_ports_exhausted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_at_its_index() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.name());
        }
    }
}
