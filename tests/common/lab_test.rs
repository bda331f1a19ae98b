//! The lab scenario shared by the AF_PACKET and AF_XDP tests: a real
//! `vipgate run` in the gateway namespace of a veth lab, real TCP/UDP
//! servers in the backend namespaces, real clients in the client one.
//! Every wait and loop is bounded in count and time.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bench::lab::{self, in_netns, Lab, LabSpec, Offloads, GW_BACKEND_IF, GW_CLIENT_IF};

use super::bulk::{self, BulkServers, BULK_PORT};
use super::capture::{self, Capture};

pub const VIP_WEB: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
pub const VIP_WEB6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xff, 0, 0, 0, 0, 0, 0x10);
pub const VIP_UDP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 11);
pub const VIP_EMPTY: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 12);
pub const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 9053;
const BACKENDS: usize = 3;
const IO_TIMEOUT: Duration = Duration::from_secs(3);

pub use dataplane::io::af_packet::is_root;

/// The lab test `name` runs in, or None when not root, said loudly (CI
/// runs as root, so there it never skips).
pub fn lab_or_skip(name: &str, spec: LabSpec) -> Option<Lab> {
    if !is_root() {
        eprintln!("\n*** SKIPPED {name}: needs root (network namespaces) ***\n");
        return None;
    }
    Some(Lab::up(spec).expect("lab up"))
}

/// Services + EndpointSlices as `kubectl get -o yaml` prints a v1 List:
/// `web` at [`VIP_WEB`] (port 80: a name answer, 81: bulk exchanges),
/// `echo` (UDP) at [`VIP_UDP`], `empty` (no endpoints) at [`VIP_EMPTY`].
pub fn services_yaml() -> String {
    let mut v4 = String::new();
    let mut v6 = String::new();
    let mut udp = String::new();
    for i in 0..BACKENDS {
        for (out, ip) in [
            (&mut v4, lab::backend_v4(i).to_string()),
            (&mut v6, lab::backend_v6(i).to_string()),
            (&mut udp, lab::backend_v4(i).to_string()),
        ] {
            out.push_str(&format!(
                "  - addresses: ['{ip}']\n    conditions: {{ready: true, serving: true, terminating: false}}\n"
            ));
        }
    }
    format!(
        r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {{name: web, namespace: lab}}
  spec:
    type: ClusterIP
    clusterIP: {VIP_WEB}
    clusterIPs: ['{VIP_WEB}', '{VIP_WEB6}']
    ipFamilies: [IPv4, IPv6]
    ipFamilyPolicy: RequireDualStack
    ports:
    - {{name: http, port: 80, protocol: TCP, targetPort: {TCP_PORT}}}
    - {{name: bulk, port: 81, protocol: TCP, targetPort: bulk}}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: web-v4
    namespace: lab
    labels: {{kubernetes.io/service-name: web}}
  addressType: IPv4
  ports:
  - {{name: http, port: {TCP_PORT}, protocol: TCP}}
  - {{name: bulk, port: {BULK_PORT}, protocol: TCP}}
  endpoints:
{v4}- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: web-v6
    namespace: lab
    labels: {{kubernetes.io/service-name: web}}
  addressType: IPv6
  ports:
  - {{name: http, port: {TCP_PORT}, protocol: TCP}}
  - {{name: bulk, port: {BULK_PORT}, protocol: TCP}}
  endpoints:
{v6}- apiVersion: v1
  kind: Service
  metadata: {{name: echo, namespace: lab}}
  spec:
    type: ClusterIP
    clusterIP: {VIP_UDP}
    clusterIPs: ['{VIP_UDP}']
    ports:
    - {{name: echo, port: 5353, protocol: UDP, targetPort: {UDP_PORT}}}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: echo-v4
    namespace: lab
    labels: {{kubernetes.io/service-name: echo}}
  addressType: IPv4
  ports:
  - {{name: echo, port: {UDP_PORT}, protocol: UDP}}
  endpoints:
{udp}- apiVersion: v1
  kind: Service
  metadata: {{name: empty, namespace: lab}}
  spec:
    type: ClusterIP
    clusterIP: {VIP_EMPTY}
    clusterIPs: ['{VIP_EMPTY}']
    ports:
    - {{name: http, port: 80, protocol: TCP, targetPort: 8080}}
    - {{name: dns, port: 53, protocol: UDP, targetPort: 53}}
"#
    )
}

/// A single-stack TCP Service `web` at `vip`:80 with every lab backend on
/// port 8080, as `kubectl get -o yaml` prints a v1 List.
pub fn web_services_yaml(vip: Ipv4Addr) -> String {
    let endpoints: String = (0..BACKENDS)
        .map(|i| ready_endpoint_yaml(lab::backend_v4(i), &[]))
        .collect();
    let spec = format!(
        "    type: ClusterIP\n    clusterIP: {vip}\n    clusterIPs: ['{vip}']\n    ports:\n    \
         - {{name: http, port: 80, protocol: TCP, targetPort: {TCP_PORT}}}\n"
    );
    http_service_list_yaml("web", &spec, &endpoints)
}

/// A v1 List of Service `name` (namespace `lab`; `body` holds its
/// `spec:` fields, and maybe a `status:`, indented as in the List) and its
/// [`http_slice_yaml`] with `endpoints`.
pub fn http_service_list_yaml(name: &str, body: &str, endpoints: &str) -> String {
    format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  \
         metadata: {{name: {name}, namespace: lab}}\n  spec:\n{body}{}",
        http_slice_yaml(name, endpoints)
    )
}

/// One ready endpoint of an EndpointSlice, as a YAML list item, with
/// `extra` fields (`nodeName: n1`, `zone: z`, ...).
pub fn ready_endpoint_yaml(ip: impl std::fmt::Display, extra: &[String]) -> String {
    let mut out = format!(
        "  - addresses: ['{ip}']\n    conditions: {{ready: true, serving: true, terminating: false}}\n"
    );
    for e in extra {
        out.push_str(&format!("    {e}\n"));
    }
    out
}

/// An IPv4 EndpointSlice of Service `service` (namespace `lab`) whose
/// port `http` is the backends' TCP server, as a List item.
pub fn http_slice_yaml(service: &str, endpoints: &str) -> String {
    format!(
        r#"- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: {service}-v4
    namespace: lab
    labels: {{kubernetes.io/service-name: {service}}}
  addressType: IPv4
  ports:
  - {{name: http, port: {TCP_PORT}, protocol: TCP}}
  endpoints:
{endpoints}"#
    )
}

/// The number ending the `vipgate run` summary line that starts with `label`.
pub fn summary_count(stdout: &str, label: &str) -> Option<u64> {
    let line = stdout.lines().find(|l| l.trim_start().starts_with(label))?;
    line.split_whitespace().last()?.parse().ok()
}

/// TCP and UDP servers of every backend: every answer names the backend.
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    _bulk: BulkServers,
}

impl Servers {
    pub fn start(lab: &Lab) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut bulk_listeners = Vec::new();
        for (i, ns) in lab.backends.iter().enumerate() {
            // Sockets keep the namespace they were made in: bind inside,
            // serve from ordinary threads. [::] takes IPv4 too (dual-stack).
            let (tcp, udp, bulk) = in_netns(ns, || {
                (
                    TcpListener::bind(("::", TCP_PORT)).expect("bind tcp"),
                    UdpSocket::bind(("::", UDP_PORT)).expect("bind udp"),
                    TcpListener::bind(("::", BULK_PORT)).expect("bind bulk"),
                )
            })
            .unwrap();
            bulk_listeners.push(bulk);
            tcp.set_nonblocking(true).unwrap();
            udp.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let name = format!("b{i}");
            let (s1, n1) = (Arc::clone(&stop), name.clone());
            threads.push(std::thread::spawn(move || {
                while !s1.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut c, _)) => {
                            let _ = c.set_nonblocking(false);
                            let _ = c.set_read_timeout(Some(IO_TIMEOUT));
                            let mut buf = [0u8; 64];
                            let _ = c.read(&mut buf);
                            let _ = c.write_all(format!("{n1}\n").as_bytes());
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }));
            let s2 = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !s2.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = udp.recv_from(&mut buf) {
                        let mut reply = format!("{name}:").into_bytes();
                        reply.extend_from_slice(&buf[..n]);
                        let _ = udp.send_to(&reply, from);
                    }
                }
            }));
        }
        Servers {
            stop,
            threads,
            _bulk: BulkServers::start(bulk_listeners),
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Rewrites the services file at `path` with `text` (atomically, by
/// rename) and waits, at most 10 s, until the gateway whose admin endpoint
/// is `admin` serves the next table generation.
pub fn apply_services(lab: &Lab, admin: SocketAddr, path: &std::path::Path, text: &str) {
    let gen = |lab: &Lab| {
        in_netns(&lab.gw, move || {
            control::admin::fetch_json(admin, "/services")
        })
        .unwrap()
        .expect("/services")["generation"]
            .as_u64()
            .unwrap()
    };
    let before = gen(lab);
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    let t0 = Instant::now();
    while gen(lab) == before {
        assert!(t0.elapsed() < Duration::from_secs(10), "no reload in 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The gateway process; killed if still running when dropped.
pub struct Gateway {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
}

impl Gateway {
    /// The two-interface gateway of `lab` with `io` and a services file.
    pub fn start(lab: &Lab, io: &str, services: &std::path::Path) -> Gateway {
        Gateway::start_with(lab, io, services, &[])
    }

    /// [`Gateway::start`] with more arguments.
    pub fn start_with(lab: &Lab, io: &str, services: &std::path::Path, extra: &[&str]) -> Gateway {
        let ifaces = format!("{GW_CLIENT_IF},{GW_BACKEND_IF}");
        let services = services.to_string_lossy();
        let mut args = vec!["--iface", &ifaces, "--io", io, "--services", &services];
        args.extend_from_slice(extra);
        Gateway::spawn(lab, &args)
    }

    /// `vipgate run ARGS --admin-addr 127.0.0.1:0` in the gateway
    /// namespace; returns once it reports running (bounded wait).
    pub fn spawn(lab: &Lab, args: &[&str]) -> Gateway {
        let mut child = Lab::command(&lab.gw, env!("CARGO_BIN_EXE_vipgate"))
            .arg("run")
            .args(args)
            .args(["--admin-addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start vipgate");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut g = Gateway {
            child,
            lines,
            stdout: Vec::new(),
        };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if let Some(status) = g.child.try_wait().unwrap() {
                panic!("vipgate exited early ({status}): {:?}", g.stdout);
            }
            if let Ok(l) = g.lines.recv_timeout(Duration::from_millis(100)) {
                eprintln!("[vipgate] {l}");
                let running = l.starts_with("vipgate: running");
                g.stdout.push(l);
                if running {
                    return g;
                }
            }
        }
        panic!("vipgate did not report running within 15 s: {:?}", g.stdout);
    }

    /// Waits up to `within` for the gateway to exit by itself; returns its
    /// success (None: still running, then it is killed) and stdout.
    pub fn wait_exit(mut self, within: Duration) -> (Option<bool>, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break Some(s.success());
            }
            if t0.elapsed() > within {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(300)) {
            self.stdout.push(l);
        }
        (status, self.stdout.join("\n"))
    }

    /// The gateway process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin address its running line names.
    pub fn admin_addr(&self) -> SocketAddr {
        self.stdout
            .iter()
            .find_map(|l| l.split("admin http://").nth(1)?.trim().parse().ok())
            .expect("the running line names the admin address")
    }

    /// SIGTERM, then wait (bounded) for exit; returns success and stdout.
    pub fn terminate(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success(), "kill -TERM {pid}");
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "vipgate still running 10 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            eprintln!("[vipgate] {l}");
            self.stdout.push(l);
        }
        (status.success(), self.stdout.join("\n"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed (and reaped) when dropped: a gateway left
/// behind by a failed test busy-polls a core for as long as it lives.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One TCP connection to `to` from namespace `ns`; the backend's name.
pub fn tcp_ask_in(ns: &str, to: SocketAddr) -> Result<String, String> {
    in_netns(ns, move || tcp_ask(to))?.map_err(|e| e.to_string())
}

/// The backends that answered `n` connections from namespace `ns`; every
/// connection must succeed (a refused or reset one panics, named).
pub fn backends_answering(
    ns: &str,
    to: SocketAddr,
    n: usize,
) -> std::collections::BTreeSet<String> {
    (0..n)
        .map(|i| tcp_ask_in(ns, to).unwrap_or_else(|e| panic!("connection {i} to {to}: {e}")))
        .collect()
}

/// One TCP request/response; the answer names the backend.
pub fn tcp_ask(to: SocketAddr) -> std::io::Result<String> {
    tcp_ask_from(to).map(|(answer, _)| answer)
}

/// As [`tcp_ask`], also returning the client's own address (the flow's
/// source), so the answer can be checked against the Maglev pick.
pub fn tcp_ask_from(to: SocketAddr) -> std::io::Result<(String, SocketAddr)> {
    let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
    let me = s.local_addr()?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(b"hello\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok((out.trim().to_string(), me))
}

/// The backend index Maglev picks for a flow from `client` to `vip:port`,
/// computed from the same services file with the dataplane's own table
/// (default seed and table size, as `vipgate run` uses them).
fn maglev_pick(yaml: &str, client: SocketAddr, vip: IpAddr, port: u16) -> Option<usize> {
    use dataplane::addr::{Addr, Proto, Tuple};
    use dataplane::table::{ServiceTable, TableConfig};
    let objs = control::objects::parse_str(yaml, std::path::Path::new("lab.yaml")).ok()?;
    let m = control::model::build(&objs.services, &objs.slices, &Default::default());
    let table = ServiceTable::from_specs(m.services, TableConfig::default());
    let entry = table.lookup(&Addr::from(vip), port, Proto::Tcp)?;
    let tuple = Tuple {
        src: Addr::from(client.ip()),
        dst: Addr::from(vip),
        sport: client.port(),
        dport: port,
        proto: Proto::Tcp,
    };
    let b = entry.pick(&tuple, table.config().seed)?;
    (0..BACKENDS).find(|&i| Addr::from(IpAddr::V4(lab::backend_v4(i))) == b.addr)
}

/// A UDP exchange on a connected socket: a few sends (the first may meet
/// a neighbour still being resolved), each waiting up to a second.
fn udp_ask(to: SocketAddr) -> std::io::Result<String> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let s = UdpSocket::bind(bind)?;
    s.connect(to)?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut last = std::io::Error::from(ErrorKind::TimedOut);
    for _ in 0..4 {
        s.send(b"ping")?;
        let mut buf = [0u8; 512];
        match s.recv(&mut buf) {
            Ok(n) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The whole scenario for one I/O mode, with veths as `ip link add`
/// leaves them (offloads on, MTU 1500).
pub fn scenario(io: &str) {
    scenario_in(io, Offloads::Default, lab::DEFAULT_MTU);
}

/// Bulk connections through the VIP per family, each [`bulk::BULK_BYTES`]
/// both ways.
const BULK_V4: usize = 6;
const BULK_V6: usize = 2;

/// The whole scenario for one I/O mode in a lab with `offloads` and `mtu`
/// on every veth: the scenario's requests, bulk transfers checked byte for
/// byte, and every frame the gateway sent toward the backends checked by
/// tshark and a full recompute.
pub fn scenario_in(io: &str, offloads: Offloads, mtu: u32) {
    if !is_root() {
        eprintln!("\n*** SKIPPED: needs root (network namespaces, AF_PACKET/AF_XDP) ***\n");
        return;
    }
    let lab = Lab::up(LabSpec {
        backends: BACKENDS,
        ipv6: true,
        offloads,
        mtu,
    })
    .expect("lab up");
    let prefix = lab.client.trim_end_matches("-client").to_string();
    let yaml = std::env::temp_dir().join(format!("{prefix}-{io}-services.yaml"));
    std::fs::write(&yaml, services_yaml()).unwrap();
    let pcap = std::env::temp_dir().join(format!("{prefix}-{io}-to-backends.pcap"));
    let gw_mac = capture::mac_of(&lab.gw, GW_BACKEND_IF);
    let own = [
        IpAddr::V4(lab::GW_BACKEND_V4),
        IpAddr::V6(lab::GW_BACKEND_V6),
    ];
    let cap = Capture::start(&lab.switch, "pgw", &gw_mac, &own, &pcap);
    let servers = Servers::start(&lab);
    let gw = Gateway::start(&lab, io, &yaml);

    let client = lab.client.clone();
    let results = in_netns(&client, move || {
        // (a) many TCP connections, spread over backends.
        let web = SocketAddr::new(IpAddr::V4(VIP_WEB), 80);
        let mut per_backend = [0usize; BACKENDS];
        let mut errors = Vec::new();
        let mut picks = Vec::new();
        for _ in 0..50 {
            match tcp_ask_from(web) {
                Ok((name, me)) => {
                    match name.strip_prefix('b').and_then(|n| n.parse::<usize>().ok()) {
                        Some(i) if i < BACKENDS => {
                            per_backend[i] += 1;
                            picks.push((me, i));
                        }
                        _ => errors.push(format!("odd answer {name:?}")),
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        // (b) UDP request/response.
        let udp = udp_ask(SocketAddr::new(IpAddr::V4(VIP_UDP), 5353));
        // (c) IPv6 VIP.
        let web6 = SocketAddr::new(IpAddr::V6(VIP_WEB6), 80);
        let v6: Vec<_> = (0..10).map(|_| tcp_ask(web6)).collect();
        // (d) no endpoints: RST and ICMP port unreachable.
        let empty_tcp = tcp_ask(SocketAddr::new(IpAddr::V4(VIP_EMPTY), 80));
        let empty_udp = udp_ask(SocketAddr::new(IpAddr::V4(VIP_EMPTY), 53));
        // (g) bulk: parallel connections of 1 MiB each way, both families.
        let t0 = Instant::now();
        let mut bulk_errors = bulk::parallel(SocketAddr::new(IpAddr::V4(VIP_WEB), 81), BULK_V4, 1);
        bulk_errors.extend(bulk::parallel(
            SocketAddr::new(IpAddr::V6(VIP_WEB6), 81),
            BULK_V6,
            100,
        ));
        let bulk_secs = t0.elapsed().as_secs_f64();
        (
            (per_backend, errors, udp, v6, empty_tcp, empty_udp, picks),
            (bulk_errors, bulk_secs),
        )
    })
    .unwrap();
    let ((per_backend, errors, udp, v6, empty_tcp, empty_udp, picks), (bulk_errors, bulk_secs)) =
        results;
    // (e) the gateway itself still answers ping.
    let ping = Lab::exec(&lab.client, "ping", &["-c1", "-W2", "198.18.0.1"]).unwrap();
    // (f) SIGTERM: clean exit, counters, no XDP left.
    let (ok, stdout) = gw.terminate();
    let links = lab::ip(&["-n", &lab.gw, "-d", "link", "show"]).unwrap();
    drop(servers);
    let pcap = cap.finish();
    let wire = capture::verdicts(&pcap, mtu as usize);
    let mb = ((BULK_V4 + BULK_V6) * 2 * bulk::BULK_BYTES) as f64 / 1e6;
    eprintln!(
        "measured ({io}, offloads {offloads:?}, MTU {mtu}): bulk {mb:.0} MB in {bulk_secs:.2} s; \
         frames to backends: {} full checksum, {} partial (left to offload), {} super-frames, \
         {} bad; tshark: {} good, {} bad",
        wire.full,
        wire.partial,
        wire.super_frames,
        wire.bad.len(),
        wire.tshark_good,
        wire.tshark_bad.len()
    );

    assert!(bulk_errors.is_empty(), "bulk TCP via VIP: {bulk_errors:?}");
    assert!(
        wire.bad.is_empty(),
        "frames sent with wrong checksums: {:?}",
        wire.bad
    );
    assert_eq!(
        wire.tshark_bad, wire.partial_frames,
        "tshark's bad checksums must be exactly the frames left partial"
    );
    assert!(
        wire.full + wire.partial > 100,
        "too few frames captured: {wire:?}"
    );
    if io == "af-xdp" || offloads == Offloads::Off {
        // AF_XDP completes what a sender left; without offloads nothing is.
        assert_eq!(wire.partial, 0, "{io} left checksums partial");
        assert_eq!(wire.super_frames, 0, "{io}: frames above the MTU");
        if offloads == Offloads::Off && mtu > lab::DEFAULT_MTU {
            // Bulk data fills the jumbo MTU: such frames did cross.
            assert!(wire.largest > 1518, "no jumbo frame crossed: {wire:?}");
        }
        if io == "af-xdp" && mtu > lab::DEFAULT_MTU {
            // Jumbo frames reached AF_XDP as descriptor chains.
            assert!(
                stdout.contains("multi-buffer frames"),
                "no multi-buffer frame counted:\n{stdout}"
            );
        }
    } else {
        // Default offloads over AF_PACKET: the client's GSO super-frames
        // cross the gateway whole.
        assert!(
            wire.super_frames > 0,
            "no super-frame crossed the gateway: {wire:?}"
        );
    }
    assert!(
        stdout.contains(&format!("interface {GW_CLIENT_IF}: veth, MTU {mtu}")),
        "no interface facts line:\n{stdout}"
    );

    assert!(errors.is_empty(), "TCP via VIP failed: {errors:?}");
    assert_eq!(per_backend.iter().sum::<usize>(), 50);
    assert!(
        per_backend.iter().filter(|&&n| n > 0).count() >= 2,
        "connections did not spread over backends: {per_backend:?}"
    );
    // Every connection reached the backend the Maglev table picks for it.
    let text = services_yaml();
    for (me, got) in &picks {
        let want = maglev_pick(&text, *me, IpAddr::V4(VIP_WEB), 80);
        assert_eq!(
            want,
            Some(*got),
            "flow from {me}: Maglev picks {want:?}, answered by b{got}"
        );
    }
    let udp = udp.expect("UDP via VIP");
    assert!(
        udp.starts_with('b') && udp.ends_with(":ping"),
        "UDP answer {udp:?}"
    );
    for r in &v6 {
        let name = r.as_ref().expect("TCP via the IPv6 VIP");
        assert!(name.starts_with('b'), "IPv6 answer {name:?}");
    }
    assert_eq!(
        empty_tcp.as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused),
        "TCP to a VIP without endpoints"
    );
    assert_eq!(
        empty_udp.as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused),
        "UDP to a VIP without endpoints"
    );
    assert!(ping.status.success(), "ping to the gateway: {ping:?}");
    assert!(ok, "vipgate did not exit 0 after SIGTERM:\n{stdout}");
    assert!(stdout.contains("forwarded (DNAT)"), "{stdout}");
    if io == "af-xdp" {
        // One worker's sockets on both interfaces share a UMEM: client
        // <-> backend frames change interface without a copy.
        let zc = summary_count(&stdout, "zero-copy");
        assert!(
            zc.is_some_and(|n| n > 0),
            "no zero-copy transmits:\n{stdout}"
        );
        assert_eq!(
            summary_count(&stdout, "via copy sender"),
            Some(0),
            "frames went through the copy sender:\n{stdout}"
        );
    }
    assert!(!links.contains("xdp"), "XDP still attached:\n{links}");

    drop(lab);
    let _ = std::fs::remove_file(&yaml);
    let _ = std::fs::remove_file(&pcap);
    let left = lab::existing_namespaces(&prefix).unwrap();
    assert!(left.is_empty(), "namespaces left: {left:?}");
}
