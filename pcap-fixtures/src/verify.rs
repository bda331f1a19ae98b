//! Independent checksum verification of whole frames.
//!
//! Everything is recomputed from scratch with the plain RFC 1071 sum, never
//! incrementally, so this can judge the dataplane's RFC 1624 updates rather
//! than repeat them. Malformed input is an `Err`, never a panic.

/// The Internet checksum (RFC 1071) of the concatenation of `parts`: the
/// one's complement of the one's-complement sum of 16-bit big-endian words.
/// Over data that already holds a correct checksum it returns 0.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    // A part of odd length leaves its last byte as the high half of a word
    // that the next part completes.
    let mut pending: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match pending.take() {
                Some(hi) => sum += u64::from(u16::from_be_bytes([hi, b])),
                None => pending = Some(b),
            }
        }
    }
    if let Some(hi) = pending {
        sum += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The CRC32c of an SCTP packet (RFC 9260 appendix B) with its checksum
/// field taken as zero, from the table-driven `crc` crate (CRC-32/ISCSI):
/// another implementation than the dataplane's. The field holds it least
/// significant byte first.
pub fn sctp_crc32c(seg: &[u8]) -> u32 {
    const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let mut d = CRC32C.digest();
    d.update(&seg[..8]);
    d.update(&[0; 4]);
    d.update(&seg[12..]);
    d.finalize()
}

/// Checks every checksum in an Ethernet frame (optionally 802.1Q tagged):
/// the IPv4 header, TCP/UDP/ICMP/ICMPv6 with pseudo-headers, SCTP's
/// CRC32c, and inside an ICMP error the quoted IPv4 header and the quoted
/// TCP/UDP checksum when the quoted packet is there in full (a quoted
/// SCTP CRC32c is not: a NAT cannot fix it, see `wire::nat`). Non-IP frames have nothing to check.
/// The error names the first thing that is wrong.
pub fn check_frame(frame: &[u8]) -> Result<(), String> {
    if frame.len() < 14 {
        return Err("truncated ethernet header".into());
    }
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let mut off = 14;
    if ethertype == 0x8100 || ethertype == 0x88a8 {
        if frame.len() < 18 {
            return Err("truncated vlan tag".into());
        }
        ethertype = u16::from_be_bytes([frame[16], frame[17]]);
        off = 18;
    }
    match ethertype {
        0x0800 => check_ipv4(&frame[off..], ""),
        0x86dd => check_ipv6(&frame[off..], ""),
        _ => Ok(()),
    }
}

/// `ctx` is "" for the outer packet and "quoted " inside an ICMP error,
/// where a packet cut short is normal and simply not checked further.
fn check_ipv4(b: &[u8], ctx: &str) -> Result<(), String> {
    let quoted = !ctx.is_empty();
    if b.len() < 20 {
        return cut(quoted, ctx, "ipv4 header");
    }
    if b[0] >> 4 != 4 {
        return Err(format!("{ctx}ipv4 version {}", b[0] >> 4));
    }
    let hlen = usize::from(b[0] & 0x0f) * 4;
    if hlen < 20 {
        return Err(format!("{ctx}ipv4 ihl {} < 5", hlen / 4));
    }
    if hlen > b.len() {
        return cut(quoted, ctx, "ipv4 options");
    }
    if internet_checksum(&[&b[..hlen]]) != 0 {
        return Err(format!("{ctx}ipv4 header checksum"));
    }
    let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if total < hlen {
        return Err(format!("{ctx}ipv4 total length {total} < header length"));
    }
    if total > b.len() {
        return cut(quoted, ctx, "ipv4 packet (total length beyond data)");
    }
    let frag = u16::from_be_bytes([b[6], b[7]]);
    if frag & 0x3fff != 0 {
        // A fragment: its L4 checksum covers bytes that are not here.
        return Ok(());
    }
    check_l4(b[9], &b[12..16], &b[16..20], &b[hlen..total], ctx)
}

fn check_ipv6(b: &[u8], ctx: &str) -> Result<(), String> {
    let quoted = !ctx.is_empty();
    if b.len() < 40 {
        return cut(quoted, ctx, "ipv6 header");
    }
    if b[0] >> 4 != 6 {
        return Err(format!("{ctx}ipv6 version {}", b[0] >> 4));
    }
    let end = 40 + usize::from(u16::from_be_bytes([b[4], b[5]]));
    if end > b.len() {
        return cut(quoted, ctx, "ipv6 packet (payload length beyond data)");
    }
    let mut next = b[6];
    let mut off = 40;
    loop {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-octet units.
            0 | 43 | 60 => {
                if off + 2 > end {
                    return Err(format!("{ctx}truncated ipv6 extension header"));
                }
                let len = (usize::from(b[off + 1]) + 1) * 8;
                if off + len > end {
                    return Err(format!("{ctx}truncated ipv6 extension header"));
                }
                next = b[off];
                off += len;
            }
            44 => {
                if off + 8 > end {
                    return Err(format!("{ctx}truncated ipv6 fragment header"));
                }
                if u16::from_be_bytes([b[off + 2], b[off + 3]]) != 0 {
                    // Not a complete datagram: nothing to check above IP.
                    return Ok(());
                }
                next = b[off];
                off += 8;
            }
            _ => break,
        }
    }
    check_l4(next, &b[8..24], &b[24..40], &b[off..end], ctx)
}

fn check_l4(proto: u8, src: &[u8], dst: &[u8], seg: &[u8], ctx: &str) -> Result<(), String> {
    let v6 = src.len() == 16;
    let pseudo = pseudo(src, dst, proto, seg.len());
    match proto {
        6 => {
            if seg.len() < 20 {
                return Err(format!("{ctx}truncated tcp header"));
            }
            let doff = usize::from(seg[12] >> 4) * 4;
            if doff < 20 || doff > seg.len() {
                return Err(format!("{ctx}tcp data offset {}", doff / 4));
            }
            if internet_checksum(&[&pseudo, seg]) != 0 {
                return Err(format!("{ctx}tcp checksum"));
            }
            Ok(())
        }
        17 => {
            if seg.len() < 8 {
                return Err(format!("{ctx}truncated udp header"));
            }
            let len = usize::from(u16::from_be_bytes([seg[4], seg[5]]));
            if len != seg.len() {
                return Err(format!("{ctx}udp length {len} != {}", seg.len()));
            }
            if seg[6] == 0 && seg[7] == 0 {
                // RFC 768 "no checksum"; RFC 8200 forbids it over IPv6.
                return if v6 {
                    Err(format!("{ctx}udp checksum zero on ipv6"))
                } else {
                    Ok(())
                };
            }
            if internet_checksum(&[&pseudo, seg]) != 0 {
                return Err(format!("{ctx}udp checksum"));
            }
            Ok(())
        }
        1 if !v6 => {
            if seg.len() < 8 {
                return Err(format!("{ctx}truncated icmp header"));
            }
            if internet_checksum(&[seg]) != 0 {
                return Err(format!("{ctx}icmp checksum"));
            }
            // Destination unreachable, time exceeded, parameter problem quote
            // the offending packet. One level only: errors about errors are
            // not sent (RFC 1122 3.2.2).
            if ctx.is_empty() && matches!(seg[0], 3 | 11 | 12) {
                check_ipv4(&seg[8..], "quoted ")?;
            }
            Ok(())
        }
        58 if v6 => {
            if seg.len() < 8 {
                return Err(format!("{ctx}truncated icmpv6 header"));
            }
            if internet_checksum(&[&pseudo, seg]) != 0 {
                return Err(format!("{ctx}icmpv6 checksum"));
            }
            // Types 1-4 are the errors that quote the offending packet.
            if ctx.is_empty() && (1..=4).contains(&seg[0]) {
                check_ipv6(&seg[8..], "quoted ")?;
            }
            Ok(())
        }
        132 => {
            if seg.len() < 12 {
                return Err(format!("{ctx}truncated sctp common header"));
            }
            if ctx.is_empty() && seg[8..12] != sctp_crc32c(seg).to_le_bytes() {
                return Err(format!("{ctx}sctp crc32c"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    if src.len() == 4 {
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, proto]);
    }
    p
}

/// Data ending early: an error in a packet of its own, expected in a quote.
fn cut(quoted: bool, ctx: &str, what: &str) -> Result<(), String> {
    if quoted {
        Ok(())
    } else {
        Err(format!("{ctx}truncated {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::*;

    const A: [u8; 4] = [198, 18, 0, 1];
    const B: [u8; 4] = [198, 19, 0, 10];
    const A6: [u8; 16] = [0xfd, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const B6: [u8; 16] = [0xfd, 0, 0, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];

    fn eth() -> Eth {
        Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 1, 1])
    }

    fn tcp() -> L4 {
        let mut t = Tcp::new(40000, 80, 7, 9, TCP_ACK | TCP_PSH);
        t.options = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        t.payload = b"GET / HTTP/1.1\r\n".to_vec();
        L4::Tcp(t)
    }

    fn udp() -> L4 {
        L4::Udp(Udp::new(40000, 53, b"\x12\x34query".to_vec()))
    }

    fn icmp_error(quote: Vec<u8>) -> L4 {
        L4::Icmp(Icmp {
            kind: 3,
            code: 3,
            rest: [0; 4],
            body: quote,
        })
    }

    fn v4(l4: L4) -> Vec<u8> {
        let mut ip = Ipv4::new(A, B, 64);
        ip.options = vec![0x94, 4, 0, 0];
        Packet::new(eth(), Ip::V4(ip), l4).frame()
    }

    fn v6(l4: L4) -> Vec<u8> {
        Packet::new(eth(), Ip::V6(Ipv6::new(A6, B6, 64)), l4).frame()
    }

    #[test]
    fn rfc1071_and_known_header_values() {
        // RFC 1071 section 3 example: sum ddf2, checksum its complement.
        assert_eq!(
            internet_checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            !0xddf2
        );
        // Split at an odd boundary gives the same result.
        assert_eq!(
            internet_checksum(&[&[0x00, 0x01, 0xf2], &[0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            !0xddf2
        );
        // A textbook IPv4 header with checksum 0xb861 filled in sums to zero.
        let hdr = [
            0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8,
            0, 0xc7,
        ];
        assert_eq!(internet_checksum(&[&hdr]), 0);
        let mut z = hdr;
        z[10] = 0;
        z[11] = 0;
        assert_eq!(internet_checksum(&[&z]), 0xb861);
    }

    #[test]
    fn good_packets_pass() {
        let quote = Packet::new(eth(), Ip::V4(Ipv4::new(B, A, 63)), udp()).ip_bytes();
        for f in [
            v4(tcp()),
            v4(udp()),
            v4(icmp_error(quote)),
            v6(tcp()),
            v6(udp()),
        ] {
            assert_eq!(check_frame(&f), Ok(()));
        }
        let q6 = Packet::new(eth(), Ip::V6(Ipv6::new(B6, A6, 63)), udp()).ip_bytes();
        let mut err6 = icmp_error(q6);
        if let L4::Icmp(i) = &mut err6 {
            i.kind = 1;
            i.code = 4;
        }
        assert_eq!(check_frame(&v6(err6)), Ok(()));
        assert_eq!(check_frame(&arp_request([2; 6], A, B)), Ok(()));
    }

    #[test]
    fn flipping_any_ipv4_byte_fails() {
        let quote = Packet::new(eth(), Ip::V4(Ipv4::new(B, A, 63)), tcp()).ip_bytes();
        for f in [v4(tcp()), v4(udp()), v4(icmp_error(quote))] {
            for i in 14..f.len() {
                let mut bad = f.clone();
                bad[i] ^= 0xff;
                assert!(check_frame(&bad).is_err(), "flip at {i} passed: {f:02x?}");
            }
        }
    }

    // IPv6 has no header checksum: version/class/flow label/hop limit are
    // covered by nothing, and a next header flipped to an unknown protocol
    // leaves nothing to check; payload length, addresses and L4 must fail.
    #[test]
    fn flipping_covered_ipv6_bytes_fails() {
        for f in [v6(tcp()), v6(udp())] {
            let covered = (14 + 4..14 + 6).chain(14 + 8..f.len());
            for i in covered {
                let mut bad = f.clone();
                bad[i] ^= 0xff;
                assert!(check_frame(&bad).is_err(), "flip at {i} passed");
            }
        }
    }

    /// RFC 3720 B.4 vectors for the CRC32c, and an SCTP packet whose
    /// every byte but the checksum's own is covered by it.
    #[test]
    fn sctp_crc32c_vectors_and_coverage() {
        const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        assert_eq!(CRC32C.checksum(&[0; 32]), 0x8a91_36aa);
        assert_eq!(CRC32C.checksum(&[0xff; 32]), 0x62a8_ab43);
        let sctp = || {
            L4::Sctp(Sctp::new(
                40000,
                3868,
                0x0102_0304,
                vec![SctpChunk::data(7, b"hello"), SctpChunk::sack(3)],
            ))
        };
        for f in [v4(sctp()), v6(sctp())] {
            assert_eq!(check_frame(&f), Ok(()));
            let l4 = f.len() - (12 + 24 + 16);
            for i in l4..f.len() {
                let mut bad = f.clone();
                bad[i] ^= 0x20;
                assert_eq!(check_frame(&bad), Err("sctp crc32c".into()), "byte {i}");
            }
        }
    }

    #[test]
    fn names_the_bad_checksum() {
        let f = v4(tcp());
        let mut bad = f.clone();
        bad[14 + 8] ^= 1; // TTL
        assert_eq!(check_frame(&bad), Err("ipv4 header checksum".into()));
        let mut bad = f.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(check_frame(&bad), Err("tcp checksum".into()));
        let mut bad = v6(udp());
        bad[14 + 40 + 9] ^= 1;
        assert_eq!(check_frame(&bad), Err("udp checksum".into()));
    }

    #[test]
    fn broken_quote_is_found_under_a_good_icmp_checksum() {
        let quote = Packet::new(eth(), Ip::V4(Ipv4::new(B, A, 63)), udp()).ip_bytes();
        let good = v4(icmp_error(quote.clone()));
        let mut q = quote.clone();
        q[8] ^= 1; // quoted TTL
        assert_eq!(
            check_frame(&v4(icmp_error(q))),
            Err("quoted ipv4 header checksum".into())
        );
        let mut q = quote.clone();
        let last = q.len() - 1;
        q[last] ^= 1;
        assert_eq!(
            check_frame(&v4(icmp_error(q))),
            Err("quoted udp checksum".into())
        );
        // A quote cut short is normal: only what is complete is checked.
        let cut_quote = v4(icmp_error(quote[..28].to_vec()));
        assert_eq!(check_frame(&cut_quote), Ok(()));
        assert_eq!(check_frame(&good), Ok(()));
    }

    #[test]
    fn udp_zero_checksum_ok_on_ipv4_not_ipv6() {
        let mut u = Udp::new(1000, 53, b"abc".to_vec());
        u.zero_checksum = true;
        let f = Packet::new(eth(), Ip::V4(Ipv4::new(A, B, 64)), L4::Udp(u)).frame();
        assert_eq!(&f[40..42], &[0, 0]);
        assert_eq!(check_frame(&f), Ok(()));
        let mut f6 = v6(udp());
        f6[14 + 46] = 0;
        f6[14 + 47] = 0;
        assert_eq!(check_frame(&f6), Err("udp checksum zero on ipv6".into()));
    }

    #[test]
    fn vlan_tagged_frames_are_checked() {
        let mut e = eth();
        e.vlan = Some(100);
        let mut f = Packet::new(e, Ip::V4(Ipv4::new(A, B, 64)), tcp()).frame();
        assert_eq!(check_frame(&f), Ok(()));
        let last = f.len() - 1;
        f[last] ^= 1;
        assert!(check_frame(&f).is_err());
    }

    #[test]
    fn every_prefix_is_an_answer_not_a_panic() {
        let quote = Packet::new(eth(), Ip::V4(Ipv4::new(B, A, 63)), tcp()).ip_bytes();
        for f in [v4(tcp()), v6(udp()), v4(icmp_error(quote))] {
            for n in 0..f.len() {
                assert!(check_frame(&f[..n]).is_err(), "prefix {n} passed");
            }
        }
    }

    #[test]
    fn malformed_headers_are_errors() {
        let f = v4(tcp());
        let mut ihl = f.clone();
        ihl[14] = 0x44;
        assert!(check_frame(&ihl).unwrap_err().contains("ihl"));
        let mut doff = v6(tcp());
        doff[14 + 40 + 12] = 0x40;
        assert!(check_frame(&doff).unwrap_err().contains("data offset"));
    }
}
