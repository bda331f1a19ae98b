//! `vipgate send` over a veth pair between two namespaces: every frame the
//! command says it sent arrives at the peer, MACs rewritten as asked, and
//! loops, packet and time bounds hold. Root only (loud skip otherwise).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bench::lab::{in_netns, ip, netns};
use bench::labbench::traffic::{blast_capture, mac_of, rx_packets};
use dataplane::io::af_packet::{AfPacket, AfPacketConfig, RingKind};
use dataplane::io::pcap::write_pcap;
use dataplane::io::{Batch, PacketIo};

use dataplane::io::af_packet::is_root;

/// Two namespaces joined by a veth pair (`eth0` on both sides), IPv6 off
/// so the kernel sends no frames of its own; deleted on drop.
struct Pair {
    a: String,
    b: String,
}

impl Pair {
    fn up() -> Pair {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "vgl{}s{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let p = Pair {
            a: format!("{id}-a"),
            b: format!("{id}-b"),
        };
        ip(&["netns", "add", &p.a]).unwrap();
        ip(&["netns", "add", &p.b]).unwrap();
        for ns in [&p.a, &p.b] {
            netns::sysctl(ns, "net/ipv6/conf/all/disable_ipv6", "1").unwrap();
            netns::sysctl(ns, "net/ipv6/conf/default/disable_ipv6", "1").unwrap();
        }
        ip(&[
            "-n", &p.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
            &p.b,
        ])
        .unwrap();
        for (ns, addr) in [(&p.a, "198.18.0.2/24"), (&p.b, "198.18.0.1/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", "eth0"]).unwrap();
            ip(&["-n", ns, "link", "set", "eth0", "up"]).unwrap();
        }
        p
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

fn write_capture(dir: &Path, frames: u16) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("udp.pcap");
    let cap = blast_capture(
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 2],
        "198.18.0.2".parse().unwrap(),
        // Not the peer's address: it drops the frames without answering
        // (no ICMP, hence no ARP), so its rx counter sees only ours.
        "198.18.0.77".parse().unwrap(),
        9,
        frames,
    );
    write_pcap(&path, (0..cap.len()).map(|i| cap.packet(i))).unwrap();
    path
}

fn send(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vipgate"), "send"])
        .args(args)
        .output()
        .unwrap()
}

/// The `sent N packets` figure the command printed.
fn sent_count(out: &Output) -> u64 {
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "vipgate send failed: {s}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = s.lines().find(|l| l.starts_with("sent ")).expect(&s);
    assert!(line.contains(" pps, ") && line.ends_with(" Mbps"), "{line}");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// rx_packets of the peer once it stops changing (frames still queued).
fn settled_rx(ns: &str) -> u64 {
    let mut last = rx_packets(ns, "eth0").unwrap();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(50));
        let now = rx_packets(ns, "eth0").unwrap();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[test]
fn send_delivers_every_frame_it_counts_with_macs_rewritten() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: vipgate send needs root (namespaces, AF_PACKET) ***\n");
        return;
    }
    let pair = Pair::up();
    let dir = std::env::temp_dir().join(format!("{}-send", pair.a));
    let pcap = write_capture(&dir, 200);
    let peer_mac = mac_of(&pair.b, "eth0").unwrap();
    let peer = peer_mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    // The peer listens with a packet socket to see the rewritten MACs.
    let mut sock = in_netns(&pair.b, || {
        // Read only after the sender is done: the dense block ring holds
        // all 1000 frames (the default frame ring has 512 slots).
        let cfg = AfPacketConfig {
            ring: RingKind::Blocks,
            ..AfPacketConfig::default()
        };
        AfPacket::open("eth0", &cfg).unwrap()
    })
    .unwrap();

    let before = rx_packets(&pair.b, "eth0").unwrap();
    let out = send(
        &pair.a,
        &[
            "--iface",
            "eth0",
            "--pcap",
            pcap.to_str().unwrap(),
            "--loops",
            "5",
            "--rate",
            "20000",
            "--src-mac",
            "02:00:c6:12:00:99",
            "--dst-mac",
            &peer,
        ],
    );
    assert_eq!(sent_count(&out), 1000, "5 loops of 200 frames");
    assert_eq!(settled_rx(&pair.b) - before, 1000);

    let mut batch = Batch::new();
    let mut seen = 0;
    let t0 = Instant::now();
    while seen < 1000 && t0.elapsed() < Duration::from_secs(5) {
        let n = sock.rx_burst(&mut batch, 64);
        for i in 0..n {
            let f = batch.frame(i);
            assert_eq!(&f[..6], &peer_mac, "destination MAC rewritten");
            assert_eq!(
                &f[6..12],
                &[2, 0, 0xc6, 0x12, 0, 0x99],
                "source MAC rewritten"
            );
            assert_eq!(&f[30..34], &[198, 18, 0, 77]);
        }
        seen += n;
        batch.clear();
        if n == 0 {
            sock.wait_rx(50);
        }
    }
    assert_eq!(seen, 1000, "frames seen by the peer's packet socket");
    drop(sock);
    drop(pair);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn send_stops_at_its_time_and_packet_bounds() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: vipgate send needs root (namespaces, AF_PACKET) ***\n");
        return;
    }
    let pair = Pair::up();
    let dir = std::env::temp_dir().join(format!("{}-send", pair.a));
    let pcap = write_capture(&dir, 64);
    let pcap = pcap.to_str().unwrap();

    // Endless loops at top speed: the duration ends it.
    let t0 = Instant::now();
    let out = send(
        &pair.a,
        &[
            "--iface",
            "eth0",
            "--pcap",
            pcap,
            "--topspeed",
            "--loops",
            "1000000000",
            "--duration",
            "0.5",
        ],
    );
    let took = t0.elapsed();
    let sent = sent_count(&out);
    assert!(sent > 0);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let rx = settled_rx(&pair.b);
    let drops = drops(&pair.b);
    // What the peer did not take it counted as dropped: none vanished.
    assert_eq!(rx + drops, sent, "rx {rx} + dropped {drops} vs sent {sent}");

    // The packet budget cuts a loop short.
    let out = send(
        &pair.a,
        &[
            "--iface",
            "eth0",
            "--pcap",
            pcap,
            "--rate",
            "50000",
            "--loops",
            "10",
            "--max-packets",
            "100",
        ],
    );
    assert_eq!(sent_count(&out), 100);

    // Bad arguments are errors, not panics.
    let out = send(
        &pair.a,
        &["--iface", "eth0", "--pcap", pcap, "--dst-mac", "nope"],
    );
    assert!(!out.status.success());
    let out = send(&pair.a, &["--iface", "nosuch0", "--pcap", pcap]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch0"));
    drop(pair);
    let _ = std::fs::remove_dir_all(&dir);
}

fn drops(ns: &str) -> u64 {
    let out = ip(&["-n", ns, "-s", "-j", "link", "show", "dev", "eth0"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["stats64"]["rx"]["dropped"].as_u64().unwrap()
}

#[test]
fn send_over_af_xdp_delivers_every_frame_it_counts() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: vipgate send needs root (namespaces, AF_XDP) ***\n");
        return;
    }
    let pair = Pair::up();
    let dir = std::env::temp_dir().join(format!("{}-send", pair.a));
    let pcap = write_capture(&dir, 200);
    let before = rx_packets(&pair.b, "eth0").unwrap();
    let out = send(
        &pair.a,
        &[
            "--iface",
            "eth0",
            "--pcap",
            pcap.to_str().unwrap(),
            "--io",
            "af_xdp",
            "--loops",
            "5",
            "--rate",
            "20000",
        ],
    );
    assert_eq!(sent_count(&out), 1000, "5 loops of 200 frames");
    assert_eq!(settled_rx(&pair.b) - before, 1000);
    drop(pair);
    let _ = std::fs::remove_dir_all(&dir);
}
