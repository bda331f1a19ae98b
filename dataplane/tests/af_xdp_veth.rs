//! AF_XDP on a veth pair between two fresh network namespaces: the steering
//! program attaches, VIP traffic reaches the socket, frames transmitted in
//! place reach the peer, the node stays reachable (ARP, ICMP, other UDP),
//! and nothing is left attached afterwards. Root only; skipped loudly
//! otherwise. Every loop is bounded in count and time.

use std::fs::File;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dataplane::addr::{Addr, Proto};
use dataplane::io::af_xdp::{AfXdp, AfXdpConfig, AttachMode, SteeringConfig, XdpSteering};
use dataplane::io::{Batch, PacketIo};
use dataplane::verdict::{DropReason, Verdict};

const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);

use dataplane::io::af_packet::is_root;

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("\n*** SKIPPED: needs root (network namespaces, XDP, AF_XDP) ***\n");
            return;
        }
    };
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces joined by a veth; both are deleted on drop (which also
/// removes the veth), even when the test panics.
struct Lab {
    a: String,
    b: String,
    va: String,
    vb: String,
}

impl Lab {
    fn new() -> Lab {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            a: format!("vgx-{id}-a"),
            b: format!("vgx-{id}-b"),
            va: format!("vxa{id}"),
            vb: format!("vxb{id}"),
        };
        assert!(lab.va.len() <= 15, "interface name too long: {}", lab.va);
        ip(&["netns", "add", &lab.a]);
        // From here on Drop cleans up whatever was created.
        ip(&["netns", "add", &lab.b]);
        ip(&[
            "-n", &lab.a, "link", "add", &lab.va, "type", "veth", "peer", "name", &lab.vb, "netns",
            &lab.b,
        ]);
        for (ns, dev, addr) in [
            (&lab.a, &lab.va, "198.18.0.1/24"),
            (&lab.b, &lab.vb, "198.18.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        // Offloads off: XDP wants page-sized frames with complete
        // checksums (a peer's checksum-offloaded UDP arrives with only the
        // pseudo-header sum, and echoing it back would be dropped).
        in_netns(&lab.a, || offloads_off(&lab.va));
        in_netns(&lab.b, || offloads_off(&lab.vb));
        ip(&[
            "-n",
            &lab.b,
            "route",
            "add",
            "198.19.0.0/16",
            "via",
            "198.18.0.1",
        ]);
        lab
    }

    fn link_a(&self) -> String {
        ip(&["-n", &self.a, "-d", "link", "show", "dev", &self.va])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// `ethtool -K dev tx off tso off gso off gro off` through the legacy
/// SIOCETHTOOL ioctl, so the lab does not depend on the ethtool binary.
fn offloads_off(dev: &str) {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_STXCSUM: u32 = 0x17;
    const ETHTOOL_STSO: u32 = 0x1f;
    const ETHTOOL_SGSO: u32 = 0x24;
    const ETHTOOL_SGRO: u32 = 0x2c;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    // SAFETY: plain socket(2), closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    assert!(fd >= 0);
    for cmd in [ETHTOOL_STXCSUM, ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SGRO] {
        let mut v = EthtoolValue { cmd, data: 0 };
        let mut req = IfReq {
            name: [0; 16],
            data: &mut v,
            _pad: [0; 16],
        };
        req.name[..dev.len()].copy_from_slice(dev.as_bytes());
        // SAFETY: req and the value it points to are live for the call.
        let r = unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut req) };
        assert_eq!(
            r,
            0,
            "ethtool cmd {cmd:#x} on {dev}: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
}

/// Runs `f` on a thread that has entered namespace `ns`: sockets, links
/// and interface lookups made there belong to that namespace.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).expect("open netns");
            // SAFETY: setns on this thread only, with a namespace fd we hold.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread panicked")
    })
}

fn udp_in(ns: &str, addr: SocketAddrV4) -> UdpSocket {
    in_netns(ns, || {
        let s = UdpSocket::bind(addr).expect("bind udp");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s
    })
}

/// The gateway side: steering program, link and one socket on queue 0.
struct Gateway {
    sock: AfXdp,
    _link: dataplane::io::af_xdp::XdpLink,
    steer: XdpSteering,
}

fn gateway(lab: &Lab) -> Gateway {
    in_netns(&lab.a, || {
        let steer = XdpSteering::load(&SteeringConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let link = steer
            .attach(&lab.va, AttachMode::Driver)
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg = AfXdpConfig {
            frame_size: 2048,
            frame_count: 1024,
            ring_size: 512,
            ..AfXdpConfig::default()
        };
        let sock = AfXdp::open(&lab.va, 0, &cfg).unwrap_or_else(|e| panic!("{e}"));
        steer.register(&sock).unwrap_or_else(|e| panic!("{e}"));
        Gateway {
            sock,
            _link: link,
            steer,
        }
    })
}

/// Polls the socket until a frame whose UDP payload is `payload` arrives,
/// re-sending with `send` every 200 ms (the first may wait for ARP).
/// Returns the batch index of the frame, other frames marked Drop.
fn receive(sock: &mut AfXdp, batch: &mut Batch, payload: &[u8], send: impl Fn()) -> Option<usize> {
    receive_where(
        sock,
        batch,
        |f| f.len() >= 42 && f[12..14] == [8, 0] && f[42..] == *payload,
        send,
    )
}

/// Like [`receive`], for any frame `want` accepts.
fn receive_where(
    sock: &mut AfXdp,
    batch: &mut Batch,
    want: impl Fn(&[u8]) -> bool,
    send: impl Fn(),
) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut next_send = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next_send {
            send();
            next_send = Instant::now() + Duration::from_millis(200);
        }
        if sock.rx_burst(batch, 64) == 0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let mut found = None;
        for i in 0..batch.len() {
            let f = batch.frame(i);
            if found.is_none() && want(f) {
                found = Some(i);
            } else {
                batch.set_verdict(i, Verdict::Drop(DropReason::Malformed));
            }
        }
        if found.is_some() {
            return found;
        }
        sock.tx_burst(batch);
    }
    None
}

/// Turns a received UDP/IPv4 frame around in place: MACs, addresses and
/// ports swapped. Both checksums are sums over the swapped fields, so they
/// stay valid.
fn turn_around(f: &mut [u8]) {
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    for i in 0..4 {
        f.swap(26 + i, 30 + i);
    }
    for i in 0..2 {
        f.swap(34 + i, 36 + i);
    }
}

fn wait_recv(s: &UdpSocket, buf: &mut [u8], max_wait: Duration) -> Option<(usize, SocketAddr)> {
    let deadline = Instant::now() + max_wait;
    while Instant::now() < deadline {
        match s.recv_from(buf) {
            Ok(r) => return Some(r),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    None
}

fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The one's complement sum over a UDP/IPv4 frame's pseudo-header and
/// datagram: 0 when its checksum is complete and correct.
fn udp4_csum(f: &[u8]) -> u16 {
    let udp = &f[34..];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&f[26..34]);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(udp);
    csum(&pseudo)
}

/// ICMP echo from namespace `ns` to `dst` over a raw socket (no ping
/// binary needed). True when a matching reply came back in time.
fn ping(ns: &str, dst: Ipv4Addr) -> bool {
    in_netns(ns, || {
        // SAFETY: plain socket(2); closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: tv is a live timeval of the size passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        let id = (std::process::id() & 0xffff) as u16;
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst.octets()),
            },
            sin_zero: [0; 8],
        };
        let mut ok = false;
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut seq = 0u16;
        while !ok && Instant::now() < deadline && seq < 10 {
            seq += 1;
            let mut req = [0u8; 24];
            req[0] = 8;
            req[4..6].copy_from_slice(&id.to_be_bytes());
            req[6..8].copy_from_slice(&seq.to_be_bytes());
            req[8..].copy_from_slice(b"vipgate-ping-xdp");
            let c = csum(&req);
            req[2..4].copy_from_slice(&c.to_be_bytes());
            // SAFETY: req and sa are live for the call.
            unsafe {
                libc::sendto(
                    fd,
                    req.as_ptr().cast(),
                    req.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            };
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                let mut buf = [0u8; 256];
                // SAFETY: buf is live and writable for its length.
                let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    break;
                }
                let ihl = ((buf[0] & 0x0f) as usize) * 4;
                let icmp = &buf[ihl..n as usize];
                if icmp.len() >= 8
                    && icmp[0] == 0
                    && icmp[4..6] == id.to_be_bytes()
                    && buf[12..16] == dst.octets()
                {
                    ok = true;
                    break;
                }
            }
        }
        // SAFETY: fd is ours and closed once.
        unsafe { libc::close(fd) };
        ok
    })
}

#[test]
fn vip_traffic_reaches_the_socket_and_echo_reaches_the_peer() {
    need_root!();
    let lab = Lab::new();
    let mut gw = gateway(&lab);
    eprintln!("af_xdp bound in {:?} mode", gw.sock.mode());

    // (a) loaded and attached in the namespace.
    let shown = lab.link_a();
    assert!(
        shown.contains("prog/xdp"),
        "no xdp program on {}: {shown}",
        lab.va
    );

    gw.steer
        .maps_mut()
        .add_vip(Addr::from(VIP), 7777, Proto::Udp)
        .unwrap();
    let peer = udp_in(&lab.b, SocketAddrV4::new(PEER, 0));
    let vip = SocketAddrV4::new(VIP, 7777);

    // (b) UDP to the VIP arrives on the socket.
    let payload = b"vipgate-af-xdp-hello";
    let mut batch = Batch::new();
    let i = receive(&mut gw.sock, &mut batch, payload, || {
        peer.send_to(payload, vip).unwrap();
    })
    .expect("UDP to the VIP never reached the AF_XDP socket");
    {
        let f = batch.frame(i);
        assert_eq!(&f[30..34], &VIP.octets(), "destination address");
        assert_eq!(&f[26..30], &PEER.octets(), "source address");
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 7777, "destination port");
        assert!(batch.descs()[i].cap as usize >= f.len());
        assert_eq!(
            udp4_csum(f),
            0,
            "UDP checksum of the received frame (offloads left on?)"
        );
    }

    // (c) turned around in place and transmitted: the peer's socket gets it
    // from the VIP.
    turn_around(batch.frame_mut(i));
    batch.set_verdict(i, Verdict::Tx(0));
    let st = gw.sock.tx_burst(&mut batch);
    assert_eq!(st.sent, 1, "{st:?}");
    assert_eq!(st.dropped, 0);
    let mut buf = [0u8; 256];
    let (n, from) =
        wait_recv(&peer, &mut buf, Duration::from_secs(3)).expect("echo never reached the peer");
    assert_eq!(&buf[..n], payload);
    assert_eq!(from, SocketAddr::V4(vip));
    // The kernel took the in-place descriptor as valid.
    assert_eq!(gw.sock.kernel_stats().unwrap().tx_invalid_descs, 0);

    // (d) the node itself stays reachable: ARP + ICMP to its address, and
    // UDP to its address on the same port goes to the kernel socket.
    assert!(ping(&lab.b, NODE), "ping to the node failed while attached");
    let local = udp_in(&lab.a, SocketAddrV4::new(NODE, 7777));
    peer.send_to(b"to-the-node", SocketAddrV4::new(NODE, 7777))
        .unwrap();
    let (n, _) =
        wait_recv(&local, &mut buf, Duration::from_secs(3)).expect("node UDP was swallowed");
    assert_eq!(&buf[..n], b"to-the-node");

    // (e) closing everything detaches the program.
    drop(gw);
    let shown = lab.link_a();
    assert!(
        !shown.contains("prog/xdp"),
        "program left attached: {shown}"
    );
}

#[test]
fn backend_replies_are_steered_until_removed() {
    need_root!();
    let lab = Lab::new();
    let mut gw = gateway(&lab);
    let backend = udp_in(&lab.b, SocketAddrV4::new(PEER, 8080));
    let local = udp_in(&lab.a, SocketAddrV4::new(NODE, 9999));
    let to = SocketAddrV4::new(NODE, 9999);
    let mut batch = Batch::new();
    let mut buf = [0u8; 256];

    gw.steer
        .maps_mut()
        .add_backend(Addr::from(PEER), 8080, Proto::Udp)
        .unwrap();
    let payload = b"reply-from-backend";
    let i = receive(&mut gw.sock, &mut batch, payload, || {
        backend.send_to(payload, to).unwrap();
    })
    .expect("backend reply never reached the AF_XDP socket");
    assert_eq!(
        u16::from_be_bytes([batch.frame(i)[34], batch.frame(i)[35]]),
        8080
    );
    batch.set_verdict(i, Verdict::Drop(DropReason::Malformed));
    gw.sock.tx_burst(&mut batch);
    assert!(
        wait_recv(&local, &mut buf, Duration::from_millis(300)).is_none(),
        "a steered packet also reached the kernel"
    );

    assert!(gw
        .steer
        .maps_mut()
        .remove_backend(Addr::from(PEER), 8080, Proto::Udp)
        .unwrap());
    backend.send_to(b"now-for-the-kernel", to).unwrap();
    let (n, _) =
        wait_recv(&local, &mut buf, Duration::from_secs(3)).expect("unsteered packet lost");
    assert_eq!(&buf[..n], b"now-for-the-kernel");
    let got = gw.sock.rx_burst(&mut batch, 64);
    assert_eq!(got, 0, "the socket still got traffic after removal");
}

#[test]
fn ipv6_vip_traffic_round_trips_and_ndp_passes() {
    need_root!();
    let lab = Lab::new();
    // nodad: usable at once, no waiting for duplicate address detection.
    ip(&[
        "-n",
        &lab.a,
        "addr",
        "add",
        "fd00::1/64",
        "dev",
        &lab.va,
        "nodad",
    ]);
    ip(&[
        "-n",
        &lab.b,
        "addr",
        "add",
        "fd00::2/64",
        "dev",
        &lab.vb,
        "nodad",
    ]);
    ip(&[
        "-n",
        &lab.b,
        "-6",
        "route",
        "add",
        "fd00:1::/64",
        "via",
        "fd00::1",
    ]);
    let mut gw = gateway(&lab);
    let vip6: Ipv6Addr = "fd00:1::10".parse().unwrap();
    gw.steer
        .maps_mut()
        .add_vip(Addr::from(vip6), 7777, Proto::Udp)
        .unwrap();
    let peer = in_netns(&lab.b, || {
        let s = UdpSocket::bind("[fd00::2]:0").expect("bind udp6");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s
    });
    let vip = SocketAddr::new(vip6.into(), 7777);
    let payload = b"vipgate-af-xdp-v6";
    let mut batch = Batch::new();
    // The peer must resolve fd00::1 by NDP through the attached program
    // before anything reaches the VIP.
    let i = receive_where(
        &mut gw.sock,
        &mut batch,
        |f| f.len() >= 62 && f[12..14] == [0x86, 0xdd] && f[62..] == *payload,
        || {
            peer.send_to(payload, vip).unwrap();
        },
    )
    .expect("UDP to the IPv6 VIP never reached the AF_XDP socket (NDP blocked?)");
    assert_eq!(&batch.frame(i)[38..54], &vip6.octets());

    let f = batch.frame_mut(i);
    for k in 0..6 {
        f.swap(k, 6 + k);
    }
    for k in 0..16 {
        f.swap(22 + k, 38 + k);
    }
    for k in 0..2 {
        f.swap(54 + k, 56 + k);
    }
    batch.set_verdict(i, Verdict::Tx(0));
    assert_eq!(gw.sock.tx_burst(&mut batch).sent, 1);
    let mut buf = [0u8; 256];
    let (n, from) =
        wait_recv(&peer, &mut buf, Duration::from_secs(3)).expect("v6 echo never reached the peer");
    assert_eq!(&buf[..n], payload);
    assert_eq!(from, vip);
}

#[test]
fn frames_recycle_over_more_packets_than_the_umem_holds() {
    need_root!();
    let lab = Lab::new();
    let mut gw = gateway(&lab); // 1024 frames
    gw.steer
        .maps_mut()
        .add_vip(Addr::from(VIP), 7777, Proto::Udp)
        .unwrap();
    let peer = udp_in(&lab.b, SocketAddrV4::new(PEER, 0));
    let vip = SocketAddrV4::new(VIP, 7777);
    // Warm up ARP so no datagram waits in the neighbour queue.
    let mut batch = Batch::new();
    receive(&mut gw.sock, &mut batch, b"warm-up", || {
        peer.send_to(b"warm-up", vip).unwrap();
    })
    .expect("warm-up never arrived");
    gw.sock.tx_burst(&mut batch); // Pass verdict: back to the fill ring

    const CHUNKS: u32 = 25;
    const PER_CHUNK: u32 = 100;
    let (mut received, mut echoed) = (0u32, 0u32);
    let mut buf = [0u8; 64];
    for c in 0..CHUNKS {
        for k in 0..PER_CHUNK {
            peer.send_to(&(c * PER_CHUNK + k).to_be_bytes(), vip)
                .unwrap();
        }
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while got < PER_CHUNK && Instant::now() < deadline {
            let n = gw.sock.rx_burst(&mut batch, 64);
            for i in 0..n {
                turn_around(batch.frame_mut(i));
                batch.set_verdict(i, Verdict::Tx(0));
            }
            got += n as u32;
            let st = gw.sock.tx_burst(&mut batch);
            assert_eq!(st.dropped, 0, "tx ring full");
        }
        received += got;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut back = 0;
        while back < got && Instant::now() < deadline {
            if let Ok((n, _)) = peer.recv_from(&mut buf) {
                assert_eq!(n, 4);
                back += 1;
            }
        }
        echoed += back;
    }
    let total = CHUNKS * PER_CHUNK;
    let k = gw.sock.kernel_stats().unwrap();
    assert_eq!(
        received, total,
        "socket received {received}/{total}; kernel {k:?}"
    );
    assert_eq!(echoed, total, "peer got {echoed}/{total} echoes back");
    assert_eq!(
        k.rx_dropped + k.rx_invalid_descs + k.tx_invalid_descs,
        0,
        "{k:?}"
    );
    assert_eq!(gw.sock.stats().tx_frames, total as u64);
}

/// Not a test on its own: the child process of
/// `sigkill_detaches_the_program`, which attaches and then waits to be
/// killed. Ignored so a normal run never executes it.
#[test]
#[ignore = "helper process for sigkill_detaches_the_program"]
fn sigkill_child() {
    let (Ok(ns), Ok(dev)) = (
        std::env::var("VGX_CHILD_NS"),
        std::env::var("VGX_CHILD_DEV"),
    ) else {
        eprintln!("sigkill_child: run by sigkill_detaches_the_program only");
        return;
    };
    let (_steer, _link) = in_netns(&ns, || {
        let steer = XdpSteering::load(&SteeringConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let link = steer
            .attach(&dev, AttachMode::Driver)
            .unwrap_or_else(|e| panic!("{e}"));
        (steer, link)
    });
    println!("ATTACHED");
    // Bounded: the parent kills us long before this ends.
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn sigkill_detaches_the_program() {
    need_root!();
    let lab = Lab::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "sigkill_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VGX_CHILD_NS", &lab.a)
        .env("VGX_CHILD_DEV", &lab.va)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn child");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.link_a().contains("prog/xdp") {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child never attached: {}", lab.link_a());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while lab.link_a().contains("prog/xdp") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let shown = lab.link_a();
    assert!(
        !shown.contains("prog/xdp"),
        "still attached after SIGKILL: {shown}"
    );
}

/// A UDP datagram in one 8,042-byte frame (MTU 9000) reaches AF_XDP as a
/// chain of UMEM frames, is handed over gathered into one contiguous
/// frame with every byte in place, and leaves, turned around, as a chain
/// the peer receives whole; its jumbo slot comes back after completion.
#[test]
fn jumbo_frames_are_gathered_and_sent_as_chains() {
    need_root!();
    let lab = Lab::new();
    ip(&["-n", &lab.a, "link", "set", "dev", &lab.va, "mtu", "9000"]);
    ip(&["-n", &lab.b, "link", "set", "dev", &lab.vb, "mtu", "9000"]);
    let mut gw = gateway(&lab);
    assert!(gw.steer.multi_buffer(), "program without multi-buffer");
    assert!(gw.sock.multi_buffer(), "socket without multi-buffer");
    gw.steer
        .maps_mut()
        .add_vip(Addr::from(VIP), 7778, Proto::Udp)
        .unwrap();
    let peer = udp_in(&lab.b, SocketAddrV4::new(PEER, 0));
    let vip = SocketAddrV4::new(VIP, 7778);
    // No two 2 KiB pieces alike, so a piece out of place shows.
    let payload: Vec<u8> = (0..8000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (_, slots) = gw.sock.jumbo_slots_free();

    let mut batch = Batch::new();
    let i = receive(&mut gw.sock, &mut batch, &payload, || {
        peer.send_to(&payload, vip).unwrap();
    })
    .expect("the jumbo datagram never reached the AF_XDP socket whole");
    {
        let f = batch.frame(i);
        assert_eq!(f.len(), 14 + 20 + 8 + 8000);
        assert_eq!(udp4_csum(f), 0, "UDP checksum over the gathered frame");
        assert!(batch.descs()[i].cap as usize >= f.len());
    }
    assert!(gw.sock.stats().rx_chains >= 1, "{:?}", gw.sock.stats());
    assert_eq!(gw.sock.stats().rx_chains_dropped, 0);

    turn_around(batch.frame_mut(i));
    batch.set_verdict(i, Verdict::Tx(0));
    let st = gw.sock.tx_burst(&mut batch);
    assert_eq!((st.sent, st.dropped), (1, 0), "{st:?}");
    let mut buf = vec![0u8; 9000];
    let (n, from) = wait_recv(&peer, &mut buf, Duration::from_secs(3))
        .expect("the jumbo echo never reached the peer");
    assert_eq!(from, SocketAddr::V4(vip));
    assert!(buf[..n] == payload[..], "echoed payload differs");
    assert_eq!(gw.sock.kernel_stats().unwrap().tx_invalid_descs, 0);

    // Completions give the slot back (an rx_burst reaps them).
    let deadline = Instant::now() + Duration::from_secs(2);
    while gw.sock.jumbo_slots_free().0 < slots && Instant::now() < deadline {
        gw.sock.rx_burst(&mut batch, 64);
        gw.sock.tx_burst(&mut batch);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(gw.sock.jumbo_slots_free(), (slots, slots));
}
