//! Starting the workers: one per port list, all in one handoff group, each
//! on its own thread pinned to a core.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use control::admin::WorkerHandle;
use dataplane::generation::Tables;
use dataplane::io::PacketIo;
use dataplane::neigh::Neighbours;
use dataplane::worker::{
    self, FlowDump, ForeignTx, Handoff, IdleWait, Port, SharedCounters, Worker, WorkerConfig,
    WorkerCounters,
};

/// A running worker thread, its published counters and its flow listings.
pub struct Running {
    pub handle: std::thread::JoinHandle<WorkerCounters>,
    pub shared: Arc<SharedCounters>,
    pub flows: Arc<FlowDump>,
}

impl Running {
    /// What the admin endpoint reads of it.
    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle {
            shared: Arc::clone(&self.shared),
            flows: Arc::clone(&self.flows),
        }
    }
}

/// The core worker `w` runs on: the i-th of `cores` (wrapping), else
/// counted down from the last core, so the control thread and the kernel's
/// softirq work keep the low cores.
pub fn core_for(cores: &[usize], w: usize) -> Option<usize> {
    if !cores.is_empty() {
        return Some(cores[w % cores.len()]);
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(n - 1 - w % n)
}

/// Builds one worker per port list (all in one handoff group) and runs
/// each on its own pinned thread until `stop`.
pub fn spawn<I>(
    per_worker: Vec<Vec<Port<I>>>,
    cfg: WorkerConfig,
    tables: &Tables,
    neigh: &Arc<Neighbours>,
    cores: &[usize],
    stop: &'static AtomicBool,
) -> Result<Vec<Running>, String>
where
    I: PacketIo + IdleWait + ForeignTx + Send + 'static,
{
    // Slots as large as the largest frame any port hands out (AF_PACKET:
    // GSO super-frames), so a handed-over frame is never too big.
    let max_frame = per_worker
        .iter()
        .flatten()
        .map(|p| p.io.max_frame())
        .max()
        .unwrap_or(0);
    let handoff = Handoff::for_frames(per_worker.len(), max_frame);
    let mut built = Vec::with_capacity(per_worker.len());
    for (me, ports) in per_worker.into_iter().enumerate() {
        let w = Worker::in_group(ports, &cfg, tables.clone(), Arc::clone(neigh), &handoff, me)
            .map_err(|e| format!("worker {me}: {e}"))?;
        built.push(w);
    }
    let mut running: Vec<Running> = Vec::with_capacity(built.len());
    for (me, mut w) in built.into_iter().enumerate() {
        let shared = w.shared();
        let flows = w.flow_dump();
        let core = core_for(cores, me);
        let handle = std::thread::Builder::new()
            .name(format!("vipgate-worker-{me}"))
            .spawn(move || {
                if let Some(c) = core {
                    if !worker::pin_to_core(c) {
                        tracing::warn!("cannot pin worker {me} to core {c}; running unpinned");
                    }
                }
                w.run(stop)
                // The worker (sockets) drops here, on its own thread.
            });
        let handle = match handle {
            Ok(h) => h,
            Err(e) => {
                // Those already running would poll on forever: stop them.
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                for r in running {
                    let _ = r.handle.join();
                }
                return Err(format!("cannot start worker thread {me}: {e}"));
            }
        };
        running.push(Running {
            handle,
            shared,
            flows,
        });
    }
    Ok(running)
}
