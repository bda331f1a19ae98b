//! `vipgate replay`: a capture preloaded in memory, split between workers
//! by flow owner (as symmetric RSS would), each worker running the real
//! pipeline over burst I/O on its own core.

use std::collections::HashMap;
use std::time::Instant;

use dataplane::counters::Counters;
use dataplane::fragments::FragKey;
use dataplane::generation::Tables;
use dataplane::io::memory::{Capture, MemoryIo, TxCapture};
use dataplane::io::{Batch, PacketIo, MAX_BURST};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::steer::FragmentOwners;
use dataplane::wire::parse::{maybe_fragment, parse};
use dataplane::worker::frag_hold::FRAG_HOLD_NS;

/// How to replay.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    pub workers: usize,
    /// Timed passes over the capture.
    pub loops: u64,
    /// Untimed passes first, through the same pipelines, so that timed
    /// loops meet established flows (counted and timed: `loops` only).
    pub warmup_loops: u64,
    /// Frames per burst (1..=MAX_BURST).
    pub burst: usize,
    /// Keep the transmitted frames of the first loop (for `--out`).
    pub keep_tx: bool,
    /// Pin worker i to the i-th available core.
    pub pin: bool,
    pub pipeline: PipelineConfig,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            workers: 1,
            loops: 1,
            warmup_loops: 0,
            burst: 64,
            keep_tx: false,
            pin: true,
            pipeline: PipelineConfig::default(),
        }
    }
}

/// What one worker did.
#[derive(Clone, Debug)]
pub struct WorkerResult {
    pub counters: Counters,
    /// Time spent in the worker loop.
    pub seconds: f64,
    /// Core it was pinned to, if any.
    pub core: Option<usize>,
}

/// What a replay did.
#[derive(Clone, Debug)]
pub struct ReplayResult {
    pub workers: Vec<WorkerResult>,
    pub total: Counters,
    /// Wall-clock time of the whole replay (all workers in parallel).
    pub seconds: f64,
    pub capture_packets: usize,
    pub loops: u64,
    /// Transmitted frames of the first loop, in capture order (if kept).
    pub tx: Option<Vec<TxCapture>>,
}

impl ReplayResult {
    /// Million packets per second while the workers ran (they run in
    /// parallel: the slowest one's busy time). Thread start-up and table
    /// allocation are not part of it; `seconds` (wall clock) includes them.
    pub fn mpps(&self) -> f64 {
        let busy = self.busy_seconds();
        if busy > 0.0 {
            self.total.packets as f64 / busy / 1e6
        } else {
            0.0
        }
    }

    /// The slowest worker's busy time: what [`ReplayResult::mpps`] divides by.
    pub fn busy_seconds(&self) -> f64 {
        self.workers.iter().map(|w| w.seconds).fold(0.0, f64::max)
    }

    /// Nanoseconds per packet on one core (busy time / packets, averaged).
    pub fn ns_per_packet(&self) -> f64 {
        let busy: f64 = self.workers.iter().map(|w| w.seconds).sum();
        if self.total.packets > 0 {
            busy * 1e9 / self.total.packets as f64
        } else {
            0.0
        }
    }
}

/// Splits a capture's packet indices between workers by flow owner. A
/// later fragment captured before its datagram's first one goes right
/// after that first one, to its owner, as a receiving worker's fragment
/// hold sends it, if the first came within [`FRAG_HOLD_NS`]; else it
/// stays where it is, where its addresses hash (and is dropped there if
/// addressed to a VIP, as the hold drops it).
pub fn partition(capture: &Capture, tables: &Tables, workers: usize) -> Vec<Vec<u32>> {
    let table = tables.load();
    let workers = workers.max(1);
    let mut parts = vec![Vec::with_capacity(capture.len() / workers + 1); workers];
    let frag = |i: usize| {
        let (frame, ts) = capture.packet(i);
        maybe_fragment(frame)
            .then(|| parse(frame).ok())
            .flatten()
            .filter(|p| p.fragment)
            .map(|p| (FragKey::of(&p), p.frag_first, ts))
    };
    // Where and when each datagram's first fragment comes.
    let mut firsts: HashMap<FragKey, (usize, u64)> = HashMap::new();
    for i in 0..capture.len() {
        if let Some((key, true, ts)) = frag(i) {
            firsts.entry(key).or_insert((i, ts));
        }
    }
    let mut early: HashMap<FragKey, Vec<u32>> = HashMap::new();
    let mut owners = FragmentOwners::default();
    for i in 0..capture.len() {
        let (frame, _) = capture.packet(i);
        match frag(i) {
            Some((key, false, ts)) => match firsts.get(&key) {
                Some(&(at, first_ts)) if at > i && first_ts.saturating_sub(ts) < FRAG_HOLD_NS => {
                    early.entry(key).or_default().push(i as u32);
                    continue;
                }
                _ => {}
            },
            Some((key, true, _)) => {
                parts[owners.owner(frame, &table, workers)].push(i as u32);
                for j in early.remove(&key).unwrap_or_default() {
                    let (f, _) = capture.packet(j as usize);
                    parts[owners.owner(f, &table, workers)].push(j);
                }
                continue;
            }
            None => {}
        }
        parts[owners.owner(frame, &table, workers)].push(i as u32);
    }
    parts
}

/// Replays `capture` against the published tables.
pub fn run(capture: &Capture, tables: &Tables, cfg: &ReplayConfig) -> ReplayResult {
    let workers = cfg.workers.max(1);
    let parts = partition(capture, tables, workers);
    let cores = if cfg.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let start = Instant::now();
    let results: Vec<(WorkerResult, Option<TxCapture>)> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let core = cores.get(i % cores.len().max(1)).copied();
                let tables = tables.clone();
                let pcfg = PipelineConfig {
                    worker: i,
                    workers: parts.len(),
                    ..cfg.pipeline.clone()
                };
                let (loops, warmup, burst, keep_tx) = (
                    cfg.loops,
                    cfg.warmup_loops,
                    cfg.burst.clamp(1, MAX_BURST),
                    cfg.keep_tx,
                );
                std::thread::Builder::new()
                    .name(format!("vipgate-replay-{i}"))
                    .spawn_scoped(s, move || {
                        let pinned = core
                            .filter(|c| core_affinity::set_for_current(*c))
                            .map(|c| c.id);
                        let mut io = MemoryIo::new(capture, part, warmup + loops);
                        if keep_tx {
                            io.capture_tx();
                        }
                        let mut pipeline = Pipeline::new(pcfg);
                        let (seconds, counters) =
                            replay_loop(&mut io, &mut pipeline, &tables, burst, warmup);
                        let w = WorkerResult {
                            counters,
                            seconds,
                            core: pinned,
                        };
                        (w, io.take_tx())
                    })
                    .expect("spawning a replay worker thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("replay worker panicked"))
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut worker_results = Vec::with_capacity(results.len());
    let mut tx = Vec::new();
    for (w, t) in results {
        worker_results.push(w);
        if let Some(t) = t {
            tx.push(t);
        }
    }
    let total = Counters::total(worker_results.iter().map(|w| &w.counters));
    ReplayResult {
        workers: worker_results,
        total,
        seconds,
        capture_packets: capture.len(),
        loops: cfg.loops,
        tx: cfg.keep_tx.then_some(tx),
    }
}

/// The worker loop over a memory backend: rx burst, process, tx burst.
/// The first `warmup` loops are neither timed nor counted. Returns the
/// busy seconds and the counters of the timed loops.
fn replay_loop(
    io: &mut MemoryIo<'_>,
    pipeline: &mut Pipeline,
    tables: &Tables,
    burst: usize,
    warmup: u64,
) -> (f64, Counters) {
    let mut batch = Batch::new();
    let mut start = Instant::now();
    let mut base = Counters::default();
    let mut warming = warmup > 0;
    while !io.done() {
        if warming && io.loops_done() >= warmup {
            warming = false;
            base = *pipeline.counters();
            start = Instant::now();
        }
        if io.rx_burst(&mut batch, burst) == 0 {
            break;
        }
        let table = tables.load();
        pipeline.process_burst(&table, &mut batch, io.now_ns());
        io.tx_burst(&mut batch);
    }
    (
        start.elapsed().as_secs_f64(),
        pipeline.counters().since(&base),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::io::pcap::read_capture;
    use dataplane::table::{ServiceTable, TableConfig};

    fn demo() -> (Capture, Tables) {
        let cap = read_capture(&fixtures::fixtures_dir().join("demo.pcap")).unwrap();
        let specs = fixtures::scenario_demo::specs(&fixtures::scenario_demo::services());
        (
            cap,
            Tables::new(ServiceTable::from_specs(specs, TableConfig::default())),
        )
    }

    /// An early later fragment is replayed right after its first fragment
    /// (as a worker's hold releases it) when that came within the hold's
    /// bound; otherwise it stays where it was captured.
    #[test]
    fn early_fragments_go_behind_their_first_within_the_bound() {
        use fixtures::packet::{fragment_ip, Eth, Ip, Ipv4, Packet, Udp, L4};
        let (_, tables) = demo();
        let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let frags = |id: u32| {
            let mut h = Ipv4::new([198, 18, 0, 9], [198, 19, 0, 99], 64);
            h.flags_frag = 0;
            let udp = Udp::new(40000, 53, vec![7; 3000]);
            let ip = Packet::new(eth.clone(), Ip::V4(h), L4::Udp(udp)).ip_bytes();
            fragment_ip(&ip, id, 1232)
                .iter()
                .map(|p| eth.frame(0x0800, p))
                .collect::<Vec<_>>()
        };
        let (f, g) = (frags(1), frags(2));
        let mut cap = Capture::new();
        // f: last two first, its first 1 ms later; g: its first 1 s later.
        cap.push(0, &f[2]);
        cap.push(0, &f[1]);
        cap.push(1_000_000, &f[0]);
        cap.push(2_000_000, &g[1]);
        cap.push(1_002_000_000, &g[0]);
        cap.push(1_002_000_000, &g[2]);
        let parts = partition(&cap, &tables, 1);
        assert_eq!(parts, vec![vec![2, 0, 1, 3, 4, 5]]);
        let parts = partition(&cap, &tables, 4);
        let with_first = parts.iter().find(|p| p.contains(&2)).unwrap();
        let at = with_first.iter().position(|&i| i == 2).unwrap();
        assert_eq!(&with_first[at..at + 3], &[2, 0, 1]);
    }

    #[test]
    fn warmup_loops_are_neither_counted_nor_timed() {
        let (cap, tables) = demo();
        let cfg = ReplayConfig {
            loops: 1,
            warmup_loops: 1,
            pin: false,
            ..ReplayConfig::default()
        };
        let r = run(&cap, &tables, &cfg);
        assert_eq!(r.total.packets, cap.len() as u64);
        // Every flow of the capture was set up during the warm-up pass.
        assert_eq!(r.total.flows, 0, "{:?}", r.total);
        let cold = run(
            &cap,
            &tables,
            &ReplayConfig {
                warmup_loops: 0,
                ..cfg
            },
        );
        assert_eq!(cold.total.packets, cap.len() as u64);
        assert_eq!(cold.total.flows, 3700);
    }
}
