//! Proves that holding frames for an unresolved neighbour allocates
//! nothing per packet: the demo capture runs through a lone worker that
//! knows no neighbour (frames are held, the excess dropped), then waits
//! until the held frames expire, then holds more and sends them once a
//! new neighbour snapshot knows every address, all under a counting
//! global allocator. Setup and publishing the snapshot allocate; the
//! rounds must not.

use std::sync::Arc;

use dataplane::addr::Addr;
use dataplane::generation::Tables;
use dataplane::io::memory::{Capture, MemoryIo};
use dataplane::io::pcap::read_capture;
use dataplane::neigh::netlink::{IfAddr, Link, Neigh};
use dataplane::neigh::{NeighTable, Neighbours};
use dataplane::service::ServiceSpec;
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::verdict::DropReason;
use dataplane::worker::pending::HOLD_NS;
use dataplane::worker::{Port, Worker, WorkerConfig};

mod common {
    pub mod counting_alloc;
}

use common::counting_alloc::{count, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One interface knowing the MACs of `addrs`.
fn table(addrs: &[Addr]) -> NeighTable {
    let links = [Link {
        ifindex: 3,
        name: "p0".into(),
        mac: Some([0x02, 0, 0, 0, 0xaa, 0x01]),
    }];
    let nets = [IfAddr {
        ifindex: 3,
        addr: Addr::from_v4([198, 18, 0, 1]),
        prefix: 15,
    }];
    let neighs: Vec<Neigh> = addrs
        .iter()
        .map(|a| Neigh {
            ifindex: 3,
            addr: *a,
            mac: [0x02, 0, 0, 0, 0, 0x0a],
        })
        .collect();
    NeighTable::build(&["p0".into()], &links, &nets, &neighs).unwrap()
}

/// Every IPv4 / IPv6 address of the capture (untagged frames) and every
/// backend: whatever a transmitted frame can be addressed to.
fn every_address(capture: &Capture, specs: &[ServiceSpec]) -> Vec<Addr> {
    let mut v: Vec<Addr> = specs
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| b.addr))
        .collect();
    for i in 0..capture.len() {
        let (f, _) = capture.packet(i);
        match f.get(12..14) {
            Some([0x08, 0x00]) if f.len() >= 34 => {
                v.push(Addr::from_v4(f[26..30].try_into().unwrap()));
                v.push(Addr::from_v4(f[30..34].try_into().unwrap()));
            }
            Some([0x86, 0xdd]) if f.len() >= 54 => {
                v.push(Addr::from_v6(f[22..38].try_into().unwrap()));
                v.push(Addr::from_v6(f[38..54].try_into().unwrap()));
            }
            _ => {}
        }
    }
    v.sort();
    v.dedup();
    v
}

#[test]
fn holding_and_releasing_allocate_nothing() {
    let capture = read_capture(&fixtures::fixtures_dir().join("demo.pcap")).unwrap();
    let specs = fixtures::scenario_demo::specs(&fixtures::scenario_demo::services());
    let everyone = every_address(&capture, &specs);
    let tables = Tables::new(ServiceTable::from_specs(specs, TableConfig::default()));
    let neigh = Arc::new(Neighbours::fixed(table(&[])));
    let order: Vec<u32> = (0..capture.len() as u32).collect();
    let port = Port {
        io: MemoryIo::new(&capture, &order, 8),
        ifindex: 3,
    };
    let cfg = WorkerConfig {
        burst: 32,
        ..WorkerConfig::default()
    };
    let mut w = Worker::new(vec![port], &cfg, tables, Arc::clone(&neigh)).unwrap();
    // Warm-up: a first round lets arc-swap register this thread.
    let mut now = 1_000_000_000u64;
    w.poll_once(now);

    let ((), held_allocs) = count(|| {
        for _ in 0..16 {
            now += 100_000;
            w.poll_once(now);
        }
    });
    assert!(w.held() > 0, "nothing held");
    let held = w.held() as u64;

    // Everything held so far waits too long.
    let ((), expiry_allocs) = count(|| {
        now += HOLD_NS;
        w.poll_once(now);
    });
    let c = w.counters().pipeline;
    assert!(c.dropped(DropReason::NoNeighbour) >= held, "{c:?}");

    let ((), more_allocs) = count(|| {
        for _ in 0..4 {
            now += 100_000;
            w.poll_once(now);
        }
    });
    let waiting = w.held();
    assert!(waiting > 0, "nothing held before the neighbours appear");

    neigh.publish(table(&everyone));
    let ((), release_allocs) = count(|| {
        let mut idle = 0;
        while idle < 2 {
            now += 100_000;
            idle = if w.poll_once(now) == 0 { idle + 1 } else { 0 };
        }
    });
    assert_eq!(w.held(), 0);
    let c = w.counters();
    assert!(c.neigh_held_sent >= waiting as u64, "{c:?}");
    let p = &c.pipeline;
    assert_eq!(
        p.forwarded + p.reversed + p.rejected + p.passed + p.dropped_total(),
        p.packets,
        "{p:?}"
    );
    assert_eq!(
        (held_allocs, expiry_allocs, more_allocs, release_allocs),
        (0, 0, 0, 0),
        "allocations while holding, expiring, holding, releasing"
    );
}
