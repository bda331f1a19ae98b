//! AF_XDP socket ABI (include/uapi/linux/if_xdp.h): the constants and
//! structs the socket, UMEM and ring code pass to the kernel.

/// Socket option level of every XDP option.
pub const SOL_XDP: libc::c_int = 283;

pub const XDP_MMAP_OFFSETS: libc::c_int = 1;
pub const XDP_RX_RING: libc::c_int = 2;
pub const XDP_TX_RING: libc::c_int = 3;
pub const XDP_UMEM_REG: libc::c_int = 4;
pub const XDP_UMEM_FILL_RING: libc::c_int = 5;
pub const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
pub const XDP_STATISTICS: libc::c_int = 7;
pub const XDP_OPTIONS: libc::c_int = 8;
/// Frames copy mode sends per sendto() kick (Linux 6.17; default 32).
pub const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// sockaddr_xdp flags.
pub const XDP_COPY: u16 = 1 << 1;
pub const XDP_ZEROCOPY: u16 = 1 << 2;
pub const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
/// Multi-buffer: a frame larger than one UMEM frame arrives (and may be
/// sent) as several descriptors chained by [`XDP_PKT_CONTD`] (Linux 6.6).
pub const XDP_USE_SG: u16 = 1 << 4;
/// Bind to the UMEM of the socket in `shared_umem_fd`; the mode and
/// need_wakeup come from that socket, so no other flag may be set.
pub const XDP_SHARED_UMEM: u16 = 1 << 0;

/// Ring flag: the kernel sleeps until we poke it (sendto / recvfrom).
pub const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;
/// Descriptor option: the packet continues in the next descriptor.
pub const XDP_PKT_CONTD: u32 = 1 << 0;
/// XDP_OPTIONS result flag.
pub const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;

/// mmap page offsets that select which ring a mapping shows.
pub const XDP_PGOFF_RX_RING: libc::off_t = 0;
pub const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
pub const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
pub const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;

/// What the kernel reserves in front of every frame for XDP (and copy mode
/// places packet data after it), on top of the UMEM headroom.
pub const XDP_PACKET_HEADROOM: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockaddrXdp {
    pub family: u16,
    pub flags: u16,
    pub ifindex: u32,
    pub queue_id: u32,
    pub shared_umem_fd: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmapOffsets {
    pub rx: RingOffset,
    pub tx: RingOffset,
    pub fr: RingOffset,
    pub cr: RingOffset,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UmemReg {
    pub addr: u64,
    pub len: u64,
    pub chunk_size: u32,
    pub headroom: u32,
    pub flags: u32,
    /// Newer kernels: bytes of Tx metadata in front of each frame (0: none).
    pub tx_metadata_len: u32,
}

/// An rx/tx ring entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// Kernel-side counters of one socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStatistics {
    /// Dropped for other reasons.
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// The rx ring was full: the worker is too slow.
    pub rx_ring_full: u64,
    /// The fill ring was empty: frames are not coming back fast enough.
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_if_xdp_h() {
        assert_eq!(std::mem::size_of::<SockaddrXdp>(), 16);
        assert_eq!(std::mem::size_of::<MmapOffsets>(), 128);
        assert_eq!(std::mem::size_of::<UmemReg>(), 32);
        assert_eq!(std::mem::size_of::<XdpDesc>(), 16);
        assert_eq!(std::mem::size_of::<XdpStatistics>(), 48);
    }
}
