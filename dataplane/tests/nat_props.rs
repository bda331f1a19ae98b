//! Property tests of the NAT path through the real pipeline:
//! - forward then reverse restores the client's view (VIP:port) exactly;
//! - every rewritten frame verifies under an independent full recompute of
//!   all its checksums (so incremental == full);
//! - payloads, TTL handling and L2 headers behave as specified.

use dataplane::addr::{Addr, Proto};
use dataplane::pipeline::Pipeline;
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::Verdict;
use dataplane::wire::parse::{parse, L4 as PL4};
use fixtures::packet::{Eth, Ip, Ipv4, Ipv6, Packet, Tcp, Udp, L4};
use fixtures::verify::check_frame;
use proptest::prelude::*;

mod common {
    pub mod frames;
}
use common::frames::small_pipeline;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

#[derive(Debug, Clone)]
struct Case {
    v6: bool,
    tcp: bool,
    client_host: u8,
    cport: u16,
    vport: u16,
    bport: u16,
    backends: u8,
    payload: Vec<u8>,
    vlan: Option<u16>,
    ipv4_options: bool,
    udp_zero_csum: bool,
    flags: u8,
    ttl: u8,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            any::<bool>(),
            any::<bool>(),
            1u8..250,
            1024u16..65535,
            1u16..65535,
            1u16..65535,
            1u8..8,
        ),
        (
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::option::of(1u16..4094),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(0x02u8), Just(0x10), Just(0x18), Just(0x11)],
            2u8..=255,
        ),
    )
        .prop_map(
            |(
                (v6, tcp, client_host, cport, vport, bport, backends),
                (payload, vlan, ipv4_options, udp_zero_csum, flags, ttl),
            )| Case {
                v6,
                tcp,
                client_host,
                cport,
                vport,
                bport,
                backends,
                payload,
                vlan,
                ipv4_options,
                udp_zero_csum,
                flags,
                ttl,
            },
        )
}

fn addr(v6: bool, net: u8, host: u8) -> Addr {
    if v6 {
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[13] = net;
        a[15] = host;
        Addr::from_v6(a)
    } else {
        Addr::from_v4([
            198,
            if net == 2 { 19 } else { 18 },
            if net == 2 { 0 } else { net },
            host,
        ])
    }
}

fn ip(v6: bool, src: Addr, dst: Addr, ttl: u8, options: bool) -> Ip {
    if v6 {
        Ip::V6(Ipv6::new(src.0, dst.0, ttl))
    } else {
        let mut h = Ipv4::new(src.v4_octets(), dst.v4_octets(), ttl);
        if options {
            // Router alert (RFC 2113) padded to 4 bytes: shifts L4 by 4.
            h.options = vec![0x94, 0x04, 0x00, 0x00];
        }
        Ip::V4(h)
    }
}

fn l4(c: &Case, sport: u16, dport: u16) -> L4 {
    if c.tcp {
        let mut t = Tcp::new(sport, dport, 1000, 2000, c.flags);
        t.payload = c.payload.clone();
        L4::Tcp(t)
    } else {
        let mut u = Udp::new(sport, dport, c.payload.clone());
        u.zero_checksum = c.udp_zero_csum && !c.v6;
        L4::Udp(u)
    }
}

fn table(c: &Case, vip: Addr) -> ServiceTable {
    let backends = (0..c.backends)
        .map(|i| BackendSpec {
            addr: addr(c.v6, 1, 10 + i),
            port: c.bport,
            weight: 1,
            state: BackendState::Ready,
        })
        .collect();
    let spec = ServiceSpec {
        key: ServiceKey {
            vip,
            port: c.vport,
            proto: if c.tcp { Proto::Tcp } else { Proto::Udp },
        },
        name: "default/prop:p".into(),
        backends,
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    };
    ServiceTable::from_specs(vec![spec], TableConfig::default())
}

fn run(p: &mut Pipeline, t: &ServiceTable, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let (v, n) = p.process_frame(t, &mut buf, frame.len(), 100);
    buf.truncate(n);
    (v, buf)
}

fn ports(frame: &[u8]) -> (u16, u16) {
    match parse(frame).unwrap().l4 {
        PL4::Tcp { sport, dport, .. } | PL4::Udp { sport, dport } => (sport, dport),
        other => panic!("not TCP/UDP: {other:?}"),
    }
}

fn payload_of(frame: &[u8]) -> Vec<u8> {
    let p = parse(frame).unwrap();
    let hdr = match p.l4 {
        PL4::Tcp { hdr_len, .. } => usize::from(hdr_len),
        _ => 8,
    };
    frame[p.l4_off + hdr..p.ip_end].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn forward_then_reverse_restores_the_clients_view(c in case()) {
        let client = addr(c.v6, 0, c.client_host);
        let vip = addr(c.v6, 2, 1);
        let t = table(&c, vip);
        let mut pipe = small_pipeline();
        let mut eth = Eth::new(CLIENT_MAC, GW_MAC);
        eth.vlan = c.vlan;

        let fwd_in = Packet::new(eth.clone(), ip(c.v6, client, vip, c.ttl, c.ipv4_options), l4(&c, c.cport, c.vport)).frame();
        let (v, fwd_out) = run(&mut pipe, &t, &fwd_in);
        prop_assert_eq!(v, Verdict::Tx(0));
        prop_assert_eq!(check_frame(&fwd_out), Ok(()));
        let fp = parse(&fwd_out).unwrap();
        prop_assert_eq!(fp.src, client);
        prop_assert!((0..c.backends).any(|i| fp.dst == addr(c.v6, 1, 10 + i)), "dst {} is not a backend", fp.dst);
        prop_assert_eq!(ports(&fwd_out), (c.cport, c.bport));
        prop_assert_eq!(fp.ttl, c.ttl - 1);
        prop_assert_eq!(&fwd_out[..12], &fwd_in[..12], "L2 unchanged in replay");
        prop_assert_eq!(payload_of(&fwd_out), c.payload.clone());
        if c.udp_zero_csum && !c.v6 && !c.tcp {
            prop_assert_eq!(&fwd_out[fp.l4_off + 6..fp.l4_off + 8], &[0u8, 0][..], "zero UDP checksum stays zero");
        }

        // The backend answers; the client must see the VIP again.
        let backend = fp.dst;
        let reply_in = Packet::new(eth.reversed(), ip(c.v6, backend, client, c.ttl, c.ipv4_options), l4(&c, c.bport, c.cport)).frame();
        let (v, reply_out) = run(&mut pipe, &t, &reply_in);
        prop_assert_eq!(v, Verdict::Tx(0));
        prop_assert_eq!(check_frame(&reply_out), Ok(()));
        let rp = parse(&reply_out).unwrap();
        prop_assert_eq!((rp.src, rp.dst), (vip, client));
        prop_assert_eq!(ports(&reply_out), (c.vport, c.cport));
        prop_assert_eq!(payload_of(&reply_out), c.payload.clone());

        // The same flow again keeps its backend.
        let (_, again) = run(&mut pipe, &t, &fwd_in);
        prop_assert_eq!(parse(&again).unwrap().dst, backend);
    }

    #[test]
    fn ttl_one_is_dropped_and_untouched_traffic_passes(c in case()) {
        let client = addr(c.v6, 0, c.client_host);
        let vip = addr(c.v6, 2, 1);
        let t = table(&c, vip);
        let mut pipe = small_pipeline();
        let eth = Eth::new(CLIENT_MAC, GW_MAC);
        let dying = Packet::new(eth.clone(), ip(c.v6, client, vip, 1, false), l4(&c, c.cport, c.vport)).frame();
        let (v, _) = run(&mut pipe, &t, &dying);
        prop_assert_eq!(v, Verdict::Drop(dataplane::verdict::DropReason::TtlExceeded));
        let elsewhere = addr(c.v6, 2, 99);
        let other = Packet::new(eth, ip(c.v6, client, elsewhere, c.ttl, false), l4(&c, c.cport, c.vport)).frame();
        let (v, out) = run(&mut pipe, &t, &other);
        prop_assert_eq!(v, Verdict::Pass);
        prop_assert_eq!(out, other);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Source NAT's one-pass rewrite of both ends gives exactly the bytes
    /// of two single-end rewrites, and a frame that verifies.
    #[test]
    fn rewriting_both_ends_at_once_equals_two_single_rewrites(
        c in case(), sport in 1u16..65535, new_host in 1u8..250, bhost in 1u8..250,
    ) {
        use dataplane::wire::nat::{rewrite_both_ends, rewrite_endpoint, End, L4Csum};
        let client = addr(c.v6, 0, c.client_host);
        let vip = addr(c.v6, 2, 1);
        let mut eth = Eth::new(CLIENT_MAC, GW_MAC);
        eth.vlan = c.vlan;
        let frame = Packet::new(eth, ip(c.v6, client, vip, c.ttl, c.ipv4_options), l4(&c, c.cport, c.vport)).frame();
        let p = parse(&frame).unwrap();
        let (gw, backend) = (addr(c.v6, 0, new_host), addr(c.v6, 1, bhost));

        let mut two = frame.clone();
        rewrite_endpoint(&mut two, &p, End::Src, &gw, sport, L4Csum::Full);
        rewrite_endpoint(&mut two, &p, End::Dst, &backend, c.bport, L4Csum::Full);
        let mut one = frame.clone();
        rewrite_both_ends(&mut one, &p, (&gw, sport), (&backend, c.bport), L4Csum::Full);
        prop_assert_eq!(&one, &two);
        prop_assert_eq!(check_frame(&one), Ok(()));
        let q = parse(&one).unwrap();
        prop_assert_eq!((q.src, q.dst), (gw, backend));
        prop_assert_eq!(ports(&one), (sport, c.bport));
    }
}
