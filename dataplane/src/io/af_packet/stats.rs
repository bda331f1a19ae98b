//! Counters of one AF_PACKET socket.

/// Rx-side counters kept by the burst loop (plain integers: one worker owns
/// the socket).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RxCounters {
    pub packets: u64,
    pub oversize: u64,
    pub csum_partial: u64,
    pub csum_unfixed: u64,
    pub outgoing_skipped: u64,
    pub ring_errors: u64,
    /// GSO super-frames received whole (vnet header).
    pub gso: u64,
    /// Frames skipped because their offload state cannot be carried.
    pub offload_skipped: u64,
}

/// What one socket has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Frames handed to the pipeline.
    pub rx_packets: u64,
    /// Packets the kernel dropped because the rx ring was full
    /// (PACKET_STATISTICS `tp_drops`): the worker is too slow or the ring
    /// too small.
    pub rx_kernel_drops: u64,
    /// Times the kernel found the ring full and froze its queue
    /// (`tp_freeze_q_cnt`).
    pub rx_ring_full: u64,
    /// Frames larger than an arena buffer (GRO/LRO/GSO super-frames, jumbo
    /// frames) or truncated by the ring: skipped.
    pub rx_oversize: u64,
    /// Frames the kernel marked TP_STATUS_CSUMNOTREADY (partial L4
    /// checksum; includes skipped oversize ones).
    pub rx_csum_partial: u64,
    /// Of those, frames whose checksum could not be completed: delivered
    /// with [`super::TAG_CSUM_PARTIAL`] set.
    pub rx_csum_unfixed: u64,
    /// Outgoing frames that got past PACKET_IGNORE_OUTGOING and were skipped.
    pub rx_outgoing_skipped: u64,
    /// Ring blocks released early because their offsets were inconsistent.
    pub rx_ring_errors: u64,
    /// GSO super-frames received and forwarded whole (PACKET_VNET_HDR).
    pub rx_gso: u64,
    /// Frames skipped because their offload state could not be carried
    /// (GSO of a tunnel or SCTP, offsets that do not match the headers).
    pub rx_offload_skipped: u64,
    /// Frames the kernel accepted for transmission.
    pub tx_sent: u64,
    /// Frames with a Tx verdict that could not be sent (after one retry),
    /// or were too short to be an Ethernet frame.
    pub tx_dropped: u64,
}
