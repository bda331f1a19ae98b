//! `affinity`: a dual-stack Service with `sessionAffinity: ClientIP`. Every
//! client opens several connections (new source ports each time); all of
//! them must reach the one backend its address hashes to, on every port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::fixture::Step;
use crate::flow::*;
use crate::packet::*;
use crate::rng::Rng;
use crate::scenario_demo::{nat_for, specs, Balanced, Capture};
use crate::yaml::{EndpointDef, EpState, L4Proto, PortDef, ServiceDef};

const SEED: u64 = u64::from_be_bytes(*b"affinity");
/// 2025-03-04 11:00:00 UTC.
const START_US: u64 = 1_741_086_000 * 1_000_000;
const SPAN_US: u64 = 2_000_000;
const TIMEOUT_S: u32 = 10_800;

fn vip4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, 2, 10))
}

fn vip6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x19, 2, 0, 0, 0, 0, 0x10))
}

pub fn services() -> Vec<ServiceDef> {
    let mut endpoints = Vec::new();
    for i in 0..6u8 {
        let pod = format!("session-5d8f7c9b4-{:05x}", u32::from(i) * 65_521 % 0xfffff);
        let node = format!("node-{}", char::from(b'a' + i % 3));
        endpoints.push(EndpointDef {
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 110 + i)),
            state: EpState::Ready,
            node: node.clone(),
            pod: pod.clone(),
        });
        endpoints.push(EndpointDef {
            addr: IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                0x18,
                1,
                0,
                0,
                0,
                0,
                0x110 + u16::from(i),
            )),
            state: EpState::Ready,
            node,
            pod,
        });
    }
    vec![ServiceDef {
        namespace: "shop".into(),
        name: "session".into(),
        cluster_ips: vec![vip4(), vip6()],
        ports: vec![
            PortDef {
                name: "http".into(),
                port: 80,
                proto: L4Proto::Tcp,
                target: 8080,
                target_name: None,
            },
            PortDef {
                name: "game".into(),
                port: 7777,
                proto: L4Proto::Udp,
                target: 7777,
                target_name: None,
            },
        ],
        endpoints,
        affinity_timeout: Some(TIMEOUT_S),
    }]
}

fn clients() -> Vec<IpAddr> {
    let v4 = (1..=10u8).map(|n| IpAddr::V4(Ipv4Addr::new(198, 18, 0, 20 + n)));
    let v6 = (1..=4u16).map(|n| IpAddr::V6(Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 0x200 + n)));
    v4.chain(v6).collect()
}

/// All steps of `affinity`, in capture order.
pub fn steps() -> Vec<Step> {
    let balanced: Vec<Balanced> = specs(&services()).into_iter().map(Balanced::new).collect();
    let mut rng = Rng::new(SEED);
    let mut cap = Capture::default();
    for (ci, client) in clients().into_iter().enumerate() {
        let find = |port: u16| {
            balanced
                .iter()
                .find(|b| {
                    b.spec.key.port == port && b.spec.key.vip.to_ip().is_ipv6() == client.is_ipv6()
                })
                .expect("a spec per family and port")
        };
        let (http, game) = (find(80), find(7777));
        let base_port = 41000 + 100 * ci as u16;
        for k in 0..4 {
            let nat = nat_for(http, client, base_port + k);
            let mut conv = Conv::new(rng.next_u32(), rng.next_u32());
            let mut t = START_US + rng.range(0, SPAN_US);
            let mut f = cap.flow();
            f.fwd(t, nat.forward(conv.client(TCP_SYN, &[])));
            t += rng.range(30, 200);
            f.rev(t, nat.reply(conv.server(TCP_SYN | TCP_ACK, &[])));
            t += rng.range(200, 2000);
            f.fwd(
                t,
                nat.forward(conv.client(
                    TCP_ACK | TCP_PSH,
                    b"GET /cart HTTP/1.1\r\nCookie: none\r\n\r\n",
                )),
            );
            t += rng.range(300, 5000);
            f.rev(
                t,
                nat.reply(conv.server(
                    TCP_ACK | TCP_PSH,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                )),
            );
            t += rng.range(200, 2000);
            f.fwd(t, nat.forward(conv.client(TCP_FIN | TCP_ACK, &[])));
            t += rng.range(30, 200);
            f.rev(t, nat.reply(conv.server(TCP_FIN | TCP_ACK, &[])));
            t += rng.range(200, 2000);
            f.fwd(t, nat.forward(conv.client(TCP_ACK, &[])));
        }
        for k in 0..2 {
            let nat = nat_for(game, client, base_port + 50 + k);
            let mut t = START_US + rng.range(0, SPAN_US);
            let mut f = cap.flow();
            let hello = rng.bytes(24);
            f.fwd(t, nat.forward(L4::Udp(Udp::new(0, 0, hello))));
            t += rng.range(100, 900);
            let state = rng.bytes(64);
            f.rev(t, nat.reply(L4::Udp(Udp::new(0, 0, state))));
        }
    }
    cap.into_steps()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Verdict;
    use crate::verify::check_frame;
    use std::collections::{BTreeMap, BTreeSet};

    /// (client, destination port after DNAT) -> backends seen, read from
    /// the expected output frames themselves.
    fn backends_per_client() -> BTreeMap<(Vec<u8>, u16), BTreeSet<Vec<u8>>> {
        let mut seen: BTreeMap<(Vec<u8>, u16), BTreeSet<Vec<u8>>> = BTreeMap::new();
        for s in steps().iter().filter(|s| s.verdict == Verdict::Forwarded) {
            let o = s.output.as_ref().unwrap();
            let (src, dst, l4) = if o[12..14] == [0x08, 0x00] {
                (o[26..30].to_vec(), o[30..34].to_vec(), 34)
            } else {
                (o[22..38].to_vec(), o[38..54].to_vec(), 54)
            };
            let dport = u16::from_be_bytes([o[l4 + 2], o[l4 + 3]]);
            seen.entry((src, dport)).or_default().insert(dst);
        }
        seen
    }

    #[test]
    fn each_client_sticks_to_one_backend_per_port() {
        let seen = backends_per_client();
        // 14 clients, two ports each.
        assert_eq!(seen.len(), 28);
        for ((client, port), backends) in &seen {
            assert_eq!(
                backends.len(),
                1,
                "{client:?}:{port} spread over {backends:?}"
            );
        }
        let distinct: BTreeSet<_> = seen.values().flatten().collect();
        assert!(
            distinct.len() >= 4,
            "clients should land on several backends: {distinct:?}"
        );
    }

    // Without affinity the same connections would spread out: the fixture
    // really tests the ClientIP hash, not a lucky 5-tuple hash.
    #[test]
    fn five_tuple_hashing_would_spread_them() {
        let mut svc = services();
        svc[0].affinity_timeout = None;
        let plain: Vec<Balanced> = specs(&svc).into_iter().map(Balanced::new).collect();
        let http4 = &plain[0];
        assert_eq!(http4.spec.key.port, 80);
        let client = clients()[0];
        let picks: BTreeSet<_> = (0..4)
            .map(|k| http4.pick(client, 41000 + k).unwrap().addr)
            .collect();
        assert!(picks.len() > 1);
    }

    #[test]
    fn every_frame_has_correct_checksums() {
        for (i, s) in steps().iter().enumerate() {
            assert_eq!(check_frame(&s.input), Ok(()), "input {i}");
            assert_eq!(
                check_frame(s.output.as_ref().unwrap()),
                Ok(()),
                "output {i}"
            );
        }
    }
}
