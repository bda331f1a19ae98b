//! The worker loop of `vipgate run`: poll the worker's ports, run bursts
//! through the pipeline, give transmitted frames their next hop's MACs,
//! send them on their egress port, and back off when idle.
//!
//! Both directions of a flow must meet one conntrack entry. A lone worker
//! polls every port, so they do. In a group of workers (`vipgate run
//! --workers N`), each polls its own share of the traffic (a fanout socket
//! or an rx queue per interface) and hands frames whose flow another worker
//! owns ([`crate::steer::owner`]) to that worker's inbox ([`handoff`]); the
//! owner processes them with its own pipeline and sends them itself.
//! The loop, after DPDK's l3fwd:
//! `while !stop { held frames; for port { rx burst; hand off; process; L2;
//! tx }; inbox burst; idle back-off }`. The clock is read once per round
//! and the tables once per burst.
//!
//! A frame whose next hop's MAC is not known yet waits in the worker's
//! [`pending`] store (its buffer goes back to the backend) until a newer
//! neighbour snapshot knows it, or is dropped after [`pending::HOLD_NS`].
//! A later IP fragment received before its first one waits in the
//! [`frag_hold`] store until the first comes (then runs as a burst of its
//! own after the first one's), or is dropped after [`frag_hold::FRAG_HOLD_NS`].

/// Frames taken out of a burst and put back as `Pass` before transmit.
pub mod aside;
/// Zero-copy transmit on another port sharing the rx port's memory.
pub mod cross_zc;
/// Listing a running worker's conntrack in chunks between bursts.
pub mod dump;
/// Later fragments held until their first fragment comes.
pub mod frag_hold;
/// Which worker owns a frame: steering bursts out, draining the inbox.
pub mod group;
/// Lock-free inboxes over preallocated frame slots between workers.
pub mod handoff;
/// Idle waiting per backend.
pub mod idle;
/// Ethernet header helpers: destination IP, MAC rewrite.
pub mod l2;
/// Per-frame record of the pipeline's counters, so later drops move a
/// frame between counters instead of counting it twice.
pub mod ledger;
/// Dropping NATed frames whose partial checksum was never completed.
pub mod offload;
/// Frames held until their next hop's MAC address is known.
pub mod pending;
/// Copy-transmit on another interface (send-only packet socket).
pub mod send;
/// SIGINT/SIGTERM to a stop flag; pinning to a core.
pub mod signal;
/// Preallocated slots for frame copies kept past their burst.
pub mod slots;
/// Per-worker counters and their lock-free published copy.
pub mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::counters::Counted;
use crate::generation::Tables;
use crate::io::{Batch, IoStats, PacketIo, MAX_BURST};
use crate::neigh::Neighbours;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::verdict::{DropReason, Verdict};

use dump::DumpCursor;
pub use dump::{FlowDump, FlowRecord};
use frag_hold::FragHold;
use group::Group;
pub use handoff::{ForeignTx, Handoff};
pub use idle::IdleWait;
use ledger::Ledger;
use pending::Pending;
pub use send::CopySender;
pub use signal::{pin_to_core, stop_on_signals};
pub use stats::{SharedCounters, WorkerCounters};

/// Idle rounds spent spinning before yielding: a few microseconds, so a
/// burst arriving right after an empty poll is not delayed by a syscall.
pub const SPIN_ROUNDS: u32 = 64;
/// Idle rounds (after spinning) spent in `yield_now` before sleeping.
pub const YIELD_ROUNDS: u32 = 64;
/// Longest sleep of an idle worker, in milliseconds: the added latency of
/// the first packet after a quiet period (handed-over frames included: a
/// sleeping owner finds them when it wakes), and of held frames once their
/// neighbour is known.
pub const IDLE_WAIT_MS: i32 = 1;
/// How often a running worker reads its sockets' kernel-side counters (a
/// getsockopt per port) for `/metrics`: often enough for a scrape every
/// few seconds, rare enough to cost nothing measurable.
pub const IO_SAMPLE_EVERY_NS: u64 = 1_000_000_000;

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
    /// Copy senders per interface; empty with a single interface whose
    /// ports can send any batch.
    copies: Vec<CopySender>,
    pipeline: Pipeline,
    tables: Tables,
    neigh: Arc<Neighbours>,
    shared: Arc<SharedCounters>,
    /// Conntrack listings asked for by the admin endpoint.
    dump: Arc<FlowDump>,
    dump_cursor: DumpCursor,
    batch: Box<Batch>,
    burst: usize,
    /// Egress port of each frame of the current burst.
    egress: [u8; MAX_BURST],
    /// Set when this worker is one of several.
    group: Option<Group>,
    /// What the pipeline counted each frame of the burst in flight as.
    ledger: Box<Ledger>,
    /// Frames waiting for their next hop's MAC.
    pending: Box<Pending>,
    /// Later fragments waiting for their first fragment.
    frag_hold: Box<FragHold>,
    neigh_held_sent: u64,
    tx_sent: u64,
    tx_cross: u64,
    tx_cross_zc: u64,
    tx_copied: u64,
    idle_waits: u64,
    handoff_out: u64,
    handoff_in: u64,
    handoff_full: u64,
    handoff_oversize: u64,
    start: std::time::Instant,
}

impl<I: PacketIo + IdleWait + ForeignTx> Worker<I> {
    /// A lone worker. Every port's interface must be one `neigh` was opened
    /// with. With more than one interface, opens a send-only packet socket
    /// on each (CAP_NET_RAW) for frames that leave on another interface.
    pub fn new(
        ports: Vec<Port<I>>,
        cfg: &WorkerConfig,
        tables: Tables,
        neigh: Arc<Neighbours>,
    ) -> Result<Worker<I>, String> {
        Worker::build(ports, cfg, tables, neigh, None, (0, 1))
    }

    /// Worker `me` of the group that shares `handoff`. It may have no ports
    /// at all (more workers than AF_XDP queues): it then only processes
    /// what the others hand over, and sends it through copy senders.
    pub fn in_group(
        ports: Vec<Port<I>>,
        cfg: &WorkerConfig,
        tables: Tables,
        neigh: Arc<Neighbours>,
        handoff: &Arc<Handoff>,
        me: usize,
    ) -> Result<Worker<I>, String> {
        if me >= handoff.workers() {
            return Err(format!("worker {me} of a group of {}", handoff.workers()));
        }
        let group = (handoff.workers() > 1).then(|| Group::new(handoff, me));
        Worker::build(ports, cfg, tables, neigh, group, (me, handoff.workers()))
    }

    fn build(
        ports: Vec<Port<I>>,
        cfg: &WorkerConfig,
        tables: Tables,
        neigh: Arc<Neighbours>,
        group: Option<Group>,
        (worker, workers): (usize, usize),
    ) -> Result<Worker<I>, String> {
        if ports.is_empty() && group.is_none() {
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
        // Handed-over and held frames live in the inbox or the pending
        // store, not in a port's memory: a port sends them only if its
        // backend copies any batch out, and only when it is the single
        // interface's.
        let need_copies =
            ifindexes.len() > 1 || !I::SENDS_FOREIGN || (group.is_some() && ports.is_empty());
        let max_frame = ports.iter().map(|p| p.io.max_frame()).max().unwrap_or(0);
        let mut copies = Vec::new();
        if need_copies {
            for ifindex in ifindexes {
                copies.push(CopySender::open(ifindex).map_err(|e| {
                    format!(
                        "send socket on ifindex {ifindex}: {e} (needs CAP_NET_RAW: run as root)"
                    )
                })?);
            }
        }
        let port_ifindexes: Vec<u32> = ports.iter().map(|p| p.ifindex).collect();
        Ok(Worker {
            ports,
            port_iface,
            copies,
            pipeline: Pipeline::new(PipelineConfig {
                worker,
                workers,
                ..cfg.pipeline.clone()
            }),
            tables,
            neigh,
            shared: Arc::new(SharedCounters::for_ports(&port_ifindexes)),
            dump: Arc::default(),
            dump_cursor: DumpCursor::default(),
            batch: Box::new(Batch::new()),
            burst: cfg.burst.clamp(1, MAX_BURST),
            egress: [0; MAX_BURST],
            group,
            ledger: Box::default(),
            pending: Box::new(Pending::for_frames(max_frame)),
            frag_hold: Box::new(FragHold::for_frames(max_frame)),
            neigh_held_sent: 0,
            tx_sent: 0,
            tx_cross: 0,
            tx_cross_zc: 0,
            tx_copied: 0,
            idle_waits: 0,
            handoff_out: 0,
            handoff_in: 0,
            handoff_full: 0,
            handoff_oversize: 0,
            start: std::time::Instant::now(),
        })
    }

    /// The block other threads read this worker's counters from.
    pub fn shared(&self) -> Arc<SharedCounters> {
        Arc::clone(&self.shared)
    }

    /// Where other threads ask this worker for a listing of its flows.
    pub fn flow_dump(&self) -> Arc<FlowDump> {
        Arc::clone(&self.dump)
    }

    /// Polls until `stop` is set; returns the final counters.
    pub fn run(&mut self, stop: &AtomicBool) -> WorkerCounters {
        let mut idle = 0u32;
        let mut next_wait = 0usize;
        // One poll() over every port when each has a descriptor: the first
        // frame on any interface wakes the worker at once.
        let mut fds: Vec<libc::pollfd> = self
            .ports
            .iter()
            .filter_map(|p| p.io.wait_fd())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let poll_all = !fds.is_empty() && fds.len() == self.ports.len();
        let mut next_io_sample = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let now_ns = self.start.elapsed().as_nanos() as u64;
            if now_ns >= next_io_sample {
                self.sample_io();
                next_io_sample = now_ns + IO_SAMPLE_EVERY_NS;
            }
            // Before the burst, so a busy worker still lists its flows; a
            // listing in progress keeps the worker from sleeping.
            let listing = self.dump.serve(
                &mut self.dump_cursor,
                self.pipeline.conntrack(),
                (now_ns / 1_000_000_000) as u32,
            );
            if self.poll_once(now_ns) > 0 || listing {
                idle = 0;
                continue;
            }
            idle = idle.saturating_add(1);
            if idle < SPIN_ROUNDS {
                std::hint::spin_loop();
            } else if idle < SPIN_ROUNDS + YIELD_ROUNDS {
                std::thread::yield_now();
            } else {
                if self.ports.is_empty() {
                    // Only handed-over frames come here: nothing to poll on.
                    std::thread::sleep(std::time::Duration::from_millis(IDLE_WAIT_MS as u64));
                } else if poll_all {
                    idle::wait_any(&mut fds, IDLE_WAIT_MS);
                } else {
                    // Rotate over ports: a port with traffic answers at once,
                    // a quiet one costs at most IDLE_WAIT_MS.
                    self.ports[next_wait].io.idle_wait(IDLE_WAIT_MS);
                    next_wait = (next_wait + 1) % self.ports.len();
                }
                self.idle_waits += 1;
                if self.idle_waits.is_multiple_of(256) {
                    self.publish();
                }
            }
        }
        // No more listings: a reader waiting for one hears it at once.
        self.dump.close();
        // Never to be sent now: their counts say so.
        self.pending.drop_all(&mut self.pipeline);
        self.frag_hold.drop_all(&mut self.pipeline);
        self.sample_io();
        self.publish();
        let mut c = self.counters();
        c.io = self.shared.load().io;
        c
    }

    /// Reads every port's kernel-side counters (a getsockopt each) into the
    /// published block. Called about once a second, never per burst.
    fn sample_io(&mut self) {
        for (i, p) in self.ports.iter_mut().enumerate() {
            self.shared.store_port(i, &p.io.io_stats());
        }
    }

    /// One round: held frames whose neighbour became known (before any
    /// newer frame to it), a burst from every port, then one from the
    /// inbox. Returns frames received (handed-over ones included).
    pub fn poll_once(&mut self, now_ns: u64) -> usize {
        let mut released = self.release_held(now_ns);
        released |= self.frag_hold.expire(now_ns, &mut self.pipeline) > 0;
        let mut got = 0;
        for p in 0..self.ports.len() {
            got += self.burst_on(p, now_ns);
            // Behind the first fragments of that burst.
            self.release_fragments(now_ns);
        }
        got += self.inbox_burst(now_ns);
        if got > 0 || released {
            self.publish();
        }
        got
    }

    /// Frames waiting for their next hop's MAC now.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Later fragments waiting for their first fragment now.
    pub fn held_fragments(&self) -> usize {
        self.frag_hold.len()
    }

    /// Sends the held frames whose next hop is known now and drops those
    /// that waited too long. Cheap unless frames are held and the
    /// neighbour snapshot changed or the oldest expired. Returns whether
    /// anything left the store.
    fn release_held(&mut self, now_ns: u64) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let snap = self.neigh.load();
        if !self.pending.due(snap.generation(), now_ns) {
            return false;
        }
        let pd = &mut *self.pending;
        let r = pd.release(&snap, now_ns, &mut self.pipeline);
        if r.ready == 0 {
            return r.expired > 0;
        }
        let batch = &mut *pd.batch;
        if !self.copies.is_empty() {
            let c = send_copies(batch, &mut self.copies, &pd.egress, None);
            // Sent frames are `Pass` now, failed ones `Drop(TxFull)`.
            let mut cross = 0;
            for (i, v) in batch.verdicts().iter().enumerate() {
                if *v == Verdict::Pass && pd.egress[i] != pd.rx_iface[i] {
                    cross += 1;
                }
            }
            // Not added to `tx_copied`: every held frame is a copy, and
            // `neigh_held_sent` counts them apart so that `tx_copied`
            // keeps saying which fresh frames missed the zero-copy path.
            self.tx_sent += c.sent;
            self.tx_cross += cross;
            self.neigh_held_sent += c.sent;
            pd.ledger.settle(&mut self.pipeline, batch);
        } else if let Some(p) = self.ports.first_mut() {
            // No copy senders: one interface, whose ports' backend sends
            // any batch (ForeignTx), as for the inbox.
            pd.ledger.before_tx(batch);
            let st = p.io.tx_burst(batch);
            pd.ledger.after_tx(&mut self.pipeline, st.dropped);
            self.tx_sent += st.sent as u64;
            self.neigh_held_sent += st.sent as u64;
        } else {
            // `build` never leaves a worker without a way out; should it,
            // the frames are counted, not lost.
            for i in 0..batch.len() {
                batch.set_verdict(i, Verdict::Drop(DropReason::TxFull));
            }
            pd.ledger.settle(&mut self.pipeline, batch);
        }
        batch.clear();
        true
    }

    fn burst_on(&mut self, rx_port: usize, now_ns: u64) -> usize {
        let batch = &mut *self.batch;
        let n = self.ports[rx_port].io.rx_burst(batch, self.burst);
        if n == 0 {
            return 0;
        }
        let table = self.tables.load();
        let rx_iface = self.port_iface[rx_port];
        self.frag_hold
            .sift(batch, &table, rx_iface, now_ns, &mut self.pipeline);
        if let Some(g) = self.group.as_mut() {
            let st = g.steer_away(batch, &table, rx_iface, &mut []);
            self.handoff_out += st.out;
            self.handoff_full += st.full;
            self.handoff_oversize += st.oversize;
        }
        if !batch.is_empty() {
            self.pipeline.process_burst(&table, batch, now_ns);
            self.ledger.load(&self.pipeline);
        }
        offload::drop_partial_csum(batch, &self.ledger, I::CSUM_PARTIAL_TAG);
        let rx_iface = rx_iface as usize;
        let mut hold = Hold {
            pending: &mut self.pending,
            counted: &self.ledger.counted,
            now_ns,
        };
        let cross = route(
            batch,
            &self.neigh,
            &mut self.egress,
            |_| rx_iface,
            &mut hold,
        );
        if cross {
            let z = cross_zc::send_in_place(
                &mut self.ports,
                &self.port_iface,
                rx_iface,
                batch,
                &mut self.egress,
                &mut self.ledger.counted,
            );
            self.tx_sent += z.sent;
            self.tx_cross += z.sent;
            self.tx_cross_zc += z.sent;
            if z.left {
                let c = send_copies(batch, &mut self.copies, &self.egress, Some(rx_iface));
                self.tx_sent += c.sent;
                self.tx_cross += c.sent;
                self.tx_copied += c.sent;
            }
        }
        // Every drop the worker made so far is a verdict now: move those
        // frames from the pipeline's counter to their reason.
        self.ledger.settle(&mut self.pipeline, batch);
        if let Some(g) = self.group.as_mut() {
            g.restore(batch);
        }
        self.frag_hold.restore(batch);
        self.ledger.before_tx(batch);
        let st = self.ports[rx_port].io.tx_burst(batch);
        self.ledger.after_tx(&mut self.pipeline, st.dropped);
        self.tx_sent += st.sent as u64;
        n
    }

    /// Processes and sends a burst of frames other workers handed over.
    fn inbox_burst(&mut self, now_ns: u64) -> usize {
        let Some(g) = self.group.as_mut() else {
            return 0;
        };
        let batch = &mut *g.batch;
        let n = g.rx.drain(batch, self.burst);
        if n == 0 {
            return 0;
        }
        self.handoff_in += n as u64;
        let table = self.tables.load();
        let rx = &g.rx;
        copies_out!(self).run(&table, batch, |i| rx.iface(i), now_ns);
        batch.clear();
        g.rx.release();
        n
    }

    /// Runs the held fragments whose first fragment came as a burst of
    /// copies: to the first one's owner (behind it in its inbox), or
    /// through this worker's pipeline.
    fn release_fragments(&mut self, now_ns: u64) {
        if !self.frag_hold.has_ready() {
            return;
        }
        let fh = &mut *self.frag_hold;
        fh.release();
        let table = self.tables.load();
        let batch = &mut *fh.batch;
        if let Some(g) = self.group.as_mut() {
            let st = g.steer_away(batch, &table, 0, &mut fh.rx_iface);
            self.handoff_out += st.out;
            self.handoff_full += st.full;
            self.handoff_oversize += st.oversize;
        }
        let rx = &fh.rx_iface;
        copies_out!(self).run(&table, batch, |i| usize::from(rx[i]), now_ns);
        if let Some(g) = self.group.as_mut() {
            g.restore(batch);
        }
        batch.clear();
    }

    /// Counters so far (the owner's view).
    pub fn counters(&self) -> WorkerCounters {
        WorkerCounters {
            pipeline: *self.pipeline.counters(),
            tx_sent: self.tx_sent,
            tx_cross: self.tx_cross,
            tx_cross_zc: self.tx_cross_zc,
            tx_copied: self.tx_copied,
            idle_waits: self.idle_waits,
            handoff_out: self.handoff_out,
            handoff_in: self.handoff_in,
            handoff_full: self.handoff_full,
            handoff_oversize: self.handoff_oversize,
            neigh_held_sent: self.neigh_held_sent,
            conntrack_entries: self.pipeline.conntrack().len() as u64,
            conntrack_capacity: self.pipeline.conntrack().capacity() as u64,
            conntrack: self.pipeline.conntrack().stats(),
            io: IoStats::default(),
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

/// What a burst of frame copies (handed over by another worker, or
/// released from a store) needs from its worker to be processed and sent:
/// its copy senders, or one interface's port that sends any batch.
struct CopiesOut<'a, I> {
    pipeline: &'a mut Pipeline,
    ledger: &'a mut Ledger,
    pending: &'a mut Pending,
    neigh: &'a Neighbours,
    egress: &'a mut [u8; MAX_BURST],
    copies: &'a mut [CopySender],
    ports: &'a mut [Port<I>],
    tx_sent: &'a mut u64,
    tx_copied: &'a mut u64,
}

/// A [`CopiesOut`] over a worker's fields (borrowed one by one, so the
/// batch may live in another field).
macro_rules! copies_out {
    ($w:ident) => {
        CopiesOut {
            pipeline: &mut $w.pipeline,
            ledger: &mut $w.ledger,
            pending: &mut $w.pending,
            neigh: &$w.neigh,
            egress: &mut $w.egress,
            copies: &mut $w.copies,
            ports: &mut $w.ports,
            tx_sent: &mut $w.tx_sent,
            tx_copied: &mut $w.tx_copied,
        }
    };
}
use copies_out;

impl<I: PacketIo + ForeignTx> CopiesOut<'_, I> {
    /// Processes `batch` and sends its `Tx` frames; every frame counted.
    /// `rx_iface(i)`: where frame `i` came in.
    fn run(
        self,
        table: &crate::table::ServiceTable,
        batch: &mut Batch,
        rx_iface: impl Fn(usize) -> usize,
        now_ns: u64,
    ) {
        if batch.is_empty() {
            return;
        }
        self.pipeline.process_burst(table, batch, now_ns);
        self.ledger.load(self.pipeline);
        offload::drop_partial_csum(batch, self.ledger, I::CSUM_PARTIAL_TAG);
        let mut hold = Hold {
            pending: self.pending,
            counted: &self.ledger.counted,
            now_ns,
        };
        route(batch, self.neigh, self.egress, rx_iface, &mut hold);
        if !self.copies.is_empty() {
            let c = send_copies(batch, self.copies, self.egress, None);
            *self.tx_sent += c.sent;
            *self.tx_copied += c.sent;
            self.ledger.settle(self.pipeline, batch);
        } else if let Some(p) = self.ports.first_mut() {
            // `build` opened no copy senders: one interface, whose ports'
            // backend sends any batch (ForeignTx).
            self.ledger.settle(self.pipeline, batch);
            self.ledger.before_tx(batch);
            let st = p.io.tx_burst(batch);
            self.ledger.after_tx(self.pipeline, st.dropped);
            *self.tx_sent += st.sent as u64;
        } else {
            self.ledger.settle(self.pipeline, batch);
        }
    }
}

/// Where [`route`] puts frames whose next hop is not known yet.
struct Hold<'a> {
    pending: &'a mut Pending,
    /// What the pipeline counted each frame of the batch as.
    counted: &'a [Counted; MAX_BURST],
    now_ns: u64,
}

/// Gives every `Tx` frame of `batch` its next hop's MACs and records its
/// egress interface. A frame without a known next hop is reported for
/// resolution and copied into the pending store (its verdict becomes
/// `Pass`, so the backend recycles the buffer, and it stays counted as
/// the pipeline counted it); when the store is full it is dropped
/// (`Drop(NoNeighbour)`, counted when the ledger settles). A frame whose
/// next hop just became known but has older frames held for it waits
/// behind them. `rx_iface(i)` is where frame `i` came in (the one-armed
/// fallback). Returns whether any frame leaves on an interface other than
/// its own.
fn route(
    batch: &mut Batch,
    neigh: &Neighbours,
    egress: &mut [u8; MAX_BURST],
    rx_iface: impl Fn(usize) -> usize,
    hold: &mut Hold<'_>,
) -> bool {
    let snap = neigh.load();
    let gen = snap.generation();
    let mut cross = false;
    for (i, e) in egress.iter_mut().enumerate().take(batch.len()) {
        let v = batch.verdicts()[i];
        if !matches!(v, Verdict::Tx(_)) {
            continue;
        }
        let Some(dst) = l2::l3_dst(batch.frame(i)) else {
            batch.set_verdict(i, Verdict::Drop(DropReason::Malformed));
            continue;
        };
        let from = rx_iface(i);
        let out = snap.egress(&dst, from);
        if let Some((src_mac, dst_mac)) = snap.next_hop(out, &dst) {
            // Only after a snapshot change this round's release has not
            // seen can a known destination still have frames held; a
            // frame that cannot queue behind them goes out of order
            // rather than not at all.
            let queued = hold.pending.may_hold_known(gen)
                && hold.pending.holds(&dst)
                && hold_frame(batch, i, hold, dst, from, gen);
            if !queued {
                l2::set_macs(batch.frame_mut(i), &src_mac, &dst_mac);
                *e = out as u8;
                cross |= out != from;
            }
            continue;
        }
        neigh.report_miss(dst);
        if !hold_frame(batch, i, hold, dst, from, gen) {
            batch.set_verdict(i, Verdict::Drop(DropReason::NoNeighbour));
        }
    }
    cross
}

/// Copies frame `i` of `batch` into the pending store and marks it `Pass`
/// (the backend recycles the buffer). Returns false when the store could
/// not take it.
fn hold_frame(
    batch: &mut Batch,
    i: usize,
    hold: &mut Hold<'_>,
    dst: crate::addr::Addr,
    rx_iface: usize,
    generation: u64,
) -> bool {
    let held = hold.pending.hold(
        batch.frame(i),
        batch.descs()[i],
        dst,
        rx_iface as u8,
        batch.verdicts()[i],
        hold.counted[i],
        generation,
        hold.now_ns,
    );
    if held {
        batch.set_verdict(i, Verdict::Pass);
    }
    held
}

/// What a round of copy sends did.
#[derive(Default)]
struct CopyStats {
    sent: u64,
}

/// Copies the `Tx` frames of `batch` out through the copy sender of their
/// egress interface, except those leaving on `keep` (the rx port sends
/// those in place), then marks the copied ones `Pass` so the rx backend
/// just recycles them, and those that failed `Drop(TxFull)`. Without a
/// sender for an interface its frames fail.
fn send_copies(
    batch: &mut Batch,
    copies: &mut [CopySender],
    egress: &[u8; MAX_BURST],
    keep: Option<usize>,
) -> CopyStats {
    let mut st = CopyStats::default();
    let mut highest = 0usize;
    for (v, &e) in batch.verdicts().iter().zip(egress.iter()) {
        if matches!(v, Verdict::Tx(_)) {
            highest = highest.max(e as usize + 1);
        }
    }
    for out in 0..highest {
        if Some(out) == keep {
            continue;
        }
        let verdicts = batch.verdicts();
        let pick = |i: usize| matches!(verdicts[i], Verdict::Tx(_)) && egress[i] as usize == out;
        let (sent, failed) = match copies.get_mut(out) {
            Some(c) => c.send(batch, pick),
            None => (0, (0..batch.len()).filter(|&i| pick(i)).count() as u32),
        };
        st.sent += sent as u64;
        if failed > 0 {
            // The sender took a prefix of the picked frames, in batch order.
            let mut seen = 0;
            for (i, &e) in egress.iter().enumerate().take(batch.len()) {
                if matches!(batch.verdicts()[i], Verdict::Tx(_)) && e as usize == out {
                    if seen >= sent {
                        batch.set_verdict(i, Verdict::Drop(DropReason::TxFull));
                    }
                    seen += 1;
                }
            }
        }
    }
    for (i, &e) in egress.iter().enumerate().take(batch.len()) {
        if matches!(batch.verdicts()[i], Verdict::Tx(_)) && Some(e as usize) != keep {
            batch.set_verdict(i, Verdict::Pass);
        }
    }
    st
}

#[cfg(test)]
mod counting_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod pending_tests;
#[cfg(test)]
mod tests;
