//! `basic`: one ready backend per service, so every expected output follows
//! from the rules alone (no Maglev). Each section exercises one rule.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::fixture::{Drop, Recorder, Step, Verdict};
use crate::flow::*;
use crate::packet::*;
use crate::rng::Rng;
use crate::yaml::{EndpointDef, EpState, L4Proto, PortDef, ServiceDef};

const SEED: u64 = u64::from_be_bytes(*b"\0\0\0basic");
/// 2025-03-04 09:30:00 UTC.
const START_S: u64 = 1_741_080_600;

fn v4(d: u8, e: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18 + (d >> 7), d & 0x7f, e))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("literal"))
}

fn mac(a: u8, b: u8) -> [u8; 6] {
    [0x02, 0x00, 0x00, 0x00, a, b]
}

fn client(n: u8) -> Host {
    Host {
        mac: mac(0, n),
        ip: v4(0, n),
    }
}

fn client6(n: u8) -> Host {
    Host {
        mac: mac(0, 0x60 + n),
        ip: v6(&format!("fd00:18::{n:x}")),
    }
}

pub const WEB_VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 10));
pub const API_VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 11));
pub const DNS_VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 53));
pub const EMPTY_VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 99));

fn web6_vip() -> IpAddr {
    v6("fd00:19::10")
}

fn empty6_vip() -> IpAddr {
    v6("fd00:19::99")
}

fn web_be() -> Host {
    Host {
        mac: mac(1, 10),
        ip: v4(1, 10),
    }
}

fn api_be() -> Host {
    Host {
        mac: mac(1, 11),
        ip: v4(1, 11),
    }
}

fn dns_be() -> Host {
    Host {
        mac: mac(1, 53),
        ip: v4(1, 53),
    }
}

fn web6_be() -> Host {
    Host {
        mac: mac(1, 0x60),
        ip: v6("fd00:18:1::10"),
    }
}

fn port(name: &str, port: u16, proto: L4Proto, target: u16, target_name: Option<&str>) -> PortDef {
    PortDef {
        name: name.into(),
        port,
        proto,
        target,
        target_name: target_name.map(String::from),
    }
}

fn ep(h: Host, node: &str, pod: &str) -> EndpointDef {
    EndpointDef {
        addr: h.ip,
        state: EpState::Ready,
        node: node.into(),
        pod: pod.into(),
    }
}

/// The services of `basic`, in the order they are written.
pub fn services() -> Vec<ServiceDef> {
    vec![
        ServiceDef {
            namespace: "shop".into(),
            name: "web".into(),
            cluster_ips: vec![WEB_VIP],
            // Named targetPort: the number comes from the EndpointSlice.
            ports: vec![port("http", 80, L4Proto::Tcp, 8080, Some("http-alt"))],
            endpoints: vec![ep(web_be(), "node-a", "web-7d9f8b6c5-x2k4p")],
            affinity_timeout: None,
        },
        ServiceDef {
            namespace: "shop".into(),
            name: "api".into(),
            cluster_ips: vec![API_VIP],
            // A single unnamed port, as many Services have.
            ports: vec![port("", 443, L4Proto::Tcp, 8443, None)],
            endpoints: vec![ep(api_be(), "node-b", "api-5c6d7f8b9-q8w2e")],
            affinity_timeout: None,
        },
        ServiceDef {
            namespace: "kube-system".into(),
            name: "dns".into(),
            cluster_ips: vec![DNS_VIP],
            ports: vec![port("dns", 53, L4Proto::Udp, 5353, None)],
            endpoints: vec![ep(dns_be(), "node-a", "dns-6f7c8d9b5-m4n5b")],
            affinity_timeout: None,
        },
        ServiceDef {
            namespace: "shop".into(),
            name: "web6".into(),
            cluster_ips: vec![web6_vip()],
            ports: vec![
                port("http", 80, L4Proto::Tcp, 8080, None),
                port("dns", 53, L4Proto::Udp, 5353, None),
            ],
            endpoints: vec![ep(web6_be(), "node-b", "web6-8b9c7d6f5-t7y8u")],
            affinity_timeout: None,
        },
        ServiceDef {
            namespace: "shop".into(),
            name: "empty".into(),
            cluster_ips: vec![EMPTY_VIP, empty6_vip()],
            ports: vec![
                port("http", 80, L4Proto::Tcp, 8080, None),
                port("dns", 53, L4Proto::Udp, 5353, None),
            ],
            endpoints: vec![],
            affinity_timeout: None,
        },
    ]
}

/// Records steps with a clock that moves a little between packets.
pub(crate) struct Script {
    pub(crate) rec: Recorder,
    now: Duration,
    rng: Rng,
}

impl Script {
    pub(crate) fn new(start: Duration, seed: u64) -> Script {
        Script {
            rec: Recorder::default(),
            now: start,
            rng: Rng::new(seed),
        }
    }

    fn tick(&mut self) -> Duration {
        self.now += Duration::from_micros(self.rng.range(40, 900));
        self.now
    }

    pub(crate) fn fwd(&mut self, (input, output): (Vec<u8>, Vec<u8>)) {
        let t = self.tick();
        self.rec.answered(t, input, Verdict::Forwarded, output);
    }

    pub(crate) fn rev(&mut self, (input, output): (Vec<u8>, Vec<u8>)) {
        let t = self.tick();
        self.rec.answered(t, input, Verdict::Reversed, output);
    }

    pub(crate) fn reject(&mut self, input: Vec<u8>, output: Vec<u8>) {
        let t = self.tick();
        self.rec.answered(t, input, Verdict::Rejected, output);
    }

    pub(crate) fn silent(&mut self, input: Vec<u8>, verdict: Verdict) {
        let t = self.tick();
        self.rec.silent(t, input, verdict);
    }
}

const GET: &[u8] =
    b"GET /index.html HTTP/1.1\r\nHost: web.shop\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

fn http_response(body_len: usize) -> Vec<u8> {
    let mut r =
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {body_len}\r\n\r\n")
            .into_bytes();
    r.extend((0..body_len).map(|i| b"<p>vipgate</p>\n"[i % 15]));
    r
}

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn dns_answer(query: &[u8], addr: [u8; 4]) -> Vec<u8> {
    let mut a = query.to_vec();
    a[2] = 0x81;
    a[3] = 0x80;
    a[7] = 1;
    a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
    a.extend_from_slice(&addr);
    a
}

fn udp(payload: Vec<u8>) -> L4 {
    L4::Udp(Udp::new(0, 0, payload))
}

fn icmp(kind: u8, code: u8, rest: [u8; 4], body: Vec<u8>) -> L4 {
    L4::Icmp(Icmp {
        kind,
        code,
        rest,
        body,
    })
}

/// All steps of `basic`, in capture order.
pub fn steps() -> Vec<Step> {
    let mut s = Script::new(Duration::from_secs(START_S), SEED);
    tcp_flows(&mut s);
    udp_flows(&mut s);
    v6_flows(&mut s);
    rejections(&mut s);
    icmp_errors(&mut s);
    special_headers(&mut s);
    ttl_and_pass(&mut s);
    malformed(&mut s);
    s.rec.steps
}

/// Two IPv4 TCP services, interleaved: handshake, request, response, FIN
/// teardown (client closes first on one, server on the other).
fn tcp_flows(s: &mut Script) {
    let web = Nat::new(client(1), 40001, WEB_VIP, 80, web_be(), 8080);
    let api = Nat::new(client(2), 40002, API_VIP, 443, api_be(), 8443);
    let mut w = Conv::new(0x1000_0000, 0x8000_0000);
    let mut a = Conv::new(0xfedc_ba00, 0x0123_4567);
    s.fwd(web.forward(w.client(TCP_SYN, &[])));
    s.fwd(api.forward(a.client(TCP_SYN, &[])));
    s.rev(web.reply(w.server(TCP_SYN | TCP_ACK, &[])));
    // A pure ACK, padded to the Ethernet minimum as a NIC delivers it: the
    // padding is not part of the IP packet and stays as it is.
    let ack = web.client_packet(w.client(TCP_ACK, &[]), TTL);
    let (i, o) = (pad_min(ack.frame()), pad_min(web.dnat(&ack).frame()));
    s.fwd((i, o));
    s.rev(api.reply(a.server(TCP_SYN | TCP_ACK, &[])));
    s.fwd(api.forward(a.client(TCP_ACK, &[])));
    s.fwd(web.forward(w.client(TCP_ACK | TCP_PSH, GET)));
    let hello: Vec<u8> = (0..517u32).map(|i| (i * 7 + 3) as u8).collect();
    s.fwd(api.forward(a.client(TCP_ACK | TCP_PSH, &hello)));
    s.rev(web.reply(w.server(TCP_ACK | TCP_PSH, &http_response(600))));
    s.rev(api.reply(a.server(TCP_ACK | TCP_PSH, &[0x16; 1200])));
    s.fwd(web.forward(w.client(TCP_ACK, &[])));
    s.fwd(api.forward(a.client(TCP_ACK, &[])));
    s.fwd(web.forward(w.client(TCP_FIN | TCP_ACK, &[])));
    s.rev(api.reply(a.server(TCP_FIN | TCP_ACK, &[])));
    s.rev(web.reply(w.server(TCP_FIN | TCP_ACK, &[])));
    s.fwd(api.forward(a.client(TCP_FIN | TCP_ACK, &[])));
    s.fwd(web.forward(w.client(TCP_ACK, &[])));
    s.rev(api.reply(a.server(TCP_ACK, &[])));

    // No SYN seen: any segment to a VIP starts a flow.
    let mid = Nat::new(client(10), 40050, API_VIP, 443, api_be(), 8443);
    let mut m = Conv::new(0x5555_0000, 0x6666_0000);
    s.fwd(mid.forward(m.client(TCP_ACK | TCP_PSH, b"\x17\x03\x03\x00\x05hello")));
    s.rev(mid.reply(m.server(TCP_ACK, &[])));
}

/// UDP request/reply, then the same with IPv4 UDP checksum 0 ("none"),
/// which must stay 0 through both rewrites.
fn udp_flows(s: &mut Script) {
    let dns = Nat::new(client(3), 40003, DNS_VIP, 53, dns_be(), 5353);
    let q = dns_query(0x1a2b, "web.shop.svc.cluster.local");
    s.fwd(dns.forward(udp(q.clone())));
    s.rev(dns.reply(udp(dns_answer(&q, [198, 19, 0, 10]))));
    let q2 = dns_query(0x1a2c, "api.shop.svc.cluster.local");
    let mut u = Udp::new(0, 0, q2.clone());
    u.zero_checksum = true;
    s.fwd(dns.forward(L4::Udp(u)));
    let mut u = Udp::new(0, 0, dns_answer(&q2, [198, 19, 0, 11]));
    u.zero_checksum = true;
    s.rev(dns.reply(L4::Udp(u)));
}

/// IPv6 TCP and UDP to a v6 VIP, with an ICMPv6 packet-too-big from a
/// router about a reply in the middle of the TCP flow.
fn v6_flows(s: &mut Script) {
    let web = Nat::new(client6(1), 40006, web6_vip(), 80, web6_be(), 8080);
    let mut c = Conv::new(0x0a0b_0c0d, 0x1122_3344);
    s.fwd(web.forward(c.client(TCP_SYN, &[])));
    s.rev(web.reply(c.server(TCP_SYN | TCP_ACK, &[])));
    s.fwd(web.forward(c.client(TCP_ACK, &[])));
    s.fwd(web.forward(c.client(TCP_ACK | TCP_PSH, GET)));
    let sent = web.backend_packet(c.server(TCP_ACK | TCP_PSH, &http_response(900)));
    let seen = web.unnat(&sent);
    s.rev((sent.frame(), seen.frame()));

    // A router on the client's path answers the reply (as it left the
    // gateway: from the VIP) with packet-too-big, addressed to the VIP.
    let router = Host {
        mac: mac(0, 0xfe),
        ip: v6("fd00:18::fe"),
    };
    let mut quoted = seen.clone();
    quoted.ip.set_ttl(TTL - 2);
    let mtu = 1280u32.to_be_bytes();
    let mut q_bytes = quoted.ip_bytes();
    q_bytes.truncate(V6_QUOTE_MAX);
    let ptb = Packet::new(
        Eth::new(router.mac, GW_MAC),
        ip_header(router.ip, web6_vip(), TTL),
        icmp(2, 0, mtu, q_bytes),
    );
    let mut q_out = quoted.clone();
    q_out.ip = with_src(&quoted.ip, web6_be().ip);
    q_out.l4 = quoted.l4.clone().with_ports(8080, web.cport);
    let mut out_bytes = q_out.ip_bytes();
    out_bytes.truncate(V6_QUOTE_MAX);
    let ptb_out = Packet::new(
        ptb.eth.clone(),
        ip_header(router.ip, web6_be().ip, TTL - 1),
        icmp(2, 0, mtu, out_bytes),
    );
    s.fwd((ptb.frame(), ptb_out.frame()));

    s.fwd(web.forward(c.client(TCP_FIN | TCP_ACK, &[])));
    s.rev(web.reply(c.server(TCP_FIN | TCP_ACK, &[])));
    s.fwd(web.forward(c.client(TCP_ACK, &[])));

    let dns = Nat::new(client6(1), 40007, web6_vip(), 53, web6_be(), 5353);
    let q = dns_query(0x3c4d, "web6.shop.svc.cluster.local");
    s.fwd(dns.forward(udp(q.clone())));
    s.rev(dns.reply(udp(dns_answer(&q, [198, 19, 0, 10]))));
}

/// A service without endpoints: RSTs and port unreachables, both families,
/// and a VLAN-tagged SYN whose RST keeps the tag.
fn rejections(s: &mut Script) {
    let c = client(4);
    let to_empty = |sport: u16, dport: u16, l4: L4, vlan: Option<u16>| {
        let mut eth = Eth::new(c.mac, GW_MAC);
        eth.vlan = vlan;
        Packet::new(
            eth,
            ip_header(c.ip, EMPTY_VIP, TTL),
            l4.with_ports(sport, dport),
        )
    };
    let mut t = Conv::new(0x7000_0001, 0x9000_0001);
    // SYN: nothing acknowledged, so RST|ACK acknowledging the SYN.
    let syn = to_empty(40010, 80, t.client(TCP_SYN, &[]), None);
    s.reject(syn.frame(), rst_for(&syn));
    // A segment with ACK: RST carrying its ack number, padded on the wire.
    let mut mid = Conv::new(0x7100_0000, 0x9100_0000);
    let data = to_empty(40011, 80, mid.client(TCP_ACK | TCP_PSH, b"hello"), None);
    s.reject(pad_min(data.frame()), rst_for(&data));
    // FIN without ACK and with data: both count in the acknowledgment.
    let fin = to_empty(
        40012,
        80,
        L4::Tcp({
            let mut f = Tcp::new(0, 0, 0x7200_0000, 0, TCP_FIN);
            f.payload = b"bye".to_vec();
            f
        }),
        None,
    );
    s.reject(fin.frame(), rst_for(&fin));
    let vlan_syn = to_empty(40016, 80, t.client(TCP_SYN, &[]), Some(100));
    s.reject(vlan_syn.frame(), rst_for(&vlan_syn));

    let small = to_empty(40013, 53, udp(dns_query(0x0101, "empty.shop")), None);
    s.reject(small.frame(), port_unreachable_for(&small));
    // Larger than the quote limit: the quote is cut at 548 bytes.
    let big = to_empty(40014, 53, udp((0..600u32).map(|i| i as u8).collect()), None);
    s.reject(big.frame(), port_unreachable_for(&big));

    let c6 = client6(4);
    let eth6 = Eth::new(c6.mac, GW_MAC);
    let syn6 = Packet::new(
        eth6.clone(),
        ip_header(c6.ip, empty6_vip(), TTL),
        t.client(TCP_SYN, &[]).with_ports(40015, 80),
    );
    s.reject(syn6.frame(), rst_for(&syn6));
    let big6 = Packet::new(
        eth6,
        ip_header(c6.ip, empty6_vip(), TTL),
        udp((0..1300u32).map(|i| (i * 3) as u8).collect()).with_ports(40017, 53),
    );
    s.reject(big6.frame(), port_unreachable_for(&big6));
}

/// ICMP errors about NATed flows, in both directions.
fn icmp_errors(s: &mut Script) {
    // The backend's port is closed: it answers the client's datagram (as
    // the backend received it) with port unreachable. The client must see
    // it about the datagram it sent: to the VIP and the service port.
    let dns = Nat::new(client(3), 40004, DNS_VIP, 53, dns_be(), 5353);
    let sent = dns.client_packet(udp(dns_query(0x2222, "gone.shop")), TTL);
    let arrived = dns.dnat(&sent);
    s.fwd((sent.frame(), arrived.frame()));
    let mut as_client_sees = arrived.clone();
    as_client_sees.ip = with_dst(&arrived.ip, DNS_VIP);
    as_client_sees.l4 = arrived.l4.clone().with_ports(40004, 53);
    let unreach = |src: IpAddr, ttl: u8, quote: Vec<u8>| {
        let mut ip = ip_header(src, client(3).ip, ttl);
        if let Ip::V4(h) = &mut ip {
            // What Linux sends: internetwork-control TOS, no DF.
            h.tos = 0xc0;
            h.flags_frag = 0;
            h.ident = 0x4d2;
        }
        Packet::new(
            Eth::new(dns_be().mac, GW_MAC),
            ip,
            icmp(3, 3, [0; 4], quote),
        )
    };
    s.rev((
        unreach(dns_be().ip, TTL, arrived.ip_bytes()).frame(),
        unreach(DNS_VIP, TTL - 1, as_client_sees.ip_bytes()).frame(),
    ));

    // The same over IPv6.
    let dns6 = Nat::new(client6(2), 40008, web6_vip(), 53, web6_be(), 5353);
    let sent = dns6.client_packet(udp(dns_query(0x3333, "gone6.shop")), TTL);
    let arrived = dns6.dnat(&sent);
    s.fwd((sent.frame(), arrived.frame()));
    let mut seen = arrived.clone();
    seen.ip = with_dst(&arrived.ip, web6_vip());
    seen.l4 = arrived.l4.clone().with_ports(40008, 53);
    let unreach6 = |src: IpAddr, ttl: u8, quote: Vec<u8>| {
        Packet::new(
            Eth::new(web6_be().mac, GW_MAC),
            ip_header(src, client6(2).ip, ttl),
            icmp(1, 4, [0; 4], quote),
        )
    };
    s.rev((
        unreach6(web6_be().ip, TTL, arrived.ip_bytes()).frame(),
        unreach6(web6_vip(), TTL - 1, seen.ip_bytes()).frame(),
    ));

    // Fragmentation needed from a router, about a large reply that left
    // the gateway from the VIP. The router quotes the IP header and 28
    // bytes of TCP: the checksum field is inside the quote, the rest of the
    // segment is not, so only the rewrite can keep it right.
    let web = Nat::new(client(7), 40020, WEB_VIP, 80, web_be(), 8080);
    let mut c = Conv::new(0x3000_0000, 0x4000_0000);
    s.fwd(web.forward(c.client(TCP_SYN, &[])));
    s.rev(web.reply(c.server(TCP_SYN | TCP_ACK, &[])));
    s.fwd(web.forward(c.client(TCP_ACK, &[])));
    s.fwd(web.forward(c.client(TCP_ACK | TCP_PSH, GET)));
    let sent = web.backend_packet(c.server(TCP_ACK, &http_response(1360)));
    let left = web.unnat(&sent);
    s.rev((sent.frame(), left.frame()));
    let router = Host {
        mac: mac(0, 0xfe),
        ip: v4(0, 254),
    };
    let mut q_in = left.clone();
    q_in.ip.set_ttl(TTL - 2);
    let mut q_out = q_in.clone();
    q_out.ip = with_src(&q_in.ip, web_be().ip);
    q_out.l4 = q_in.l4.clone().with_ports(8080, 40020);
    let quote_len = 20 + 28;
    let mtu = [0, 0, 0x05, 0x14]; // next-hop MTU 1300
    let frag_needed = |dst: IpAddr, ttl: u8, quote: &Packet| {
        let mut ip = ip_header(router.ip, dst, ttl);
        if let Ip::V4(h) = &mut ip {
            h.tos = 0xc0;
            h.flags_frag = 0;
            h.ident = 0x0777;
        }
        let mut q = quote.ip_bytes();
        q.truncate(quote_len);
        Packet::new(Eth::new(router.mac, GW_MAC), ip, icmp(3, 4, mtu, q))
    };
    s.fwd((
        frag_needed(WEB_VIP, TTL, &q_in).frame(),
        frag_needed(web_be().ip, TTL - 1, &q_out).frame(),
    ));
}

/// 802.1Q tag, IPv4 options, IPv6 destination options: all kept as they are.
fn special_headers(s: &mut Script) {
    let mut vlan = Nat::new(client(5), 40060, WEB_VIP, 80, web_be(), 8080);
    vlan.vlan = Some(100);
    let mut c = Conv::new(0x2468_0000, 0x1357_0000);
    s.fwd(vlan.forward(c.client(TCP_SYN, &[])));
    s.rev(vlan.reply(c.server(TCP_SYN | TCP_ACK, &[])));
    s.fwd(vlan.forward(c.client(TCP_ACK, &[])));
    s.fwd(vlan.forward(c.client(TCP_ACK | TCP_PSH, GET)));

    let mut opts = Nat::new(client(8), 40030, API_VIP, 443, api_be(), 8443);
    // Router Alert, then NOPs and end-of-list to fill the 32-bit word.
    opts.v4_options = vec![0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00];
    let mut c = Conv::new(0x1111_0000, 0x2222_0000);
    s.fwd(opts.forward(c.client(TCP_SYN, &[])));
    s.rev(opts.reply(c.server(TCP_SYN | TCP_ACK, &[])));
    s.fwd(opts.forward(c.client(TCP_ACK, &[])));

    let mut ext = Nat::new(client6(3), 40070, web6_vip(), 53, web6_be(), 5353);
    // Destination options with one PadN option filling the 8 octets.
    ext.v6_ext = vec![ExtHeader {
        kind: PROTO_DSTOPTS,
        body: vec![0x01, 0x04, 0, 0, 0, 0],
    }];
    let q = dns_query(0x4e4f, "ext.shop");
    s.fwd(ext.forward(udp(q.clone())));
    s.rev(ext.reply(udp(dns_answer(&q, [198, 19, 0, 11]))));
}

/// TTL/hop limit too low, and traffic that is not the balancer's business.
fn ttl_and_pass(s: &mut Script) {
    let dropped = Verdict::Dropped(Drop::TtlExceeded);
    for (port, ttl) in [(40040, 1), (40041, 0)] {
        let n = Nat::new(client(9), port, WEB_VIP, 80, web_be(), 8080);
        let p = n.client_packet(Conv::new(9, 9).client(TCP_SYN, &[]), ttl);
        s.silent(p.frame(), dropped);
    }
    let n6 = Nat::new(client6(5), 40042, web6_vip(), 80, web6_be(), 8080);
    let p = n6.client_packet(Conv::new(9, 9).client(TCP_SYN, &[]), 1);
    s.silent(p.frame(), dropped);

    let c = client(1);
    s.silent(
        arp_request(c.mac, [198, 18, 0, 1], [198, 18, 0, 254]),
        Verdict::Passed,
    );
    let ssh = Packet::new(
        Eth::new(c.mac, GW_MAC),
        ip_header(c.ip, v4(2, 5), TTL),
        Conv::new(5, 5).client(TCP_SYN, &[]).with_ports(40080, 22),
    );
    s.silent(ssh.frame(), Verdict::Passed);
    // From a backend's port, but no flow was ever sent there.
    let stray = Packet::new(
        Eth::new(dns_be().mac, GW_MAC),
        ip_header(dns_be().ip, client(3).ip, TTL),
        udp(b"stray".to_vec()).with_ports(5353, 49999),
    );
    s.silent(stray.frame(), Verdict::Passed);
    let c6 = client6(1);
    let other6 = Packet::new(
        Eth::new(c6.mac, GW_MAC),
        ip_header(c6.ip, v6("fd00:18::fe"), TTL),
        udp(b"ntp?".to_vec()).with_ports(40081, 123),
    );
    s.silent(other6.frame(), Verdict::Passed);
    // LLDP: neither IPv4 nor IPv6.
    let lldp = Eth::new(mac(0, 0xfe), [0x01, 0x80, 0xc2, 0, 0, 0x0e])
        .frame(0x88cc, &[0x02, 0x07, 0x04, 2, 0, 0, 0, 0, 0xfe, 0, 0]);
    s.silent(lldp, Verdict::Passed);
}

fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Recomputes the IPv4 header checksum of a frame edited by hand, so the
/// edit is the only thing wrong with it.
fn fix_v4_header(frame: &mut [u8]) {
    let hlen = usize::from(frame[14] & 0x0f) * 4;
    set_u16(frame, 24, 0);
    let sum = crate::verify::internet_checksum(&[&frame[14..14 + hlen]]);
    set_u16(frame, 24, sum);
}

/// Frames cut short or with impossible header fields, all to service VIPs
/// so only the malformation keeps them from being rewritten.
fn malformed(s: &mut Script) {
    let bad = Verdict::Dropped(Drop::Malformed);
    let web = Nat::new(client(6), 40090, WEB_VIP, 80, web_be(), 8080);
    let dns = Nat::new(client(6), 40091, DNS_VIP, 53, dns_be(), 5353);
    let web6 = Nat::new(client6(6), 40092, web6_vip(), 80, web6_be(), 8080);
    let syn = || {
        web.client_packet(Conv::new(1, 1).client(TCP_SYN, &[]), TTL)
            .frame()
    };
    let ack = || {
        web.client_packet(Conv::new(1, 1).client(TCP_ACK, &[]), TTL)
            .frame()
    };
    let query = || dns.client_packet(udp(dns_query(7, "x.shop")), TTL).frame();
    let syn6 = || {
        web6.client_packet(Conv::new(1, 1).client(TCP_SYN, &[]), TTL)
            .frame()
    };

    // Ethernet header cut short.
    s.silent(syn()[..10].to_vec(), bad);
    // 802.1Q ethertype with the tag cut short.
    let mut tagged = syn()[..16].to_vec();
    set_u16(&mut tagged, 12, ETHERTYPE_VLAN);
    s.silent(tagged, bad);
    // IPv4 header cut short.
    s.silent(syn()[..14 + 12].to_vec(), bad);
    // IHL 4 (< 5).
    let mut f = syn();
    f[14] = 0x44;
    fix_v4_header(&mut f);
    s.silent(f, bad);
    // Version 6 inside an IPv4 ethertype.
    let mut f = syn();
    f[14] = 0x65;
    fix_v4_header(&mut f);
    s.silent(f, bad);
    // Total length claims more than the frame holds.
    let mut f = query();
    let total = u16::from_be_bytes([f[16], f[17]]);
    set_u16(&mut f, 16, total + 20);
    fix_v4_header(&mut f);
    s.silent(f, bad);
    // TCP header cut short (10 of 20 bytes), lengths consistent.
    let mut f = syn()[..14 + 20 + 10].to_vec();
    set_u16(&mut f, 16, 30);
    fix_v4_header(&mut f);
    s.silent(f, bad);
    // TCP data offset 4 (< 5).
    let mut f = ack();
    f[14 + 20 + 12] = 0x40;
    s.silent(f, bad);
    // TCP data offset 15: 60 bytes of header in a 20-byte segment.
    let mut f = ack();
    f[14 + 20 + 12] = 0xf0;
    s.silent(f, bad);
    // UDP header cut short (4 of 8 bytes).
    let mut f = query()[..14 + 20 + 4].to_vec();
    set_u16(&mut f, 16, 24);
    fix_v4_header(&mut f);
    s.silent(f, bad);
    // IPv6 header cut short.
    s.silent(syn6()[..14 + 30].to_vec(), bad);
    // IPv6 payload length beyond the frame.
    let mut f = syn6();
    let plen = u16::from_be_bytes([f[18], f[19]]);
    set_u16(&mut f, 18, plen + 64);
    s.silent(f, bad);
    // IPv6 TCP header cut short.
    let mut f = syn6()[..14 + 40 + 10].to_vec();
    set_u16(&mut f, 18, 10);
    s.silent(f, bad);
    // IPv6 destination options header running past the payload.
    let mut ext = Nat::new(client6(6), 40093, web6_vip(), 53, web6_be(), 5353);
    ext.v6_ext = vec![ExtHeader {
        kind: PROTO_DSTOPTS,
        body: vec![0x01, 0x04, 0, 0, 0, 0],
    }];
    let mut f = ext.client_packet(udp(b"q".to_vec()), TTL).frame();
    f[14 + 40 + 1] = 10; // 88 bytes claimed, 17 present
    s.silent(f, bad);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Counts;
    use crate::verify::check_frame;

    #[test]
    fn every_written_frame_has_correct_checksums() {
        for (i, st) in steps().iter().enumerate() {
            if let Some(out) = &st.output {
                assert_eq!(check_frame(out), Ok(()), "output of step {i}");
            }
            if st.verdict != Verdict::Dropped(Drop::Malformed) {
                assert_eq!(check_frame(&st.input), Ok(()), "input of step {i}");
            }
        }
    }

    #[test]
    fn malformed_inputs_are_caught_by_the_checker_too() {
        let steps = steps();
        let bad: Vec<_> = steps
            .iter()
            .filter(|s| s.verdict == Verdict::Dropped(Drop::Malformed))
            .collect();
        assert!(bad.len() >= 12);
        for s in bad {
            assert!(check_frame(&s.input).is_err(), "{:02x?}", s.input);
        }
    }

    #[test]
    fn covers_every_verdict() {
        let c = Counts::of(&steps());
        assert!(c.forwarded > 20 && c.reversed > 10);
        assert_eq!(c.rejected, 8);
        assert_eq!(c.ttl_exceeded, 3);
        assert_eq!(c.passed, 5);
        assert_eq!(c.malformed, 14);
    }

    /// Where the L3 and L4 headers start and which protocol follows.
    fn layout(f: &[u8]) -> (usize, bool, usize, u8) {
        let l3 = if f[12..14] == [0x81, 0x00] { 18 } else { 14 };
        let v6 = f[l3 - 2..l3] == [0x86, 0xdd];
        if !v6 {
            return (l3, false, l3 + usize::from(f[l3] & 0xf) * 4, f[l3 + 9]);
        }
        let (mut next, mut off) = (f[l3 + 6], l3 + 40);
        while next == PROTO_DSTOPTS {
            next = f[off];
            off += (usize::from(f[off + 1]) + 1) * 8;
        }
        (l3, true, off, next)
    }

    // Compared byte by byte, independent of how the frames were built: a
    // rewrite touches addresses, ports, TTL and checksums (and, in an ICMP
    // error, the quote) and nothing else.
    #[test]
    fn rewrites_touch_only_nat_fields() {
        let mut checked = 0;
        for st in steps() {
            if !matches!(st.verdict, Verdict::Forwarded | Verdict::Reversed) {
                continue;
            }
            let (i, o) = (&st.input, st.output.as_ref().unwrap());
            assert_eq!(i.len(), o.len());
            let (l3, v6, l4, proto) = layout(i);
            assert_eq!(i[..l3], o[..l3], "ethernet header changed");
            assert_eq!(layout(o), (l3, v6, l4, proto));
            let ttl_at = if v6 { l3 + 7 } else { l3 + 8 };
            assert_eq!(o[ttl_at] + 1, i[ttl_at], "ttl not decremented once");
            let mut allowed = Vec::new();
            allowed.push(ttl_at..ttl_at + 1);
            if v6 {
                allowed.push(l3 + 8..l3 + 40);
            } else {
                allowed.extend([l3 + 10..l3 + 12, l3 + 12..l3 + 20]);
            }
            match proto {
                PROTO_TCP => allowed.extend([l4..l4 + 4, l4 + 16..l4 + 18]),
                PROTO_UDP => allowed.extend([l4..l4 + 4, l4 + 6..l4 + 8]),
                _ => allowed.extend([l4 + 2..l4 + 4, l4 + 8..i.len()]),
            }
            if proto == PROTO_UDP && !v6 && i[l4 + 6..l4 + 8] == [0, 0] {
                assert_eq!(o[l4 + 6..l4 + 8], [0, 0], "udp checksum 0 must stay 0");
            }
            for (n, (a, b)) in i.iter().zip(o.iter()).enumerate() {
                if a != b {
                    assert!(allowed.iter().any(|r| r.contains(&n)), "byte {n} changed");
                }
            }
            checked += 1;
        }
        assert!(checked > 50);
    }

    #[test]
    fn services_have_one_backend_or_none() {
        for svc in services() {
            assert!(svc.endpoints.len() <= 1, "{}", svc.name);
        }
    }
}
