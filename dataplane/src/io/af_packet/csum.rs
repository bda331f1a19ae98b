//! Completing partial L4 checksums.
//!
//! A frame sent by a local stack with checksum offload (every veth lab
//! client) reaches AF_PACKET as CHECKSUM_PARTIAL: the TCP/UDP checksum field
//! holds only the pseudo-header sum, and the "hardware" was supposed to add
//! the payload. Such a frame forwarded as is gets dropped by its receiver,
//! and incremental (RFC 1624) updates of it stay wrong. Completing it once on
//! rx costs one pass over the payload, for lab traffic only: frames from real
//! NICs arrive with full checksums.

use crate::io::offload::{OffloadMeta, F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// IPv6 extension headers walked over to find TCP/UDP: the ones the
/// pipeline's parser walks too (wire::parse), so every frame it can NAT can
/// be completed here.
const V6_HOP_BY_HOP: u8 = 0;
const V6_ROUTING: u8 = 43;
const V6_FRAGMENT: u8 = 44;
const V6_AUTH: u8 = 51;
const V6_DEST_OPTS: u8 = 60;
/// Longest extension chain walked; the pipeline's parser stops there too.
const MAX_V6_EXT: usize = 8;
/// Offset of the checksum field inside each L4 header.
const TCP_CSUM: usize = 16;
const UDP_CSUM: usize = 6;

/// Ones' complement sum of `data` (big-endian 16-bit words, odd byte padded),
/// unfolded.
pub(crate) fn ones_sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u64) << 8;
    }
    acc
}

pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Walks IPv6 extension headers from `off` (first header `next`) up to
/// `end`; returns (L4 protocol, L4 offset). None for a fragment (no whole
/// segment to sum), a chain that does not fit, or one too long.
fn skip_v6_ext(frame: &[u8], mut off: usize, end: usize, mut next: u8) -> Option<(u8, usize)> {
    for _ in 0..MAX_V6_EXT {
        let len = match next {
            V6_HOP_BY_HOP | V6_ROUTING | V6_DEST_OPTS => (*frame.get(off + 1)? as usize + 1) * 8,
            V6_AUTH => (*frame.get(off + 1)? as usize + 2) * 4,
            V6_FRAGMENT => {
                // Offset or more-fragments set: a piece of a datagram. An
                // atomic fragment (both clear) is whole.
                if be16(frame, off + 2)? & 0xfff9 != 0 {
                    return None;
                }
                8
            }
            _ => return Some((next, off)),
        };
        if off + len > end {
            return None;
        }
        next = *frame.get(off)?;
        off += len;
    }
    None
}

/// Where a frame's TCP/UDP segment lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    l3: usize,
    v6: bool,
    proto: u8,
    /// Start of the L4 header.
    l4: usize,
    /// End of the IP packet.
    end: usize,
    /// Offset of the L4 checksum field.
    field: usize,
}

/// Finds the L4 segment (start, end, checksum field offset) of an
/// Ethernet frame carrying unfragmented TCP or UDP over IPv4 (options
/// included) or IPv6 (extension headers included), behind up to two VLAN
/// tags.
fn l4_segment(frame: &[u8]) -> Option<(usize, usize, usize)> {
    segment(frame).map(|s| (s.l4, s.end, s.field))
}

/// [`l4_segment`] with the L3 facts a pseudo-header needs.
fn segment(frame: &[u8]) -> Option<Segment> {
    let mut l3 = ETH_HLEN;
    let mut ethertype = be16(frame, 12)?;
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        ethertype = be16(frame, l3 + 2)?;
        l3 += 4;
    }
    let v6 = ethertype == ETHERTYPE_IPV6;
    let (proto, l4, end) = match ethertype {
        ETHERTYPE_IPV4 => {
            let vihl = *frame.get(l3)?;
            let ihl = (vihl & 0x0f) as usize * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return None;
            }
            // More-fragments flag or a fragment offset: not a whole segment.
            if be16(frame, l3 + 6)? & 0x3fff != 0 {
                return None;
            }
            let total = be16(frame, l3 + 2)? as usize;
            (*frame.get(l3 + 9)?, l3 + ihl, l3 + total)
        }
        ETHERTYPE_IPV6 => {
            if *frame.get(l3)? >> 4 != 6 {
                return None;
            }
            let end = l3 + 40 + be16(frame, l3 + 4)? as usize;
            let (proto, l4) = skip_v6_ext(frame, l3 + 40, end, *frame.get(l3 + 6)?)?;
            (proto, l4, end)
        }
        _ => return None,
    };
    let field = match proto {
        PROTO_TCP => l4 + TCP_CSUM,
        PROTO_UDP => l4 + UDP_CSUM,
        _ => return None,
    };
    // The IP length excludes link padding; it must lie inside the frame.
    if end > frame.len() || field + 2 > end {
        return None;
    }
    Some(Segment {
        l3,
        v6,
        proto,
        l4,
        end,
        field,
    })
}

/// What to do with a frame an AF_PACKET socket with PACKET_VNET_HDR
/// received, given its vnet header `m`: the offload state it travels on
/// with (after fixing up the frame where needed), or None when it cannot
/// be carried and must be skipped (counted by the caller).
///
/// - no GSO, no partial checksum: nothing to carry;
/// - partial checksum on the frame's own TCP/UDP field: stays partial (the
///   pipeline NATs the pseudo-header sum, tx hands NEEDS_CSUM back);
/// - partial elsewhere (a tunnel's inner header, SCTP...) without GSO:
///   completed here as the kernel's `skb_checksum_help` would;
/// - a GRO-merged super-frame (GSO type, checksum verified, not partial):
///   its checksum field holds the first segment's value, so it becomes
///   partial the way the kernel's own forwarding path makes it before
///   segmenting (`__tcp_v4_send_check`): pseudo-header sum over the whole
///   L4 length, NEEDS_CSUM;
/// - GSO of a kind we cannot NAT (tunnels, SCTP) or whose offsets do not
///   match its headers: None.
pub(crate) fn rx_offload(frame: &mut [u8], m: OffloadMeta) -> Option<OffloadMeta> {
    let gso = m.is_gso();
    if !gso && !m.csum_partial() {
        return Some(OffloadMeta::NONE);
    }
    let seg = segment(frame);
    let ours = seg.filter(|s| {
        m.csum_partial()
            && m.csum_start as usize == s.l4
            && s.l4 + m.csum_offset as usize == s.field
    });
    if gso {
        let s = seg?;
        let kind_ok = match m.gso_type & !GSO_ECN {
            GSO_TCPV4 => s.proto == PROTO_TCP && !s.v6,
            GSO_TCPV6 => s.proto == PROTO_TCP && s.v6,
            GSO_UDP_L4 => s.proto == PROTO_UDP,
            _ => false,
        };
        if !kind_ok || m.gso_size == 0 {
            return None;
        }
        if ours.is_none() {
            if m.csum_partial() {
                return None;
            }
            let (src, dst) = if s.v6 {
                (s.l3 + 8..s.l3 + 24, s.l3 + 24..s.l3 + 40)
            } else {
                (s.l3 + 12..s.l3 + 16, s.l3 + 16..s.l3 + 20)
            };
            let mut acc = ones_sum(&frame[src], 0);
            acc = ones_sum(&frame[dst], acc);
            acc += s.proto as u64 + (s.end - s.l4) as u64;
            frame[s.field..s.field + 2].copy_from_slice(&fold(acc).to_be_bytes());
        }
        return Some(OffloadMeta {
            flags: F_NEEDS_CSUM,
            csum_start: s.l4 as u16,
            csum_offset: (s.field - s.l4) as u16,
            ..m
        });
    }
    if ours.is_some() {
        return Some(OffloadMeta {
            flags: F_NEEDS_CSUM,
            ..m
        });
    }
    // Partial somewhere else: finish it from csum_start, field included.
    let (start, at) = (
        m.csum_start as usize,
        (m.csum_start + m.csum_offset) as usize,
    );
    if start >= frame.len() || at + 2 > frame.len() || at < start {
        return None;
    }
    let sum = !fold(ones_sum(&frame[start..], 0));
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Some(OffloadMeta::NONE)
}

/// Turns a partial (pseudo-header only) TCP/UDP checksum into the full one,
/// as the kernel's `skb_checksum_help` would. Returns false, leaving the
/// frame untouched, when the frame is not something this knows how to
/// complete.
pub(crate) fn complete_partial(frame: &mut [u8]) -> bool {
    let Some((l4, end, field)) = l4_segment(frame) else {
        return false;
    };
    // The field's current content (the pseudo-header sum) is part of the sum.
    let sum = !fold(ones_sum(&frame[l4..end], 0));
    // UDP reserves 0 for "no checksum"; 0xffff is the same value in ones'
    // complement, so it is right for TCP as well.
    let sum = if sum == 0 { 0xffff } else { sum };
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Full UDP/TCP checksum over IPv4 computed the textbook way (pseudo
    /// header + segment with a zero field), independent of the code above.
    fn textbook_v4(frame: &[u8], l4: usize, end: usize, field: usize) -> u16 {
        let ip = &frame[ETH_HLEN..];
        let mut seg = frame[l4..end].to_vec();
        seg[field - l4] = 0;
        seg[field - l4 + 1] = 0;
        let mut acc = ones_sum(&ip[12..20], 0);
        acc += ip[9] as u64 + (end - l4) as u64;
        let s = !fold(ones_sum(&seg, acc));
        if s == 0 {
            0xffff
        } else {
            s
        }
    }

    /// An Ethernet/IPv4/UDP frame with the pseudo-header sum in its
    /// checksum field, like a stack using checksum offload leaves it.
    pub(crate) fn partial_udp_v4(payload: &[u8], pad: usize) -> Vec<u8> {
        let udp_len = 8 + payload.len();
        let mut f = vec![0u8; ETH_HLEN + 20 + udp_len + pad];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ip = ETH_HLEN;
        f[ip] = 0x45;
        f[ip + 2..ip + 4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        f[ip + 6] = 0x40; // DF: not a fragment
        f[ip + 8] = 64;
        f[ip + 9] = PROTO_UDP;
        f[ip + 12..ip + 16].copy_from_slice(&[198, 18, 0, 1]);
        f[ip + 16..ip + 20].copy_from_slice(&[198, 19, 0, 10]);
        let u = ip + 20;
        f[u..u + 2].copy_from_slice(&40000u16.to_be_bytes());
        f[u + 2..u + 4].copy_from_slice(&53u16.to_be_bytes());
        f[u + 4..u + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        f[u + 8..u + 8 + payload.len()].copy_from_slice(payload);
        let mut acc = ones_sum(&f[ip + 12..ip + 20], 0);
        acc += PROTO_UDP as u64 + udp_len as u64;
        f[u + 6..u + 8].copy_from_slice(&fold(acc).to_be_bytes());
        for b in &mut f[ETH_HLEN + 20 + udp_len..] {
            *b = 0xee; // link padding must not enter the sum
        }
        f
    }

    #[test]
    fn completes_udp_v4_like_the_textbook_sum() {
        for (payload, pad) in [
            (&b"hello"[..], 0),
            (&b"odd-length!"[..], 7),
            (&[0u8; 0][..], 4),
        ] {
            let mut f = partial_udp_v4(payload, pad);
            assert!(complete_partial(&mut f));
            let end = ETH_HLEN + 20 + 8 + payload.len();
            let got = u16::from_be_bytes([f[40], f[41]]);
            assert_eq!(got, textbook_v4(&f, 34, end, 40), "{payload:?}");
        }
    }

    #[test]
    fn completes_tcp_behind_a_vlan_tag() {
        // Build a v4/TCP frame, then insert an 802.1Q tag.
        let mut f = partial_udp_v4(b"", 0);
        f.truncate(34);
        f[ETH_HLEN + 9] = PROTO_TCP;
        f.extend_from_slice(&[0u8; 20]);
        f.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let seg_len = 20 + 16;
        f[16..18].copy_from_slice(&((20 + seg_len) as u16).to_be_bytes());
        f[34 + 12] = 0x50;
        let mut acc = ones_sum(&f[26..34], 0);
        acc += PROTO_TCP as u64 + seg_len as u64;
        f[34 + 16..34 + 18].copy_from_slice(&fold(acc).to_be_bytes());
        let want = textbook_v4(&f, 34, 34 + seg_len, 50);
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        tagged.extend_from_slice(&f[12..]);
        assert!(complete_partial(&mut tagged));
        assert_eq!(u16::from_be_bytes([tagged[54], tagged[55]]), want);
    }

    #[test]
    fn leaves_what_it_cannot_complete_untouched() {
        let mut frag = partial_udp_v4(b"frag", 0);
        frag[ETH_HLEN + 6] = 0x20; // more fragments
        let mut icmp = partial_udp_v4(b"icmp", 0);
        icmp[ETH_HLEN + 9] = 1;
        let mut lying = partial_udp_v4(b"len", 0);
        lying[ETH_HLEN + 2] = 0x10; // IP length past the frame
        let mut arp = partial_udp_v4(b"", 0);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        for mut f in [frag, icmp, lying, arp, vec![0u8; 10], Vec::new()] {
            let before = f.clone();
            assert!(!complete_partial(&mut f));
            assert_eq!(f, before);
        }
    }

    /// The pseudo-header sum (not complemented) a stack leaves in the field
    /// of a CHECKSUM_PARTIAL segment: src, dst, protocol, L4 length.
    fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u16 {
        let mut acc: u32 = 0;
        for w in src.chunks(2).chain(dst.chunks(2)) {
            acc += u32::from(w[0]) << 8 | u32::from(w[1]);
        }
        acc += u32::from(proto) + (len as u32 & 0xffff) + (len as u32 >> 16);
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// A TCP (data offset 5) or UDP segment with `payload`, checksum field
    /// holding the pseudo-header sum; returns it and the field's offset.
    fn segment(proto: u8, payload: &[u8], src: &[u8], dst: &[u8]) -> (Vec<u8>, usize) {
        let (hdr, field) = if proto == PROTO_TCP {
            (20, TCP_CSUM)
        } else {
            (8, UDP_CSUM)
        };
        let mut seg = vec![0u8; hdr];
        seg[0..2].copy_from_slice(&40001u16.to_be_bytes());
        seg[2..4].copy_from_slice(&8443u16.to_be_bytes());
        if proto == PROTO_TCP {
            seg[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
            seg[12] = 0x50;
            seg[13] = 0x18; // PSH|ACK
            seg[14..16].copy_from_slice(&512u16.to_be_bytes());
        } else {
            seg[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        }
        seg.extend_from_slice(payload);
        let p = pseudo_sum(src, dst, proto, seg.len());
        seg[field..field + 2].copy_from_slice(&p.to_be_bytes());
        (seg, field)
    }

    const V6_SRC: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const V6_DST: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0x19, 0, 0, 0, 0, 0, 0, 0, 0x10];

    /// Extension header `kind` followed by `next`, `units` long in its
    /// own length unit; the body is filler the sum must still cover.
    fn ext(kind: u8, next: u8) -> Vec<u8> {
        let mut h = match kind {
            V6_HOP_BY_HOP => vec![0, 0, 1, 4, 0, 0, 0, 0], // PadN
            V6_DEST_OPTS => {
                let mut h = vec![0, 1, 1, 12];
                h.extend_from_slice(&[0; 12]);
                h
            }
            // Segment routing header, segments left 0: the pseudo header's
            // destination is the IPv6 destination.
            V6_ROUTING => {
                let mut h = vec![0, 2, 4, 0, 0, 0, 0, 0];
                h.extend_from_slice(&V6_DST);
                h
            }
            V6_FRAGMENT => vec![0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef],
            V6_AUTH => {
                let mut h = vec![0, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 7];
                h.extend_from_slice(&[0xa5; 12]);
                h
            }
            _ => unreachable!(),
        };
        h[0] = next;
        h
    }

    /// Ethernet/IPv6 with extension headers `chain` (in order) then a
    /// partial TCP/UDP segment. Returns the frame, L4 start and field.
    fn partial_v6(chain: &[u8], proto: u8, payload: &[u8]) -> (Vec<u8>, usize, usize) {
        let (seg, field) = segment(proto, payload, &V6_SRC, &V6_DST);
        let mut exts = Vec::new();
        for (i, &kind) in chain.iter().enumerate() {
            let next = chain.get(i + 1).copied().unwrap_or(proto);
            exts.extend(ext(kind, next));
        }
        let mut f = vec![0u8; ETH_HLEN + 40];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        let ip = ETH_HLEN;
        f[ip] = 0x60;
        f[ip + 4..ip + 6].copy_from_slice(&((exts.len() + seg.len()) as u16).to_be_bytes());
        f[ip + 6] = chain.first().copied().unwrap_or(proto);
        f[ip + 7] = 64;
        f[ip + 8..ip + 24].copy_from_slice(&V6_SRC);
        f[ip + 24..ip + 40].copy_from_slice(&V6_DST);
        f.extend(exts);
        let l4 = f.len();
        f.extend(seg);
        (f, l4, l4 + field)
    }

    /// Ethernet/IPv4 with `opts` (a multiple of 4 bytes) then a partial
    /// TCP/UDP segment. Returns the frame, L4 start and field.
    fn partial_v4_opts(opts: &[u8], proto: u8, payload: &[u8]) -> (Vec<u8>, usize, usize) {
        let (src, dst) = ([198, 18, 0, 2], [198, 19, 0, 10]);
        let (seg, field) = segment(proto, payload, &src, &dst);
        let ihl = 20 + opts.len();
        let mut f = vec![0u8; ETH_HLEN + 20];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ip = ETH_HLEN;
        f[ip] = 0x40 | (ihl / 4) as u8;
        f[ip + 2..ip + 4].copy_from_slice(&((ihl + seg.len()) as u16).to_be_bytes());
        f[ip + 8] = 64;
        f[ip + 9] = proto;
        f[ip + 12..ip + 16].copy_from_slice(&src);
        f[ip + 16..ip + 20].copy_from_slice(&dst);
        f.extend_from_slice(opts);
        let l4 = f.len();
        f.extend(seg);
        (f, l4, l4 + field)
    }

    /// The full checksum of the segment computed from scratch (pseudo
    /// header from the IPv6 addresses, field zeroed), by RFC 1071.
    fn textbook_v6(frame: &[u8], l4: usize, field: usize, proto: u8) -> u16 {
        let mut seg = frame[l4..].to_vec();
        seg[field - l4] = 0;
        seg[field - l4 + 1] = 0;
        let mut acc = u32::from(pseudo_sum(&V6_SRC, &V6_DST, proto, seg.len()));
        for w in seg.chunks(2) {
            acc += u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        match !(acc as u16) {
            0 => 0xffff,
            s => s,
        }
    }

    /// smoltcp's own verification of the completed segment.
    fn smoltcp_verifies(
        frame: &[u8],
        l4: usize,
        proto: u8,
        src: IpAddress,
        dst: IpAddress,
    ) -> bool {
        let seg = &frame[l4..];
        if proto == PROTO_TCP {
            TcpPacket::new_checked(seg)
                .unwrap()
                .verify_checksum(&src, &dst)
        } else {
            UdpPacket::new_checked(seg)
                .unwrap()
                .verify_checksum(&src, &dst)
        }
    }

    use smoltcp::wire::{IpAddress, TcpPacket, UdpPacket};

    #[test]
    fn completes_v6_behind_every_extension_header_the_pipeline_walks() {
        let chains: [&[u8]; 7] = [
            &[],
            &[V6_HOP_BY_HOP],
            &[V6_ROUTING],
            &[V6_DEST_OPTS],
            &[V6_HOP_BY_HOP, V6_DEST_OPTS, V6_ROUTING, V6_DEST_OPTS],
            &[V6_HOP_BY_HOP, V6_FRAGMENT],
            &[V6_AUTH, V6_DEST_OPTS],
        ];
        let (src, dst) = (
            IpAddress::Ipv6(V6_SRC.into()),
            IpAddress::Ipv6(V6_DST.into()),
        );
        for chain in chains {
            for proto in [PROTO_TCP, PROTO_UDP] {
                for payload in [&b""[..], b"odd!!", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"] {
                    let (mut f, l4, field) = partial_v6(chain, proto, payload);
                    let before = f.clone();
                    assert!(!smoltcp_verifies(&f, l4, proto, src, dst), "{chain:?}");
                    assert!(complete_partial(&mut f), "{chain:?} proto {proto}");
                    let got = u16::from_be_bytes([f[field], f[field + 1]]);
                    assert_eq!(got, textbook_v6(&f, l4, field, proto), "{chain:?}");
                    assert!(smoltcp_verifies(&f, l4, proto, src, dst), "{chain:?}");
                    // Only the checksum field changed.
                    let mut rest = f.clone();
                    rest[field..field + 2].copy_from_slice(&before[field..field + 2]);
                    assert_eq!(rest, before);
                }
            }
        }
    }

    #[test]
    fn completes_v4_with_options() {
        // NOP, NOP, NOP, EOL; a 12-byte timestamp-like option; the maximum.
        let opts: [&[u8]; 3] = [
            &[1, 1, 1, 0],
            &[68, 12, 5, 0, 0, 0, 0, 1, 0, 0, 0, 2],
            &[1; 40],
        ];
        let (src, dst) = (
            IpAddress::Ipv4([198, 18, 0, 2].into()),
            IpAddress::Ipv4([198, 19, 0, 10].into()),
        );
        for o in opts {
            for proto in [PROTO_TCP, PROTO_UDP] {
                let (mut f, l4, field) = partial_v4_opts(o, proto, b"options ahead");
                let end = f.len();
                assert!(complete_partial(&mut f), "{} option bytes", o.len());
                let got = u16::from_be_bytes([f[field], f[field + 1]]);
                assert_eq!(got, textbook_v4(&f, l4, end, field));
                assert!(smoltcp_verifies(&f, l4, proto, src, dst));
            }
        }
    }

    #[test]
    fn leaves_v6_fragments_and_bad_chains_untouched() {
        let mut first = partial_v6(&[V6_FRAGMENT], PROTO_UDP, b"piece").0;
        first[ETH_HLEN + 40 + 3] = 1; // more fragments
        let mut later = partial_v6(&[V6_HOP_BY_HOP, V6_FRAGMENT], PROTO_TCP, b"piece").0;
        later[ETH_HLEN + 40 + 8 + 2] = 0x01; // offset 32
        let too_long = partial_v6(&[V6_DEST_OPTS; MAX_V6_EXT + 1], PROTO_UDP, b"x").0;
        let mut past_end = partial_v6(&[V6_DEST_OPTS], PROTO_UDP, b"").0;
        past_end[ETH_HLEN + 40 + 1] = 200; // header longer than the packet
        let mut icmp = partial_v6(&[V6_HOP_BY_HOP], PROTO_UDP, b"ping").0;
        icmp[ETH_HLEN + 40] = 58;
        let mut cut = partial_v6(&[V6_ROUTING], PROTO_TCP, b"").0;
        cut.truncate(ETH_HLEN + 40 + 5);
        for (name, mut f) in [
            ("first fragment", first),
            ("later fragment", later),
            ("chain too long", too_long),
            ("header past the end", past_end),
            ("icmpv6", icmp),
            ("truncated", cut),
        ] {
            let before = f.clone();
            assert!(!complete_partial(&mut f), "{name}");
            assert_eq!(f, before, "{name}");
        }
    }

    mod vnet {
        use super::*;
        use crate::io::offload::{F_DATA_VALID, GSO_UDP};

        const UDP_AT: usize = ETH_HLEN + 20;

        fn needs_csum(start: usize, off: usize) -> OffloadMeta {
            OffloadMeta {
                flags: F_NEEDS_CSUM,
                csum_start: start as u16,
                csum_offset: off as u16,
                ..OffloadMeta::NONE
            }
        }

        fn complete_copy(f: &[u8]) -> Vec<u8> {
            let mut g = f.to_vec();
            assert!(complete_partial(&mut g));
            g
        }

        #[test]
        fn nothing_to_carry_and_own_partial_stays_partial() {
            let mut f = partial_udp_v4(b"payload", 0);
            let before = f.clone();
            assert_eq!(
                rx_offload(&mut f, OffloadMeta::NONE),
                Some(OffloadMeta::NONE)
            );
            let m = needs_csum(UDP_AT, UDP_CSUM);
            assert_eq!(rx_offload(&mut f, m), Some(m));
            assert_eq!(f, before, "left partial, untouched");
        }

        #[test]
        fn partial_elsewhere_is_finished_from_csum_start() {
            // The kernel's view: sum from csum_start, store at +offset.
            // Pointing it at the UDP header as an "unknown" place (offset
            // 6 from 8 bytes before it would not be ours): use the UDP
            // field through a start that is not the L4 header.
            let mut f = partial_udp_v4(b"data!", 0);
            let want = complete_copy(&f);
            // Same field, described from the start of the UDP header
            // minus nothing but with the offset split differently is
            // still ours; a start two bytes into the header is not.
            let m = needs_csum(UDP_AT + 2, UDP_CSUM - 2);
            // Summing from UDP_AT + 2 skips the source port word: the
            // kernel would do exactly that, so do we.
            let mut acc = ones_sum(&f[UDP_AT + 2..], 0);
            acc = !fold(acc) as u64;
            assert_eq!(rx_offload(&mut f, m), Some(OffloadMeta::NONE));
            assert_eq!(be16(&f, UDP_AT + UDP_CSUM).unwrap(), acc as u16);
            assert_ne!(f, want, "a different coverage gives a different sum");
        }

        #[test]
        fn a_gro_super_frame_becomes_partial_over_its_whole_length() {
            // A merged UDP_L4 super-frame: checksum verified, field stale.
            let payload = vec![0x42u8; 20_000];
            let mut f = partial_udp_v4(&payload, 0);
            let want = complete_copy(&f);
            f[UDP_AT + UDP_CSUM] ^= 0x5a; // stale value from a segment
            let m = OffloadMeta {
                flags: F_DATA_VALID,
                gso_type: GSO_UDP_L4,
                gso_size: 1472,
                hdr_len: (UDP_AT + 8) as u16,
                ..OffloadMeta::NONE
            };
            let got = rx_offload(&mut f, m).expect("carried");
            assert!(got.csum_partial() && got.is_gso());
            assert_eq!(
                (got.csum_start as usize, got.csum_offset as usize),
                (UDP_AT, UDP_CSUM)
            );
            assert_eq!(got.gso_size, 1472);
            // Finishing it as offload would gives the full checksum.
            assert_eq!(complete_copy(&f), want);
        }

        #[test]
        fn gso_it_cannot_nat_is_refused() {
            let mut f = partial_udp_v4(&[7u8; 3000], 0);
            let gso = |t: u8, flags: u8| OffloadMeta {
                flags,
                gso_type: t,
                gso_size: 1400,
                ..needs_csum(UDP_AT, UDP_CSUM)
            };
            // TCP segmentation of a UDP frame, UFO, no size, odd offsets.
            assert_eq!(rx_offload(&mut f, gso(GSO_TCPV4, F_NEEDS_CSUM)), None);
            assert_eq!(rx_offload(&mut f, gso(GSO_UDP, F_NEEDS_CSUM)), None);
            let mut zero = gso(GSO_UDP_L4, F_NEEDS_CSUM);
            zero.gso_size = 0;
            assert_eq!(rx_offload(&mut f, zero), None);
            let mut odd = gso(GSO_UDP_L4, F_NEEDS_CSUM);
            odd.csum_start += 2;
            assert_eq!(rx_offload(&mut f, odd), None);
            assert!(rx_offload(&mut f, gso(GSO_UDP_L4, F_NEEDS_CSUM)).is_some());
        }
    }
}
