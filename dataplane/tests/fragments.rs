//! IP fragments through the pipeline, IPv4 and IPv6: a datagram's first
//! fragment picks the backend by its ports; the later fragments follow it;
//! the backend's fragmented reply is translated back the same way. Before,
//! fragments to a VIP were dropped and fragmented replies left un-NATed.
//!
//! A later fragment that comes before its first one waits in the
//! receiving worker for it (bounded in time and number), then follows it:
//! worker-level tests below, one worker and four.
//!
//! Expected frames are the expected *whole* datagram (built by the
//! fixtures, checksums summed in full) cut by this file's own fragmenter
//! exactly as the input was: equal bytes prove the first fragment's
//! incremental checksum update right for the whole datagram.

use std::sync::Arc;

use dataplane::addr::{Addr, Proto};
use dataplane::generation::Tables;
use dataplane::neigh::netlink::{IfAddr, Link, Neigh};
use dataplane::neigh::{NeighTable, Neighbours};
use dataplane::service::{
    Affinity, BackendSpec, BackendState, NoEndpoints, ServiceKey, ServiceSpec,
};
use dataplane::steer::{owner, FragmentOwners};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::{DropReason, Verdict};
use dataplane::worker::frag_hold::{FRAG_HOLD_NS, FRAG_HOLD_SLOTS};
use dataplane::worker::{Handoff, Port, Worker, WorkerConfig, WorkerCounters};
use fixtures::packet::{fragment_ip, Eth, Ip, Ipv4, Ipv6, Packet, Udp, L4};

mod common {
    pub mod counting_alloc;
    pub mod frames;
    pub mod memory_group;
}
use common::counting_alloc::{count, Counting};
use common::frames::{run_at, small_pipeline};
use common::memory_group::{memory_group, poll_until_idle};
use dataplane::io::feed::{FeedIo, Frames, Sent};

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
    let ethertype = if ip_packet[0] >> 4 == 6 {
        0x86dd
    } else {
        0x0800
    };
    fragment_ip(ip_packet, id, CHUNK)
        .iter()
        .map(|p| eth.frame(ethertype, p))
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

    // A later fragment before its first one: the pipeline alone cannot
    // translate it (dropped, counted; the worker holds it instead, see
    // below); the rest of the datagram still follows its first fragment.
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

#[global_allocator]
static GLOBAL: Counting = Counting;

const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0xaa, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xc1];
const BACKEND_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xb1];

/// One interface, on-link for both families, knowing the client's and
/// the backend's MACs.
fn neighbours(n: &Net) -> Arc<Neighbours> {
    let links = [Link {
        ifindex: 3,
        name: "p0".into(),
        mac: Some(PORT_MAC),
    }];
    let mut v6 = [0u8; 16];
    v6[0] = 0xfd;
    v6[15] = 1;
    let addrs = [
        IfAddr {
            ifindex: 3,
            addr: Addr::from_v4([198, 18, 0, 1]),
            prefix: 15,
        },
        IfAddr {
            ifindex: 3,
            addr: Addr::from_v6(v6),
            prefix: 8,
        },
    ];
    let neighs = [(n.client, CLIENT_MAC), (n.backend, BACKEND_MAC)].map(|(addr, mac)| Neigh {
        ifindex: 3,
        addr,
        mac,
    });
    let t = NeighTable::build(&["p0".into()], &links, &addrs, &neighs).unwrap();
    Arc::new(Neighbours::fixed(t))
}

/// A gateway of `workers` workers, one port each, fed by hand.
struct Gw {
    workers: Vec<Worker<FeedIo>>,
    feeds: Vec<Frames>,
    sent: Vec<Sent>,
    now_ns: u64,
}

impl Gw {
    /// Bursts of `burst` frames (1: every frame a burst of its own).
    fn new(n: &Net, workers: usize, burst: usize) -> Gw {
        let tables = Tables::new(table(n));
        let neigh = neighbours(n);
        let handoff = Handoff::new(workers);
        let cfg = WorkerConfig {
            burst,
            pipeline: small_pipeline_config(),
        };
        let mut gw = Gw {
            workers: Vec::new(),
            feeds: Vec::new(),
            sent: Vec::new(),
            now_ns: 1_000_000_000,
        };
        for me in 0..workers {
            let (io, feed, sent) = FeedIo::new();
            let port = Port { io, ifindex: 3 };
            let w = Worker::in_group(
                vec![port],
                &cfg,
                tables.clone(),
                Arc::clone(&neigh),
                &handoff,
                me,
            )
            .unwrap();
            gw.workers.push(w);
            gw.feeds.push(feed);
            gw.sent.push(sent);
        }
        gw
    }

    /// Gives `frames` to worker `at`'s port and polls every worker until
    /// all are idle, `after_ns` from the last poll.
    fn receive(&mut self, at: usize, frames: &[&Vec<u8>], after_ns: u64) {
        self.feeds[at]
            .borrow_mut()
            .extend(frames.iter().map(|f| f.to_vec()));
        self.now_ns += after_ns;
        let mut idle = 0;
        while idle < 2 {
            let got: usize = self
                .workers
                .iter_mut()
                .map(|w| w.poll_once(self.now_ns))
                .sum();
            idle = if got == 0 { idle + 1 } else { 0 };
            self.now_ns += 1000;
        }
    }

    /// Frames sent since the last call, per worker in order of sending,
    /// workers one after the other.
    fn take_sent(&mut self) -> Vec<Vec<u8>> {
        self.sent
            .iter()
            .flat_map(|s| s.borrow_mut().drain(..).collect::<Vec<_>>())
            .collect()
    }

    fn counters(&self) -> WorkerCounters {
        let each: Vec<WorkerCounters> = self.workers.iter().map(|w| w.counters()).collect();
        let t = WorkerCounters::total(&each);
        assert!(t.pipeline.balanced(), "{:?}", t.pipeline);
        t
    }

    fn held(&self) -> usize {
        self.workers.iter().map(|w| w.held_fragments()).sum()
    }
}

fn small_pipeline_config() -> dataplane::pipeline::PipelineConfig {
    dataplane::pipeline::PipelineConfig {
        conntrack: dataplane::conntrack::Config {
            capacity: 1024,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `got` is `want` with the next hop's MACs.
fn assert_frame(got: &[u8], want: &[u8], mac: [u8; 6], what: &str) {
    assert_eq!(&got[..6], &mac, "{what}: destination MAC");
    assert_eq!(&got[6..12], &PORT_MAC, "{what}: source MAC");
    assert_eq!(&got[12..], &want[12..], "{what}");
}

fn held_fragments_follow_their_first(v6: bool) {
    let n = net(v6);
    let mut gw = Gw::new(&n, 1, 1);
    let len = 3000;
    let (_, query) = datagram(n.client, n.vip, 40000, VPORT, 64, len);
    let (_, want) = datagram(n.client, n.backend, 40000, BPORT, 63, len);
    let (f, w) = (fragment(&query, 0x4321), fragment(&want, 0x4321));
    // The last two fragments first (each a burst of its own): held.
    gw.receive(0, &[&f[2], &f[1]], 0);
    assert!(gw.take_sent().is_empty());
    assert_eq!(gw.held(), 2);
    let c = gw.counters();
    assert_eq!((c.pipeline.packets, c.pipeline.fragments_held), (0, 2));
    // The first one comes: sent, then the held ones in arrival order.
    gw.receive(0, &[&f[0]], 1_000_000);
    let out = gw.take_sent();
    assert_eq!(out.len(), 3, "v6={v6}");
    for (got, (want, what)) in out.iter().zip([
        (&w[0], "first fragment"),
        (&w[2], "held last fragment"),
        (&w[1], "held middle fragment"),
    ]) {
        assert_frame(got, want, BACKEND_MAC, &format!("v6={v6} {what}"));
    }
    assert_eq!(gw.held(), 0);

    // The backend's fragmented answer, its middle fragment first.
    let (_, reply) = datagram(n.backend, n.client, BPORT, 40000, 64, len);
    let (_, want) = datagram(n.vip, n.client, VPORT, 40000, 63, len);
    let (f, w) = (fragment(&reply, 0x8888), fragment(&want, 0x8888));
    gw.receive(0, &[&f[1], &f[0], &f[2]], 0);
    let out = gw.take_sent();
    assert_eq!(out.len(), 3, "v6={v6}");
    for (got, (want, what)) in out.iter().zip([
        (&w[0], "reply first fragment"),
        (&w[1], "held reply fragment"),
        (&w[2], "reply last fragment"),
    ]) {
        assert_frame(got, want, CLIENT_MAC, &format!("v6={v6} {what}"));
    }
    let c = gw.counters().pipeline;
    assert_eq!((c.packets, c.forwarded, c.reversed), (6, 3, 3), "{c:?}");
    assert_eq!((c.fragments_followed, c.fragments_held), (4, 3), "{c:?}");
    assert_eq!((c.dropped_total(), c.fragment_hold_expired), (0, 0));
}

#[test]
fn v4_later_fragments_before_their_first_are_held_and_follow_it_both_ways() {
    held_fragments_follow_their_first(false);
}

#[test]
fn v6_later_fragments_before_their_first_are_held_and_follow_it_both_ways() {
    held_fragments_follow_their_first(true);
}

/// All fragments in one burst, later ones first: held, then sent behind
/// their first one at the end of the same round.
#[test]
fn early_fragments_in_the_burst_of_their_first_follow_it() {
    for v6 in [false, true] {
        let n = net(v6);
        let mut gw = Gw::new(&n, 1, 64);
        let (_, query) = datagram(n.client, n.vip, 40002, VPORT, 64, 3000);
        let (_, want) = datagram(n.client, n.backend, 40002, BPORT, 63, 3000);
        let (f, w) = (fragment(&query, 0x77), fragment(&want, 0x77));
        gw.receive(0, &[&f[2], &f[0], &f[1]], 0);
        let out = gw.take_sent();
        assert_eq!(out.len(), 3, "v6={v6}");
        // f[1] came after its first one: it went on at once, in the burst.
        for (got, want) in out.iter().zip([&w[0], &w[1], &w[2]]) {
            assert_frame(got, want, BACKEND_MAC, &format!("v6={v6}"));
        }
        let c = gw.counters().pipeline;
        assert_eq!((c.fragments_held, c.fragments_followed), (1, 2), "{c:?}");
    }
}

/// A held fragment whose first one does not come within the bound is
/// dropped (`fragment`, to a VIP) or passed (not to a VIP), counted once;
/// a first fragment after that goes alone.
#[test]
fn held_fragment_without_its_first_is_dropped_after_the_bound() {
    for v6 in [false, true] {
        let n = net(v6);
        let mut gw = Gw::new(&n, 1, 1);
        let (_, query) = datagram(n.client, n.vip, 40003, VPORT, 64, 3000);
        let f = fragment(&query, 0x55);
        let (_, elsewhere) = datagram(n.client, n.other, 40003, 9, 64, 3000);
        let e = fragment(&elsewhere, 0x56);
        gw.receive(0, &[&f[1], &e[1]], 0);
        assert_eq!(gw.held(), 2);
        // Just before the bound: still held, nothing counted as a packet.
        gw.receive(0, &[], FRAG_HOLD_NS - 10_000);
        assert_eq!(gw.held(), 2, "v6={v6}");
        assert_eq!(gw.counters().pipeline.packets, 0);
        gw.receive(0, &[], 10_000);
        assert_eq!(gw.held(), 0, "v6={v6}");
        let c = gw.counters().pipeline;
        assert_eq!((c.packets, c.passed), (2, 1), "v6={v6} {c:?}");
        assert_eq!(c.dropped(DropReason::Fragment), 1);
        assert_eq!(c.fragment_hold_expired, 2);
        // The first fragment now: forwarded alone, the last one follows.
        gw.receive(0, &[&f[0], &f[2]], 1_000);
        assert_eq!(gw.take_sent().len(), 2, "v6={v6}");
        let c = gw.counters().pipeline;
        assert_eq!((c.forwarded, c.fragments_followed), (2, 1), "{c:?}");
    }
}

/// A full hold takes no more: the newest early fragments go on as before
/// (dropped as `fragment`, counted as hold-full); those held still follow
/// their first fragments.
#[test]
fn full_hold_leaves_the_newest_early_fragments_out() {
    let n = net(false);
    let mut gw = Gw::new(&n, 1, 16);
    const EXTRA: usize = 3;
    let datagrams: Vec<Vec<Vec<u8>>> = (0..FRAG_HOLD_SLOTS + EXTRA)
        .map(|i| {
            let (_, q) = datagram(n.client, n.vip, 41000 + i as u16, VPORT, 64, 2000);
            fragment(&q, 0x1000 + i as u32)
        })
        .collect();
    let lasts: Vec<&Vec<u8>> = datagrams.iter().map(|d| &d[1]).collect();
    gw.receive(0, &lasts, 0);
    assert_eq!(gw.held(), FRAG_HOLD_SLOTS);
    let c = gw.counters().pipeline;
    assert_eq!(c.fragments_held, FRAG_HOLD_SLOTS as u64);
    assert_eq!(c.fragment_hold_full, EXTRA as u64);
    assert_eq!(c.dropped(DropReason::Fragment), EXTRA as u64, "{c:?}");
    let firsts: Vec<&Vec<u8>> = datagrams.iter().map(|d| &d[0]).collect();
    gw.receive(0, &firsts, 1_000);
    let out = gw.take_sent();
    assert_eq!(out.len(), 2 * FRAG_HOLD_SLOTS + EXTRA);
    let c = gw.counters().pipeline;
    assert_eq!(c.fragments_followed, FRAG_HOLD_SLOTS as u64, "{c:?}");
    assert_eq!(gw.held(), 0);
}

/// Early fragments not addressed to a VIP (a backend's replies, or not
/// ours) take at most half the hold: VIP traffic keeps room.
#[test]
fn early_fragments_not_to_a_vip_take_at_most_half_the_hold() {
    let n = net(false);
    let mut gw = Gw::new(&n, 1, 16);
    let replies: Vec<Vec<Vec<u8>>> = (0..FRAG_HOLD_SLOTS)
        .map(|i| {
            let (_, r) = datagram(n.backend, n.client, BPORT, 44000 + i as u16, 64, 2000);
            fragment(&r, 0x6000 + i as u32)
        })
        .collect();
    let lasts: Vec<&Vec<u8>> = replies.iter().map(|d| &d[1]).collect();
    gw.receive(0, &lasts, 0);
    let half = FRAG_HOLD_SLOTS / 2;
    assert_eq!(gw.held(), half);
    let c = gw.counters().pipeline;
    assert_eq!(c.fragment_hold_full, half as u64);
    // Not ours as far as the pipeline knows: passed, as before.
    assert_eq!((c.passed, c.dropped_total()), (half as u64, 0), "{c:?}");
    let queries: Vec<Vec<Vec<u8>>> = (0..half)
        .map(|i| {
            let (_, q) = datagram(n.client, n.vip, 45000 + i as u16, VPORT, 64, 2000);
            fragment(&q, 0x7000 + i as u32)
        })
        .collect();
    let lasts: Vec<&Vec<u8>> = queries.iter().map(|d| &d[1]).collect();
    gw.receive(0, &lasts, 0);
    assert_eq!(gw.held(), FRAG_HOLD_SLOTS, "VIP fragments fill the rest");
    assert_eq!(gw.counters().pipeline.fragment_hold_full, half as u64);
}

/// Four workers: every fragment of a datagram reaches one receiving
/// worker (fanout and RSS hash fragments by addresses only), here worker
/// 1; the first fragment goes to its flow's owner, and the held later
/// fragments are handed after it, so the owner translates them too.
#[test]
fn four_workers_held_fragments_follow_their_first_to_its_owner() {
    for v6 in [false, true] {
        let n = net(v6);
        let mut gw = Gw::new(&n, 4, 8);
        let mut want_out = Vec::new();
        let mut owners = [0usize; 4];
        let t = table(&n);
        for k in 0..32u16 {
            let (_, q) = datagram(n.client, n.vip, 42000 + k, VPORT, 64, 3000);
            let (_, w) = datagram(n.client, n.backend, 42000 + k, BPORT, 63, 3000);
            let f = fragment(&q, 0x2000 + u32::from(k));
            owners[owner(&f[0], &t, 4)] += 1;
            gw.receive(1, &[&f[2], &f[1]], 0);
            gw.receive(1, &[&f[0]], 1_000);
            want_out.extend(fragment(&w, 0x2000 + u32::from(k)));
        }
        assert!(
            owners.iter().filter(|&&o| o > 0).count() > 1,
            "v6={v6}: the test needs first fragments owned by other workers: {owners:?}"
        );
        let sent = gw.take_sent();
        assert_same_frames(sent, want_out, BACKEND_MAC, &format!("v6={v6}"));
        // The backends' answers, received by worker 2, middle fragment
        // first: steered to the flow's owner behind their first one.
        let mut want_out = Vec::new();
        for k in 0..32u16 {
            let (_, r) = datagram(n.backend, n.client, BPORT, 42000 + k, 64, 3000);
            let (_, w) = datagram(n.vip, n.client, VPORT, 42000 + k, 63, 3000);
            let f = fragment(&r, 0x2100 + u32::from(k));
            gw.receive(2, &[&f[1]], 0);
            gw.receive(2, &[&f[0], &f[2]], 1_000);
            want_out.extend(fragment(&w, 0x2100 + u32::from(k)));
        }
        let sent = gw.take_sent();
        assert_same_frames(sent, want_out, CLIENT_MAC, &format!("v6={v6} replies"));
        let c = gw.counters();
        assert_eq!(c.pipeline.fragments_held, 64 + 32, "v6={v6}");
        assert_eq!(c.pipeline.fragments_followed, 128, "v6={v6}");
        assert_eq!((c.pipeline.forwarded, c.pipeline.reversed), (96, 96));
        assert!(c.handoff_out > 0 && c.handoff_in == c.handoff_out, "{c:?}");
        assert_eq!(gw.held(), 0);
    }
}

/// `got` and `want` hold the same frames (`want` with the next hop's
/// MACs), in any order: several workers send in their own order.
fn assert_same_frames(mut got: Vec<Vec<u8>>, mut want: Vec<Vec<u8>>, mac: [u8; 6], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let key = |f: &Vec<u8>| f[12..].to_vec();
    got.sort_by_key(key);
    want.sort_by_key(key);
    for (g, w) in got.iter().zip(&want) {
        assert_frame(g, w, mac, what);
    }
}

/// Holding, releasing (to another worker too) and expiring fragments
/// allocates nothing: two workers over in-memory frames, every fragment
/// received by worker 0, later ones first, and one datagram whose first
/// fragment never comes, under a counting allocator.
#[test]
fn held_fragments_allocate_nothing() {
    use dataplane::io::memory::Capture;
    let n = net(false);
    let mut cap = Capture::new();
    // A whole datagram first: the warm-up round takes it alone.
    let (_, plain) = datagram(n.client, n.vip, 39999, VPORT, 64, 100);
    cap.push(1, &fragment(&plain, 1)[0]);
    for k in 0..16u16 {
        let (_, q) = datagram(n.client, n.vip, 43000 + k, VPORT, 64, 3000);
        let f = fragment(&q, 0x3000 + u32::from(k));
        for i in [2, 1, 0] {
            cap.push(2, &f[i]);
        }
    }
    let (_, q) = datagram(n.client, n.vip, 43999, VPORT, 64, 3000);
    cap.push(3, &fragment(&q, 0x3999)[1]);
    let orders: [Vec<u32>; 2] = [(0..cap.len() as u32).collect(), Vec::new()];
    let tables = Tables::new(table(&n));
    let cfg = WorkerConfig {
        burst: 1,
        pipeline: small_pipeline_config(),
    };
    let mut workers = memory_group(&cap, &orders, 1, &cfg, &tables, &neighbours(&n));
    let mut now = 1_000_000_000u64;
    for w in &mut workers {
        w.poll_once(now);
    }
    let ((), allocs) = count(|| {
        poll_until_idle(&mut workers, &mut now, 1_000);
        now += FRAG_HOLD_NS;
        for w in &mut workers {
            w.poll_once(now);
        }
    });
    let each: Vec<WorkerCounters> = workers.iter().map(|w| w.counters()).collect();
    let t = WorkerCounters::total(&each);
    let p = &t.pipeline;
    assert_eq!((p.fragments_held, p.fragments_followed), (33, 32), "{p:?}");
    assert_eq!(p.fragment_hold_expired, 1, "{p:?}");
    assert_eq!(p.packets, cap.len() as u64, "{p:?}");
    assert!(p.balanced(), "{p:?}");
    assert!(t.handoff_out > 0, "{t:?}");
    assert_eq!(allocs, 0, "allocations holding and releasing fragments");
}
