//! `demo`: a realistic capture of about ten seconds. Thousands of
//! interleaved flows to eight services with several backends each, so the
//! backend of every reply is the one the balancer picks with Maglev.
//!
//! The pick is the dataplane's, computed here from `ServiceSpec`s built out
//! of the same service descriptions the YAML is written from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use dataplane::addr::{Addr, Proto, Tuple};
use dataplane::hash::{client_hash, flow_hash, DEFAULT_SEED};
use dataplane::maglev::{table_size, Maglev, DEFAULT_MAX_TABLE_SIZE};
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};

use crate::fixture::{Recorder, Step, Verdict};
use crate::flow::*;
use crate::packet::*;
use crate::rng::Rng;
use crate::yaml::{EndpointDef, EpState, L4Proto, PortDef, ServiceDef};

const SEED: u64 = u64::from_be_bytes(*b"\0\0\0\0demo");
/// 2025-03-04 10:00:00 UTC.
const START_US: u64 = 1_741_082_400 * 1_000_000;
/// Flows start within this window; the capture ends a little after it.
const SPAN_US: u64 = 9_500_000;
const TCP_FLOWS: usize = 1700;
const DNS_FLOWS: usize = 1400;
const STATSD_DATAGRAMS: usize = 600;
const LEGACY_ATTEMPTS: usize = 120;
const CLIENTS_V4: u8 = 200;
const CLIENTS_V6: u16 = 40;

fn mac_for(ip: IpAddr) -> [u8; 6] {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            [0x02, 0x00, 0x00, o[1] - 18, o[2], o[3]]
        }
        IpAddr::V6(v) => {
            let o = v.octets();
            [0x02, 0x66, 0x00, o[5], o[14], o[15]]
        }
    }
}

pub(crate) fn host(ip: IpAddr) -> Host {
    Host {
        mac: mac_for(ip),
        ip,
    }
}

fn v4(c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, c, d))
}

fn vip(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, 1, d))
}

fn v6(seg: [u16; 8]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7],
    ))
}

fn port(name: &str, port: u16, proto: L4Proto, target: u16, named: bool) -> PortDef {
    PortDef {
        name: name.into(),
        port,
        proto,
        target,
        target_name: named.then(|| name.to_string()),
    }
}

/// `count` ready endpoints from `first` upwards in 198.18.1.0/24, spread
/// over three nodes, then `terminating` serving-terminating ones.
fn endpoints(app: &str, first: u8, count: u8, terminating: u8) -> Vec<EndpointDef> {
    (0..count + terminating)
        .map(|i| EndpointDef {
            addr: v4(1, first + i),
            state: if i < count {
                EpState::Ready
            } else {
                EpState::ServingTerminating
            },
            node: format!("node-{}", char::from(b'a' + i % 3)),
            pod: format!(
                "{app}-6b7c9d{:02x}f-{:05x}",
                first,
                u32::from(first + i) * 7919 % 0xfffff
            ),
        })
        .collect()
}

/// The services of `demo`, in the order they are written.
pub fn services() -> Vec<ServiceDef> {
    let svc = |ns: &str, name: &str, ips: Vec<IpAddr>, ports, endpoints| ServiceDef {
        namespace: ns.into(),
        name: name.into(),
        cluster_ips: ips,
        ports,
        endpoints,
        affinity_timeout: None,
    };
    let search_eps = (0..8u16)
        .map(|i| EndpointDef {
            addr: v6([0xfd00, 0x18, 1, 0, 0, 0, 0, 0x20 + i]),
            state: EpState::Ready,
            node: format!("node-{}", char::from(b'a' + (i % 3) as u8)),
            pod: format!("search-74f9c8d6b-{:05x}", u32::from(i) * 104_729 % 0xfffff),
        })
        .collect();
    vec![
        svc(
            "shop",
            "frontend",
            vec![vip(10)],
            vec![port("http", 80, L4Proto::Tcp, 8080, true)],
            // Two pods of a rollout still shutting down: no new flows.
            endpoints("frontend", 10, 12, 2),
        ),
        svc(
            "shop",
            "checkout",
            vec![vip(11)],
            vec![port("https", 443, L4Proto::Tcp, 8443, false)],
            endpoints("checkout", 30, 6, 0),
        ),
        svc(
            "shop",
            "catalog",
            vec![vip(12)],
            vec![port("http", 8080, L4Proto::Tcp, 8080, false)],
            endpoints("catalog", 40, 20, 0),
        ),
        svc(
            "shop",
            "cart",
            vec![vip(13)],
            vec![port("redis", 6379, L4Proto::Tcp, 6379, false)],
            endpoints("cart", 70, 3, 0),
        ),
        svc(
            "kube-system",
            "kube-dns",
            vec![vip(53)],
            vec![
                port("dns", 53, L4Proto::Udp, 53, false),
                port("dns-tcp", 53, L4Proto::Tcp, 53, false),
            ],
            endpoints("coredns", 80, 4, 0),
        ),
        svc(
            "monitoring",
            "statsd",
            vec![vip(25)],
            vec![port("statsd", 8125, L4Proto::Udp, 9125, true)],
            endpoints("statsd-exporter", 90, 5, 0),
        ),
        svc(
            "shop",
            "search",
            vec![v6([0xfd00, 0x19, 1, 0, 0, 0, 0, 0x14])],
            vec![port("http", 80, L4Proto::Tcp, 8080, false)],
            search_eps,
        ),
        svc(
            "shop",
            "legacy",
            vec![vip(99)],
            vec![port("http", 80, L4Proto::Tcp, 8080, false)],
            vec![],
        ),
    ]
}

/// What `control` makes of `services()`: one spec per (VIP, port), the
/// same mapping the YAML describes.
pub fn specs(services: &[ServiceDef]) -> Vec<ServiceSpec> {
    let mut out = Vec::new();
    for svc in services {
        for &ip in &svc.cluster_ips {
            for p in &svc.ports {
                let backends = svc
                    .endpoints
                    .iter()
                    .filter(|e| e.addr.is_ipv6() == ip.is_ipv6())
                    .map(|e| BackendSpec {
                        addr: Addr::from(e.addr),
                        port: p.target,
                        weight: 1,
                        state: match e.state {
                            EpState::Ready => BackendState::Ready,
                            EpState::ServingTerminating => BackendState::ServingTerminating,
                        },
                    })
                    .collect();
                let port_name = if p.name.is_empty() {
                    p.port.to_string()
                } else {
                    p.name.clone()
                };
                out.push(ServiceSpec {
                    key: ServiceKey {
                        vip: Addr::from(ip),
                        port: p.port,
                        proto: match p.proto {
                            L4Proto::Tcp => Proto::Tcp,
                            L4Proto::Udp => Proto::Udp,
                            L4Proto::Sctp => Proto::Sctp,
                        },
                    },
                    name: format!("{}/{}:{}", svc.namespace, svc.name, port_name),
                    backends,
                    affinity: match svc.affinity_timeout {
                        Some(timeout_s) => Affinity::ClientIp { timeout_s },
                        None => Affinity::None,
                    },
                    no_endpoints: dataplane::service::NoEndpoints::Reject,
                    forwarding: Default::default(),
                    source_ranges: Vec::new(),
                });
            }
        }
    }
    out
}

/// A service port with its ring, ready to pick backends the dataplane's way.
pub struct Balanced {
    pub spec: ServiceSpec,
    active: Vec<BackendSpec>,
    ring: Maglev,
}

impl Balanced {
    pub fn new(spec: ServiceSpec) -> Balanced {
        let active = spec.active_backends();
        let m = table_size(active.len(), DEFAULT_MAX_TABLE_SIZE);
        let ring = Maglev::build(&active, m, DEFAULT_SEED);
        Balanced { spec, active, ring }
    }

    /// The backend a new flow from `client:cport` gets (hashing the 5-tuple,
    /// or only the client under ClientIP affinity), `None` without endpoints.
    pub fn pick(&self, client: IpAddr, cport: u16) -> Option<BackendSpec> {
        let t = Tuple {
            src: Addr::from(client),
            dst: self.spec.key.vip,
            sport: cport,
            dport: self.spec.key.port,
            proto: self.spec.key.proto,
        };
        let h = match self.spec.affinity {
            Affinity::None => flow_hash(&t, DEFAULT_SEED),
            Affinity::ClientIp { .. } => client_hash(&t.src, DEFAULT_SEED),
        };
        let i = self.ring.pick(h)?;
        Some(self.active[i])
    }
}

/// One packet of the capture before flows are interleaved: sorted by time,
/// then flow, then position in the flow, so the order is total and fixed.
pub(crate) struct Timed {
    us: u64,
    flow: usize,
    idx: usize,
    input: Vec<u8>,
    verdict: Verdict,
    output: Option<Vec<u8>>,
}

#[derive(Default)]
pub(crate) struct Capture {
    packets: Vec<Timed>,
    flows: usize,
}

impl Capture {
    /// Packets in capture order as steps.
    pub(crate) fn into_steps(mut self) -> Vec<Step> {
        self.packets.sort_by_key(|p| (p.us, p.flow, p.idx));
        let mut rec = Recorder::default();
        for p in self.packets {
            let ts = Duration::from_micros(p.us);
            match p.output {
                Some(o) => rec.answered(ts, p.input, p.verdict, o),
                None => rec.silent(ts, p.input, p.verdict),
            }
        }
        rec.steps
    }

    pub(crate) fn flow(&mut self) -> FlowRec<'_> {
        self.flows += 1;
        FlowRec { cap: self, idx: 0 }
    }
}

pub(crate) struct FlowRec<'a> {
    cap: &'a mut Capture,
    idx: usize,
}

impl FlowRec<'_> {
    fn push(&mut self, us: u64, input: Vec<u8>, verdict: Verdict, output: Option<Vec<u8>>) {
        let flow = self.cap.flows;
        self.cap.packets.push(Timed {
            us,
            flow,
            idx: self.idx,
            input,
            verdict,
            output,
        });
        self.idx += 1;
    }

    pub(crate) fn fwd(&mut self, us: u64, (i, o): (Vec<u8>, Vec<u8>)) {
        self.push(us, i, Verdict::Forwarded, Some(o));
    }

    pub(crate) fn rev(&mut self, us: u64, (i, o): (Vec<u8>, Vec<u8>)) {
        self.push(us, i, Verdict::Reversed, Some(o));
    }
}

fn client_v4(n: u8) -> IpAddr {
    v4(0, n)
}

fn client_v6(n: u16) -> IpAddr {
    v6([0xfd00, 0x18, 0, 0, 0, 0, 0, 0x100 + n])
}

/// Ephemeral ports handed out per client in order, so no 5-tuple repeats.
struct Ports(Vec<u16>);

impl Ports {
    fn next(&mut self, client: usize) -> u16 {
        let p = self.0[client];
        self.0[client] = if p == 60999 { 32768 } else { p + 1 };
        p
    }
}

/// All steps of `demo`, in capture order.
pub fn steps() -> Vec<Step> {
    let svcs = services();
    let balanced: Vec<Balanced> = specs(&svcs).into_iter().map(Balanced::new).collect();
    let by_name = |n: &str| {
        balanced
            .iter()
            .find(|b| b.spec.name == n)
            .unwrap_or_else(|| panic!("no service port {n}"))
    };
    let mut rng = Rng::new(SEED);
    let mut cap = Capture::default();
    let n_clients = usize::from(CLIENTS_V4) + usize::from(CLIENTS_V6);
    let mut ports = Ports(
        (0..n_clients)
            .map(|i| 33000 + (i as u16 * 97) % 20000)
            .collect(),
    );

    // Mostly web traffic; checkout and cart less; search over IPv6.
    let tcp_mix = [
        ("shop/frontend:http", 45),
        ("shop/catalog:http", 25),
        ("shop/checkout:https", 10),
        ("shop/cart:redis", 10),
        ("shop/search:http", 10),
    ];
    for _ in 0..TCP_FLOWS {
        let roll = rng.range(0, 99);
        let mut acc = 0;
        let name = tcp_mix
            .iter()
            .find(|(_, w)| {
                acc += w;
                roll < acc
            })
            .map_or(tcp_mix[0].0, |(n, _)| n);
        let svc = by_name(name);
        let (ci, client) = pick_client(&mut rng, svc.spec.key.vip.is_v4());
        let cport = ports.next(ci);
        tcp_conversation(&mut cap, &mut rng, svc, client, cport);
    }
    let dns = by_name("kube-system/kube-dns:dns");
    for _ in 0..DNS_FLOWS {
        let (ci, client) = pick_client(&mut rng, true);
        let cport = ports.next(ci);
        dns_exchange(&mut cap, &mut rng, dns, client, cport);
    }
    let statsd = by_name("monitoring/statsd:statsd");
    for _ in 0..STATSD_DATAGRAMS {
        let (ci, client) = pick_client(&mut rng, true);
        let cport = ports.next(ci);
        statsd_datagram(&mut cap, &mut rng, statsd, client, cport);
    }
    let legacy = by_name("shop/legacy:http");
    for _ in 0..LEGACY_ATTEMPTS {
        let (ci, client) = pick_client(&mut rng, true);
        let cport = ports.next(ci);
        legacy_attempt(&mut cap, &mut rng, legacy, client, cport);
    }
    background(&mut cap, &mut rng);

    cap.into_steps()
}

fn pick_client(rng: &mut Rng, v4: bool) -> (usize, IpAddr) {
    if v4 {
        let n = rng.range(1, u64::from(CLIENTS_V4)) as u8;
        (usize::from(n) - 1, client_v4(n))
    } else {
        let n = rng.range(0, u64::from(CLIENTS_V6) - 1) as u16;
        (usize::from(CLIENTS_V4) + usize::from(n), client_v6(n))
    }
}

pub(crate) fn nat_for(svc: &Balanced, client: IpAddr, cport: u16) -> Nat {
    let be = svc.pick(client, cport).expect("service with endpoints");
    let vip = svc.spec.key.vip.to_ip();
    Nat::new(
        host(client),
        cport,
        vip,
        svc.spec.key.port,
        host(be.addr.to_ip()),
        be.port,
    )
}

/// Handshake, one to three request/response rounds, FIN teardown started
/// by either side. Client RTT (through the gateway) and server think time
/// vary per flow.
fn tcp_conversation(cap: &mut Capture, rng: &mut Rng, svc: &Balanced, client: IpAddr, cport: u16) {
    let nat = nat_for(svc, client, cport);
    let mut conv = Conv::new(rng.next_u32(), rng.next_u32());
    let rtt = rng.range(150, 3000);
    let backend_rtt = rng.range(30, 250);
    let mut t = START_US + rng.range(0, SPAN_US);
    let mut f = cap.flow();
    f.fwd(t, nat.forward(conv.client(TCP_SYN, &[])));
    t += backend_rtt;
    f.rev(t, nat.reply(conv.server(TCP_SYN | TCP_ACK, &[])));
    t += rtt;
    f.fwd(t, nat.forward(conv.client(TCP_ACK, &[])));
    for _ in 0..rng.range(1, 3) {
        t += rng.range(5, 400);
        let len = rng.range(30, 240) as usize;
        let req = rng.bytes(len);
        f.fwd(t, nat.forward(conv.client(TCP_ACK | TCP_PSH, &req)));
        t += backend_rtt + rng.range(100, 20_000);
        for _ in 0..rng.range(1, 2) {
            let len = rng.range(60, 420) as usize;
            let resp = rng.bytes(len);
            f.rev(t, nat.reply(conv.server(TCP_ACK | TCP_PSH, &resp)));
            t += rng.range(5, 60);
        }
        t += rtt;
        f.fwd(t, nat.forward(conv.client(TCP_ACK, &[])));
    }
    t += rng.range(50, 50_000);
    if rng.chance(70) {
        f.fwd(t, nat.forward(conv.client(TCP_FIN | TCP_ACK, &[])));
        t += backend_rtt;
        f.rev(t, nat.reply(conv.server(TCP_FIN | TCP_ACK, &[])));
        t += rtt;
        f.fwd(t, nat.forward(conv.client(TCP_ACK, &[])));
    } else {
        f.rev(t, nat.reply(conv.server(TCP_FIN | TCP_ACK, &[])));
        t += rtt;
        f.fwd(t, nat.forward(conv.client(TCP_FIN | TCP_ACK, &[])));
        t += backend_rtt;
        f.rev(t, nat.reply(conv.server(TCP_ACK, &[])));
    }
}

fn dns_name(rng: &mut Rng) -> Vec<u8> {
    const NAMES: [&str; 6] = [
        "frontend.shop.svc.cluster.local",
        "catalog.shop.svc.cluster.local",
        "checkout.shop.svc.cluster.local",
        "cart.shop.svc.cluster.local",
        "statsd.monitoring.svc.cluster.local",
        "search.shop.svc.cluster.local",
    ];
    let mut q = (rng.next_u32() as u16).to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in rng.pick(&NAMES).split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    let qtype = if rng.chance(30) { 28 } else { 1 };
    q.extend_from_slice(&[0, qtype, 0, 1]);
    q
}

fn dns_exchange(cap: &mut Capture, rng: &mut Rng, svc: &Balanced, client: IpAddr, cport: u16) {
    let nat = nat_for(svc, client, cport);
    let q = dns_name(rng);
    let mut a = q.clone();
    a[2] = 0x81;
    a[3] = 0x80;
    a[7] = 1;
    a.extend_from_slice(&[0xc0, 0x0c, 0, q[q.len() - 3], 0, 1, 0, 0, 0, 5]);
    if q[q.len() - 3] == 28 {
        a.extend_from_slice(&[0, 16, 0xfd, 0, 0, 0x19]);
        a.extend_from_slice(&rng.bytes(12));
    } else {
        a.extend_from_slice(&[0, 4, 198, 19, 1, rng.range(10, 13) as u8]);
    }
    let mut t = START_US + rng.range(0, SPAN_US);
    let mut f = cap.flow();
    f.fwd(t, nat.forward(L4::Udp(Udp::new(0, 0, q))));
    t += rng.range(80, 900);
    f.rev(t, nat.reply(L4::Udp(Udp::new(0, 0, a))));
}

/// Fire-and-forget metrics: one datagram, no answer.
fn statsd_datagram(cap: &mut Capture, rng: &mut Rng, svc: &Balanced, client: IpAddr, cport: u16) {
    let nat = nat_for(svc, client, cport);
    let line = format!(
        "shop.requests.{}:{}|c\nshop.latency_ms:{}|ms",
        rng.pick(&["frontend", "catalog", "checkout", "cart"]),
        rng.range(1, 50),
        rng.range(1, 900)
    );
    let t = START_US + rng.range(0, SPAN_US);
    cap.flow()
        .fwd(t, nat.forward(L4::Udp(Udp::new(0, 0, line.into_bytes()))));
}

/// SYNs to a service whose pods are all gone: answered with RST|ACK.
fn legacy_attempt(cap: &mut Capture, rng: &mut Rng, svc: &Balanced, client: IpAddr, cport: u16) {
    let c = host(client);
    let syn = Packet::new(
        Eth::new(c.mac, GW_MAC),
        ip_header(client, svc.spec.key.vip.to_ip(), TTL),
        Conv::new(rng.next_u32(), 0)
            .client(TCP_SYN, &[])
            .with_ports(cport, svc.spec.key.port),
    );
    let t = START_US + rng.range(0, SPAN_US);
    cap.flow()
        .push(t, syn.frame(), Verdict::Rejected, Some(rst_for(&syn)));
}

/// Traffic that is not for the balancer: ARP, SSH to the node, kubelet.
fn background(cap: &mut Capture, rng: &mut Rng) {
    let node = v4(3, 1);
    let mut t = START_US;
    while t < START_US + SPAN_US {
        let who = client_v4(rng.range(1, u64::from(CLIENTS_V4)) as u8);
        let IpAddr::V4(w) = who else { unreachable!() };
        cap.flow().push(
            t,
            arp_request(mac_for(who), w.octets(), [198, 18, 0, 254]),
            Verdict::Passed,
            None,
        );
        t += rng.range(20_000, 120_000);
    }
    let admin = host(v4(3, 200));
    let ssh = Nat::new(admin, 51022, node, 22, host(node), 22);
    let mut conv = Conv::new(rng.next_u32(), rng.next_u32());
    let mut t = START_US + 1000;
    let mut f = cap.flow();
    f.push(
        t,
        ssh.client_packet(conv.client(TCP_SYN, &[]), TTL).frame(),
        Verdict::Passed,
        None,
    );
    while t < START_US + SPAN_US {
        t += rng.range(30_000, 400_000);
        let keys = rng.bytes(36);
        f.push(
            t,
            ssh.client_packet(conv.client(TCP_ACK | TCP_PSH, &keys), TTL)
                .frame(),
            Verdict::Passed,
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Counts;
    use crate::verify::check_frame;

    #[test]
    fn big_enough_and_interleaved() {
        let steps = steps();
        assert!(steps.len() >= 20_000, "{}", steps.len());
        let span = steps.last().unwrap().ts - steps.first().unwrap().ts;
        assert!(
            span > Duration::from_secs(9) && span < Duration::from_secs(11),
            "{span:?}"
        );
        let bytes: usize = steps.iter().map(|s| s.input.len() + 16).sum();
        assert!(bytes < 4_500_000, "{bytes} bytes");
        let c = Counts::of(&steps);
        assert!(c.rejected == LEGACY_ATTEMPTS as u64 && c.passed > 50);
        assert_eq!(c.malformed + c.ttl_exceeded, 0);
    }

    #[test]
    fn every_frame_has_correct_checksums() {
        for (i, s) in steps().iter().enumerate() {
            assert_eq!(check_frame(&s.input), Ok(()), "input {i}");
            if let Some(o) = &s.output {
                assert_eq!(check_frame(o), Ok(()), "output {i}");
            }
        }
    }

    #[test]
    fn picks_spread_over_ready_backends_only() {
        let svcs = services();
        let front = specs(&svcs)
            .into_iter()
            .find(|s| s.name == "shop/frontend:http")
            .unwrap();
        assert_eq!(front.backends.len(), 14);
        let b = Balanced::new(front);
        let mut hits = std::collections::BTreeMap::new();
        for port in 40000..42000 {
            let be = b.pick(client_v4(7), port).unwrap();
            assert_eq!(be.state, BackendState::Ready);
            *hits.entry(be.addr).or_insert(0) += 1;
        }
        assert_eq!(hits.len(), 12, "{hits:?}");
        let legacy = specs(&svcs)
            .into_iter()
            .find(|s| s.name == "shop/legacy:http")
            .unwrap();
        assert_eq!(Balanced::new(legacy).pick(client_v4(1), 1), None);
    }

    #[test]
    fn one_spec_per_vip_and_port() {
        let specs = specs(&services());
        assert_eq!(specs.len(), 9);
        let dns: Vec<_> = specs
            .iter()
            .filter(|s| s.name.starts_with("kube-system/kube-dns"))
            .collect();
        assert_eq!(dns.len(), 2);
        assert!(dns
            .iter()
            .all(|s| s.backends.len() == 4 && s.backends[0].port == 53));
        let statsd = specs
            .iter()
            .find(|s| s.name == "monitoring/statsd:statsd")
            .unwrap();
        assert_eq!(statsd.backends[0].port, 9125);
        let search = specs.iter().find(|s| s.name == "shop/search:http").unwrap();
        assert!(!search.key.vip.is_v4() && !search.backends[0].addr.is_v4());
    }
}
