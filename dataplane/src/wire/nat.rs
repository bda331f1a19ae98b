//! In-place NAT rewrites with incremental checksum updates (RFC 1624).
//!
//! SCTP is the exception: its CRC32c cannot be updated incrementally, so an
//! SCTP packet's checksum is recomputed in full after its port is rewritten
//! (see [`super::sctp`]).
//!
//! Every function here takes a frame already validated by
//! [`parse`](super::parse::parse), so the offsets it uses are in bounds.

use super::checksum::{complete_partial, finish, get_u16, rewrite, update_word, CsumField};
use super::parse::{Parsed, Quoted, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use super::sctp;
use crate::addr::Addr;

/// Which end of a packet a rewrite changes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum End {
    Src,
    Dst,
}

/// How a frame's L4 checksum field stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum L4Csum {
    /// A full checksum (or one to be checked for being only the
    /// pseudo-header sum, see [`rewrite_endpoint`]).
    Full,
    /// Partial, flagged by the rx backend (AF_PACKET vnet header): stays
    /// partial, for the kernel or NIC to finish after transmit.
    Partial,
}

/// The checksums covering the addresses of a packet: the IPv4 header
/// checksum, and the L4 checksum whose pseudo-header includes them.
/// Returns them in a fixed array (no allocation) and how many are valid.
#[inline]
fn addr_csums(
    v6: bool,
    l3_off: usize,
    proto: u8,
    l4_off: usize,
    end: usize,
) -> ([CsumField; 2], usize) {
    let mut out = [CsumField::At(0); 2];
    let mut n = 0;
    if !v6 {
        out[n] = CsumField::At(l3_off + 10);
        n += 1;
    }
    if let Some(c) = l4_csum(v6, proto, l4_off, end) {
        out[n] = c;
        n += 1;
    }
    (out, n)
}

/// The L4 checksum field covering ports and (by pseudo-header) addresses,
/// if it lies before `end`. ICMPv4 has no pseudo-header, so it is absent.
#[inline]
fn l4_csum(v6: bool, proto: u8, l4_off: usize, end: usize) -> Option<CsumField> {
    let c = match (proto, v6) {
        (IPPROTO_TCP, _) => CsumField::At(l4_off + 16),
        (IPPROTO_UDP, false) => CsumField::UdpV4At(l4_off + 6),
        (IPPROTO_UDP, true) => CsumField::UdpV6At(l4_off + 6),
        (IPPROTO_ICMPV6, true) => CsumField::At(l4_off + 2),
        _ => return None,
    };
    (c.offset() + 2 <= end).then_some(c)
}

/// Whether the TCP/UDP checksum at `csum_off` holds exactly the
/// pseudo-header sum of `p` (addresses, protocol, L4 length), i.e. was left
/// for offload to finish. A few additions: it runs for every NATed frame.
#[inline(always)]
fn holds_pseudo_sum(frame: &[u8], p: &Parsed, csum_off: usize) -> bool {
    let src = p.src_off();
    let words = if p.v6 { 16 } else { 4 };
    // Source and destination are adjacent in both headers.
    let mut sum = u32::from(p.proto) + p.l4_len() as u32;
    for k in 0..words {
        sum += u32::from(get_u16(frame, src + 2 * k));
    }
    get_u16(frame, csum_off) == !finish(sum)
}

/// Finishes a pseudo-header-only checksum over the segment (see
/// [`rewrite_endpoint`] for why this is safe). Rare: only frames from a
/// local sender with tx offload, so kept out of the NAT's inlined path.
#[cold]
#[inline(never)]
fn complete_pseudo_only(frame: &mut [u8], p: &Parsed, csum_off: usize) {
    let seg = &mut frame[p.l4_off..p.ip_end];
    complete_partial(seg, csum_off - p.l4_off, p.proto == IPPROTO_UDP);
}

/// With full checksums: completes a TCP/UDP checksum field that holds
/// exactly the pseudo-header sum (see [`rewrite_endpoint`] for why this is
/// safe). A fragment's checksum covers the whole datagram: never a
/// pseudo-header-only one (senders fragment after checksumming).
#[inline]
fn complete_if_pseudo_only(frame: &mut [u8], p: &Parsed) {
    let field = match p.proto {
        IPPROTO_TCP => Some(p.l4_off + 16),
        IPPROTO_UDP => Some(p.l4_off + 6),
        _ => None,
    };
    if let Some(off) = field.filter(|&o| o + 2 <= p.ip_end && !p.fragment) {
        if holds_pseudo_sum(frame, p, off) {
            complete_pseudo_only(frame, p, off);
        }
    }
}

/// The checksums an address change updates in a frame whose L4 checksum is
/// left to offload: the IPv4 header's, and a TCP/UDP one as a partial sum
/// (other L4 checksums are not the pseudo-header's business then).
#[inline]
fn partial_addr_csums(p: &Parsed) -> ([CsumField; 2], usize) {
    let (mut csums, mut n) = addr_csums(p.v6, p.l3_off, p.proto, p.l4_off, p.ip_end);
    let l4_field = usize::from(!p.v6);
    if n > l4_field {
        if matches!(p.proto, IPPROTO_TCP | IPPROTO_UDP) {
            csums[l4_field] = CsumField::PartialAt(csums[l4_field].offset());
        } else {
            n = l4_field;
        }
    }
    (csums, n)
}

/// Rewrites one end (address and port) of a TCP, UDP or SCTP packet.
///
/// With [`L4Csum::Full`], a checksum field that holds exactly the
/// pseudo-header sum is first completed over the segment: a local sender
/// with tx checksum offload (a pod's veth) leaves that, and AF_XDP frames
/// carry no flag saying so. This is safe for a frame whose *valid* full
/// checksum merely happens to equal that value: completing sums the
/// segment with the field in place, and for a valid checksum C that sum is
/// `~C`, so completion writes C again — it is idempotent on valid frames,
/// and only a corrupted frame carrying that exact value (1 in 65,536 of
/// corrupted frames, after the link's CRC) would come out re-checksummed.
/// The comparison costs a few additions per NATed frame; the payload pass
/// only the frames that need it.
///
/// With [`L4Csum::Partial`] the field stays partial: addresses update the
/// pseudo-header sum, ports are left to the later offload pass.
///
/// SCTP's CRC32c is recomputed over the whole SCTP packet either way,
/// whatever the field held: a sender that left it to offload (Linux writes
/// 0 there) gets the full checksum too.
#[inline]
pub fn rewrite_endpoint(
    frame: &mut [u8],
    p: &Parsed,
    end: End,
    addr: &Addr,
    port: u16,
    l4csum: L4Csum,
) {
    match l4csum {
        L4Csum::Full => {
            complete_if_pseudo_only(frame, p);
            rewrite_full(frame, p, end, addr, port);
        }
        L4Csum::Partial => rewrite_partial(frame, p, end, addr, port),
    }
    if p.proto == IPPROTO_SCTP {
        sctp::set_checksum(&mut frame[p.l4_off..p.ip_end]);
    }
}

/// Rewrites both ends of a TCP, UDP or SCTP packet (a source-NATed
/// flow): [`rewrite_endpoint`] of the source and of the destination, in one
/// pass. Addresses and ports are adjacent in every header, so each pair is
/// one field for the incremental update: half the checksum work of two
/// calls, and the pseudo-header check and SCTP's CRC32c run once.
#[inline]
pub fn rewrite_both_ends(
    frame: &mut [u8],
    p: &Parsed,
    src: (&Addr, u16),
    dst: (&Addr, u16),
    l4csum: L4Csum,
) {
    let alen = if p.v6 { 16 } else { 4 };
    let mut addrs = [0u8; 32];
    addrs[..alen].copy_from_slice(src.0.wire(p.v6));
    addrs[alen..2 * alen].copy_from_slice(dst.0.wire(p.v6));
    let addrs = &addrs[..2 * alen];
    let mut ports = [0u8; 4];
    ports[..2].copy_from_slice(&src.1.to_be_bytes());
    ports[2..].copy_from_slice(&dst.1.to_be_bytes());
    match l4csum {
        L4Csum::Full => {
            complete_if_pseudo_only(frame, p);
            let (csums, n) = addr_csums(p.v6, p.l3_off, p.proto, p.l4_off, p.ip_end);
            rewrite(frame, p.src_off(), addrs, &csums[..n]);
            // The IPv4 header checksum does not cover ports: only the L4 one.
            rewrite(frame, p.l4_off, &ports, &csums[usize::from(!p.v6)..n]);
        }
        L4Csum::Partial => {
            let (csums, n) = partial_addr_csums(p);
            rewrite(frame, p.src_off(), addrs, &csums[..n]);
            rewrite(frame, p.l4_off, &ports, &[]);
        }
    }
    if p.proto == IPPROTO_SCTP {
        sctp::set_checksum(&mut frame[p.l4_off..p.ip_end]);
    }
}

/// [`rewrite_endpoint`] of a frame with full checksums.
#[inline]
fn rewrite_full(frame: &mut [u8], p: &Parsed, end: End, addr: &Addr, port: u16) {
    let (csums, n) = addr_csums(p.v6, p.l3_off, p.proto, p.l4_off, p.ip_end);
    let (addr_off, port_off) = end_offsets(p, end);
    rewrite(frame, addr_off, addr.wire(p.v6), &csums[..n]);
    // The IPv4 header checksum does not cover ports: only the L4 one.
    let l4 = if p.v6 { &csums[..n] } else { &csums[1..n] };
    rewrite(frame, port_off, &port.to_be_bytes(), l4);
}

/// [`rewrite_endpoint`] of a frame whose L4 checksum is left to offload:
/// the address moves the pseudo-header sum, the port touches no checksum
/// (the offload pass sums it). Out of line: AF_PACKET frames only.
#[inline(never)]
fn rewrite_partial(frame: &mut [u8], p: &Parsed, end: End, addr: &Addr, port: u16) {
    let (csums, n) = partial_addr_csums(p);
    let (addr_off, port_off) = end_offsets(p, end);
    rewrite(frame, addr_off, addr.wire(p.v6), &csums[..n]);
    rewrite(frame, port_off, &port.to_be_bytes(), &[]);
}

#[inline]
fn end_offsets(p: &Parsed, end: End) -> (usize, usize) {
    match end {
        End::Src => (p.src_off(), p.l4_off),
        End::Dst => (p.dst_off(), p.l4_off + 2),
    }
}

/// Rewrites one address of a fragment past the first: it has no L4 header,
/// so only the IPv4 header checksum covers the address (the first
/// fragment's L4 checksum, updated there, covers it for the datagram).
#[inline]
pub fn rewrite_address(frame: &mut [u8], p: &Parsed, end: End, addr: &Addr) {
    let (addr_off, _) = end_offsets(p, end);
    let csum = [CsumField::At(p.l3_off + 10)];
    let csums: &[CsumField] = if p.v6 { &[] } else { &csum };
    rewrite(frame, addr_off, addr.wire(p.v6), csums);
}

/// Decrements the TTL / hop limit. The caller has checked it is > 1.
#[inline]
pub fn decrement_ttl(frame: &mut [u8], p: &Parsed) {
    let off = p.ttl_off();
    if p.v6 {
        frame[off] -= 1;
        return;
    }
    // TTL shares a 16-bit word with the protocol byte.
    let old = get_u16(frame, off);
    frame[off] -= 1;
    let new = get_u16(frame, off);
    let c = update_word(get_u16(frame, p.l3_off + 10), old, new);
    frame[p.l3_off + 10..p.l3_off + 12].copy_from_slice(&c.to_be_bytes());
}

/// Translates an ICMP error about a NATed flow. `end` names which end of
/// the QUOTED packet carries the translated endpoint (`Dst` for errors from
/// a backend about client -> backend, `Src` for errors to a VIP about a
/// reply VIP -> client); the outer header's opposite end (outer src for
/// `Dst`, outer dst for `Src`) is rewritten too when it holds `from`.
pub fn translate_icmp_error(
    frame: &mut [u8],
    outer: &Parsed,
    q: &Quoted,
    end: End,
    from: &Addr,
    to: &Addr,
    to_port: u16,
) {
    // Outer header: the address the client or backend must see.
    let outer_end = match end {
        End::Dst => End::Src,
        End::Src => End::Dst,
    };
    let outer_addr = match outer_end {
        End::Src => outer.src,
        End::Dst => outer.dst,
    };
    if outer_addr == *from {
        let off = match outer_end {
            End::Src => outer.src_off(),
            End::Dst => outer.dst_off(),
        };
        let (csums, n) = addr_csums(
            outer.v6,
            outer.l3_off,
            outer.proto,
            outer.l4_off,
            outer.ip_end,
        );
        rewrite(frame, off, to.wire(outer.v6), &csums[..n]);
    }

    // Quoted header: its IPv4 checksum and L4 checksum (if quoted) cover it;
    // the ICMP checksum covers all of it. A quoted SCTP header's CRC32c is
    // left as it is: it covers the whole SCTP packet, of which an ICMP error
    // quotes a part (RFC 792 needs only the first 8 bytes, the ports and
    // the verification tag), so it cannot be recomputed, and no receiver
    // checks it (Linux's sctp_err_lookup matches ports and the tag only).
    let icmp = CsumField::At(outer.l4_off + 2);
    let (addr_off, port_off) = match end {
        End::Src => (q.l3_off + if q.v6 { 8 } else { 12 }, q.l4_off),
        End::Dst => (q.l3_off + if q.v6 { 24 } else { 16 }, q.l4_off + 2),
    };
    let mut inner = [CsumField::At(0); 2];
    let mut n = 0;
    if !q.v6 {
        inner[n] = CsumField::At(q.l3_off + 10);
        n += 1;
    }
    let l4 = if q.proto == IPPROTO_TCP || q.proto == IPPROTO_UDP {
        l4_csum(q.v6, q.proto, q.l4_off, q.end)
    } else {
        None
    };
    if let Some(c) = l4 {
        inner[n] = c;
        n += 1;
    }
    // The field change goes into the ICMP checksum first; then each quoted
    // checksum is updated and its own change folded into the ICMP one.
    rewrite(frame, addr_off, to.wire(q.v6), &[icmp]);
    let old_addr = from.wire(q.v6);
    let new_addr = to.wire(q.v6);
    apply_quoted_csums(frame, outer, &inner[..n], old_addr, new_addr);
    if matches!(q.proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP) {
        let old_port = get_u16(frame, port_off).to_be_bytes();
        let new_port = to_port.to_be_bytes();
        rewrite(frame, port_off, &new_port, &[icmp]);
        let l4_only = if q.v6 { &inner[..n] } else { &inner[1..n] };
        apply_quoted_csums(frame, outer, l4_only, &old_port, &new_port);
    }
}

/// Applies the change old -> new (already written) to each quoted checksum
/// and folds each checksum's own change into the ICMP checksum.
fn apply_quoted_csums(
    frame: &mut [u8],
    outer: &Parsed,
    quoted: &[CsumField],
    old: &[u8],
    new: &[u8],
) {
    let icmp = outer.l4_off + 2;
    for c in quoted {
        let off = c.offset();
        let before = get_u16(frame, off);
        c.apply(frame, old, new);
        let after = get_u16(frame, off);
        let ic = update_word(get_u16(frame, icmp), before, after);
        frame[icmp..icmp + 2].copy_from_slice(&ic.to_be_bytes());
    }
}
