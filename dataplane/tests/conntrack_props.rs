//! Property test: the conntrack table agrees with a plain map of flows and
//! deadlines on which flows exist, as long as capacity is never reached.

use std::collections::HashMap;

use dataplane::addr::{Addr, Proto, Tuple};
use dataplane::conntrack::{Config, Conntrack, Direction, Timeouts};
use proptest::prelude::*;

/// Every TCP and SCTP state gets the same timeout so the model needs no
/// state machine; UDP and ICMP keep distinct values so `replied` matters.
const TCP_SECS: u32 = 50;
const UDP_UNREPLIED: u32 = 30;
const UDP_ASSURED: u32 = 70;
const ICMP_SECS: u32 = 20;

fn timeouts() -> Timeouts {
    Timeouts {
        tcp_syn_sent: TCP_SECS,
        tcp_syn_recv: TCP_SECS,
        tcp_established: TCP_SECS,
        tcp_fin_wait: TCP_SECS,
        tcp_close_wait: TCP_SECS,
        tcp_last_ack: TCP_SECS,
        tcp_time_wait: TCP_SECS,
        tcp_close: TCP_SECS,
        udp_unreplied: UDP_UNREPLIED,
        udp_assured: UDP_ASSURED,
        icmp: ICMP_SECS,
        sctp_cookie_wait: TCP_SECS,
        sctp_cookie_echoed: TCP_SECS,
        sctp_established: TCP_SECS,
        sctp_shutdown_sent: TCP_SECS,
        sctp_shutdown_recd: TCP_SECS,
        sctp_shutdown_ack_sent: TCP_SECS,
        sctp_closed: TCP_SECS,
    }
}

fn model_timeout(proto: Proto, replied: bool) -> u32 {
    match proto {
        Proto::Tcp | Proto::Sctp => TCP_SECS,
        Proto::Udp if replied => UDP_ASSURED,
        Proto::Udp => UDP_UNREPLIED,
        Proto::Icmp | Proto::Icmpv6 => ICMP_SECS,
    }
}

struct Flow {
    original: Tuple,
    backend: Addr,
    backend_port: u16,
}

impl Flow {
    fn reply(&self) -> Tuple {
        Tuple {
            src: self.backend,
            dst: self.original.src,
            sport: self.backend_port,
            dport: self.original.sport,
            proto: self.original.proto,
        }
    }
}

const POOL: usize = 12;

/// Flows that share clients, VIPs and backends in both families, with
/// distinct reply tuples (see the table's documented reply-collision limit).
fn pool() -> Vec<Flow> {
    (0..POOL)
        .map(|k| {
            let v6 = k % 2 == 1;
            // Each protocol in both families (v6 = odd k).
            let proto = [Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Sctp][(k / 2) % 4];
            let proto = if v6 && proto == Proto::Icmp {
                Proto::Icmpv6
            } else {
                proto
            };
            let addr = |net: u8, host: u8| {
                if v6 {
                    let mut b = [0u8; 16];
                    b[0] = 0xfd;
                    b[13] = net;
                    b[15] = host;
                    Addr::from_v6(b)
                } else {
                    Addr::from_v4([198, 18, net, host])
                }
            };
            let client = addr(0, (k % 4) as u8);
            let port = 40000 + k as u16;
            let (sport, dport) = if matches!(proto, Proto::Icmp | Proto::Icmpv6) {
                (port, port)
            } else {
                (port, 80)
            };
            Flow {
                original: Tuple {
                    src: client,
                    dst: addr(0x80, 1),
                    sport,
                    dport,
                    proto,
                },
                backend: addr(1, (k % 3) as u8),
                backend_port: if dport == 80 { 8080 } else { port },
            }
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    Insert(usize, u8),
    FindOriginal(usize),
    FindReply(usize),
    Update(usize, bool, u8),
    Remove(usize),
    Advance(u32),
    Expire(usize),
}

fn flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(0x02),
        Just(0x12),
        Just(0x10),
        Just(0x11),
        Just(0x04),
        any::<u8>()
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..POOL, flags()).prop_map(|(k, f)| Op::Insert(k, f)),
        2 => (0..POOL).prop_map(Op::FindOriginal),
        2 => (0..POOL).prop_map(Op::FindReply),
        3 => (0..POOL, any::<bool>(), flags()).prop_map(|(k, r, f)| Op::Update(k, r, f)),
        1 => (0..POOL).prop_map(Op::Remove),
        2 => (0u32..40).prop_map(Op::Advance),
        1 => (0usize..24).prop_map(Op::Expire),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Model {
    deadline: u32,
    replied: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn table_agrees_with_a_map_of_deadlines(ops in prop::collection::vec(op(), 1..300)) {
        let flows = pool();
        let capacity = 16;
        let mut ct = Conntrack::new(Config { capacity, timeouts: timeouts(), ..Config::default() });
        let mut model: HashMap<usize, Model> = HashMap::new();
        let mut now = 0u32;
        let live = |model: &HashMap<usize, Model>, k: usize, now: u32| {
            model.get(&k).copied().filter(|m| now < m.deadline)
        };

        for op in ops {
            match op {
                Op::Insert(k, f) => {
                    let f_ = &flows[k];
                    let before = live(&model, k, now);
                    let id = ct
                        .insert(&f_.original, f_.backend, f_.backend_port, f, now)
                        .expect("capacity is never reached");
                    let replied = before.is_some_and(|m| m.replied);
                    // A live flow is updated, not replaced.
                    model.insert(k, Model {
                        deadline: now + model_timeout(f_.original.proto, replied),
                        replied,
                    });
                    let e = ct.entry(id);
                    prop_assert_eq!(e.original, f_.original);
                    prop_assert_eq!(e.backend, f_.backend);
                    prop_assert_eq!(e.deadline(), model[&k].deadline);
                }
                Op::FindOriginal(k) | Op::FindReply(k) => {
                    let found = match op {
                        Op::FindOriginal(_) => ct.find_original(&flows[k].original, now),
                        _ => ct.find_reply(&flows[k].reply(), now),
                    };
                    let want = live(&model, k, now);
                    prop_assert_eq!(found.is_some(), want.is_some(), "flow {} at {}", k, now);
                    match (found, want) {
                        (Some(id), Some(m)) => {
                            prop_assert_eq!(ct.entry(id).original, flows[k].original);
                            prop_assert_eq!(ct.entry(id).deadline(), m.deadline);
                        }
                        _ => {
                            model.remove(&k);
                        }
                    }
                }
                Op::Update(k, reply, f) => {
                    let found = ct.find_original(&flows[k].original, now);
                    prop_assert_eq!(found.is_some(), live(&model, k, now).is_some());
                    let Some(id) = found else {
                        model.remove(&k);
                        continue;
                    };
                    let dir = if reply { Direction::Reply } else { Direction::Original };
                    ct.update(id, dir, f, now);
                    let m = model.get_mut(&k).unwrap();
                    m.replied |= reply;
                    m.deadline = now + model_timeout(flows[k].original.proto, m.replied);
                    let e = ct.entry(id);
                    prop_assert_eq!(e.deadline(), m.deadline);
                    if !matches!(flows[k].original.proto, Proto::Tcp | Proto::Sctp) {
                        // TCP and SCTP may legitimately forget replies on port reuse.
                        prop_assert_eq!(e.replied(), m.replied);
                    }
                }
                Op::Remove(k) => {
                    if let Some(id) = ct.find_original(&flows[k].original, now) {
                        ct.remove(id);
                    }
                    model.remove(&k);
                    prop_assert!(ct.find_original(&flows[k].original, now).is_none());
                    prop_assert!(ct.find_reply(&flows[k].reply(), now).is_none());
                }
                Op::Advance(dt) => now += dt,
                Op::Expire(budget) => {
                    let freed = ct.expire(now, budget);
                    prop_assert!(freed <= budget);
                }
            }
            let live_count = (0..POOL).filter(|&k| live(&model, k, now).is_some()).count();
            prop_assert!(live_count <= ct.len() && ct.len() <= model.len(),
                "live {} table {} model {}", live_count, ct.len(), model.len());
        }

        // One full pass leaves exactly the live flows.
        ct.expire(now, capacity as usize);
        let live_count = (0..POOL).filter(|&k| live(&model, k, now).is_some()).count();
        prop_assert_eq!(ct.len(), live_count);
        prop_assert_eq!(ct.iter().count(), live_count);
        let s = ct.stats();
        prop_assert_eq!((s.evicted_unreplied, s.full), (0, 0));
        prop_assert_eq!(s.inserted - s.removed_closed - s.expired, live_count as u64);
    }
}
