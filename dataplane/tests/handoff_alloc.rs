//! Proves the multi-worker path allocates nothing per packet: the demo
//! capture split between two workers of one group (as fanout would split
//! it, without regard to flows) runs rx -> hand-off to the owner -> inbox
//! drain -> pipeline -> tx under a counting global allocator. Setup
//! allocates; the rounds must not.

use std::sync::Arc;

use dataplane::addr::Addr;
use dataplane::generation::Tables;
use dataplane::io::pcap::read_capture;
use dataplane::neigh::netlink::{IfAddr, Link};
use dataplane::neigh::{NeighTable, Neighbours};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::worker::{WorkerConfig, WorkerCounters};

mod common {
    pub mod counting_alloc;
    pub mod memory_group;
}

use common::counting_alloc::{count, Counting};
use common::memory_group::{memory_group, poll_until_idle};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One interface, no neighbours known: transmitted frames end as counted
/// no_neighbour drops (reported to the miss queue, which does not allocate).
fn neighbours() -> Arc<Neighbours> {
    let links = [Link {
        ifindex: 3,
        name: "p0".into(),
        mac: Some([0x02, 0, 0, 0, 0xaa, 0x01]),
    }];
    let addrs = [IfAddr {
        ifindex: 3,
        addr: Addr::from_v4([198, 18, 0, 1]),
        prefix: 15,
    }];
    let t = NeighTable::build(&["p0".into()], &links, &addrs, &[]).unwrap();
    Arc::new(Neighbours::fixed(t))
}

#[test]
fn handoff_rounds_allocate_nothing() {
    let capture = read_capture(&fixtures::fixtures_dir().join("demo.pcap")).unwrap();
    let specs = fixtures::scenario_demo::specs(&fixtures::scenario_demo::services());
    let tables = Tables::new(ServiceTable::from_specs(specs, TableConfig::default()));
    let orders: [Vec<u32>; 2] =
        std::array::from_fn(|w| (w as u32..capture.len() as u32).step_by(2).collect());
    let neigh = neighbours();
    let cfg = WorkerConfig {
        pipeline: dataplane::pipeline::PipelineConfig {
            conntrack: dataplane::conntrack::Config {
                capacity: 1 << 16,
                ..Default::default()
            },
            ..Default::default()
        },
        ..WorkerConfig::default()
    };
    let mut workers = memory_group(&capture, &orders, 4, &cfg, &tables, &neigh);
    // Warm-up: a first round lets arc-swap register this thread.
    let mut now = 1_000_000_000u64;
    for w in &mut workers {
        w.poll_once(now);
    }

    let ((), allocs) = count(|| poll_until_idle(&mut workers, &mut now, 100_000));

    let each: Vec<WorkerCounters> = workers.iter().map(|w| w.counters()).collect();
    let t = WorkerCounters::total(&each);
    assert_eq!(
        t.pipeline.packets + t.handoff_dropped(),
        4 * capture.len() as u64
    );
    assert!(t.handoff_out > capture.len() as u64, "{t:?}");
    assert_eq!(t.handoff_in, t.handoff_out, "{t:?}");
    let p = &t.pipeline;
    // No neighbour is known: every frame the pipeline would transmit ends
    // as a no_neighbour drop, counted once (not also as forwarded).
    assert!(
        p.dropped(dataplane::verdict::DropReason::NoNeighbour) > 0 && p.flows > 0 && p.passed > 0,
        "{p:?}"
    );
    assert_eq!(
        p.forwarded + p.reversed + p.rejected + p.passed + p.dropped_total(),
        p.packets,
        "{p:?}"
    );
    assert_eq!(allocs, 0, "allocations on the handoff path");
}
