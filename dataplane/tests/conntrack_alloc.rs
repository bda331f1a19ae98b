//! After `Conntrack::new`, nothing the table does allocates: inserts,
//! lookups, updates, expiry, evictions and refused inserts on a full table.
//!
//! A counting global allocator counts per thread, so the test harness's own
//! threads cannot disturb the count.

use dataplane::addr::{Addr, Proto, Tuple};
use dataplane::conntrack::{Config, Conntrack, Direction, InsertError, Timeouts};

mod common {
    pub mod counting_alloc;
}

use common::counting_alloc::{count, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn tuple(n: u32, proto: Proto) -> Tuple {
    let src = if n.is_multiple_of(2) {
        Addr::from_v4([198, 18, (n >> 8) as u8, n as u8])
    } else {
        let mut b = [0u8; 16];
        b[0] = 0xfd;
        b[12..].copy_from_slice(&n.to_be_bytes());
        Addr::from_v6(b)
    };
    Tuple {
        src,
        dst: Addr::from_v4([198, 19, 0, 1]),
        sport: 1024 + (n % 60000) as u16,
        dport: 443,
        proto,
    }
}

#[test]
fn no_allocation_after_new() {
    let backend = Addr::from_v4([198, 18, 1, 1]);
    let to = Timeouts {
        tcp_established: 50,
        ..Timeouts::default()
    };
    let mut ct = Conntrack::new(Config {
        capacity: 1024,
        timeouts: to,
        ..Config::default()
    });
    // Warm anything lazily initialised on first use (the hasher's keys are
    // drawn in `new`, but make sure a first lookup costs nothing either).
    let _ = ct.find_original(&tuple(0, Proto::Tcp), 0);

    let (refused, allocs) = count(|| {
        let mut refused = 0u64;
        for round in 0..4u32 {
            let now = round * 100;
            // Established flows until the table is full of them...
            for n in 0..1024 {
                let t = tuple(round * 10_000 + n, Proto::Tcp);
                match ct.insert(&t, backend, 8443, 0x02, now) {
                    Ok(id) => {
                        ct.update(id, Direction::Reply, 0x12, now);
                        ct.update(id, Direction::Original, 0x10, now);
                        let r = ct.reply_tuple(ct.entry(id));
                        assert_eq!(ct.find_reply(&r, now), Some(id));
                    }
                    Err(InsertError::Full) => refused += 1,
                }
            }
            // ...then a SYN/UDP flood that finds no room, lookups that miss,
            // and budgeted expiry once the established flows time out.
            for n in 0..2048u32 {
                let proto = if n.is_multiple_of(2) {
                    Proto::Tcp
                } else {
                    Proto::Udp
                };
                let t = tuple(1_000_000 + round * 10_000 + n, proto);
                if ct.insert(&t, backend, 8443, 0x02, now + 1).is_err() {
                    refused += 1;
                }
                assert!(ct
                    .find_original(&tuple(5_000_000 + n, proto), now + 1)
                    .is_none());
            }
            ct.expire(now + 60, 300);
            // Room now comes from expiry and the bounded scan, then from evicting
            // the unreplied flows that took it.
            for n in 0..1500 {
                let t = tuple(2_000_000 + round * 10_000 + n, Proto::Udp);
                let id = ct
                    .insert(&t, backend, 53, 0, now + 61)
                    .expect("room by expiry or eviction");
                if n.is_multiple_of(3) {
                    ct.remove(id);
                }
            }
            ct.expire(now + 99, 2048);
        }
        refused
    });
    let s = ct.stats();
    // The loop must really have exercised every path it claims to.
    assert!(s.inserted > 4 * 1024, "{s:?}");
    assert!(
        s.expired > 0 && s.evicted_unreplied > 0 && s.removed_closed > 0,
        "{s:?}"
    );
    assert!(s.full > 0 && refused == s.full, "{s:?}");
    assert_eq!(allocs, 0, "allocations after new()");
    // The counter itself works: a Vec does allocate.
    let ((), n) = count(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert!(n > 0);
}
