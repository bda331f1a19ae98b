//! Lab traffic: a top-speed UDP blast from the client namespace (frames
//! built once, sent with the `send` module over AF_PACKET), echo servers
//! in the backends, a paced request/response latency probe, and the veth
//! counters that say how much arrived.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::io::memory::Capture;
use fixtures::packet::{Eth, Ip, Ipv4, Packet, Tcp, Udp, L4};
use serde::Serialize;

use crate::lab::{in_netns, ip};
use crate::send::{self, Frames, SendConfig, SendStats};

/// UDP payload of blast frames: 18 bytes make a 60-byte (minimum) frame.
const BLAST_PAYLOAD: usize = 18;
/// First client source port of the blast flows.
const FIRST_SPORT: u16 = 10_000;

/// A MAC address read from `ip -j link`.
pub fn mac_of(ns: &str, dev: &str) -> Result<[u8; 6], String> {
    let out = ip(&["-n", ns, "-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("ip -j link {dev}: {e}"))?;
    let s = v[0]["address"]
        .as_str()
        .ok_or_else(|| format!("{ns}/{dev}: no address in {out}"))?;
    send::parse_mac(s)
}

/// Received packets of `dev` in `ns` (the veth rx counter: frames its
/// peer handed over successfully).
pub fn rx_packets(ns: &str, dev: &str) -> Result<u64, String> {
    let out = ip(&["-n", ns, "-s", "-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("ip -s -j link {dev}: {e}"))?;
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .ok_or_else(|| format!("{ns}/{dev}: no rx counter in {out}"))
}

/// Sum of `rx_packets` over several namespaces' `dev`.
pub fn rx_sum(namespaces: &[String], dev: &str) -> Result<u64, String> {
    namespaces.iter().map(|ns| rx_packets(ns, dev)).sum()
}

/// `flows` UDP flows (distinct source ports) from `client` to `vip:port`,
/// one minimum-size frame each, addressed at layer 2 from `src` to `dst`.
pub fn blast_capture(
    src: [u8; 6],
    dst: [u8; 6],
    client: Ipv4Addr,
    vip: Ipv4Addr,
    port: u16,
    flows: u16,
) -> Capture {
    let mut cap = Capture::new();
    for f in 0..flows {
        let pkt = Packet::new(
            Eth::new(src, dst),
            Ip::V4(Ipv4::new(client.octets(), vip.octets(), 64)),
            L4::Udp(Udp::new(
                FIRST_SPORT.wrapping_add(f),
                port,
                vec![0x5a; BLAST_PAYLOAD],
            )),
        );
        cap.push(u64::from(f), &pkt.frame());
    }
    cap
}

/// Client source ports a new-flows capture rotates over (1024..=65535).
pub const NEW_FLOW_PORTS: u64 = 65_536 - 1024;

/// `flows` minimum-size UDP frames to `vip:port`, each a flow of its own:
/// the source port rotates over [`NEW_FLOW_PORTS`], then the next client
/// address is taken. At most `clients.len() * NEW_FLOW_PORTS` frames.
pub fn new_flows_capture(
    src: [u8; 6],
    dst: [u8; 6],
    clients: &[Ipv4Addr],
    vip: Ipv4Addr,
    port: u16,
    flows: u64,
) -> Capture {
    let flows = flows.min(clients.len() as u64 * NEW_FLOW_PORTS);
    let mut cap = Capture::new();
    for f in 0..flows {
        let client = clients[(f / NEW_FLOW_PORTS) as usize];
        let sport = 1024 + (f % NEW_FLOW_PORTS) as u16;
        let pkt = Packet::new(
            Eth::new(src, dst),
            Ip::V4(Ipv4::new(client.octets(), vip.octets(), 64)),
            L4::Udp(Udp::new(sport, port, vec![0x5a; BLAST_PAYLOAD])),
        );
        cap.push(f, &pkt.frame());
    }
    cap
}

/// A SYN flood: `flows` TCP SYNs to `vip:port`, each from its own source
/// address (counting up from `first_source`, which must lie in
/// 198.18.0.0/15 and away from the lab's own hosts) and port, as spoofed
/// floods arrive. Nobody answers the backends' SYN-ACKs, so every flow
/// stays embryonic: what conntrack must evict before established flows.
pub fn syn_flood_capture(
    src: [u8; 6],
    dst: [u8; 6],
    first_source: Ipv4Addr,
    vip: Ipv4Addr,
    port: u16,
    flows: u32,
) -> Capture {
    let base = u32::from(first_source);
    let mut cap = Capture::new();
    for f in 0..flows {
        let client = Ipv4Addr::from(base.wrapping_add(f));
        let sport = 1024 + (f.wrapping_mul(7919) % 60_000) as u16;
        let pkt = Packet::new(
            Eth::new(src, dst),
            Ip::V4(Ipv4::new(client.octets(), vip.octets(), 64)),
            L4::Tcp(Tcp::new(
                sport,
                port,
                f.wrapping_mul(2_654_435_761),
                0,
                TCP_SYN,
            )),
        );
        cap.push(u64::from(f), &pkt.frame());
    }
    cap
}

/// The SYN flag of a TCP header's flags byte.
const TCP_SYN: u8 = 0x02;

/// Sends `cap` from `dev` in `ns` at top speed for `seconds`, at most
/// `max_packets` frames.
pub fn blast(
    ns: &str,
    dev: &str,
    cap: &Capture,
    seconds: f64,
    max_packets: u64,
) -> Result<SendStats, String> {
    send_paced(ns, dev, cap, seconds, max_packets, None)
}

/// [`blast`] at `rate_pps` frames per second (None: top speed).
pub fn send_paced(
    ns: &str,
    dev: &str,
    cap: &Capture,
    seconds: f64,
    max_packets: u64,
    rate_pps: Option<f64>,
) -> Result<SendStats, String> {
    let mut frames = Frames::prepare(cap, None, None, 1518);
    let cfg = SendConfig {
        duration: Some(Duration::from_secs_f64(seconds)),
        max_packets: Some(max_packets),
        loops: Some(u64::MAX),
        burst: 64,
        rate_pps,
        ..SendConfig::new(dev)
    };
    in_netns(ns, move || {
        // The client's softirqs (and with them the kernel paths' forwarding,
        // which runs in the sender's context on veth) stay on core 0; the
        // gateway's worker pins itself to the last core.
        if let Some(c) = core_affinity::get_core_ids().and_then(|v| v.into_iter().next()) {
            core_affinity::set_for_current(c);
        }
        send::send(&mut frames, &cfg)
    })?
}

/// UDP echo servers on every backend; stopped when dropped.
pub struct EchoServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServers {
    pub fn start(backends: &[String], port: u16) -> Result<EchoServers, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut servers = EchoServers {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        for ns in backends {
            // The socket keeps the namespace it was made in.
            let sock = in_netns(ns, move || UdpSocket::bind(("0.0.0.0", port)))?
                .map_err(|e| format!("{ns}: bind udp {port}: {e}"))?;
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(|e| e.to_string())?;
            let stop = Arc::clone(&stop);
            servers.threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(&buf[..n], from);
                    }
                }
            }));
        }
        Ok(servers)
    }
}

impl Drop for EchoServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Round-trip times of one latency probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub sent: u64,
    pub answered: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Percentile `q` (0..=1) of sorted values, nearest rank; 0 when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sockets the probe rotates over: every request after the first
/// `SOCKETS` is still a conntrack hit, but the flows spread over backends.
const SOCKETS: usize = 16;
/// How long the probe waits for stragglers after its last request.
const DRAIN: Duration = Duration::from_millis(200);

/// From `ns`, `rate` requests per second to `to` for `seconds`; each
/// request carries its sequence number, and the answer's round trip is
/// timed against the send time of that number.
pub fn udp_latency(ns: &str, to: SocketAddrV4, rate: f64, seconds: f64) -> Result<Latency, String> {
    if !(rate > 0.0 && seconds > 0.0) {
        return Err("latency probe: rate and seconds must be positive".into());
    }
    in_netns(ns, move || probe(SocketAddr::V4(to), rate, seconds))?
}

fn probe(to: SocketAddr, rate: f64, seconds: f64) -> Result<Latency, String> {
    let total = (rate * seconds).ceil() as u64;
    let mut socks = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
        s.connect(to).map_err(|e| format!("connect {to}: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        socks.push(s);
    }
    let mut sent_at: Vec<Option<Instant>> = vec![None; total as usize];
    let mut rtts = Vec::with_capacity(total as usize);
    let mut seq = 0u64;
    let t0 = Instant::now();
    let interval = 1.0 / rate;
    let mut buf = [0u8; 64];
    let end = Duration::from_secs_f64(seconds) + DRAIN;
    loop {
        let elapsed = t0.elapsed();
        if seq < total && elapsed.as_secs_f64() >= seq as f64 * interval {
            let s = &socks[seq as usize % SOCKETS];
            // A refused send (ICMP error queued from an earlier request)
            // is a request without answer, not a reason to stop.
            if s.send(&seq.to_be_bytes()).is_ok() {
                sent_at[seq as usize] = Some(Instant::now());
            }
            seq += 1;
            continue;
        }
        let mut got = false;
        for s in &socks {
            while let Ok(n) = s.recv(&mut buf) {
                got = true;
                if n < 8 {
                    continue;
                }
                let k = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                if let Some(at) = sent_at.get_mut(k as usize).and_then(Option::take) {
                    rtts.push(at.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
        if elapsed >= end || (seq >= total && rtts.len() as u64 >= total) {
            break;
        }
        if !got {
            // Sleep-free waiting keeps the timestamps honest at 2k req/s;
            // yielding leaves the core to the lab's softirqs.
            std::thread::yield_now();
        }
    }
    let sent = seq;
    rtts.sort_by(f64::total_cmp);
    Ok(Latency {
        sent,
        answered: rtts.len() as u64,
        p50_us: percentile(&rtts, 0.5),
        p99_us: percentile(&rtts, 0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blast_frames_are_minimum_size_udp_to_the_vip_one_port_each() {
        let cap = blast_capture(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(198, 18, 0, 2),
            Ipv4Addr::new(198, 19, 0, 10),
            80,
            300,
        );
        assert_eq!(cap.len(), 300);
        let mut sports = std::collections::BTreeSet::new();
        for i in 0..cap.len() {
            let (f, _) = cap.packet(i);
            assert_eq!(f.len(), 60);
            assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 2]);
            assert_eq!(&f[12..14], &[0x08, 0x00]);
            assert_eq!(f[23], 17, "UDP");
            assert_eq!(&f[30..34], &[198, 19, 0, 10]);
            assert_eq!(u16::from_be_bytes([f[36], f[37]]), 80);
            sports.insert(u16::from_be_bytes([f[34], f[35]]));
        }
        assert_eq!(sports.len(), 300);
    }

    #[test]
    fn new_flow_frames_never_repeat_a_tuple_and_move_to_the_next_client() {
        let clients = [Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 11)];
        let want = NEW_FLOW_PORTS + 5;
        let cap = new_flows_capture(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            &clients,
            Ipv4Addr::new(198, 19, 0, 10),
            80,
            want,
        );
        assert_eq!(cap.len() as u64, want);
        let mut tuples = std::collections::HashSet::new();
        for i in 0..cap.len() {
            let (f, _) = cap.packet(i);
            assert_eq!(f.len(), 60);
            assert_eq!(&f[30..34], &[198, 19, 0, 10]);
            let sport = u16::from_be_bytes([f[34], f[35]]);
            assert!(sport >= 1024);
            assert!(
                tuples.insert((f[26..30].to_vec(), sport)),
                "frame {i} repeats a flow"
            );
        }
        assert_eq!(&cap.packet(cap.len() - 1).0[26..30], &[198, 18, 0, 11]);
        // Asking for more than the clients hold is capped, not wrapped.
        let small = new_flows_capture(
            [2; 6],
            [3; 6],
            &clients[..1],
            Ipv4Addr::new(198, 19, 0, 10),
            80,
            NEW_FLOW_PORTS * 3,
        );
        assert_eq!(small.len() as u64, NEW_FLOW_PORTS);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn the_probe_times_a_local_echo() {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = echo.local_addr().unwrap();
        echo.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 64];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut b) {
                    let _ = echo.send_to(&b[..n], from);
                }
            }
        });
        let l = probe(addr, 500.0, 0.2).unwrap();
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        assert_eq!(l.sent, 100);
        assert!(l.answered >= 90, "{l:?}");
        assert!(l.p50_us > 0.0 && l.p50_us <= l.p99_us, "{l:?}");
    }
}
