//! IPv6 packets carrying IPv4-mapped addresses (`::ffff:a.b.c.d`). The
//! dataplane keeps IPv4 addresses in that range, so the family of a packet
//! must come from its IP version, never from an address value:
//! the wire code (NAT, rejects) writes 16-byte addresses into an IPv6
//! header whatever their value (it used to write 4 bytes into the 16-byte
//! field, or panic copying them).
//!
//! Every transmitted frame is checked by the independent full-recompute
//! verifier (`fixtures::verify::check_frame`).

use dataplane::addr::Addr;
use dataplane::wire::nat::{rewrite_endpoint, translate_icmp_error, End, L4Csum};
use dataplane::wire::parse::{parse, parse_quoted};
use dataplane::wire::reject::{icmp_port_unreachable, tcp_reset};
use fixtures::packet::{Eth, Icmp, Ip, Ipv6, Packet, Tcp, Udp, L4, TCP_SYN};
use fixtures::verify::check_frame;

const VIP4: [u8; 4] = [198, 19, 0, 10];
const CLIENT4: [u8; 4] = [198, 18, 0, 9];
const BACKEND4: [u8; 4] = [198, 18, 1, 10];
const VIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x01];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0x01];
const BACKEND6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0x01];

/// `::ffff:a.b.c.d` as the 16 bytes of an IPv6 header.
fn mapped(v4: [u8; 4]) -> [u8; 16] {
    Addr::from_v4(v4).0
}

fn eth() -> Eth {
    Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
}

fn v6(src: [u8; 16], dst: [u8; 16], l4: L4) -> Vec<u8> {
    Packet::new(eth(), Ip::V6(Ipv6::new(src, dst, 64)), l4).frame()
}

fn syn(sport: u16, dport: u16) -> L4 {
    L4::Tcp(Tcp::new(sport, dport, 1, 0, TCP_SYN))
}

fn udp(sport: u16, dport: u16) -> L4 {
    L4::Udp(Udp::new(sport, dport, vec![1, 2, 3, 4]))
}

/// The wire layer on its own: given an IPv6 packet (`Parsed::v6`), every
/// address it writes is 16 bytes, whatever the value.
#[test]
fn rejects_of_an_ipv6_packet_write_16_byte_addresses_whatever_their_value() {
    for l4 in [syn(40000, 80), udp(40000, 80)] {
        let frame = v6(CLIENT6, VIP6, l4);
        let mut p = parse(&frame).unwrap();
        p.src = Addr::from_v4(CLIENT4);
        let mut buf = vec![0u8; 2048];
        buf[..frame.len()].copy_from_slice(&frame);
        let n = if p.proto == 6 {
            tcp_reset(&mut buf, &p)
        } else {
            icmp_port_unreachable(&mut buf, &p)
        };
        let out = &buf[..n];
        check_frame(out).unwrap();
        // The answer goes back to the (mapped) address the packet came from.
        assert_eq!(out[12..14], [0x86, 0xdd], "still IPv6");
        assert_eq!(out[22..38], VIP6, "answer source");
        assert_eq!(out[38..54], mapped(CLIENT4), "answer destination");
    }
}

#[test]
fn nat_of_an_ipv6_packet_writes_16_byte_addresses_whatever_their_value() {
    let frame = v6(CLIENT6, VIP6, syn(40000, 80));
    let p = parse(&frame).unwrap();
    let to = Addr::from_v4(BACKEND4);
    for l4csum in [L4Csum::Full, L4Csum::Partial] {
        let mut buf = frame.clone();
        rewrite_endpoint(&mut buf, &p, End::Dst, &to, 8080, l4csum);
        assert_eq!(buf[38..54], mapped(BACKEND4), "{l4csum:?}");
        assert_eq!(buf[22..38], CLIENT6, "{l4csum:?}");
        if l4csum == L4Csum::Full {
            check_frame(&buf).unwrap();
        }
    }

    // ICMPv6 error from the backend about client -> backend, translated
    // back to the VIP (here a mapped value): outer source and quoted
    // destination are both 16-byte fields.
    let quoted = Packet::new(
        eth(),
        Ip::V6(Ipv6::new(CLIENT6, BACKEND6, 64)),
        udp(40000, 8080),
    )
    .ip_bytes();
    let err = L4::Icmp(Icmp {
        kind: 1,
        code: 4,
        rest: [0; 4],
        body: quoted,
    });
    let mut buf = v6(BACKEND6, CLIENT6, err);
    let outer = parse(&buf).unwrap();
    let q = parse_quoted(&buf, &outer).unwrap();
    let vip = Addr::from_v4(VIP4);
    let backend = Addr::from_v6(BACKEND6);
    translate_icmp_error(&mut buf, &outer, &q, End::Dst, &backend, &vip, 80);
    check_frame(&buf).unwrap();
    assert_eq!(buf[22..38], mapped(VIP4), "outer source");
    let qd = q.l3_off + 24;
    assert_eq!(buf[qd..qd + 16], mapped(VIP4), "quoted destination");
    assert_eq!(buf[q.l4_off + 2..q.l4_off + 4], 80u16.to_be_bytes());
}
