//! AF_PACKET backend against real veth pairs in throwaway network namespaces.
//!
//! Needs root (namespaces, raw sockets). Without root every test prints a
//! loud SKIPPED line and returns; CI runs as root, so there they run.
//! Addresses: 198.18.0.1 is the peer ("client"), 198.18.0.2 the gateway
//! side ("VIP"). Every loop is bounded in count and time.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dataplane::io::af_packet::{
    check_host, set_offload, AfPacket, AfPacketConfig, Fanout, FanoutMode, Offload, RingKind,
    TAG_CSUM_PARTIAL,
};
use dataplane::io::{Batch, FrameDesc, PacketIo, MAX_BURST};
use dataplane::verdict::{DropReason, Verdict};

const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const GW_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];
const GW_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x02];
const GW_PORT: u16 = 7000;
/// Upper bound on any wait in these tests.
const DEADLINE: Duration = Duration::from_secs(5);

use dataplane::io::af_packet::is_root;

fn run(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("the `ip` tool (iproute2) is needed by the veth tests");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; deleted on drop, panics included.
struct Lab {
    gw_ns: String,
    peer_ns: String,
    gw_if: String,
    peer_if: String,
}

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Lab {
    /// `gw_addr`: give the gateway side 198.18.0.2 so its kernel talks too.
    fn new(gw_addr: bool) -> Lab {
        let pid = std::process::id();
        let n = LAB_SEQ.fetch_add(1, Ordering::Relaxed);
        let lab = Lab {
            gw_ns: format!("vg-afp-{pid}-{n}-gw"),
            peer_ns: format!("vg-afp-{pid}-{n}-peer"),
            // Interface names: at most 15 bytes.
            gw_if: format!("vg{}g{n}", pid % 1_000_000),
            peer_if: format!("vg{}p{n}", pid % 1_000_000),
        };
        // Namespaces first, so that Drop removes whatever got created.
        run(&["netns", "add", &lab.gw_ns]);
        run(&["netns", "add", &lab.peer_ns]);
        for ns in [&lab.gw_ns, &lab.peer_ns] {
            // No IPv6 chatter (DAD, MLD, RS) on the wire under test.
            in_ns(ns, || {
                std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1").unwrap();
                std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1").unwrap();
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap();
            });
        }
        run(&[
            "link",
            "add",
            &lab.gw_if,
            "address",
            &mac_str(GW_MAC),
            "netns",
            &lab.gw_ns,
            "type",
            "veth",
            "peer",
            "name",
            &lab.peer_if,
            "address",
            &mac_str(PEER_MAC),
            "netns",
            &lab.peer_ns,
        ]);
        let peer_cidr = format!("{PEER_IP}/24");
        let gw_cidr = format!("{GW_IP}/24");
        run(&[
            "-n",
            &lab.peer_ns,
            "addr",
            "add",
            &peer_cidr,
            "dev",
            &lab.peer_if,
        ]);
        // The peer reaches the "VIP" through a static neighbour: no ARP.
        run(&[
            "-n",
            &lab.peer_ns,
            "neigh",
            "add",
            &GW_IP.to_string(),
            "lladdr",
            &mac_str(GW_MAC),
            "dev",
            &lab.peer_if,
            "nud",
            "permanent",
        ]);
        if gw_addr {
            run(&["-n", &lab.gw_ns, "addr", "add", &gw_cidr, "dev", &lab.gw_if]);
            run(&[
                "-n",
                &lab.gw_ns,
                "neigh",
                "add",
                &PEER_IP.to_string(),
                "lladdr",
                &mac_str(PEER_MAC),
                "dev",
                &lab.gw_if,
                "nud",
                "permanent",
            ]);
        }
        for (ns, ifname) in [(&lab.gw_ns, &lab.gw_if), (&lab.peer_ns, &lab.peer_if)] {
            run(&["-n", ns, "link", "set", "lo", "up"]);
            run(&["-n", ns, "link", "set", ifname, "up"]);
        }
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.gw_ns, &self.peer_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Moves the calling thread into network namespace `ns`.
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("namespace file");
    // SAFETY: f is an open namespace descriptor; setns only affects this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns({ns}): {}", std::io::Error::last_os_error());
}

/// Runs `f` on a fresh thread inside `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            f()
        })
        .join()
        .expect("namespace thread panicked")
    })
}

// ---- frames -----------------------------------------------------------

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Recomputes the IPv4 header and UDP checksums of an Ethernet/IPv4/UDP frame.
fn fix_checksums(f: &mut [u8]) {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    f[24..26].fill(0);
    let ip = finish(sum16(&f[14..14 + ihl], 0));
    f[24..26].copy_from_slice(&ip.to_be_bytes());
    let u = 14 + ihl;
    let ulen = usize::from(u16::from_be_bytes([f[u + 4], f[u + 5]]));
    f[u + 6..u + 8].fill(0);
    let pseudo = sum16(&f[26..34], 17 + ulen as u32);
    let c = match finish(sum16(&f[u..u + ulen], pseudo)) {
        0 => 0xffff,
        c => c,
    };
    f[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
}

/// Whether the frame's IPv4 header and UDP checksums verify.
fn checksums_ok(f: &[u8]) -> bool {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let u = 14 + ihl;
    let ulen = usize::from(u16::from_be_bytes([f[u + 4], f[u + 5]]));
    let pseudo = sum16(&f[26..34], 17 + ulen as u32);
    finish(sum16(&f[14..14 + ihl], 0)) == 0 && finish(sum16(&f[u..u + ulen], pseudo)) == 0
}

struct Udp<'a> {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &'a [u8],
}

/// Parses an untagged Ethernet/IPv4/UDP frame; None for anything else.
fn parse_udp(f: &[u8]) -> Option<Udp<'_>> {
    if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 || f[23] != 17 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let u = 14 + ihl;
    let ulen = usize::from(u16::from_be_bytes([*f.get(u + 4)?, *f.get(u + 5)?]));
    let ip = |o: usize| Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
    let port = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
    Some(Udp {
        src_mac: f[6..12].try_into().ok()?,
        dst_mac: f[0..6].try_into().ok()?,
        src: SocketAddrV4::new(ip(26), port(u)),
        dst: SocketAddrV4::new(ip(30), port(u + 2)),
        payload: f.get(u + 8..u + ulen)?,
    })
}

/// A gateway-to-peer frame (MACs fixed: the gateway's to the peer's).
fn build_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&GW_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (28 + payload.len()) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ]);
    f.extend_from_slice(&src.ip().octets());
    f.extend_from_slice(&dst.ip().octets());
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    fix_checksums(&mut f);
    f
}

/// Turns a received datagram into its reply, in place.
fn echo_in_place(f: &mut [u8]) {
    let (dst, src) = f[..12].split_at_mut(6);
    dst.swap_with_slice(src);
    let (s, d) = f[26..34].split_at_mut(4);
    s.swap_with_slice(d);
    let u = 14 + usize::from(f[14] & 0x0f) * 4;
    let (sp, dp) = f[u..u + 4].split_at_mut(2);
    sp.swap_with_slice(dp);
    f[22] = 64;
    fix_checksums(f);
}

/// Without vnet headers (the fallback on kernels that refuse them): the
/// socket completes partial checksums on rx, which these tests check.
fn gw_cfg() -> AfPacketConfig {
    AfPacketConfig {
        block_size: 1 << 16,
        block_count: 16,
        vnet_hdr: false,
        ..AfPacketConfig::default()
    }
}

fn peer_socket() -> UdpSocket {
    let s = UdpSocket::bind(SocketAddrV4::new(PEER_IP, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

fn to_gw() -> SocketAddrV4 {
    SocketAddrV4::new(GW_IP, GW_PORT)
}

// ---- tests ------------------------------------------------------------

/// (a) Datagrams from a real UDP socket arrive in bursts no larger than
/// asked, complete, once each, in order, with correct bytes and checksums,
/// through the frame ring (default) and the block ring.
#[test]
fn rx_bursts_carry_peer_datagrams() {
    for ring in [RingKind::Frames, RingKind::Blocks] {
        rx_bursts_carry_peer_datagrams_on(ring);
    }
}

fn rx_bursts_carry_peer_datagrams_on(ring: RingKind) {
    if !is_root() {
        return;
    }
    let lab = Lab::new(false);
    const N: usize = 100;
    const MAX: usize = 8;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (port_tx, port_rx) = mpsc::channel();
    let lab = &lab;
    std::thread::scope(|s| {
        let gw = s.spawn(move || {
            enter(&lab.gw_ns);
            let cfg = AfPacketConfig { ring, ..gw_cfg() };
            let mut io = AfPacket::open(&lab.gw_if, &cfg).unwrap();
            ready_tx.send(()).unwrap();
            let peer_port: u16 = port_rx.recv().unwrap();
            let mut batch = Batch::new();
            let mut got = Vec::new();
            let mut largest = 0;
            let start = Instant::now();
            while got.len() < N && start.elapsed() < DEADLINE {
                let n = io.rx_burst(&mut batch, MAX);
                largest = largest.max(n);
                if n == 0 {
                    io.wait_rx(2);
                }
                for i in 0..n {
                    let f = batch.frame(i);
                    let Some(u) = parse_udp(f) else { continue };
                    if u.dst != to_gw() {
                        continue;
                    }
                    assert_eq!(u.src, SocketAddrV4::new(PEER_IP, peer_port));
                    assert_eq!((u.src_mac, u.dst_mac), (PEER_MAC, GW_MAC));
                    assert!(checksums_ok(f), "checksum not complete in {f:02x?}");
                    assert_eq!(batch.descs()[i].tag, 0);
                    got.push(u.payload.to_vec());
                }
            }
            (got, largest, io.stats())
        });
        ready_rx.recv().unwrap();
        let peer = s.spawn(|| {
            enter(&lab.peer_ns);
            let sock = peer_socket();
            port_tx.send(sock.local_addr().unwrap().port()).unwrap();
            for i in 0..N {
                sock.send_to(format!("afp-a-{i:03}").as_bytes(), to_gw())
                    .unwrap();
            }
        });
        peer.join().unwrap();
        let (got, largest, stats) = gw.join().unwrap();
        let want: Vec<Vec<u8>> = (0..N)
            .map(|i| format!("afp-a-{i:03}").into_bytes())
            .collect();
        assert_eq!(got, want);
        assert!(largest <= MAX, "a burst of {largest} > {MAX}");
        assert!(largest > 1, "bursts never batched more than one frame");
        assert!(stats.rx_packets >= N as u64, "{stats:?}");
        assert_eq!(stats.rx_oversize, 0, "{stats:?}");
        eprintln!("rx stats: {stats:?}");
    });
}

/// With completion off, partial checksums reach the pipeline tagged, and
/// really are partial (the check in (a) can fail).
#[test]
fn partial_checksums_are_tagged_when_not_completed() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(false);
    let cfg = AfPacketConfig {
        complete_partial_csum: false,
        ..gw_cfg()
    };
    let (desc, f) = first_datagram(&lab, &cfg, b"partial");
    assert_eq!(desc.tag, TAG_CSUM_PARTIAL);
    assert!(
        !checksums_ok(&f),
        "a partial checksum verified: veth did not offload?"
    );
}

/// Opens a gateway socket with `cfg`, has the peer send `payload` to it,
/// and returns the first datagram to the gateway that the socket receives
/// (its descriptor and bytes). Bounded by DEADLINE.
fn first_datagram(lab: &Lab, cfg: &AfPacketConfig, payload: &[u8]) -> (FrameDesc, Vec<u8>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let gw = s.spawn(move || {
            enter(&lab.gw_ns);
            let mut io = AfPacket::open(&lab.gw_if, cfg).unwrap();
            ready_tx.send(io.vnet_hdr()).unwrap();
            let mut batch = Batch::new();
            let start = Instant::now();
            while start.elapsed() < DEADLINE {
                let n = io.rx_burst(&mut batch, MAX_BURST);
                for i in 0..n {
                    if parse_udp(batch.frame(i)).is_some_and(|u| u.dst == to_gw()) {
                        return (batch.descs()[i], batch.frame(i).to_vec());
                    }
                }
                io.wait_rx(2);
            }
            panic!("no datagram within {DEADLINE:?}");
        });
        let vnet = ready_rx.recv().unwrap();
        assert_eq!(vnet, cfg.vnet_hdr, "PACKET_VNET_HDR as configured");
        in_ns(&lab.peer_ns, || {
            peer_socket().send_to(payload, to_gw()).unwrap();
        });
        gw.join().unwrap()
    })
}

/// (b) Frames rewritten in the arena and sent by tx_burst reach the peer's
/// real UDP socket, which only accepts them with correct checksums.
#[test]
fn tx_burst_echoes_reach_the_peer_socket() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(false);
    const N: usize = 20;
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let gw = s.spawn(|| {
            enter(&lab.gw_ns);
            let mut io = AfPacket::open(&lab.gw_if, &gw_cfg()).unwrap();
            ready_tx.send(()).unwrap();
            let mut batch = Batch::new();
            let mut echoed = 0;
            let start = Instant::now();
            while echoed < N && start.elapsed() < DEADLINE {
                let n = io.rx_burst(&mut batch, MAX_BURST);
                if n == 0 {
                    io.wait_rx(2);
                    continue;
                }
                for i in 0..n {
                    let ours = parse_udp(batch.frame(i)).is_some_and(|u| u.dst == to_gw());
                    if ours {
                        echo_in_place(batch.frame_mut(i));
                        batch.set_verdict(i, Verdict::Tx(0));
                    } else {
                        batch.set_verdict(i, Verdict::Drop(DropReason::Malformed));
                    }
                }
                let st = io.tx_burst(&mut batch);
                assert!(batch.is_empty(), "tx_burst must empty the batch");
                assert_eq!(st.dropped, 0);
                echoed += st.sent as usize;
            }
            (echoed, io.stats())
        });
        ready_rx.recv().unwrap();
        let replies = s.spawn(|| {
            enter(&lab.peer_ns);
            let sock = peer_socket();
            let mut replies = Vec::new();
            let mut buf = [0u8; 2048];
            for i in 0..N {
                let msg = format!("afp-b-{i:02}");
                sock.send_to(msg.as_bytes(), to_gw()).unwrap();
                let (n, from) = sock.recv_from(&mut buf).expect("echo reply");
                assert_eq!(from, std::net::SocketAddr::V4(to_gw()));
                replies.push((msg, String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
            replies
        });
        let replies = replies.join().unwrap();
        let (echoed, stats) = gw.join().unwrap();
        assert_eq!(replies.len(), N);
        for (sent, got) in &replies {
            assert_eq!(sent, got);
        }
        assert_eq!(echoed, N);
        assert_eq!(stats.tx_sent, N as u64);
        assert_eq!(stats.tx_dropped, 0);
    });
}

/// (c) Two workers in one HASH fanout group split a multi-flow load: every
/// datagram exactly once, each flow on one worker, both workers busy.
#[test]
fn fanout_group_splits_flows_without_duplicates() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(false);
    const FLOWS: usize = 32;
    const PER_FLOW: usize = 8;
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let gw = s.spawn(|| {
            enter(&lab.gw_ns);
            let cfg = AfPacketConfig {
                fanout: Some(Fanout {
                    group_id: 0x5a17,
                    mode: FanoutMode::Hash,
                }),
                ..gw_cfg()
            };
            let mut workers = [
                AfPacket::open(&lab.gw_if, &cfg).unwrap(),
                AfPacket::open(&lab.gw_if, &cfg).unwrap(),
            ];
            // A member with another mode must be refused, not silently split.
            let other = AfPacketConfig {
                fanout: Some(Fanout {
                    group_id: 0x5a17,
                    mode: FanoutMode::LoadBalance,
                }),
                ..gw_cfg()
            };
            assert!(AfPacket::open(&lab.gw_if, &other).is_err());
            ready_tx.send(()).unwrap();
            let mut batch = Batch::new();
            // payload -> receiving worker indices
            let mut seen: Vec<(String, usize)> = Vec::new();
            let start = Instant::now();
            while seen.len() < FLOWS * PER_FLOW && start.elapsed() < DEADLINE {
                let mut idle = true;
                for (w, io) in workers.iter_mut().enumerate() {
                    let n = io.rx_burst(&mut batch, MAX_BURST);
                    idle &= n == 0;
                    for i in 0..n {
                        if let Some(u) = parse_udp(batch.frame(i)).filter(|u| u.dst == to_gw()) {
                            seen.push((String::from_utf8_lossy(u.payload).into_owned(), w));
                        }
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            // Late duplicates would show up here.
            std::thread::sleep(Duration::from_millis(20));
            for (w, io) in workers.iter_mut().enumerate() {
                let n = io.rx_burst(&mut batch, MAX_BURST);
                for i in 0..n {
                    if let Some(u) = parse_udp(batch.frame(i)).filter(|u| u.dst == to_gw()) {
                        seen.push((String::from_utf8_lossy(u.payload).into_owned(), w));
                    }
                }
            }
            seen
        });
        ready_rx.recv().unwrap();
        let peer = s.spawn(|| {
            enter(&lab.peer_ns);
            let socks: Vec<UdpSocket> = (0..FLOWS).map(|_| peer_socket()).collect();
            for seq in 0..PER_FLOW {
                for (flow, sock) in socks.iter().enumerate() {
                    sock.send_to(format!("f{flow:02}-{seq}").as_bytes(), to_gw())
                        .unwrap();
                }
            }
        });
        peer.join().unwrap();
        let seen = gw.join().unwrap();
        let unique: HashSet<&String> = seen.iter().map(|(p, _)| p).collect();
        assert_eq!(unique.len(), seen.len(), "duplicates across the group");
        assert_eq!(seen.len(), FLOWS * PER_FLOW, "lost datagrams");
        let mut flow_worker: HashMap<&str, HashSet<usize>> = HashMap::new();
        let mut per_worker = [0usize; 2];
        for (p, w) in &seen {
            flow_worker.entry(&p[..3]).or_default().insert(*w);
            per_worker[*w] += 1;
        }
        for (flow, ws) in &flow_worker {
            assert_eq!(ws.len(), 1, "flow {flow} split over workers");
        }
        assert!(
            per_worker.iter().all(|&n| n > 0),
            "one worker got everything: {per_worker:?}"
        );
        eprintln!("fanout split: {per_worker:?}");
    });
}

/// (d) What the gateway host transmits (our own tx_burst through the qdisc,
/// and its kernel's own datagrams) is never received back, with and without
/// fanout, while a plain packet socket on the same interface does see it.
#[test]
fn outgoing_frames_are_not_received_back() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(true);
    const N: usize = 10;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let lab = &lab;
    std::thread::scope(|s| {
        let peer = s.spawn(|| {
            enter(&lab.peer_ns);
            let sock = UdpSocket::bind(SocketAddrV4::new(PEER_IP, 9000)).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut got = HashSet::new();
            let mut buf = [0u8; 2048];
            let start = Instant::now();
            while got.len() < 2 * N && start.elapsed() < DEADLINE {
                if let Ok(n) = sock.recv(&mut buf) {
                    got.insert(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
            done_tx.send(()).unwrap();
            got
        });
        ready_rx.recv().unwrap();
        let gw = s.spawn(move || {
            enter(&lab.gw_ns);
            // Through the qdisc, so packet taps do see our tx.
            let plain = AfPacketConfig {
                qdisc_bypass: false,
                ..gw_cfg()
            };
            let fanned = AfPacketConfig {
                fanout: Some(Fanout {
                    group_id: 0x0d0d,
                    mode: FanoutMode::Hash,
                }),
                ..plain.clone()
            };
            let mut a = AfPacket::open(&lab.gw_if, &plain).unwrap();
            let mut b = AfPacket::open(&lab.gw_if, &fanned).unwrap();
            let tap = Tap::open(a.ifindex());

            let frames: Vec<Vec<u8>> = (0..N)
                .map(|i| {
                    build_udp(
                        SocketAddrV4::new(GW_IP, GW_PORT),
                        SocketAddrV4::new(PEER_IP, 9000),
                        format!("out-tx-{i}").as_bytes(),
                    )
                })
                .collect();
            let mut region = vec![0u8; N * 2048];
            let mut batch = Batch::new();
            // SAFETY: `region` outlives the batch's use below and nothing
            // else touches it meanwhile.
            unsafe { batch.reset(region.as_mut_ptr(), region.len()) };
            for (i, f) in frames.iter().enumerate() {
                assert!(batch.push(FrameDesc {
                    offset: (i * 2048) as u64,
                    len: f.len() as u32,
                    cap: 2048,
                    tag: 0,
                    offload: Default::default(),
                }));
                batch.frame_mut(i)[..f.len()].copy_from_slice(f);
                batch.set_verdict(i, Verdict::Tx(0));
            }
            let st = a.tx_burst(&mut batch);
            assert_eq!((st.sent, st.dropped), (N as u32, 0));
            let kernel = UdpSocket::bind(SocketAddrV4::new(GW_IP, 0)).unwrap();
            for i in 0..N {
                kernel
                    .send_to(
                        format!("out-kernel-{i}").as_bytes(),
                        SocketAddrV4::new(PEER_IP, 9000),
                    )
                    .unwrap();
            }
            // Wait until the peer has everything, then give the rings time
            // to retire any block that would hold a looped-back frame.
            let _ = done_rx.recv_timeout(DEADLINE);
            std::thread::sleep(Duration::from_millis(30));
            let mut back = Vec::new();
            for io in [&mut a, &mut b] {
                let mut rx = Batch::new();
                for _ in 0..8 {
                    let n = io.rx_burst(&mut rx, MAX_BURST);
                    for i in 0..n {
                        if let Some(u) = parse_udp(rx.frame(i)) {
                            back.push(String::from_utf8_lossy(u.payload).into_owned());
                        }
                    }
                }
            }
            (back, tap.outgoing_markers(), a.stats(), b.stats())
        });
        let got = peer.join().unwrap();
        let (back, tapped, sa, sb) = gw.join().unwrap();
        assert_eq!(
            got.len(),
            2 * N,
            "the peer did not receive all frames: {got:?}"
        );
        // The control: a socket without the filter sees the host's tx.
        assert!(
            tapped >= N,
            "a plain packet socket saw only {tapped} outgoing frames: the test proves nothing"
        );
        assert!(back.is_empty(), "outgoing frames received back: {back:?}");
        // The kernel filtered them (PACKET_IGNORE_OUTGOING, and the fanout
        // flag for the group), not just our sll_pkttype fallback.
        assert_eq!((sa.rx_outgoing_skipped, sb.rx_outgoing_skipped), (0, 0));
        eprintln!("tap saw {tapped} outgoing; stats a={sa:?} b={sb:?}");
    });
}

/// A plain AF_PACKET socket (no ignore-outgoing), the control for (d).
struct Tap(std::os::fd::OwnedFd);

impl Tap {
    fn open(ifindex: u32) -> Tap {
        use std::os::fd::FromRawFd;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscalls; results checked.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK,
                i32::from(proto),
            );
            assert!(fd >= 0, "{}", std::io::Error::last_os_error());
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            let r = libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
            Tap(std::os::fd::OwnedFd::from_raw_fd(fd))
        }
    }

    /// How many queued frames carry an "out-" marker.
    fn outgoing_markers(&self) -> usize {
        let mut buf = [0u8; 4096];
        let mut n = 0;
        for _ in 0..10_000 {
            // SAFETY: buf is writable for its length.
            let r =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if r <= 0 {
                break;
            }
            if parse_udp(&buf[..r as usize]).is_some_and(|u| u.payload.starts_with(b"out-")) {
                n += 1;
            }
        }
        n
    }
}

/// The host check reads the namespace it runs in: forwarding and GRO
/// switched on are reported, switched off they are not.
#[test]
fn host_check_reports_forwarding_and_gro() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(false);
    in_ns(&lab.gw_ns, || {
        let cfg = AfPacketConfig::default();
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap();
        set_offload(&lab.gw_if, Offload::Gro, false).unwrap();
        let quiet = check_host(&lab.gw_if, &cfg);
        assert!(
            quiet
                .iter()
                .all(|w| !w.contains("ip_forward") && !w.contains("GRO")),
            "{quiet:?}"
        );

        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
        set_offload(&lab.gw_if, Offload::Gro, true).unwrap();
        let loud = check_host(&lab.gw_if, &cfg);
        assert!(
            loud.iter().any(|w| w.contains("net.ipv4.ip_forward=1")),
            "{loud:?}"
        );
        // With vnet headers GRO's merged frames pass whole: no warning.
        assert!(!loud.iter().any(|w| w.contains("GRO")), "{loud:?}");
        let legacy = check_host(&lab.gw_if, &gw_cfg());
        assert!(legacy.iter().any(|w| w.contains("GRO is on")), "{legacy:?}");

        let small = AfPacketConfig {
            buf_size: 1024,
            ..cfg
        };
        assert!(check_host(&lab.gw_if, &small)
            .iter()
            .any(|w| w.contains("MTU 1500")));
    });
}

/// With vnet headers (the default), a partial checksum from the peer's tx
/// offload is not completed but flagged: NEEDS_CSUM with csum_start and
/// csum_offset naming the UDP checksum, and finishing it as the kernel
/// would gives a valid datagram.
#[test]
fn vnet_headers_flag_partial_checksums_with_their_offsets() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(false);
    let (desc, mut f) = first_datagram(&lab, &AfPacketConfig::default(), b"flagged");
    let meta = desc.offload;
    assert!(meta.csum_partial(), "{meta:?}");
    assert!(!meta.is_gso(), "{meta:?}");
    assert_eq!((meta.csum_start, meta.csum_offset), (34, 6), "{meta:?}");
    assert!(!checksums_ok(&f), "veth did not leave it partial?");
    let start = meta.csum_start as usize;
    let at = start + meta.csum_offset as usize;
    let c = finish(sum16(&f[start..], 0));
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    assert!(checksums_ok(&f), "finished checksum does not verify");
}

/// Setup errors say what is wrong.
#[test]
fn open_errors_name_the_problem() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(false);
    in_ns(&lab.gw_ns, || {
        let e = AfPacket::open("vg-missing0", &AfPacketConfig::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("not found"), "{e}");
        let bad = AfPacketConfig {
            block_size: 1000,
            ..AfPacketConfig::default()
        };
        let e = AfPacket::open(&lab.gw_if, &bad).err().unwrap();
        assert!(e.to_string().contains("block_size"), "{e}");
    });
}
