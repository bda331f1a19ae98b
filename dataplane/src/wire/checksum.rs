//! Internet checksums: incremental update (RFC 1624) for rewrites on the hot
//! path, and a plain sum (RFC 1071) for the few packets we build from scratch
//! (resets, ICMP errors), whose headers are small.
//!
//! Checksums are handled as the 16-bit value stored in network byte order at
//! the field's offset; callers read and write them with `get_u16`/`put_u16`.

/// Reads the big-endian u16 at `off`.
#[inline]
pub fn get_u16(buf: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([buf[off], buf[off + 1]])
}

/// Writes `v` big-endian at `off`.
#[inline]
pub fn put_u16(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` for one 16-bit word.
#[inline]
pub fn update_word(csum: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

/// RFC 1624 over a run of words (an address: 4 or 16 bytes, even length).
#[inline]
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    debug_assert_eq!(old.len() % 2, 0);
    let mut sum = u32::from(!csum);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        sum += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    !fold(sum)
}

/// One's-complement sum of `data` (odd length padded with a zero byte),
/// added to `initial`; not folded or inverted.
#[inline]
pub fn sum_bytes(initial: u32, data: &[u8]) -> u32 {
    let mut sum = initial;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    // Fold early enough that a 64 KB datagram cannot overflow u32.
    (sum & 0xffff) + (sum >> 16)
}

/// Finishes a sum into the value to store in a checksum field.
#[inline]
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// The pseudo-header sum for TCP/UDP/ICMPv6 over IPv4 or IPv6 (RFC 793,
/// RFC 8200 8.1): addresses, protocol and L4 length.
pub fn pseudo_header_sum(src: &[u8], dst: &[u8], proto: u8, l4_len: u32) -> u32 {
    let mut sum = sum_bytes(0, src);
    sum = sum_bytes(sum, dst);
    sum += u32::from(proto);
    sum += l4_len >> 16;
    sum += l4_len & 0xffff;
    sum
}

/// Where a checksum covering a rewritten field lives, and how it behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumField {
    /// An ordinary checksum at this offset.
    At(usize),
    /// A UDP-over-IPv4 checksum: 0 means "none" and stays 0; a computed 0
    /// is sent as 0xffff (RFC 768).
    UdpV4At(usize),
    /// A UDP-over-IPv6 checksum: never 0; a computed 0 is sent as 0xffff.
    UdpV6At(usize),
    /// A partial TCP/UDP checksum left to offload (virtio NEEDS_CSUM): the
    /// field holds the pseudo-header sum itself, uncomplemented, and the
    /// kernel or NIC adds the segment later. An address change moves that
    /// sum the other way round from a full checksum (`P' = P - m + m'`);
    /// ports are not in it at all (see [`rewrite_partial_ports`]).
    PartialAt(usize),
}

impl CsumField {
    /// Applies the rewrite old -> new (bytes of equal, even length) to this checksum.
    #[inline]
    pub fn apply(self, buf: &mut [u8], old: &[u8], new: &[u8]) {
        match self {
            CsumField::At(off) => {
                let c = update_bytes(get_u16(buf, off), old, new);
                put_u16(buf, off, c);
            }
            CsumField::UdpV4At(off) | CsumField::UdpV6At(off) => {
                let cur = get_u16(buf, off);
                if cur == 0 && matches!(self, CsumField::UdpV4At(_)) {
                    return;
                }
                let c = update_bytes(cur, old, new);
                put_u16(buf, off, if c == 0 { 0xffff } else { c });
            }
            CsumField::PartialAt(off) => {
                // ~update(~P) = fold(P + ~m + m'): RFC 1624 on the
                // complement, as Linux's inet_proto_csum_replace* does
                // for CHECKSUM_PARTIAL.
                let c = !update_bytes(!get_u16(buf, off), old, new);
                put_u16(buf, off, c);
            }
        }
    }

    /// The field's offset.
    #[inline]
    pub fn offset(self) -> usize {
        match self {
            CsumField::At(o)
            | CsumField::UdpV4At(o)
            | CsumField::UdpV6At(o)
            | CsumField::PartialAt(o) => o,
        }
    }
}

/// Completes a TCP/UDP checksum whose field holds only the pseudo-header
/// sum (what a local sender with checksum offload leaves; AF_XDP frames
/// carry no flag saying so): sums the segment as it stands, field
/// included, which is exactly what offload hardware does. `seg` is the
/// L4 header and payload, `csum_off` the field's offset in it. `udp`: a
/// computed 0 goes out as 0xffff (RFC 768).
pub fn complete_partial(seg: &mut [u8], csum_off: usize, udp: bool) {
    let c = finish(sum_bytes(0, seg));
    put_u16(seg, csum_off, if udp && c == 0 { 0xffff } else { c });
}

/// Overwrites `buf[off..off + new.len()]` with `new` and updates every
/// checksum in `csums` incrementally. `off` must be even relative to the
/// start of every checksummed region (true for addresses and ports).
#[inline]
pub fn rewrite(buf: &mut [u8], off: usize, new: &[u8], csums: &[CsumField]) {
    // Up to both IPv6 addresses at once.
    let mut old = [0u8; 32];
    let n = new.len();
    old[..n].copy_from_slice(&buf[off..off + n]);
    if old[..n] == *new {
        return;
    }
    buf[off..off + n].copy_from_slice(new);
    for c in csums {
        c.apply(buf, &old[..n], new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(data: &[u8]) -> u16 {
        finish(sum_bytes(0, data))
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes: sum 0xddf2, checksum !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_bytes(0, &data)), 0xddf2);
        assert_eq!(full(&data), !0xddf2);
    }

    #[test]
    fn incremental_matches_full_for_a_word() {
        let mut data = [
            0x45u8, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 0x40, 6, 0, 0, 198, 18, 0, 1, 198, 19, 0, 1,
        ];
        let c = full(&data);
        put_u16(&mut data, 10, c);
        assert_eq!(full(&data), 0);
        rewrite(&mut data, 16, &[198, 18, 1, 9], &[CsumField::At(10)]);
        assert_eq!(full(&data), 0, "header must still verify");
    }

    #[test]
    fn udp_v4_zero_checksum_stays_zero() {
        let mut buf = [0u8; 8];
        CsumField::UdpV4At(6).apply(&mut buf, &[1, 2], &[3, 4]);
        assert_eq!(get_u16(&buf, 6), 0);
    }
}
