//! Frames whose TCP/UDP checksum was left to offload, through the real
//! pipeline:
//! - unflagged (AF_XDP, pcap: no vnet header says so) with the field
//!   holding the pseudo-header sum: the NATed frame carries a full, valid
//!   checksum, byte-identical to NATing the fully checksummed frame;
//! - flagged partial (AF_PACKET vnet header, NEEDS_CSUM): the field stays
//!   partial, and finishing it as the kernel would (summing from
//!   csum_start) gives that same valid frame;
//! - a valid frame whose full checksum happens to equal its pseudo-header
//!   sum is left valid (completion is idempotent on valid frames).
//!
//! Every checksum is checked by an independent full recompute
//! (fixtures::verify).

use dataplane::addr::{Addr, Proto};
use dataplane::io::offload::{OffloadMeta, F_NEEDS_CSUM};
use dataplane::io::{Batch, FrameDesc};
use dataplane::pipeline::Pipeline;
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::Verdict;
use dataplane::wire::checksum::{finish, get_u16, pseudo_header_sum, put_u16, sum_bytes};
use dataplane::wire::parse::parse;
use fixtures::packet::{Eth, Ip, Ipv4, Ipv6, Packet, Tcp, Udp, L4};
use fixtures::verify::check_frame;
use proptest::prelude::*;

mod common {
    pub mod frames;
}
use common::frames::small_pipeline;

const BUF: usize = 4096;

fn addr(v6: bool, net: u8, host: u8) -> Addr {
    if v6 {
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[13] = net;
        a[15] = host;
        Addr::from_v6(a)
    } else {
        Addr::from_v4([198, if net == 2 { 19 } else { 18 }, net % 2, host])
    }
}

fn frame(v6: bool, tcp: bool, src: Addr, dst: Addr, sport: u16, dport: u16, pl: &[u8]) -> Vec<u8> {
    let ip = if v6 {
        Ip::V6(Ipv6::new(src.0, dst.0, 64))
    } else {
        Ip::V4(Ipv4::new(src.v4_octets(), dst.v4_octets(), 64))
    };
    let l4 = if tcp {
        let mut t = Tcp::new(sport, dport, 1000, 2000, 0x18);
        t.payload = pl.to_vec();
        L4::Tcp(t)
    } else {
        L4::Udp(Udp::new(sport, dport, pl.to_vec()))
    };
    Packet::new(Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]), ip, l4).frame()
}

/// (offset of the L4 header, offset of its checksum field, pseudo sum).
fn l4_facts(f: &[u8]) -> (usize, usize, u16) {
    let p = parse(f).unwrap();
    let at = p.l4_off + if p.proto == 6 { 16 } else { 6 };
    let (s, d) = if p.v6 {
        (
            &f[p.l3_off + 8..p.l3_off + 24],
            &f[p.l3_off + 24..p.l3_off + 40],
        )
    } else {
        (
            &f[p.l3_off + 12..p.l3_off + 16],
            &f[p.l3_off + 16..p.l3_off + 20],
        )
    };
    let ps = !finish(pseudo_header_sum(s, d, p.proto, p.l4_len() as u32));
    (p.l4_off, at, ps)
}

/// The frame as a local sender with tx checksum offload leaves it.
fn as_partial(f: &[u8]) -> Vec<u8> {
    let mut g = f.to_vec();
    let (_, at, ps) = l4_facts(&g);
    put_u16(&mut g, at, ps);
    g
}

/// What offload does to a partial frame: sum from csum_start, field in.
fn finish_offload(f: &mut [u8], udp: bool) {
    let (l4, at, _) = l4_facts(f);
    let c = finish(sum_bytes(0, &f[l4..]));
    put_u16(f, at, if udp && c == 0 { 0xffff } else { c });
}

fn table(v6: bool, tcp: bool, backends: u8) -> ServiceTable {
    let spec = ServiceSpec {
        key: ServiceKey {
            vip: addr(v6, 2, 1),
            port: 80,
            proto: if tcp { Proto::Tcp } else { Proto::Udp },
        },
        name: "default/partial:p".into(),
        backends: (0..backends)
            .map(|i| BackendSpec {
                addr: addr(v6, 1, 10 + i),
                port: 8080,
                weight: 1,
                state: BackendState::Ready,
            })
            .collect(),
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    };
    ServiceTable::from_specs(vec![spec], TableConfig::default())
}

/// One frame through `process_burst` with the given offload state.
fn run(p: &mut Pipeline, t: &ServiceTable, f: &[u8], offload: OffloadMeta) -> (Verdict, Vec<u8>) {
    let mut region = vec![0u8; BUF];
    region[..f.len()].copy_from_slice(f);
    let mut b = Batch::new();
    // SAFETY: `region` outlives the batch's use below and nothing else
    // touches it meanwhile.
    unsafe { b.reset(region.as_mut_ptr(), region.len()) };
    assert!(b.push(FrameDesc {
        offset: 0,
        len: f.len() as u32,
        cap: BUF as u32,
        tag: 0,
        offload,
    }));
    p.process_burst(t, &mut b, 1_000_000_000);
    let v = b.verdicts()[0];
    let out = b.frame(0).to_vec();
    (v, out)
}

fn needs_csum(f: &[u8]) -> OffloadMeta {
    let (l4, at, _) = l4_facts(f);
    OffloadMeta {
        flags: F_NEEDS_CSUM,
        csum_start: l4 as u16,
        csum_offset: (at - l4) as u16,
        ..OffloadMeta::NONE
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn partial_checksums_leave_valid_both_ways(
        v6 in any::<bool>(),
        tcp in any::<bool>(),
        host in 1u8..250,
        cport in 1024u16..65535,
        backends in 1u8..5,
        payload in proptest::collection::vec(any::<u8>(), 0..1400),
    ) {
        let t = table(v6, tcp, backends);
        let (client, vip) = (addr(v6, 0, host), addr(v6, 2, 1));
        let full = frame(v6, tcp, client, vip, cport, 80, &payload);
        prop_assert_eq!(check_frame(&full), Ok(()));
        let partial = as_partial(&full);
        prop_assert_ne!(check_frame(&partial), Ok(()), "fixture must start broken");

        // Reference: the fully checksummed frame, unflagged.
        let (v, want) = run(&mut small_pipeline(), &t, &full, OffloadMeta::NONE);
        prop_assert_eq!(v, Verdict::Tx(0));
        prop_assert_eq!(check_frame(&want), Ok(()));

        // Unflagged partial (AF_XDP): completed while NATed.
        let (v, got) = run(&mut small_pipeline(), &t, &partial, OffloadMeta::NONE);
        prop_assert_eq!(v, Verdict::Tx(0));
        prop_assert_eq!(check_frame(&got), Ok(()));
        prop_assert_eq!(&got, &want);

        // Flagged partial (AF_PACKET vnet header): stays partial, and the
        // kernel's finishing pass yields the same valid frame.
        let (v, mut kept) = run(&mut small_pipeline(), &t, &partial, needs_csum(&partial));
        prop_assert_eq!(v, Verdict::Tx(0));
        let (_, at, ps) = l4_facts(&kept);
        prop_assert_eq!(get_u16(&kept, at), ps, "field is the new pseudo-header sum");
        finish_offload(&mut kept, !tcp);
        prop_assert_eq!(check_frame(&kept), Ok(()));
        prop_assert_eq!(&kept, &want);

        // Replies, both ways, from the backend the forward frame reached.
        let backend = parse(&want).unwrap().dst;
        let reply = frame(v6, tcp, backend, client, 8080, cport, &payload);
        let mut p = small_pipeline();
        run(&mut p, &t, &full, OffloadMeta::NONE);
        let (v, want_r) = run(&mut p, &t, &reply, OffloadMeta::NONE);
        prop_assert_eq!(v, Verdict::Tx(0));
        let reply_p = as_partial(&reply);
        let (_, got_r) = run(&mut p, &t, &reply_p, OffloadMeta::NONE);
        prop_assert_eq!(&got_r, &want_r);
        let (_, mut kept_r) = run(&mut p, &t, &reply_p, needs_csum(&reply_p));
        finish_offload(&mut kept_r, !tcp);
        prop_assert_eq!(check_frame(&kept_r), Ok(()));
        prop_assert_eq!(&kept_r, &want_r);
    }
}

/// A valid frame whose checksum equals its pseudo-header sum by chance
/// (made so by choosing two payload bytes): NATed, it must stay valid.
#[test]
fn a_valid_checksum_equal_to_the_pseudo_sum_is_kept_valid() {
    for (v6, tcp) in [(false, true), (false, false), (true, true), (true, false)] {
        let t = table(v6, tcp, 3);
        let (client, vip) = (addr(v6, 0, 7), addr(v6, 2, 1));
        let mut pl = vec![0x5au8; 64];
        let mut f = frame(v6, tcp, client, vip, 40000, 80, &pl);
        let (l4, at, ps) = l4_facts(&f);
        // Want checksum == ps: the segment (field = ps) must sum to !ps.
        // Put the missing amount into the last payload word.
        let word_at = f.len() - 2;
        put_u16(&mut f, word_at, 0);
        put_u16(&mut f, at, ps);
        let have = !finish(sum_bytes(0, &f[l4..])) as u32; // folded sum now
        let need = (!ps) as u32;
        // Ones' complement: need = have + w  =>  w = need - have.
        let w = !finish(need + (!(have as u16)) as u32);
        let w = if w == 0 { 0xffff } else { w };
        put_u16(&mut f, word_at, w);
        pl[62..].copy_from_slice(&w.to_be_bytes());
        assert_eq!(
            check_frame(&f),
            Ok(()),
            "crafted frame is valid ({v6}, {tcp})"
        );
        assert_eq!(get_u16(&f, at), ps, "and its checksum is the pseudo sum");
        let (v, out) = run(&mut small_pipeline(), &t, &f, OffloadMeta::NONE);
        assert_eq!(v, Verdict::Tx(0));
        assert_eq!(check_frame(&out), Ok(()), "({v6}, {tcp})");
        let p = parse(&out).unwrap();
        assert_eq!(&out[p.ip_end - 64..p.ip_end], &pl[..]);
    }
}

/// A reject answering a flagged-partial frame is a new, fully checksummed
/// frame: its descriptor must not keep the request's offload state.
#[test]
fn a_reject_drops_the_requests_offload_state() {
    let empty = ServiceTable::from_specs(
        vec![ServiceSpec {
            key: ServiceKey {
                vip: addr(false, 2, 1),
                port: 80,
                proto: Proto::Tcp,
            },
            name: "default/empty:p".into(),
            backends: vec![],
            affinity: Affinity::None,
            no_endpoints: dataplane::service::NoEndpoints::Reject,
            forwarding: Default::default(),
            source_ranges: Vec::new(),
        }],
        TableConfig::default(),
    );
    let syn = as_partial(&frame(
        false,
        true,
        addr(false, 0, 9),
        addr(false, 2, 1),
        40001,
        80,
        b"",
    ));
    let mut region = vec![0u8; BUF];
    region[..syn.len()].copy_from_slice(&syn);
    let mut b = Batch::new();
    // SAFETY: as in `run`.
    unsafe { b.reset(region.as_mut_ptr(), region.len()) };
    b.push(FrameDesc {
        len: syn.len() as u32,
        cap: BUF as u32,
        offload: needs_csum(&syn),
        ..FrameDesc::default()
    });
    small_pipeline().process_burst(&empty, &mut b, 1_000_000_000);
    assert_eq!(b.verdicts()[0], Verdict::Tx(0));
    assert_eq!(b.descs()[0].offload, OffloadMeta::NONE);
    assert_eq!(check_frame(b.frame(0)), Ok(()));
}
