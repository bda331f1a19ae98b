//! Unit tests of the table through its public API.

use super::tcp::{ACK, FIN, RST, SYN};
use super::*;
use crate::addr::Proto;

fn v4(c: u8, d: u8) -> Addr {
    Addr::from_v4([198, 18, c, d])
}

fn vip4(d: u8) -> Addr {
    Addr::from_v4([198, 19, 0, d])
}

fn v6(last: u16) -> Addr {
    let mut b = [0u8; 16];
    b[0] = 0xfd;
    b[14..].copy_from_slice(&last.to_be_bytes());
    Addr::from_v6(b)
}

/// Client `n` (distinct address and port per n) to VIP 198.19.0.1:port.
fn client_tuple(n: u32, proto: Proto, vport: u16) -> Tuple {
    Tuple {
        src: Addr::from_v4([198, 18, 0x80 | (n >> 16) as u8 & 0x7f, (n >> 8) as u8]),
        dst: vip4(1),
        sport: 1024 + (n & 0xff) as u16,
        dport: vport,
        proto,
    }
}

fn reply_of(orig: &Tuple, backend: Addr, bport: u16) -> Tuple {
    Tuple {
        src: backend,
        dst: orig.src,
        sport: bport,
        dport: orig.sport,
        proto: orig.proto,
    }
}

fn table(capacity: u32) -> Conntrack {
    Conntrack::new(Config {
        capacity,
        timeouts: Timeouts::default(),
        ..Config::default()
    })
}

/// A full handshake: SYN, SYN+ACK, ACK. Returns the flow, now assured.
fn establish(ct: &mut Conntrack, t: &Tuple, backend: Addr, now: u32) -> FlowId {
    let id = ct.insert(t, backend, 8080, SYN, now).unwrap();
    ct.update(id, Direction::Reply, SYN | ACK, now);
    ct.update(id, Direction::Original, ACK, now);
    assert_eq!(ct.entry(id).tcp(), Some(TcpState::Established));
    assert!(ct.entry(id).assured());
    id
}

#[test]
fn entry_is_one_cache_line() {
    assert_eq!(std::mem::size_of::<Entry>(), 64);
    assert_eq!(std::mem::align_of::<Entry>(), 64);
}

#[test]
fn both_directions_find_the_same_entry_v4_and_v6() {
    let mut ct = table(16);
    let t4 = Tuple {
        src: v4(0, 5),
        dst: vip4(1),
        sport: 40000,
        dport: 80,
        proto: Proto::Tcp,
    };
    let t6 = Tuple {
        src: v6(5),
        dst: v6(0x100),
        sport: 40000,
        dport: 80,
        proto: Proto::Tcp,
    };
    let id4 = ct.insert(&t4, v4(1, 7), 8080, SYN, 0).unwrap();
    let id6 = ct.insert(&t6, v6(0x200), 8080, SYN, 0).unwrap();
    assert_ne!(id4, id6);
    assert_eq!(ct.find_original(&t4, 1), Some(id4));
    assert_eq!(ct.find_reply(&reply_of(&t4, v4(1, 7), 8080), 1), Some(id4));
    assert_eq!(ct.find_original(&t6, 1), Some(id6));
    assert_eq!(ct.find_reply(&reply_of(&t6, v6(0x200), 8080), 1), Some(id6));
    assert_eq!(ct.reply_tuple(ct.entry(id4)), reply_of(&t4, v4(1, 7), 8080));
    assert_eq!(ct.entry(id6).original, t6);
    // A tuple is only found in the direction it was stored for.
    assert_eq!(ct.find_reply(&t4, 1), None);
    assert_eq!(ct.find_original(&reply_of(&t4, v4(1, 7), 8080), 1), None);
    // Near misses: other backend port, other client port, other protocol.
    assert_eq!(ct.find_reply(&reply_of(&t4, v4(1, 7), 8081), 1), None);
    assert_eq!(ct.find_original(&Tuple { sport: 40001, ..t4 }, 1), None);
    assert_eq!(
        ct.find_original(
            &Tuple {
                proto: Proto::Udp,
                ..t4
            },
            1
        ),
        None
    );
    assert_eq!(ct.len(), 2);
}

#[test]
fn tcp_transitions_set_state_and_timeout() {
    let to = Timeouts::default();
    let mut ct = table(8);
    let t = client_tuple(1, Proto::Tcp, 80);
    let id = ct.insert(&t, v4(1, 1), 8080, SYN, 100).unwrap();
    let check = |ct: &Conntrack, state: TcpState, secs: u32, now: u32| {
        assert_eq!(ct.entry(id).tcp(), Some(state));
        assert_eq!(ct.entry(id).deadline(), now + secs, "{state:?}");
    };
    check(&ct, TcpState::SynSent, to.tcp_syn_sent, 100);
    assert_eq!(to.tcp_syn_sent, 120);
    let steps: [(Direction, u8, TcpState, u32); 7] = [
        (Direction::Reply, SYN | ACK, TcpState::SynRecv, 60),
        (Direction::Original, ACK, TcpState::Established, 432_000),
        (Direction::Original, ACK, TcpState::Established, 432_000),
        (Direction::Reply, FIN | ACK, TcpState::FinWait, 120),
        (Direction::Original, ACK, TcpState::CloseWait, 60),
        (Direction::Original, FIN | ACK, TcpState::LastAck, 30),
        (Direction::Reply, ACK, TcpState::TimeWait, 120),
    ];
    for (k, (dir, flags, state, secs)) in steps.into_iter().enumerate() {
        let now = 101 + k as u32;
        ct.update(id, dir, flags, now);
        check(&ct, state, secs, now);
    }
    ct.update(id, Direction::Original, RST, 200);
    check(&ct, TcpState::Close, 10, 200);
    assert!(ct.entry(id).replied());
    // The Close timeout is honoured by lookups.
    assert_eq!(ct.find_original(&t, 209), Some(id));
    assert_eq!(ct.find_original(&t, 210), None);
    assert_eq!(ct.len(), 0);
    assert_eq!(ct.stats().expired, 1);
}

#[test]
fn handshake_assures_only_once_established_with_a_reply() {
    let mut ct = table(8);
    let t = client_tuple(1, Proto::Tcp, 80);
    let id = ct.insert(&t, v4(1, 1), 8080, SYN, 0).unwrap();
    assert!(!ct.entry(id).assured() && !ct.entry(id).replied());
    ct.update(id, Direction::Reply, SYN | ACK, 0);
    // The backend answered, but a spoofed client never completes: embryonic.
    assert!(ct.entry(id).replied() && !ct.entry(id).assured());
    ct.update(id, Direction::Original, ACK, 0);
    assert!(ct.entry(id).assured());
}

#[test]
fn loose_pickup_is_established_but_not_assured_until_a_reply() {
    let mut ct = table(8);
    let t = client_tuple(2, Proto::Tcp, 80);
    let id = ct.insert(&t, v4(1, 1), 8080, ACK, 0).unwrap();
    assert_eq!(ct.entry(id).tcp(), Some(TcpState::Established));
    assert_eq!(ct.entry(id).deadline(), 432_000);
    assert!(!ct.entry(id).assured());
    ct.update(id, Direction::Reply, ACK, 5);
    assert!(ct.entry(id).assured());
}

#[test]
fn syn_after_time_wait_reopens_as_a_new_unassured_connection() {
    let mut ct = table(8);
    let t = client_tuple(3, Proto::Tcp, 80);
    let id = establish(&mut ct, &t, v4(1, 1), 0);
    ct.update(id, Direction::Original, FIN | ACK, 1);
    ct.update(id, Direction::Reply, FIN | ACK, 1);
    ct.update(id, Direction::Original, ACK, 1);
    assert_eq!(ct.entry(id).tcp(), Some(TcpState::TimeWait));
    assert!(!ct.entry(id).assured(), "closing flows are evictable");
    // Port reuse: the client's new SYN finds the old entry and reopens it.
    assert_eq!(ct.find_original(&t, 5), Some(id));
    ct.update(id, Direction::Original, SYN, 5);
    let e = ct.entry(id);
    assert_eq!(e.tcp(), Some(TcpState::SynSent));
    assert!(!e.replied() && !e.assured());
    assert_eq!(e.deadline(), 125);
    assert_eq!(e.backend, v4(1, 1));
}

#[test]
fn udp_unreplied_then_assured_timeout() {
    let mut ct = table(8);
    let t = client_tuple(4, Proto::Udp, 53);
    let id = ct.insert(&t, v4(1, 2), 5353, 0xff, 1000).unwrap();
    let e = ct.entry(id);
    assert_eq!((e.tcp(), e.replied(), e.deadline()), (None, false, 1030));
    ct.update(id, Direction::Original, 0, 1010);
    assert_eq!(ct.entry(id).deadline(), 1040);
    assert!(!ct.entry(id).assured());
    ct.update(id, Direction::Reply, 0, 1020);
    assert!(ct.entry(id).replied() && ct.entry(id).assured());
    assert_eq!(ct.entry(id).deadline(), 1140);
    assert_eq!(ct.find_reply(&reply_of(&t, v4(1, 2), 5353), 1139), Some(id));
    assert_eq!(ct.find_reply(&reply_of(&t, v4(1, 2), 5353), 1140), None);

    // Unreplied flows die after 30 s.
    let t2 = client_tuple(5, Proto::Udp, 53);
    ct.insert(&t2, v4(1, 2), 5353, 0, 0).unwrap();
    assert!(ct.find_original(&t2, 29).is_some());
    assert!(ct.find_original(&t2, 30).is_none());
}

#[test]
fn icmp_echo_is_keyed_by_identifier() {
    let mut ct = table(8);
    for proto in [Proto::Icmp, Proto::Icmpv6] {
        let (client, vip, backend) = if proto == Proto::Icmp {
            (v4(0, 9), vip4(2), v4(1, 9))
        } else {
            (v6(9), v6(0x102), v6(0x209))
        };
        let echo = |id: u16| Tuple {
            src: client,
            dst: vip,
            sport: id,
            dport: id,
            proto,
        };
        let a = ct.insert(&echo(0x1234), backend, 0x1234, 0, 0).unwrap();
        let b = ct.insert(&echo(0x4321), backend, 0x4321, 0, 0).unwrap();
        assert_ne!(a, b);
        let reply = Tuple {
            src: backend,
            dst: client,
            sport: 0x1234,
            dport: 0x1234,
            proto,
        };
        assert_eq!(ct.find_reply(&reply, 1), Some(a));
        assert_eq!(ct.reply_tuple(ct.entry(a)), reply);
        assert_eq!(ct.entry(a).deadline(), 30);
        ct.update(a, Direction::Reply, 0, 10);
        assert_eq!(ct.entry(a).deadline(), 40);
        assert_eq!(ct.find_original(&echo(0x4321), 30), None);
        assert_eq!(ct.find_original(&echo(0x1234), 39), Some(a));
    }
}

#[test]
fn lookup_after_deadline_misses_and_reclaims() {
    let mut ct = table(4);
    let t = client_tuple(6, Proto::Udp, 53);
    let id = ct.insert(&t, v4(1, 3), 53, 0, 0).unwrap();
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.find_reply(&reply_of(&t, v4(1, 3), 53), 30), None);
    assert_eq!(ct.len(), 0);
    assert_eq!(ct.stats().expired, 1);
    assert_eq!(ct.find_original(&t, 30), None);
    // The slot is reusable and the old flow does not come back.
    let id2 = ct.insert(&t, v4(1, 4), 53, 0, 40).unwrap();
    assert_eq!(ct.entry(id2).backend, v4(1, 4));
    let _ = id;
    assert_eq!(ct.stats().inserted, 2);
}

#[test]
fn expire_honours_budget_and_progresses() {
    let mut ct = table(100);
    for n in 0..100 {
        ct.insert(&client_tuple(n, Proto::Udp, 53), v4(1, 1), 53, 0, 0)
            .unwrap();
    }
    // Nothing is due yet: a full pass frees nothing.
    assert_eq!(ct.expire(29, 1000), 0);
    let mut total = 0;
    let mut calls = 0;
    loop {
        let freed = ct.expire(30, 7);
        assert!(freed <= 7);
        if freed == 0 {
            break;
        }
        total += freed;
        calls += 1;
        assert_eq!(ct.len(), 100 - total);
    }
    assert_eq!(total, 100);
    assert_eq!(calls, 15); // ceil(100 / 7): every call makes progress
    assert!(ct.is_empty());
    assert_eq!(ct.stats().expired, 100);
}

#[test]
fn expire_skips_live_flows() {
    let mut ct = table(10);
    let ids: Vec<FlowId> = (0..10)
        .map(|n| {
            ct.insert(&client_tuple(n, Proto::Udp, 53), v4(1, 1), 53, 0, 0)
                .unwrap()
        })
        .collect();
    for id in ids.iter().step_by(2) {
        ct.update(*id, Direction::Original, 0, 20); // deadline 50
    }
    assert_eq!(ct.expire(40, 10), 5);
    assert_eq!(ct.len(), 5);
    for (k, n) in (0..10).enumerate() {
        let found = ct
            .find_original(&client_tuple(n, Proto::Udp, 53), 40)
            .is_some();
        assert_eq!(found, k.is_multiple_of(2));
    }
}

#[test]
fn syn_flood_never_evicts_established_flows() {
    let cap = 64;
    let mut ct = table(cap);
    let established: Vec<(Tuple, FlowId)> = (0..48)
        .map(|n| {
            let t = client_tuple(n, Proto::Tcp, 443);
            (t, establish(&mut ct, &t, v4(1, (n % 4) as u8), 0))
        })
        .collect();
    // 20 000 spoofed SYNs, a third answered by the backend (SYN_RECV).
    for n in 0..20_000u32 {
        let t = client_tuple(1000 + n, Proto::Tcp, 443);
        let id = ct.insert(&t, v4(1, 9), 8443, SYN, 1).expect("flood insert");
        if n.is_multiple_of(3) {
            ct.update(id, Direction::Reply, SYN | ACK, 1);
        }
        assert_eq!(ct.len(), ct.capacity().min(48 + n as usize + 1));
    }
    for (t, id) in &established {
        assert_eq!(ct.find_original(t, 2), Some(*id));
        let e = ct.entry(*id);
        assert_eq!(e.tcp(), Some(TcpState::Established));
        assert_eq!(ct.find_reply(&ct.reply_tuple(e), 2), Some(*id));
    }
    let s = ct.stats();
    assert_eq!(s.inserted, 48 + 20_000);
    assert_eq!(s.evicted_unreplied, 20_000 - (cap as u64 - 48));
    assert_eq!(s.full, 0);
    // The newest flood entries are the ones kept (oldest evicted first).
    for n in 20_000 - 16..20_000 {
        assert!(ct
            .find_original(&client_tuple(1000 + n, Proto::Tcp, 443), 2)
            .is_some());
    }
    assert!(ct
        .find_original(&client_tuple(1000, Proto::Tcp, 443), 2)
        .is_none());
}

#[test]
fn eviction_takes_least_recently_seen_unassured_flow() {
    let mut ct = table(3);
    let ts: Vec<Tuple> = (0..4).map(|n| client_tuple(n, Proto::Udp, 53)).collect();
    let a = ct.insert(&ts[0], v4(1, 1), 53, 0, 0).unwrap();
    ct.insert(&ts[1], v4(1, 1), 53, 0, 0).unwrap();
    ct.insert(&ts[2], v4(1, 1), 53, 0, 0).unwrap();
    // The oldest flow speaks again, so the second becomes the oldest.
    ct.update(a, Direction::Original, 0, 1);
    ct.insert(&ts[3], v4(1, 1), 53, 0, 2).unwrap();
    assert!(ct.find_original(&ts[0], 2).is_some());
    assert!(ct.find_original(&ts[1], 2).is_none());
    assert!(ct.find_original(&ts[2], 2).is_some());
    assert!(ct.find_original(&ts[3], 2).is_some());
    assert_eq!(ct.stats().evicted_unreplied, 1);
}

#[test]
fn full_of_established_refuses_and_counts() {
    let mut ct = table(16);
    let ids: Vec<FlowId> = (0..16)
        .map(|n| establish(&mut ct, &client_tuple(n, Proto::Tcp, 80), v4(1, 1), 0))
        .collect();
    for n in 0..5 {
        let r = ct.insert(&client_tuple(100 + n, Proto::Tcp, 80), v4(1, 1), 80, SYN, 1);
        assert_eq!(r, Err(InsertError::Full));
    }
    assert_eq!(ct.stats().full, 5);
    assert_eq!(ct.stats().evicted_unreplied, 0);
    assert_eq!(ct.len(), 16);
    // A refused UDP flow is no different.
    let r = ct.insert(&client_tuple(200, Proto::Udp, 53), v4(1, 1), 53, 0, 1);
    assert_eq!(r, Err(InsertError::Full));

    // Removing one makes room for exactly one.
    ct.remove(ids[3]);
    ct.remove(ids[3]); // stale id: no effect
    assert_eq!(ct.stats().removed_closed, 1);
    assert_eq!(ct.len(), 15);
    assert!(ct
        .find_original(&client_tuple(3, Proto::Tcp, 80), 1)
        .is_none());
    let id = ct
        .insert(&client_tuple(300, Proto::Tcp, 80), v4(1, 1), 80, SYN, 1)
        .unwrap();
    assert_eq!(id, ids[3]);
    assert_eq!(
        ct.insert(&client_tuple(301, Proto::Tcp, 80), v4(1, 1), 80, SYN, 1),
        Ok(id),
        "the new embryonic flow is evictable"
    );
    assert_eq!(ct.stats().evicted_unreplied, 1);
}

#[test]
fn full_table_reclaims_expired_assured_flows_in_a_bounded_scan() {
    let to = Timeouts {
        tcp_established: 100,
        ..Timeouts::default()
    };
    let mut ct = Conntrack::new(Config {
        capacity: 8,
        timeouts: to,
        ..Config::default()
    });
    for n in 0..8 {
        establish(&mut ct, &client_tuple(n, Proto::Tcp, 80), v4(1, 1), 0);
    }
    let new = client_tuple(50, Proto::Tcp, 80);
    assert_eq!(
        ct.insert(&new, v4(1, 1), 80, SYN, 99),
        Err(InsertError::Full)
    );
    let id = ct.insert(&new, v4(1, 1), 80, SYN, 100).unwrap();
    assert_eq!(ct.find_original(&new, 100), Some(id));
    assert_eq!(ct.stats().expired, 1);
    assert_eq!(ct.len(), 8);
}

#[test]
fn closed_connections_give_way_under_pressure() {
    let mut ct = table(4);
    let ids: Vec<FlowId> = (0..4)
        .map(|n| establish(&mut ct, &client_tuple(n, Proto::Tcp, 80), v4(1, 1), 0))
        .collect();
    ct.update(ids[2], Direction::Reply, RST, 1);
    let t = client_tuple(9, Proto::Tcp, 80);
    let id = ct.insert(&t, v4(1, 1), 80, SYN, 2).unwrap();
    assert_eq!(id, ids[2]);
    for n in [0, 1, 3] {
        assert!(ct
            .find_original(&client_tuple(n, Proto::Tcp, 80), 2)
            .is_some());
    }
}

#[test]
fn ack_flood_pickups_are_evictable() {
    let mut ct = table(8);
    let keep = establish(&mut ct, &client_tuple(0, Proto::Tcp, 80), v4(1, 1), 0);
    for n in 1..1000 {
        ct.insert(&client_tuple(n, Proto::Tcp, 80), v4(1, 1), 80, ACK, 1)
            .expect("mid-stream pickups must not fill the table for good");
    }
    assert_eq!(
        ct.find_original(&client_tuple(0, Proto::Tcp, 80), 1),
        Some(keep)
    );
    assert_eq!(ct.stats().full, 0);
}

#[test]
fn inserting_a_live_flow_again_keeps_it_and_its_backend() {
    let mut ct = table(4);
    let t = client_tuple(7, Proto::Tcp, 80);
    let id = ct.insert(&t, v4(1, 1), 8080, SYN, 0).unwrap();
    ct.update(id, Direction::Reply, SYN | ACK, 0);
    let again = ct.insert(&t, v4(1, 2), 9090, ACK, 1).unwrap();
    assert_eq!(again, id);
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.stats().inserted, 1);
    let e = ct.entry(id);
    assert_eq!((e.backend, e.backend_port), (v4(1, 1), 8080));
    assert_eq!(e.tcp(), Some(TcpState::Established));
    // Its reply key is still the original backend's.
    assert_eq!(ct.find_reply(&reply_of(&t, v4(1, 2), 9090), 1), None);
    assert_eq!(ct.find_reply(&reply_of(&t, v4(1, 1), 8080), 1), Some(id));
}

#[test]
fn iter_lists_live_flows() {
    let mut ct = table(8);
    let a = client_tuple(1, Proto::Udp, 53);
    let b = client_tuple(2, Proto::Tcp, 80);
    ct.insert(&a, v4(1, 1), 53, 0, 0).unwrap();
    establish(&mut ct, &b, v4(1, 2), 0);
    let mut seen: Vec<Tuple> = ct.iter().map(|e| e.original).collect();
    seen.sort_by_key(|t| t.proto);
    assert_eq!(seen, [b, a]);
    // Past the UDP timeout the table's clock hides it even before expiry.
    ct.expire(31, 0);
    assert_eq!(ct.iter().map(|e| e.original).collect::<Vec<_>>(), [b]);
}

#[test]
fn capacity_is_clamped_and_exact() {
    assert_eq!(table(0).capacity(), 1);
    assert_eq!(table(1000).capacity(), 1000);
    let mut ct = table(1);
    let a = ct.insert(&client_tuple(1, Proto::Udp, 53), v4(1, 1), 53, 0, 0);
    let b = ct.insert(&client_tuple(2, Proto::Udp, 53), v4(1, 1), 53, 0, 0);
    assert_eq!(a, b, "the only slot is reused by eviction");
    assert_eq!(ct.len(), 1);
}
