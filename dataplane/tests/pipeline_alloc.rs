//! Proves the per-burst path allocates nothing: the demo capture (thousands
//! of flows: new TCP/UDP flows, replies, rejects with generated answers,
//! pass-through) replayed through MemoryIo -> Pipeline -> tx under a
//! counting global allocator. Setup allocates; the bursts must not. Once
//! with the demo's Services as they are (DNAT), once all source-NATed.

use dataplane::addr::Addr;
use dataplane::generation::Tables;
use dataplane::io::memory::MemoryIo;
use dataplane::io::pcap::read_capture;
use dataplane::io::{Batch, PacketIo};
use dataplane::pipeline::{NodeAddrs, Pipeline, PipelineConfig, SnatConfig};
use dataplane::service::{Forwarding, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};

mod common {
    pub mod counting_alloc;
}

use common::counting_alloc::{count, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn bursts_allocate_nothing() {
    let c = replay_counting(Forwarding::Dnat);
    assert!(c.reversed > 0, "{c:?}");
    assert_eq!(c.snat_flows, 0);
}

#[test]
fn source_nat_bursts_allocate_nothing() {
    // The capture's replies answer the client, not the gateway: passed.
    let c = replay_counting(Forwarding::Snat);
    assert!(c.snat_flows >= 3700, "{c:?}");
}

/// Replays the demo capture with every Service in `forwarding`; asserts
/// the bursts allocated nothing and returns the counters.
fn replay_counting(forwarding: Forwarding) -> dataplane::counters::Counters {
    let capture = read_capture(&fixtures::fixtures_dir().join("demo.pcap")).unwrap();
    let specs: Vec<ServiceSpec> =
        fixtures::scenario_demo::specs(&fixtures::scenario_demo::services())
            .into_iter()
            .map(|s| ServiceSpec { forwarding, ..s })
            .collect();
    let tables = Tables::new(ServiceTable::from_specs(specs, TableConfig::default()));
    let order: Vec<u32> = (0..capture.len() as u32).collect();
    let mut pipeline = Pipeline::new(PipelineConfig {
        conntrack: dataplane::conntrack::Config {
            capacity: 1 << 16,
            ..Default::default()
        },
        snat: SnatConfig {
            addrs: NodeAddrs {
                v4: Some(Addr::from_v4([198, 18, 0, 1])),
                v6: Some(Addr::from_v6([
                    0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                ])),
            },
            ports: (1024, 65535),
        },
        ..Default::default()
    });
    let mut io = MemoryIo::new(&capture, &order, 4);
    let mut batch = Batch::new();

    let burst = |io: &mut MemoryIo<'_>, pipeline: &mut Pipeline, batch: &mut Batch| {
        let n = io.rx_burst(batch, 64);
        let table = tables.load();
        pipeline.process_burst(&table, batch, io.now_ns());
        io.tx_burst(batch);
        n
    };
    // Warm-up: a first burst lets arc-swap register this thread.
    burst(&mut io, &mut pipeline, &mut batch);

    let (packets, allocs) = count(|| {
        let mut packets = 0;
        while !io.done() {
            packets += burst(&mut io, &mut pipeline, &mut batch);
        }
        packets
    });

    let c = pipeline.counters();
    assert!(packets > 3 * capture.len(), "replayed {packets}");
    assert!(c.forwarded > 0 && c.rejected > 0 && c.passed > 0, "{c:?}");
    assert!(
        c.flows >= 3700,
        "new flows were created during the window: {c:?}"
    );
    assert_eq!(allocs, 0, "allocations on the burst path");
    *c
}
