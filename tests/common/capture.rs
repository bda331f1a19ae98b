//! What the gateway put on the wire, checked independently: tcpdump
//! captures the frames a MAC address sent (on a bridge port inside the
//! lab), tshark validates every IPv4/TCP/UDP checksum, and each frame is
//! also classified here by a full recompute (fixtures::verify):
//! - `full`: every checksum verifies;
//! - `partial`: the TCP/UDP field holds exactly the pseudo-header sum of
//!   the frame's own (NATed) addresses and length, i.e. it was handed on
//!   with its checksum left to offload (AF_PACKET with vnet headers, as the
//!   kernel's own forwarding does); finishing it gives a valid checksum,
//!   which is checked too;
//! - anything else is `bad`.
//!
//! tshark calls a partial frame "Bad" (it cannot know the flag), so the
//! check is that tshark's Bad frames are exactly the partial ones.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dataplane::wire::checksum::{finish, pseudo_header_sum, sum_bytes};
use dataplane::wire::parse::{parse, ParseError, IPPROTO_TCP, IPPROTO_UDP};
use fixtures::verify::check_frame;

/// A running tcpdump; stopped by [`Capture::finish`] (or killed on drop).
pub struct Capture {
    child: Option<Child>,
    pub path: PathBuf,
}

/// The MAC address of `dev` in namespace `ns`.
pub fn mac_of(ns: &str, dev: &str) -> String {
    let out = bench::lab::ip(&["-n", ns, "link", "show", dev]).expect("ip link show");
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {dev} in {ns}: {out}"))
        .to_string()
}

impl Capture {
    /// Captures frames on `dev` in `ns` whose Ethernet source is `mac`,
    /// except those from `own` addresses (the gateway host's own traffic,
    /// such as the probes that make its kernel resolve a new backend).
    /// Returns once tcpdump is listening (bounded wait).
    pub fn start(ns: &str, dev: &str, mac: &str, own: &[IpAddr], path: &Path) -> Capture {
        let mut filter = format!("ether src {mac}");
        for a in own {
            filter.push_str(&format!(" and not src host {a}"));
        }
        let _ = std::fs::remove_file(path);
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", ns, "tcpdump", "-i", dev, "-s", "0", "-U", "-n",
            ])
            .args(["-w", &path.to_string_lossy()])
            .arg(&filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump (install tcpdump)");
        // tcpdump says "listening on" on stderr when the socket is open.
        let mut err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 512];
            let mut seen = Vec::new();
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("tcpdump did not start listening within 10 s");
        Capture {
            child: Some(child),
            path: path.to_path_buf(),
        }
    }

    /// Stops tcpdump (SIGINT, so it flushes) and waits, bounded.
    pub fn finish(mut self) -> PathBuf {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let t0 = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
        self.path.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How the frames of a capture stand.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// TCP/UDP frames whose every checksum verifies.
    pub full: usize,
    /// TCP/UDP frames left partial, correctly (finishing them verifies).
    pub partial: usize,
    /// Frames larger than `mtu` + Ethernet (GSO super-frames).
    pub super_frames: usize,
    /// The longest frame, in bytes.
    pub largest: usize,
    /// Frames that are neither, with their number (1-based) and reason.
    pub bad: Vec<(usize, String)>,
    /// Frames tshark calls Bad (IPv4, TCP or UDP checksum), 1-based.
    pub tshark_bad: Vec<usize>,
    /// TCP/UDP frames tshark validated Good.
    pub tshark_good: usize,
    /// Numbers of the frames classified partial, 1-based.
    pub partial_frames: Vec<usize>,
}

fn l4_field(p: &dataplane::wire::parse::Parsed) -> Option<usize> {
    match p.proto {
        IPPROTO_TCP => Some(p.l4_off + 16),
        IPPROTO_UDP => Some(p.l4_off + 6),
        _ => None,
    }
}

/// Classifies every frame of `path` and runs tshark's validation over it.
pub fn verdicts(path: &Path, mtu: usize) -> Verdicts {
    // pcap-file directly: the replay loader cuts frames to a wire MTU, and
    // these can be 64 KiB super-frames.
    let file = std::fs::File::open(path).expect("open capture");
    let mut r = pcap_file::pcap::PcapReader::new(file).expect("a pcap file");
    let mut frames = Vec::new();
    while let Some(pkt) = r.next_packet() {
        frames.push(pkt.expect("a pcap record").data.into_owned());
    }
    let mut v = Verdicts::default();
    for (i, f) in frames.iter().enumerate() {
        let f = &f[..];
        let n = i + 1;
        if f.len() > mtu + 18 {
            v.super_frames += 1;
        }
        v.largest = v.largest.max(f.len());
        let p = match parse(f) {
            Ok(p) => p,
            // ARP, ND over other ethertypes: not ours to check.
            Err(ParseError::NotIp) => continue,
            Err(e) => {
                v.bad.push((n, format!("does not parse: {e:?}")));
                continue;
            }
        };
        let Some(at) = l4_field(&p) else {
            if let Err(e) = check_frame(f) {
                v.bad.push((n, e));
            }
            continue;
        };
        if check_frame(f).is_ok() {
            v.full += 1;
            continue;
        }
        let (s, d) = (
            &f[p.src_off()..p.src_off() + if p.v6 { 16 } else { 4 }],
            &f[p.dst_off()..p.dst_off() + if p.v6 { 16 } else { 4 }],
        );
        let pseudo = !finish(pseudo_header_sum(s, d, p.proto, p.l4_len() as u32));
        let field = u16::from_be_bytes([f[at], f[at + 1]]);
        if field != pseudo {
            v.bad.push((
                n,
                format!("checksum {field:#06x} is neither full nor partial"),
            ));
            continue;
        }
        // Finish it the way offload would, then it must verify.
        let mut g = f.to_vec();
        let c = finish(sum_bytes(0, &g[p.l4_off..p.ip_end]));
        g[at..at + 2].copy_from_slice(&c.to_be_bytes());
        match check_frame(&g) {
            Ok(()) => {
                v.partial += 1;
                v.partial_frames.push(n);
            }
            Err(e) => v.bad.push((n, format!("partial, but finished: {e}"))),
        }
    }
    let out = Command::new("tshark")
        .args(["-n", "-r", &path.to_string_lossy()])
        .args(["-o", "ip.check_checksum:TRUE"])
        .args(["-o", "tcp.check_checksum:TRUE"])
        .args(["-o", "udp.check_checksum:TRUE"])
        .args(["-T", "fields", "-E", "separator=,"])
        .args(["-e", "frame.number", "-e", "ip.checksum.status"])
        .args(["-e", "tcp.checksum.status", "-e", "udp.checksum.status"])
        .output()
        .expect("run tshark (install tshark)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<&str> = line.split(',').collect();
        let n: usize = cols[0].parse().expect("frame number");
        // Status 0 = Bad, 1 = Good, 2 = Unverified. Only the first value
        // of each column is the outer packet's (an ICMP error quotes more).
        let first = |c: usize| cols.get(c).and_then(|s| s.split(';').next()).unwrap_or("");
        if [1, 2, 3].iter().any(|&c| first(c) == "0") {
            v.tshark_bad.push(n);
        } else if first(2) == "1" || first(3) == "1" {
            v.tshark_good += 1;
        }
    }
    v
}
