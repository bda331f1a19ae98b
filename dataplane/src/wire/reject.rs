//! Answers generated in place of a packet: to a Service with no endpoints,
//! as kube-proxy's REJECT rules give them (TCP gets a RST, SCTP an ABORT,
//! what an SCTP endpoint answers an out-of-the-blue packet with, RFC 9260
//! 8.4, everything else an ICMP / ICMPv6 port unreachable), and the ICMP
//! time exceeded a router sends for a packet whose TTL runs out on it. The
//! answer overwrites the frame buffer.
//!
//! These are new packets, so their (small) headers are summed in full; the
//! quoted bytes of an ICMP error are summed once too. This runs only for
//! rejected packets, never per forwarded packet.

use crate::addr::Addr;

use super::checksum::{finish, pseudo_header_sum, put_u16, sum_bytes};
use super::parse::{Parsed, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, L4};
use super::sctp::{self, Chunks};

/// TTL / hop limit of generated packets (Linux's default).
const ANSWER_TTL: u8 = 64;
/// RFC 1812 4.3.2.3: an ICMPv4 error should not exceed 576 bytes, so quote
/// at most 576 - 20 (IP) - 8 (ICMP) bytes.
const ICMPV4_MAX_QUOTE: usize = 548;
/// RFC 4443 2.4(c): an ICMPv6 error must not exceed the minimum MTU (1280).
const ICMPV6_MAX_QUOTE: usize = 1280 - 40 - 8;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Swaps the Ethernet source and destination MACs (VLAN tag kept).
fn swap_macs(frame: &mut [u8]) {
    for i in 0..6 {
        frame.swap(i, i + 6);
    }
}

/// The addresses, protocol and length of a generated IP header.
struct IpHeader<'a> {
    src: &'a [u8],
    dst: &'a [u8],
    proto: u8,
    l4_len: usize,
    dont_fragment: bool,
}

/// Writes an IP header at `l3`. Returns the L4 offset.
fn write_ip_header(frame: &mut [u8], l3: usize, v6: bool, hdr: IpHeader<'_>) -> usize {
    let IpHeader {
        src,
        dst,
        proto,
        l4_len,
        dont_fragment,
    } = hdr;
    if v6 {
        let h = &mut frame[l3..l3 + 40];
        h[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        h[6] = proto;
        h[7] = ANSWER_TTL;
        h[8..24].copy_from_slice(src);
        h[24..40].copy_from_slice(dst);
        l3 + 40
    } else {
        let h = &mut frame[l3..l3 + 20];
        h[0] = 0x45;
        h[1] = 0;
        h[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&[0, 0]);
        h[6..8].copy_from_slice(if dont_fragment { &[0x40, 0] } else { &[0, 0] });
        h[8] = ANSWER_TTL;
        h[9] = proto;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(src);
        h[16..20].copy_from_slice(dst);
        let c = finish(sum_bytes(0, h));
        put_u16(frame, l3 + 10, c);
        l3 + 20
    }
}

/// Starts the answer to `p` in its own frame: MACs swapped, a new IP
/// header from the VIP (`p`'s destination) back to the sender, don't
/// fragment, for `l4_len` bytes of `proto`. Returns the L4 offset.
fn turn_around(frame: &mut [u8], p: &Parsed, proto: u8, l4_len: usize) -> usize {
    swap_macs(frame);
    let hdr = IpHeader {
        src: p.dst.wire(p.v6),
        dst: p.src.wire(p.v6),
        proto,
        l4_len,
        dont_fragment: true,
    };
    write_ip_header(frame, p.l3_off, p.v6, hdr)
}

/// Replaces a TCP segment with the RST that answers it (RFC 9293 3.10.7.1).
/// Returns the new frame length. `frame` is the whole buffer. A RST is
/// never answered: the caller does not call this for one.
pub fn tcp_reset(frame: &mut [u8], p: &Parsed) -> usize {
    let L4::Tcp {
        sport,
        dport,
        flags,
        seq,
        ack,
        hdr_len,
    } = p.l4
    else {
        return 0;
    };
    let payload = (p.ip_end - p.l4_off - usize::from(hdr_len)) as u32;
    let (rst_seq, rst_ack, rst_flags) = if flags & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        let mut a = seq.wrapping_add(payload);
        if flags & TCP_SYN != 0 {
            a = a.wrapping_add(1);
        }
        if flags & TCP_FIN != 0 {
            a = a.wrapping_add(1);
        }
        (0, a, TCP_RST | TCP_ACK)
    };
    let l4 = turn_around(frame, p, IPPROTO_TCP, 20);
    let (src, dst) = (p.dst, p.src);
    let t = &mut frame[l4..l4 + 20];
    t[0..2].copy_from_slice(&dport.to_be_bytes());
    t[2..4].copy_from_slice(&sport.to_be_bytes());
    t[4..8].copy_from_slice(&rst_seq.to_be_bytes());
    t[8..12].copy_from_slice(&rst_ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = rst_flags;
    t[14..20].copy_from_slice(&[0; 6]);
    let sum = pseudo_header_sum(src.wire(p.v6), dst.wire(p.v6), IPPROTO_TCP, 20);
    let c = finish(sum_bytes(sum, &frame[l4..l4 + 20]));
    put_u16(frame, l4 + 16, c);
    l4 + 20
}

/// Which ICMP error answers a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpAnswer {
    /// Port unreachable (ICMPv4 3/3, ICMPv6 1/4), from the VIP: what
    /// kube-proxy's REJECT rules send.
    PortUnreachable,
    /// Time exceeded in transit (ICMPv4 11/0, ICMPv6 3/0), from a node
    /// address: what a router sends when a packet's TTL runs out on it.
    TimeExceeded,
}

/// Whether an SCTP packet to a Service without endpoints is answered
/// (RFC 9260 8.4, out-of-the-blue packets): not one carrying an ABORT or a
/// SHUTDOWN COMPLETE (items 2 and 6: "silently discard"), nor one that
/// starts with an ERROR chunk (item 7 discards a COOKIE ERROR; an ERROR
/// chunk is not looked into to tell which).
#[inline]
pub fn sctp_is_answered(first_chunk: u8, chunks: Chunks) -> bool {
    !chunks.has(Chunks::ABORT | Chunks::SHUTDOWN_COMPLETE) && first_chunk != sctp::ERROR
}

/// Length of the generated SCTP packet: common header and one empty chunk.
const SCTP_ANSWER_LEN: usize = sctp::COMMON_HDR_LEN + sctp::CHUNK_HDR_LEN;

/// Replaces an SCTP packet with what answers it out of the blue (RFC 9260
/// 8.4): a SHUTDOWN ACK gets a SHUTDOWN COMPLETE, anything else an ABORT.
/// Verification tag (8.4 item 3, 8.5.1): the answer to an INIT carries the
/// INIT's Initiate Tag with the T bit clear, since the sender has no tag of
/// its peer yet; every other answer reflects the packet's own tag with the
/// T bit set. Returns the new frame length; the caller has checked
/// [`sctp_is_answered`]. `frame` is the whole buffer.
pub fn sctp_abort(frame: &mut [u8], p: &Parsed) -> usize {
    let L4::Sctp {
        sport,
        dport,
        vtag,
        chunk,
        chunks,
        ..
    } = p.l4
    else {
        return 0;
    };
    let (tag, flags) = if chunk == sctp::INIT {
        // The parser checked the INIT's fixed part is there.
        let at = p.l4_off + sctp::COMMON_HDR_LEN + sctp::CHUNK_HDR_LEN;
        let t = u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
        (t, 0)
    } else {
        (vtag, sctp::FLAG_T)
    };
    let kind = if chunks.has(Chunks::SHUTDOWN_ACK) {
        sctp::SHUTDOWN_COMPLETE
    } else {
        sctp::ABORT
    };
    let l4 = turn_around(frame, p, IPPROTO_SCTP, SCTP_ANSWER_LEN);
    let s = &mut frame[l4..l4 + SCTP_ANSWER_LEN];
    s[0..2].copy_from_slice(&dport.to_be_bytes());
    s[2..4].copy_from_slice(&sport.to_be_bytes());
    s[4..8].copy_from_slice(&tag.to_be_bytes());
    s[12] = kind;
    s[13] = flags;
    s[14..16].copy_from_slice(&(sctp::CHUNK_HDR_LEN as u16).to_be_bytes());
    sctp::set_checksum(s);
    l4 + SCTP_ANSWER_LEN
}

/// Replaces a packet with the ICMP / ICMPv6 port unreachable that answers
/// it, from the address it was sent to, quoting as much of it as RFC 1812
/// / RFC 4443 allow and the buffer holds. Returns the new frame length.
/// `frame` is the whole buffer.
pub fn icmp_port_unreachable(frame: &mut [u8], p: &Parsed) -> usize {
    icmp_error(frame, p, IcmpAnswer::PortUnreachable, &p.dst)
}

/// Replaces a packet with the ICMP / ICMPv6 error `answer` about it, sent
/// from `src` (an address of the packet's family) to its source, quoting as
/// much of it as RFC 1812 / RFC 4443 allow and the buffer holds. Returns the
/// new frame length. `frame` is the whole buffer.
pub fn icmp_error(frame: &mut [u8], p: &Parsed, answer: IcmpAnswer, src: &Addr) -> usize {
    let (src, dst) = (*src, p.src);
    let ip_hdr = if p.v6 { 40 } else { 20 };
    let max_quote = if p.v6 {
        ICMPV6_MAX_QUOTE
    } else {
        ICMPV4_MAX_QUOTE
    };
    let quote_at = p.l3_off + ip_hdr + 8;
    let quote_len = (p.ip_end - p.l3_off)
        .min(max_quote)
        .min(frame.len().saturating_sub(quote_at));
    // Move the offending packet behind the new headers (regions overlap).
    frame.copy_within(p.l3_off..p.l3_off + quote_len, quote_at);
    swap_macs(frame);
    let icmp_len = 8 + quote_len;
    let proto = if p.v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    let hdr = IpHeader {
        src: src.wire(p.v6),
        dst: dst.wire(p.v6),
        proto,
        l4_len: icmp_len,
        dont_fragment: false,
    };
    let l4 = write_ip_header(frame, p.l3_off, p.v6, hdr);
    let (kind, code) = match (answer, p.v6) {
        (IcmpAnswer::PortUnreachable, true) => (1, 4),
        (IcmpAnswer::PortUnreachable, false) => (3, 3),
        (IcmpAnswer::TimeExceeded, true) => (3, 0),
        (IcmpAnswer::TimeExceeded, false) => (11, 0),
    };
    frame[l4..l4 + 8].copy_from_slice(&[kind, code, 0, 0, 0, 0, 0, 0]);
    let start = if p.v6 {
        pseudo_header_sum(
            src.wire(p.v6),
            dst.wire(p.v6),
            IPPROTO_ICMPV6,
            icmp_len as u32,
        )
    } else {
        0
    };
    let c = finish(sum_bytes(start, &frame[l4..l4 + icmp_len]));
    put_u16(frame, l4 + 2, c);
    l4 + icmp_len
}
