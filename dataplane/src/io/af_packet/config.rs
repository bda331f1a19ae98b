//! Tunables of one AF_PACKET socket, with defaults sized for a gateway
//! worker on a 1500-byte MTU link.

use super::error::AfPacketError;

/// Rx ring block size: 256 KiB holds a 64 KiB GSO/GRO super-frame whole, so
/// the kernel never truncates one and we can count it as oversize instead.
pub const DEFAULT_BLOCK_SIZE: u32 = 1 << 18;
/// 64 blocks x 256 KiB = 16 MiB per socket: about 10k full-size frames of
/// slack while a worker is descheduled.
pub const DEFAULT_BLOCK_COUNT: u32 = 64;
/// TPACKET_V3 packs frames back to back inside a block; the frame size only
/// has to divide the block evenly for the kernel's sanity check.
pub const DEFAULT_FRAME_SIZE: u32 = 2048;
/// Milliseconds before the kernel hands over a partly filled block: the
/// worst-case added latency at low packet rates.
pub const DEFAULT_RETIRE_TIMEOUT_MS: u32 = 1;
/// Arena buffer size: a 64 KiB GSO/GRO super-frame (IP length <= 65535)
/// behind an Ethernet header and two VLAN tags, rounded up to 64, so that
/// nothing a veth or a NIC with default offloads delivers is too large.
/// 256 buffers per socket: 16.1 MiB, of which a burst of MTU-sized frames
/// touches a few pages per buffer.
pub const DEFAULT_BUF_SIZE: u32 = 65_536 + 256;
/// Largest arena buffer accepted: BIG TCP super-frames beyond 64 KiB.
pub const MAX_BUF_SIZE: u32 = 1 << 18;

/// Slots of a frame (TPACKET_V2) ring: 512 x 68 KiB = 34 MiB per socket,
/// half a millisecond of MTU-sized frames at 1 Mpps while a worker is
/// descheduled. Slots hold one frame each, so this is the ring's depth.
pub const DEFAULT_FRAME_SLOTS: u32 = 512;

/// Which TPACKET ring receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RingKind {
    /// TPACKET_V2: one slot per frame, each handed over as soon as it is
    /// written. No added latency, so TCP through the gateway runs at its
    /// window's speed; slots are sized for the largest frame.
    #[default]
    Frames,
    /// TPACKET_V3: frames packed into blocks handed over when full or
    /// after `retire_timeout_ms`. Denser (~10k MTU frames in 16 MiB), but a
    /// quiet direction waits for the timer: up to 1 ms per packet.
    Blocks,
}

/// How the kernel spreads one interface's packets over a fanout group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FanoutMode {
    /// By the skb flow hash: a flow always lands on the same worker.
    #[default]
    Hash,
    /// Round robin: even load, flows spread over workers.
    LoadBalance,
    /// By the CPU that received the packet (follows the NIC's RSS/RPS).
    Cpu,
    /// By the NIC rx queue the packet came from.
    QueueMapping,
}

impl FanoutMode {
    pub(crate) fn kernel_mode(self) -> u32 {
        match self {
            FanoutMode::Hash => libc::PACKET_FANOUT_HASH,
            FanoutMode::LoadBalance => libc::PACKET_FANOUT_LB,
            FanoutMode::Cpu => libc::PACKET_FANOUT_CPU,
            FanoutMode::QueueMapping => libc::PACKET_FANOUT_QM,
        }
    }
}

/// Membership of a fanout group: every worker of one interface opens its
/// socket with the same group id and mode. Group ids are global to the
/// network namespace, so each interface needs its own (its ifindex works).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fanout {
    pub group_id: u16,
    pub mode: FanoutMode,
}

/// Settings of one [`super::AfPacket`] socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// The rx ring's layout.
    pub ring: RingKind,
    /// Slots of a [`RingKind::Frames`] ring (each sized for `buf_size`).
    pub frame_slots: u32,
    /// Rx ring block size in bytes: a multiple of the page size.
    pub block_size: u32,
    /// Number of rx ring blocks.
    pub block_count: u32,
    /// Nominal frame size: a multiple of 16 that divides `block_size`.
    pub frame_size: u32,
    /// Block retire timeout in milliseconds (>= 1).
    pub retire_timeout_ms: u32,
    /// Size of each arena buffer a received frame is copied into; larger
    /// frames are skipped and counted as oversize.
    pub buf_size: u32,
    /// Transmit straight to the driver, skipping the qdisc layer (and with
    /// it every packet tap: tcpdump does not see our tx).
    pub qdisc_bypass: bool,
    /// Share the interface with the other workers of this group.
    pub fanout: Option<Fanout>,
    /// Complete the L4 checksum of frames the kernel marks as partial
    /// (TP_STATUS_CSUMNOTREADY: sent by a local stack over veth with
    /// checksum offload) when no vnet header says more about them.
    pub complete_partial_csum: bool,
    /// PACKET_VNET_HDR: frames carry their offload state both ways, so GSO
    /// super-frames are NATed once and sent on whole, and partial
    /// checksums stay partial. Falls back to completing checksums (and
    /// skipping super-frames) where the kernel refuses it.
    pub vnet_hdr: bool,
}

impl Default for AfPacketConfig {
    fn default() -> Self {
        AfPacketConfig {
            ring: RingKind::Frames,
            frame_slots: DEFAULT_FRAME_SLOTS,
            block_size: DEFAULT_BLOCK_SIZE,
            block_count: DEFAULT_BLOCK_COUNT,
            frame_size: DEFAULT_FRAME_SIZE,
            retire_timeout_ms: DEFAULT_RETIRE_TIMEOUT_MS,
            buf_size: DEFAULT_BUF_SIZE,
            qdisc_bypass: true,
            fanout: None,
            complete_partial_csum: true,
            vnet_hdr: true,
        }
    }
}

/// Bytes in front of a frame in a TPACKET_V2 slot: the header and
/// sockaddr_ll, the vnet header and the kernel's alignment of the frame
/// (TPACKET_ALIGN(hdrlen + 16 + vnet) - 16 + 16 of reserve), rounded up.
const V2_FRAME_HEADROOM: u32 = 128;

impl AfPacketConfig {
    /// Size of one TPACKET_V2 slot: headroom and a `buf_size` frame, in
    /// whole pages (the slot is also the ring's block).
    pub fn slot_size(&self) -> u32 {
        let page = page_size() as u32;
        (V2_FRAME_HEADROOM + self.buf_size).div_ceil(page) * page
    }

    /// Bytes of the rx ring.
    pub fn ring_bytes(&self) -> usize {
        match self.ring {
            RingKind::Frames => self.slot_size() as usize * self.frame_slots as usize,
            RingKind::Blocks => self.block_size as usize * self.block_count as usize,
        }
    }

    /// Checks what the kernel would reject with a bare EINVAL, so the error
    /// can say which field is wrong.
    pub fn validate(&self) -> Result<(), AfPacketError> {
        let page = page_size();
        let bad = |why: String| Err(AfPacketError::InvalidConfig(why));
        if self.ring == RingKind::Frames
            && (self.frame_slots == 0 || self.ring_bytes() > u32::MAX as usize)
        {
            return bad(format!(
                "frame_slots {} must be at least 1 and keep the ring below 4 GiB",
                self.frame_slots
            ));
        }
        if self.block_size == 0 || !(self.block_size as usize).is_multiple_of(page) {
            return bad(format!(
                "block_size {} must be a non-zero multiple of the page size {page}",
                self.block_size
            ));
        }
        if self.block_count == 0 {
            return bad("block_count must be at least 1".into());
        }
        let min_frame = libc::TPACKET3_HDRLEN as u32;
        if self.frame_size < min_frame
            || !self
                .frame_size
                .is_multiple_of(libc::TPACKET_ALIGNMENT as u32)
            || !self.block_size.is_multiple_of(self.frame_size)
        {
            return bad(format!(
                "frame_size {} must be >= {min_frame}, a multiple of {} and divide block_size {}",
                self.frame_size,
                libc::TPACKET_ALIGNMENT,
                self.block_size
            ));
        }
        if (self.block_size as u64 * self.block_count as u64) > u32::MAX as u64 {
            return bad("block_size * block_count must stay below 4 GiB".into());
        }
        if self.retire_timeout_ms == 0 {
            // 0 asks the kernel to derive a timeout from the link speed,
            // which is 8 ms or more: too slow for a gateway at low rates.
            return bad("retire_timeout_ms must be at least 1".into());
        }
        if !(64..=MAX_BUF_SIZE).contains(&self.buf_size) || !self.buf_size.is_multiple_of(64) {
            return bad(format!(
                "buf_size {} must be a multiple of 64 between 64 and {MAX_BUF_SIZE}",
                self.buf_size
            ));
        }
        Ok(())
    }
}

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        AfPacketConfig::default().validate().unwrap();
    }

    #[test]
    fn rejects_what_the_kernel_would() {
        let base = AfPacketConfig::default();
        let cases = [
            AfPacketConfig {
                block_size: 1000,
                ..base.clone()
            },
            AfPacketConfig {
                block_count: 0,
                ..base.clone()
            },
            AfPacketConfig {
                frame_size: 2000,
                ..base.clone()
            },
            AfPacketConfig {
                frame_size: 16,
                ..base.clone()
            },
            AfPacketConfig {
                retire_timeout_ms: 0,
                ..base.clone()
            },
            AfPacketConfig {
                buf_size: 100,
                ..base.clone()
            },
        ];
        for c in cases {
            assert!(
                matches!(c.validate(), Err(AfPacketError::InvalidConfig(_))),
                "{c:?}"
            );
        }
    }

    #[test]
    fn fanout_modes_map_to_kernel_values() {
        assert_eq!(FanoutMode::Hash.kernel_mode(), 0);
        assert_eq!(FanoutMode::LoadBalance.kernel_mode(), 1);
        assert_eq!(FanoutMode::Cpu.kernel_mode(), 2);
        assert_eq!(FanoutMode::QueueMapping.kernel_mode(), 5);
    }
}
