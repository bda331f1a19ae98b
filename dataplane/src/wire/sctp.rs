//! SCTP (RFC 9260): the common header, a summary of a packet's chunks, and
//! the CRC32c checksum.
//!
//! SCTP has no pseudo-header: its checksum covers the SCTP packet alone
//! (common header and chunks), so rewriting an address touches only the
//! IPv4 header checksum. But it is a CRC32c, not a ones'-complement sum:
//! there is no RFC 1624 update for it, and after a port is rewritten it is
//! recomputed over the whole SCTP packet ([`set_checksum`]). That is one
//! pass over the payload per NATed packet, the price of SCTP.
//!
//! The CRC32c a packet arrives with is not verified first: a local sender
//! with CRC offload leaves the field unfinished (Linux writes 0), and an
//! AF_XDP frame carries no flag saying so, so checking would drop such
//! senders' traffic. The cost: a packet corrupted before the gateway (past
//! the link's own CRC, which catches corruption on the wire) leaves with a
//! valid CRC32c, as it would through netfilter's NAT of an offloaded skb.
//!
//! The pipeline needs little of a packet: ports, the verification tag and
//! which control chunks it carries ([`Chunks`]), for the association state
//! machine (`conntrack::sctp`) and the reply to a Service without endpoints
//! (`wire::reject::sctp_abort`). [`summarize`] walks the chunk headers once
//! and validates their lengths, so after it every chunk header lies inside
//! the segment.

/// Length of the common header: ports, verification tag, checksum.
pub const COMMON_HDR_LEN: usize = 12;
/// Offset of the verification tag in the common header.
pub const VTAG_OFF: usize = 4;
/// Offset of the checksum in the common header.
pub const CSUM_OFF: usize = 8;
/// Length of a chunk header: type, flags, length.
pub const CHUNK_HDR_LEN: usize = 4;
/// Fixed part of an INIT / INIT ACK chunk: the chunk header, then the
/// Initiate Tag, a_rwnd, stream counts and initial TSN (RFC 9260 3.3.2).
pub const INIT_CHUNK_MIN_LEN: usize = CHUNK_HDR_LEN + 16;

/// Chunk types (RFC 9260 3.2) the pipeline acts on.
pub const DATA: u8 = 0;
pub const INIT: u8 = 1;
pub const INIT_ACK: u8 = 2;
pub const ABORT: u8 = 6;
pub const SHUTDOWN: u8 = 7;
pub const SHUTDOWN_ACK: u8 = 8;
pub const ERROR: u8 = 9;
pub const COOKIE_ECHO: u8 = 10;
pub const COOKIE_ACK: u8 = 11;
pub const SHUTDOWN_COMPLETE: u8 = 14;

/// Chunk flag of ABORT and SHUTDOWN COMPLETE: the verification tag is the
/// receiver's own, reflected (RFC 9260 3.3.7, 8.5.1).
pub const FLAG_T: u8 = 0x01;

/// Which association-control chunks a packet carries, one bit each: what
/// the state machine needs, in the `u8` that conntrack takes as a packet's
/// flags (for TCP, the flags byte). DATA, SACK, HEARTBEAT and the rest
/// change no state and have no bit.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Chunks(pub u8);

impl Chunks {
    pub const INIT: u8 = 0x01;
    pub const INIT_ACK: u8 = 0x02;
    pub const COOKIE_ECHO: u8 = 0x04;
    pub const COOKIE_ACK: u8 = 0x08;
    pub const SHUTDOWN: u8 = 0x10;
    pub const SHUTDOWN_ACK: u8 = 0x20;
    pub const SHUTDOWN_COMPLETE: u8 = 0x40;
    pub const ABORT: u8 = 0x80;

    /// The bit of chunk type `kind`, 0 for chunks without one.
    #[inline]
    pub fn bit(kind: u8) -> u8 {
        match kind {
            INIT => Chunks::INIT,
            INIT_ACK => Chunks::INIT_ACK,
            COOKIE_ECHO => Chunks::COOKIE_ECHO,
            COOKIE_ACK => Chunks::COOKIE_ACK,
            SHUTDOWN => Chunks::SHUTDOWN,
            SHUTDOWN_ACK => Chunks::SHUTDOWN_ACK,
            SHUTDOWN_COMPLETE => Chunks::SHUTDOWN_COMPLETE,
            ABORT => Chunks::ABORT,
            _ => 0,
        }
    }

    #[inline]
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// What [`summarize`] learns of an SCTP packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Summary {
    pub sport: u16,
    pub dport: u16,
    pub vtag: u32,
    /// Type and flags of the first chunk.
    pub first: u8,
    pub first_flags: u8,
    pub chunks: Chunks,
}

/// Reads the common header of `seg` (the SCTP packet, up to the IP end)
/// and walks its chunks. `None` when it is malformed: a truncated common
/// header, no chunk, a chunk shorter than its header or running past the
/// packet, an INIT / INIT ACK shorter than its fixed part, or an INIT,
/// INIT ACK or SHUTDOWN COMPLETE bundled behind another chunk (RFC 9260
/// 6.10 forbids it; netfilter's `do_basic_checks` calls such a packet
/// invalid too). The walk is bounded by the packet: every step advances by
/// at least one chunk header.
#[inline]
pub fn summarize(seg: &[u8]) -> Option<Summary> {
    if seg.len() < COMMON_HDR_LEN + CHUNK_HDR_LEN {
        return None;
    }
    let mut s = Summary {
        sport: u16::from_be_bytes([seg[0], seg[1]]),
        dport: u16::from_be_bytes([seg[2], seg[3]]),
        vtag: u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]),
        first: seg[COMMON_HDR_LEN],
        first_flags: seg[COMMON_HDR_LEN + 1],
        chunks: Chunks(0),
    };
    let mut off = COMMON_HDR_LEN;
    // Trailing bytes shorter than a chunk header are padding (RFC 9260 3.2).
    while off + CHUNK_HDR_LEN <= seg.len() {
        let kind = seg[off];
        let len = usize::from(u16::from_be_bytes([seg[off + 2], seg[off + 3]]));
        if len < CHUNK_HDR_LEN || off + len > seg.len() {
            return None;
        }
        match kind {
            INIT | INIT_ACK if len < INIT_CHUNK_MIN_LEN => return None,
            INIT | INIT_ACK | SHUTDOWN_COMPLETE if off != COMMON_HDR_LEN => return None,
            _ => {}
        }
        s.chunks.0 |= Chunks::bit(kind);
        // Chunks are padded to a multiple of 4; the last one's padding may
        // be missing, which the loop condition tolerates.
        off += (len + 3) & !3;
    }
    Some(s)
}

/// The CRC32c of an SCTP packet with its checksum field taken as zero, as
/// RFC 9260 appendix B defines it, in the byte order it is written in
/// (the CRC's low byte first: the field holds it little-endian).
#[inline]
pub fn checksum(seg: &[u8]) -> u32 {
    let c = crc32c::crc32c(&seg[..CSUM_OFF]);
    let c = crc32c::crc32c_append(c, &[0; 4]);
    crc32c::crc32c_append(c, &seg[CSUM_OFF + 4..])
}

/// Recomputes the checksum of the SCTP packet `seg` in full. The caller
/// has checked that the common header is there ([`summarize`]).
#[inline]
pub fn set_checksum(seg: &mut [u8]) {
    let c = checksum(seg);
    seg[CSUM_OFF..CSUM_OFF + 4].copy_from_slice(&c.to_le_bytes());
}

/// Whether the checksum field of `seg` holds its CRC32c.
pub fn checksum_ok(seg: &[u8]) -> bool {
    seg.len() >= COMMON_HDR_LEN && seg[CSUM_OFF..CSUM_OFF + 4] == checksum(seg).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3720 B.4: CRC32c of 32 bytes of zeros is 0x8a9136aa, of 32 bytes
    /// of 0xff is 0x62a8ab43, of 0x00..0x1f is 0x46dd794e. The RFC writes
    /// the CRC as bytes in transmission order (aa 36 91 8a): the value is
    /// stored least significant byte first.
    #[test]
    fn crc32c_matches_rfc3720_vectors() {
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c::crc32c(&inc), 0x46dd_794e);
        assert_eq!(0x8a91_36aau32.to_le_bytes(), [0xaa, 0x36, 0x91, 0x8a]);
    }

    /// An SCTP INIT (as Linux sends one: 198.18.0.9:40000 -> 198.19.0.10:3868,
    /// tag 0x01020304, a_rwnd 106496, 10 streams each way, initial TSN
    /// 0x11223344, no parameters) and its checksum as written on the wire,
    /// computed with an independent implementation (`crc` crate,
    /// CRC-32/ISCSI).
    fn init_packet() -> Vec<u8> {
        let mut p = vec![
            0x9c, 0x40, 0x0f, 0x1c, // ports 40000 -> 3868
            0, 0, 0, 0, // vtag 0 (an INIT's)
            0, 0, 0, 0, // checksum
            INIT, 0, 0, 20, // INIT, length 20
            1, 2, 3, 4, // initiate tag
            0, 1, 0xa0, 0, // a_rwnd
            0, 10, 0, 10, // streams
            0x11, 0x22, 0x33, 0x44, // initial TSN
        ];
        let c = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&p);
        p[8..12].copy_from_slice(&c.to_le_bytes());
        p
    }

    #[test]
    fn checksum_agrees_with_an_independent_crc32c() {
        let p = init_packet();
        assert!(checksum_ok(&p));
        assert_eq!(checksum(&p).to_le_bytes(), p[8..12]);
        let mut bad = p.clone();
        bad[20] ^= 1;
        assert!(!checksum_ok(&bad));
        set_checksum(&mut bad);
        assert!(checksum_ok(&bad));
        assert_ne!(bad[8..12], p[8..12]);
    }

    #[test]
    fn summarize_reads_ports_tag_and_chunks() {
        let p = init_packet();
        let s = summarize(&p).unwrap();
        assert_eq!((s.sport, s.dport, s.vtag), (40000, 3868, 0));
        assert_eq!((s.first, s.first_flags), (INIT, 0));
        assert_eq!(s.chunks, Chunks(Chunks::INIT));

        // COOKIE ECHO (length 5: 1 byte of cookie, padded) bundled with DATA.
        let mut q = vec![0x9c, 0x40, 0x0f, 0x1c, 9, 9, 9, 9, 0, 0, 0, 0];
        q.extend_from_slice(&[COOKIE_ECHO, 0, 0, 5, 0xaa, 0, 0, 0]);
        q.extend_from_slice(&[DATA, 3, 0, 17, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x42]);
        let s = summarize(&q).unwrap();
        assert_eq!(s.vtag, 0x0909_0909);
        assert_eq!(s.first, COOKIE_ECHO);
        assert_eq!(s.chunks, Chunks(Chunks::COOKIE_ECHO));

        // SACK then ABORT with the T bit: both seen, the first is the SACK.
        let mut r = vec![0, 1, 0, 2, 0, 0, 0, 7, 0, 0, 0, 0];
        r.extend_from_slice(&[3, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0, 0, 0]);
        r.extend_from_slice(&[ABORT, FLAG_T, 0, 4]);
        let s = summarize(&r).unwrap();
        assert_eq!(s.first, 3);
        assert!(s.chunks.has(Chunks::ABORT));
        assert!(!s.chunks.has(Chunks::INIT));
    }

    #[test]
    fn truncated_or_inconsistent_packets_are_malformed() {
        let p = init_packet();
        // Common header cut short, or no chunk at all.
        for n in 0..COMMON_HDR_LEN + CHUNK_HDR_LEN {
            assert_eq!(summarize(&p[..n]), None, "{n} bytes");
        }
        // The INIT's fixed part cut short (its length says 20).
        assert_eq!(summarize(&p[..p.len() - 1]), None);
        // A chunk length below its header, or past the packet.
        let mut q = p.clone();
        q[14..16].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(summarize(&q), None);
        q[14..16].copy_from_slice(&21u16.to_be_bytes());
        assert_eq!(summarize(&q), None);
        // INIT behind another chunk.
        let mut r = p[..12].to_vec();
        r.extend_from_slice(&[COOKIE_ACK, 0, 0, 4]);
        r.extend_from_slice(&p[12..]);
        assert_eq!(summarize(&r), None);
        // Trailing padding shorter than a chunk header is fine.
        let mut t = p.clone();
        t.extend_from_slice(&[0, 0]);
        assert!(summarize(&t).is_some());
    }
}
