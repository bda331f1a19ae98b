//! Fragmented UDP through `vipgate run`, with the kernel doing the cutting
//! and the reassembly: a client sends 4,000-byte datagrams (MTU 1500, so
//! three fragments each) to an IPv4 and an IPv6 UDP Service; the backend's
//! kernel reassembles them and an echo server sends each back whole, so the
//! reply is fragmented too; the client must get every payload back byte for
//! byte. Two workers, so later fragments must follow their first one to its
//! owner. Both I/O modes. Before, fragments to a VIP were dropped. Then the
//! client sends datagrams cut by the test, last fragment first (from a raw
//! socket, which sends IP headers as given): the gateway holds the early
//! fragments until the first one comes. Root only; otherwise it says so
//! loudly and passes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bench::lab::{self, in_netns, LabSpec, GW_BACKEND_IF, GW_CLIENT_IF};
use common::lab_test::{lab_or_skip, Gateway};
use fixtures::packet::{fragment_ip, Eth, Ip, Ipv4, Ipv6, Packet, Udp, L4};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

const VIP4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 70);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xff, 0, 0, 0, 0, 0, 0x70);
const PORT: u16 = 53;
const ECHO_PORT: u16 = 5300;
const BACKENDS: usize = 2;
const DATAGRAMS: usize = 20;
/// Datagram size: three fragments at MTU 1500.
const SIZE: usize = 4000;

fn yaml() -> String {
    let eps = |v6: bool| -> String {
        (0..BACKENDS)
            .map(|i| {
                let a = if v6 {
                    lab::backend_v6(i).to_string()
                } else {
                    lab::backend_v4(i).to_string()
                };
                format!("  - addresses: ['{a}']\n    conditions: {{ready: true}}\n")
            })
            .collect()
    };
    let slice = |name: &str, family: &str, v6: bool| {
        format!(
            "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n\
             \x20 metadata:\n    name: {name}\n    namespace: lab\n    labels: {{kubernetes.io/service-name: echo}}\n\
             \x20 addressType: {family}\n  ports:\n  - {{name: dns, port: {ECHO_PORT}, protocol: UDP}}\n\
             \x20 endpoints:\n{}",
            eps(v6)
        )
    };
    format!(
        "apiVersion: v1\nkind: List\nitems:\n\
         - apiVersion: v1\n  kind: Service\n  metadata: {{name: echo, namespace: lab}}\n\
         \x20 spec:\n    clusterIPs: ['{VIP4}', '{VIP6}']\n    ipFamilies: [IPv4, IPv6]\n\
         \x20   ports:\n    - {{name: dns, port: {PORT}, protocol: UDP, targetPort: {ECHO_PORT}}}\n{}{}",
        slice("echo-v4", "IPv4", false),
        slice("echo-v6", "IPv6", true)
    )
}

/// UDP echo servers (v4 and v6) in every backend namespace, until dropped.
struct Echo {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(backends: &[String]) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for ns in backends {
            // One dual-stack socket: IPv4 clients arrive v4-mapped.
            {
                let addr = SocketAddr::new("::".parse().unwrap(), ECHO_PORT);
                let s = in_netns(ns, move || UdpSocket::bind(addr))
                    .unwrap()
                    .unwrap();
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let stop = stop.clone();
                threads.push(std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((n, from)) = s.recv_from(&mut buf) {
                            let _ = s.send_to(&buf[..n], from);
                        }
                    }
                }));
            }
        }
        Echo { stop, threads }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sends [`DATAGRAMS`] datagrams of [`SIZE`] bytes to `to`, each from its
/// own socket (its own flow); how many came back intact. A lost datagram
/// is sent again (up to 5 times): the first may meet a neighbour still
/// being resolved.
fn exchange(to: SocketAddr) -> usize {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    (0..DATAGRAMS)
        .filter(|&i| {
            let s = UdpSocket::bind(bind).unwrap();
            s.connect(to).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(700)))
                .unwrap();
            let payload: Vec<u8> = (0..SIZE).map(|k| (k * 31 + i * 7) as u8).collect();
            let mut buf = vec![0u8; 65536];
            (0..5).any(|_| {
                s.send(&payload).unwrap();
                matches!(s.recv(&mut buf), Ok(n) if buf[..n] == payload[..])
            })
        })
        .count()
}

/// Payload bytes per crafted fragment (fits MTU 1500 with either header).
const CHUNK: usize = 1232;

/// Like [`exchange`], but each datagram is cut here and its fragments are
/// sent last first from a raw socket (IPPROTO_RAW: the kernel sends the IP
/// header as given), from `from`; the echo comes back to a UDP socket on
/// the datagram's source port. Every try has its own identification.
fn exchange_reordered(to: SocketAddr, from: IpAddr) -> usize {
    let udp = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let sport = udp.local_addr().unwrap().port();
    let domain = if to.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    // IPPROTO_RAW (255): the header is ours (IP_HDRINCL, both families).
    let raw = Socket::new(domain, Type::RAW, Some(Protocol::from(255))).unwrap();
    let dst = SockAddr::from(SocketAddr::new(to.ip(), 0));
    let mut buf = vec![0u8; 65536];
    (0..DATAGRAMS)
        .filter(|&i| {
            let payload: Vec<u8> = (0..SIZE).map(|k| (k * 17 + i * 3) as u8).collect();
            let ip = match (from, to.ip()) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    let mut h = Ipv4::new(a.octets(), b.octets(), 64);
                    h.flags_frag = 0;
                    Ip::V4(h)
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => Ip::V6(Ipv6::new(a.octets(), b.octets(), 64)),
                _ => unreachable!("one family"),
            };
            let udp_l4 = L4::Udp(Udp::new(sport, to.port(), payload.clone()));
            let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
            let datagram = Packet::new(eth, ip, udp_l4).ip_bytes();
            (0..5u32).any(|attempt| {
                let id = 0x5000 + i as u32 * 8 + attempt;
                for f in fragment_ip(&datagram, id, CHUNK).iter().rev() {
                    raw.send_to(f, &dst).unwrap();
                }
                matches!(udp.recv_from(&mut buf),
                    Ok((n, src)) if src.ip() == to.ip() && buf[..n] == payload[..])
            })
        })
        .count()
}

fn fragments_round_trip(io: &str) {
    let Some(lab) = lab_or_skip(
        &format!("lab_fragments ({io})"),
        LabSpec {
            backends: BACKENDS,
            ..Default::default()
        },
    ) else {
        return;
    };
    let _echo = Echo::start(&lab.backends);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(&path, yaml()).unwrap();
    let gw = Gateway::spawn(
        &lab,
        &[
            "--iface",
            &format!("{GW_CLIENT_IF},{GW_BACKEND_IF}"),
            "--io",
            io,
            "--workers",
            "2",
            "--services",
            &path.to_string_lossy(),
        ],
    );
    let admin = gw.admin_addr();
    let clients = [
        (IpAddr::V4(VIP4), IpAddr::V4(lab::CLIENT_V4)),
        (IpAddr::V6(VIP6), IpAddr::V6(lab::CLIENT_V6)),
    ];
    // Sent whole, cut by the client's kernel; then last fragment first.
    for reordered in [false, true] {
        for (vip, from) in clients {
            let to = SocketAddr::new(vip, PORT);
            let ok = in_netns(&lab.client, move || match reordered {
                false => exchange(to),
                true => exchange_reordered(to, from),
            })
            .unwrap();
            let how = if reordered {
                "sent last fragment first"
            } else {
                "of 4000 bytes"
            };
            println!("lab_fragments ({io}): {ok}/{DATAGRAMS} datagrams {how} echoed via {to}");
            if ok != DATAGRAMS {
                let (_, out) = gw.terminate();
                panic!("{io}: fragmented datagrams {how} lost via {to}\n{out}");
            }
        }
    }
    let stats = in_netns(&lab.gw, move || control::admin::fetch_json(admin, "/stats"))
        .unwrap()
        .expect("/stats");
    let count = |name: &str| stats["total"][name].as_u64().unwrap();
    let (followed, held) = (count("fragments_followed"), count("fragments_held"));
    // Two later fragments per datagram cut by the kernel, each way, and
    // three per datagram cut here (four fragments), both families.
    assert!(
        followed >= ((4 * 2 + 2 * 3) * DATAGRAMS) as u64,
        "{io}: fragments followed: {followed}"
    );
    println!("lab_fragments ({io}): {followed} later fragments followed their first");
    // The three early fragments of each reordered datagram, both families.
    assert!(
        held >= (3 * 2 * DATAGRAMS) as u64,
        "{io}: fragments held: {held}"
    );
    println!("lab_fragments ({io}): {held} early fragments held until their first came");
    let (ok, out) = gw.terminate();
    assert!(ok, "vipgate run failed:\n{out}");
}

#[test]
fn fragmented_udp_round_trips_af_packet() {
    fragments_round_trip("af-packet");
}

#[test]
fn fragmented_udp_round_trips_af_xdp() {
    fragments_round_trip("af-xdp");
}
