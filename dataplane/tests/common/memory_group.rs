//! A group of workers over in-memory frames, polled by hand: for the
//! zero-allocation tests of the multi-worker paths.
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;

use dataplane::generation::Tables;
use dataplane::io::memory::{Capture, MemoryIo};
use dataplane::neigh::Neighbours;
use dataplane::worker::{Handoff, Port, Worker, WorkerConfig};

/// One worker per entry of `orders`, all of one group, each with one port
/// (ifindex 3) receiving its order of `capture` `loops` times.
pub fn memory_group<'c>(
    capture: &'c Capture,
    orders: &'c [Vec<u32>],
    loops: u64,
    cfg: &WorkerConfig,
    tables: &Tables,
    neigh: &Arc<Neighbours>,
) -> Vec<Worker<MemoryIo<'c>>> {
    let handoff = Handoff::new(orders.len());
    (0..orders.len())
        .map(|me| {
            let port = Port {
                io: MemoryIo::new(capture, &orders[me], loops),
                ifindex: 3,
            };
            Worker::in_group(
                vec![port],
                cfg,
                tables.clone(),
                Arc::clone(neigh),
                &handoff,
                me,
            )
            .unwrap()
        })
        .collect()
}

/// Polls every worker, `step_ns` apart, until all were idle twice.
pub fn poll_until_idle(workers: &mut [Worker<MemoryIo<'_>>], now_ns: &mut u64, step_ns: u64) {
    let mut idle_rounds = 0;
    while idle_rounds < 2 {
        *now_ns += step_ns;
        let got: usize = workers.iter_mut().map(|w| w.poll_once(*now_ns)).sum();
        idle_rounds = if got == 0 { idle_rounds + 1 } else { 0 };
    }
}
