//! Per-frame offload state: what a kernel-side sender left undone (a
//! partial L4 checksum, a GSO super-frame still to be segmented), carried
//! with the frame from rx to tx.
//!
//! The layout is `struct virtio_net_hdr` (linux/virtio_net.h), which
//! AF_PACKET prepends to every frame with PACKET_VNET_HDR, in the host's
//! byte order (the kernel uses the legacy little-endian format on every
//! host vipgate builds for). Frames from AF_XDP, pcap and memory backends
//! carry none: [`OffloadMeta::NONE`], a full checksum and one wire frame.

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum field at
/// `csum_start + csum_offset` holds only the pseudo-header sum; the
/// receiver (or segmentation) adds the bytes from `csum_start` on.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified already.
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_*`: which segmentation the frame still needs.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// Flag bit: the TCP segments carry ECN CWR handling.
pub const GSO_ECN: u8 = 0x80;

/// Bytes of `struct virtio_net_hdr` in front of each AF_PACKET frame.
pub const VNET_HDR_LEN: usize = 10;

/// One frame's offload state (a `virtio_net_hdr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadMeta {
    pub flags: u8,
    pub gso_type: u8,
    /// Bytes of headers (Ethernet to end of L4 header) of a GSO frame.
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO frame.
    pub gso_size: u16,
    /// Where the partial checksum's coverage starts (from the frame start).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl OffloadMeta {
    /// Nothing left to do: a full checksum, a single wire frame.
    pub const NONE: OffloadMeta = OffloadMeta {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// The L4 checksum field holds the pseudo-header sum only.
    #[inline]
    pub fn csum_partial(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// The frame is a super-frame the kernel still segments.
    #[inline]
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }

    /// Reads a `virtio_net_hdr` (at least [`VNET_HDR_LEN`] bytes).
    pub fn from_vnet_hdr(b: &[u8]) -> OffloadMeta {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        OffloadMeta {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// The `virtio_net_hdr` bytes of this state.
    pub fn to_vnet_hdr(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_hdr_round_trip_in_kernel_layout() {
        // A TCPv4 GSO super-frame as the kernel reports it: NEEDS_CSUM,
        // gso TCPV4, hdr_len 66, gso_size 1448, csum at 34 + 16.
        let raw = [1u8, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0];
        let m = OffloadMeta::from_vnet_hdr(&raw);
        assert!(m.csum_partial());
        assert!(m.is_gso());
        assert_eq!(
            (m.hdr_len, m.gso_size, m.csum_start, m.csum_offset),
            (66, 1448, 34, 16)
        );
        assert_eq!(m.to_vnet_hdr(), raw);
        assert!(!OffloadMeta::NONE.csum_partial() && !OffloadMeta::NONE.is_gso());
        let ecn_only = OffloadMeta {
            gso_type: GSO_ECN,
            ..OffloadMeta::NONE
        };
        assert!(!ecn_only.is_gso());
    }
}
