//! IP fragments through the pipeline, IPv4 and IPv6: a datagram's first
//! fragment picks the backend by its ports; the later fragments follow it;
//! the backend's fragmented reply is translated back the same way. Before,
//! fragments to a VIP were dropped and fragmented replies left un-NATed.
//!
//! Expected frames are the expected *whole* datagram (built by the
//! fixtures, checksums summed in full) cut by this file's own fragmenter
//! exactly as the input was: equal bytes prove the first fragment's
//! incremental checksum update right for the whole datagram.

use dataplane::addr::{Addr, Proto};
use dataplane::service::{
    Affinity, BackendSpec, BackendState, NoEndpoints, ServiceKey, ServiceSpec,
};
use dataplane::steer::{owner, FragmentOwners};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::{DropReason, Verdict};
use fixtures::packet::{Eth, Ip, Ipv4, Ipv6, Packet, Udp, L4};
use fixtures::verify::internet_checksum;

mod common {
    pub mod frames;
}
use common::frames::{run_at, small_pipeline};

const BPORT: u16 = 8080;
const VPORT: u16 = 53;
/// Payload bytes per fragment (a multiple of 8).
const CHUNK: usize = 1232;

struct Net {
    client: Addr,
    vip: Addr,
    backend: Addr,
    other: Addr,
}

fn net(v6: bool) -> Net {
    if v6 {
        let a = |n: u8, h: u8| {
            let mut b = [0u8; 16];
            b[0] = 0xfd;
            b[1] = n;
            b[15] = h;
            Addr::from_v6(b)
        };
        Net {
            client: a(0, 9),
            vip: a(0xff, 0x53),
            backend: a(1, 10),
            other: a(2, 20),
        }
    } else {
        Net {
            client: Addr::from_v4([198, 18, 0, 9]),
            vip: Addr::from_v4([198, 19, 0, 53]),
            backend: Addr::from_v4([198, 18, 1, 10]),
            other: Addr::from_v4([198, 18, 2, 20]),
        }
    }
}

fn table(n: &Net) -> ServiceTable {
    let spec = ServiceSpec {
        key: ServiceKey {
            vip: n.vip,
            port: VPORT,
            proto: Proto::Udp,
        },
        name: "kube-system/dns:dns".into(),
        backends: vec![BackendSpec {
            addr: n.backend,
            port: BPORT,
            weight: 1,
            state: BackendState::Ready,
        }],
        affinity: Affinity::None,
        no_endpoints: NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    };
    ServiceTable::from_specs(vec![spec], TableConfig::default())
}

/// A whole UDP datagram's IP packet (checksums summed in full).
fn datagram(src: Addr, dst: Addr, sport: u16, dport: u16, ttl: u8, len: usize) -> (Ip, Vec<u8>) {
    let body: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let ip = if src.is_v4() {
        let mut h = Ipv4::new(src.v4_octets(), dst.v4_octets(), ttl);
        h.flags_frag = 0;
        Ip::V4(h)
    } else {
        Ip::V6(Ipv6::new(src.0, dst.0, ttl))
    };
    let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let bytes = Packet::new(eth, ip.clone(), L4::Udp(Udp::new(sport, dport, body))).ip_bytes();
    (ip, bytes)
}

/// Cuts an IP packet into Ethernet frames of fragments with `id`, payload
/// [`CHUNK`] bytes each, in order (RFC 791 / RFC 8200 4.5).
fn fragment(ip_packet: &[u8], id: u32) -> Vec<Vec<u8>> {
    let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let v6 = ip_packet[0] >> 4 == 6;
    let hdr = if v6 { 40 } else { 20 };
    let payload = &ip_packet[hdr..];
    let n = payload.len().div_ceil(CHUNK);
    (0..n)
        .map(|i| {
            let part = &payload[i * CHUNK..((i + 1) * CHUNK).min(payload.len())];
            let more = u16::from(i + 1 < n);
            let offset = (i * CHUNK / 8) as u16;
            let mut out = ip_packet[..hdr].to_vec();
            if v6 {
                let next = out[6];
                out[6] = 44;
                out[4..6].copy_from_slice(&((8 + part.len()) as u16).to_be_bytes());
                out.extend_from_slice(&[next, 0]);
                out.extend_from_slice(&((offset << 3) | more).to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(part);
                eth.frame(0x86dd, &out)
            } else {
                out[2..4].copy_from_slice(&((hdr + part.len()) as u16).to_be_bytes());
                out[4..6].copy_from_slice(&(id as u16).to_be_bytes());
                out[6..8].copy_from_slice(&((more << 13) | offset).to_be_bytes());
                out[10..12].copy_from_slice(&[0, 0]);
                let c = internet_checksum(&[&out[..hdr]]);
                out[10..12].copy_from_slice(&c.to_be_bytes());
                out.extend_from_slice(part);
                eth.frame(0x0800, &out)
            }
        })
        .collect()
}

fn fragments_follow_their_first(v6: bool) {
    let n = net(v6);
    let t = table(&n);
    let mut p = small_pipeline();
    let len = 3000;

    // Client -> VIP, three fragments: each leaves addressed to the backend.
    let (_, query) = datagram(n.client, n.vip, 40000, VPORT, 64, len);
    let (_, want) = datagram(n.client, n.backend, 40000, BPORT, 63, len);
    let frags = fragment(&query, 0x1234);
    assert_eq!(frags.len(), 3);
    for (i, (f, w)) in frags.iter().zip(fragment(&want, 0x1234)).enumerate() {
        let (v, out) = run_at(&mut p, &t, f, 1);
        assert_eq!(v, Verdict::Tx(0), "v6={v6} fragment {i}");
        assert_eq!(out, w, "v6={v6} fragment {i}");
    }
    // The backend's fragmented answer goes back from the VIP.
    let (_, reply) = datagram(n.backend, n.client, BPORT, 40000, 64, len);
    let (_, want) = datagram(n.vip, n.client, VPORT, 40000, 63, len);
    for (i, (f, w)) in fragment(&reply, 0x9999)
        .iter()
        .zip(fragment(&want, 0x9999))
        .enumerate()
    {
        let (v, out) = run_at(&mut p, &t, f, 1);
        assert_eq!(v, Verdict::Tx(0), "v6={v6} reply fragment {i}");
        assert_eq!(out, w, "v6={v6} reply fragment {i}");
    }
    let c = *p.counters();
    assert_eq!((c.forwarded, c.reversed, c.fragments_followed), (3, 3, 4));
    assert_eq!(p.conntrack().len(), 1, "one flow for the exchange");

    // A later fragment before its first one: dropped, counted; the rest of
    // the datagram still follows its first fragment.
    let (_, q2) = datagram(n.client, n.vip, 40001, VPORT, 64, len);
    let f2 = fragment(&q2, 0x2222);
    let (v, out) = run_at(&mut p, &t, &f2[1], 2);
    assert_eq!(v, Verdict::Drop(DropReason::Fragment));
    assert_eq!(out, f2[1]);
    assert_eq!(run_at(&mut p, &t, &f2[0], 2).0, Verdict::Tx(0));
    assert_eq!(run_at(&mut p, &t, &f2[2], 2).0, Verdict::Tx(0));
    // Same id and addresses but another protocol's datagram is not it.
    // A later fragment between other hosts is not ours: passed unchanged.
    let (_, elsewhere) = datagram(n.client, n.other, 40000, 9, 64, len);
    let f3 = fragment(&elsewhere, 0x1234);
    assert_eq!(
        run_at(&mut p, &t, &f3[1], 2),
        (Verdict::Pass, f3[1].clone())
    );
    // Past the timeout the first fragment's translation is forgotten.
    let late = run_at(&mut p, &t, &frags[2], 2 + 31).0;
    assert_eq!(late, Verdict::Drop(DropReason::Fragment));
}

#[test]
fn v4_fragments_follow_their_first_fragment_both_ways() {
    fragments_follow_their_first(false);
}

#[test]
fn v6_fragments_follow_their_first_fragment_both_ways() {
    fragments_follow_their_first(true);
}

/// With several workers, every fragment of a datagram goes to the worker
/// its first fragment (which has the ports) went to; without the memory,
/// later fragments (hashed by address) would often land elsewhere.
#[test]
fn later_fragments_are_steered_to_their_first_fragments_owner() {
    for v6 in [false, true] {
        let n = net(v6);
        let t = table(&n);
        let mut owners = FragmentOwners::default();
        let mut elsewhere = 0;
        for port in 0..64u16 {
            let (_, q) = datagram(n.client, n.vip, 40000 + port, VPORT, 64, 3000);
            let frags = fragment(&q, 0x100 + u32::from(port));
            let first = owners.owner(&frags[0], &t, 4);
            assert_eq!(
                first,
                owner(&frags[0], &t, 4),
                "first fragment: its flow's owner"
            );
            for f in &frags[1..] {
                assert_eq!(owners.owner(f, &t, 4), first, "v6={v6} port {port}");
                elsewhere += usize::from(owner(f, &t, 4) != first);
            }
        }
        assert!(
            elsewhere > 0,
            "v6={v6}: the test needs fragments hashed elsewhere"
        );
    }
}
