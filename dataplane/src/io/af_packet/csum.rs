//! Completing partial L4 checksums.
//!
//! A frame sent by a local stack with checksum offload (every veth lab
//! client) reaches AF_PACKET as CHECKSUM_PARTIAL: the TCP/UDP checksum field
//! holds only the pseudo-header sum, and the "hardware" was supposed to add
//! the payload. Such a frame forwarded as is gets dropped by its receiver,
//! and incremental (RFC 1624) updates of it stay wrong. Completing it once on
//! rx costs one pass over the payload, for lab traffic only: frames from real
//! NICs arrive with full checksums.

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
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

/// Finds the L4 segment (start, end, checksum field offset) of an
/// Ethernet frame carrying unfragmented TCP or UDP over IPv4 or IPv6 (no
/// extension headers), behind up to two VLAN tags.
fn l4_segment(frame: &[u8]) -> Option<(usize, usize, usize)> {
    let mut l3 = ETH_HLEN;
    let mut ethertype = be16(frame, 12)?;
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        ethertype = be16(frame, l3 + 2)?;
        l3 += 4;
    }
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
            let payload = be16(frame, l3 + 4)? as usize;
            (*frame.get(l3 + 6)?, l3 + 40, l3 + 40 + payload)
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
    Some((l4, end, field))
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
}
