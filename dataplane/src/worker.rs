//! The worker loop of `vipgate run`: poll every port, run bursts through
//! the pipeline, give transmitted frames their next hop's MACs, send them
//! on their egress port, and back off when idle.
//!
//! One worker owns one pipeline, hence one conntrack: it polls all ports
//! (every interface's socket), so both directions of every flow meet the
//! same entry. The loop, after DPDK's l3fwd:
//! `while !stop { for port { rx burst; process; L2; tx } ; idle back-off }`.
//! The clock is read once per round and the tables once per burst.

/// Idle waiting per backend.
pub mod idle;
/// Ethernet header helpers: destination IP, MAC rewrite.
pub mod l2;
/// Copy-transmit on another interface (send-only packet socket).
pub mod send;
/// SIGINT/SIGTERM to a stop flag; pinning to a core.
pub mod signal;
/// Per-worker counters and their lock-free published copy.
pub mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::generation::Tables;
use crate::io::{Batch, PacketIo, MAX_BURST};
use crate::neigh::Neighbours;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::verdict::{DropReason, Verdict};

pub use idle::IdleWait;
pub use send::CopySender;
pub use signal::{pin_to_core, stop_on_signals};
pub use stats::{SharedCounters, WorkerCounters};

/// Idle rounds spent spinning before yielding: a few microseconds, so a
/// burst arriving right after an empty poll is not delayed by a syscall.
pub const SPIN_ROUNDS: u32 = 64;
/// Idle rounds (after spinning) spent in `yield_now` before sleeping.
pub const YIELD_ROUNDS: u32 = 64;
/// Longest sleep of an idle worker, in milliseconds: the added latency of
/// the first packet after a quiet period.
pub const IDLE_WAIT_MS: i32 = 1;

/// One socket (an interface queue) as the worker sees it. Several ports
/// may share an interface (one per rx queue).
pub struct Port<I> {
    pub io: I,
    pub ifindex: u32,
}

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Frames per rx burst (<= MAX_BURST).
    pub burst: usize,
    pub pipeline: PipelineConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            burst: 64,
            pipeline: PipelineConfig::default(),
        }
    }
}

/// One worker: its ports, pipeline and counters.
pub struct Worker<I> {
    ports: Vec<Port<I>>,
    /// Interface (index into the neighbour snapshot's `ifaces()`) of each port.
    port_iface: Vec<u8>,
    /// Copy senders per interface; empty with a single interface.
    copies: Vec<CopySender>,
    pipeline: Pipeline,
    tables: Tables,
    neigh: Arc<Neighbours>,
    shared: Arc<SharedCounters>,
    batch: Box<Batch>,
    burst: usize,
    /// Egress port of each frame of the current burst.
    egress: [u8; MAX_BURST],
    no_neighbour: u64,
    tx_full: u64,
    tx_sent: u64,
    tx_cross: u64,
    idle_waits: u64,
    start: std::time::Instant,
}

impl<I: PacketIo + IdleWait> Worker<I> {
    /// Every port's interface must be one `neigh` was opened with. With
    /// more than one interface, opens a send-only packet socket on each
    /// (CAP_NET_RAW) for frames that leave on another interface.
    pub fn new(
        ports: Vec<Port<I>>,
        cfg: &WorkerConfig,
        tables: Tables,
        neigh: Arc<Neighbours>,
    ) -> Result<Worker<I>, String> {
        if ports.is_empty() {
            return Err("a worker needs at least one port".into());
        }
        let (port_iface, ifindexes) = {
            let snap = neigh.load();
            if snap.ifaces().len() > u8::MAX as usize {
                return Err("a worker handles at most 255 interfaces".into());
            }
            let mut map = Vec::with_capacity(ports.len());
            for p in &ports {
                let i = snap.port_of(p.ifindex).ok_or_else(|| {
                    format!("port on ifindex {} is not a gateway interface", p.ifindex)
                })?;
                map.push(i as u8);
            }
            let idx: Vec<u32> = snap.ifaces().iter().map(|i| i.ifindex).collect();
            (map, idx)
        };
        let mut copies = Vec::new();
        if ifindexes.len() > 1 {
            for ifindex in ifindexes {
                copies.push(CopySender::open(ifindex).map_err(|e| {
                    format!(
                        "send socket on ifindex {ifindex}: {e} (needs CAP_NET_RAW: run as root)"
                    )
                })?);
            }
        }
        Ok(Worker {
            ports,
            port_iface,
            copies,
            pipeline: Pipeline::new(cfg.pipeline.clone()),
            tables,
            neigh,
            shared: Arc::new(SharedCounters::default()),
            batch: Box::new(Batch::new()),
            burst: cfg.burst.clamp(1, MAX_BURST),
            egress: [0; MAX_BURST],
            no_neighbour: 0,
            tx_full: 0,
            tx_sent: 0,
            tx_cross: 0,
            idle_waits: 0,
            start: std::time::Instant::now(),
        })
    }

    /// The block other threads read this worker's counters from.
    pub fn shared(&self) -> Arc<SharedCounters> {
        Arc::clone(&self.shared)
    }

    /// Polls until `stop` is set; returns the final counters.
    pub fn run(&mut self, stop: &AtomicBool) -> WorkerCounters {
        let mut idle = 0u32;
        let mut next_wait = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let now_ns = self.start.elapsed().as_nanos() as u64;
            if self.poll_once(now_ns) > 0 {
                idle = 0;
                continue;
            }
            idle = idle.saturating_add(1);
            if idle < SPIN_ROUNDS {
                std::hint::spin_loop();
            } else if idle < SPIN_ROUNDS + YIELD_ROUNDS {
                std::thread::yield_now();
            } else {
                // Rotate over ports: a port with traffic answers at once, a
                // quiet one costs at most IDLE_WAIT_MS.
                self.ports[next_wait].io.idle_wait(IDLE_WAIT_MS);
                next_wait = (next_wait + 1) % self.ports.len();
                self.idle_waits += 1;
                if self.idle_waits.is_multiple_of(256) {
                    self.publish();
                }
            }
        }
        self.publish();
        self.counters()
    }

    /// One round: a burst from every port. Returns frames received.
    pub fn poll_once(&mut self, now_ns: u64) -> usize {
        let mut got = 0;
        for p in 0..self.ports.len() {
            got += self.burst_on(p, now_ns);
        }
        if got > 0 {
            self.publish();
        }
        got
    }

    fn burst_on(&mut self, rx_port: usize, now_ns: u64) -> usize {
        let batch = &mut *self.batch;
        let n = self.ports[rx_port].io.rx_burst(batch, self.burst);
        if n == 0 {
            return 0;
        }
        let table = self.tables.load();
        self.pipeline.process_burst(&table, batch, now_ns);
        let neigh = self.neigh.load();
        let rx_iface = self.port_iface[rx_port] as usize;
        let mut cross = false;
        for i in 0..batch.len() {
            if !matches!(batch.verdicts()[i], Verdict::Tx(_)) {
                continue;
            }
            let Some(dst) = l2::l3_dst(batch.frame(i)) else {
                batch.set_verdict(i, Verdict::Drop(DropReason::Malformed));
                continue;
            };
            let out = neigh.egress(&dst, rx_iface);
            match neigh.next_hop(out, &dst) {
                Some((src_mac, dst_mac)) => {
                    l2::set_macs(batch.frame_mut(i), &src_mac, &dst_mac);
                    self.egress[i] = out as u8;
                    cross |= out != rx_iface;
                }
                None => {
                    self.no_neighbour += 1;
                    self.neigh.report_miss(dst);
                    batch.set_verdict(i, Verdict::Drop(DropReason::NoNeighbour));
                }
            }
        }
        if cross {
            self.send_cross(rx_iface);
        }
        let st = self.ports[rx_port].io.tx_burst(&mut self.batch);
        self.tx_sent += st.sent as u64;
        self.tx_full += st.dropped as u64;
        n
    }

    /// Copies the frames leaving on other interfaces out through those
    /// interfaces' senders, then marks them Pass so the rx backend just
    /// recycles them.
    fn send_cross(&mut self, rx_iface: usize) {
        let batch = &mut *self.batch;
        let ifaces = self.neigh.load().ifaces().len();
        for out in 0..ifaces {
            if out == rx_iface {
                continue;
            }
            let egress = &self.egress;
            let verdicts = batch.verdicts();
            let pick =
                |i: usize| matches!(verdicts[i], Verdict::Tx(_)) && egress[i] as usize == out;
            let (sent, failed) = match self.copies.get_mut(out) {
                Some(c) => c.send(batch, pick),
                None => (0, (0..batch.len()).filter(|&i| pick(i)).count() as u32),
            };
            self.tx_sent += sent as u64;
            self.tx_cross += sent as u64;
            self.tx_full += failed as u64;
        }
        for i in 0..batch.len() {
            if matches!(batch.verdicts()[i], Verdict::Tx(_)) && self.egress[i] as usize != rx_iface
            {
                batch.set_verdict(i, Verdict::Pass);
            }
        }
    }

    /// Counters so far (the owner's view).
    pub fn counters(&self) -> WorkerCounters {
        let mut p = *self.pipeline.counters();
        p.dropped[DropReason::NoNeighbour as usize] += self.no_neighbour;
        p.dropped[DropReason::TxFull as usize] += self.tx_full;
        WorkerCounters {
            pipeline: p,
            tx_sent: self.tx_sent,
            tx_cross: self.tx_cross,
            idle_waits: self.idle_waits,
        }
    }

    fn publish(&self) {
        self.shared.store(&self.counters());
    }

    /// Gives the ports back (sockets close when they drop).
    pub fn into_ports(self) -> Vec<Port<I>> {
        self.ports
    }
}

#[cfg(test)]
mod tests;
