//! `vipgate run`: the gateway on real interfaces. Loads services (a file,
//! reloaded on change, or the Kubernetes API), opens AF_XDP or AF_PACKET
//! sockets, serves the admin endpoint, runs the workers on pinned cores
//! (several share the traffic and hand each frame to its flow's owner),
//! and on SIGINT/SIGTERM stops, detaches and prints its counters.

/// Opening sockets per I/O mode, with the AF_XDP -> AF_PACKET fallback.
mod ports;
/// XDP steering maps kept equal to the published table.
mod steer_sync;
/// Final counters as text.
mod summary;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use control::admin::{AdminServer, Health, Metrics, WorkerHandle, DEFAULT_ADMIN_ADDR};
use control::file_source::{FileEvent, FileSource, DEFAULT_POLL};
use control::kube_source::{KubeSource, KubeSourceConfig};
use control::publish::Publisher;
use dataplane::generation::Tables;
use dataplane::io::{PacketIo, MAX_BURST};
use dataplane::neigh::Neighbours;
use dataplane::worker::{
    self, FlowDump, ForeignTx, Handoff, IdleWait, Port, SharedCounters, Worker, WorkerConfig,
    WorkerCounters,
};

use self::ports::{AfPacketRing, IoMode, Opened};
use self::steer_sync::SteerSync;
use super::tuning::Tuning;

/// How often the control side looks for a new generation and drains
/// unknown-neighbour reports.
const SYNC_EVERY: Duration = Duration::from_millis(20);
/// How often the neighbour snapshot is re-read from the kernel.
const NEIGH_REFRESH: Duration = Duration::from_millis(100);

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Interfaces carrying Service traffic (comma-separated or repeated).
    #[arg(
        long = "iface",
        value_name = "NAME",
        value_delimiter = ',',
        required = true
    )]
    ifaces: Vec<String>,
    /// Packet I/O backend.
    #[arg(long, value_enum, default_value_t = IoMode::Auto)]
    io: IoMode,
    /// AF_PACKET rx ring: `frames` (TPACKET_V2, a slot per frame handed
    /// over at once: no added latency, 34 MiB per socket) or `blocks`
    /// (TPACKET_V3, frames packed in blocks: denser, but a block waits up
    /// to 1 ms to fill, which delays quiet flows and slows TCP).
    #[arg(long, value_enum, default_value_t = AfPacketRing::Frames)]
    af_packet_ring: AfPacketRing,
    /// AF_PACKET frame ring depth in frames (`--af-packet-ring frames`):
    /// each slot holds a 64 KiB super-frame (68 KiB of kernel memory per
    /// slot and socket, allocated up front), so the default 512 slots are
    /// 34 MiB; more slots absorb longer bursts of small frames.
    #[arg(long, value_name = "N", default_value_t = dataplane::io::af_packet::config::DEFAULT_FRAME_SLOTS,
          value_parser = clap::value_parser!(u32).range(16..=65536))]
    af_packet_slots: u32,
    /// Worker threads, each with its own sockets and conntrack. AF_PACKET:
    /// one fanout socket per interface and worker. AF_XDP: one worker per
    /// rx queue; workers beyond the queue count only process frames handed
    /// to them. A frame received by a worker that does not own its flow is
    /// handed to the owner.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Cores to pin workers to (comma-separated, worker i on the i-th,
    /// wrapping); default: the last cores, worker 0 on the last one.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    cores: Vec<usize>,
    /// Admin endpoint (/services, /healthz, /readyz, /metrics for
    /// Prometheus, /stats for `vipgate stats`, /conntrack for `vipgate
    /// conntrack`); port 0 picks one.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    admin_addr: SocketAddr,
    /// Services and EndpointSlices YAML (reloaded when it changes) instead
    /// of the Kubernetes API.
    #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
    services: Option<PathBuf>,
    /// Kubeconfig for the API; default: KUBECONFIG, ~/.kube/config or in-cluster.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Watch Services and EndpointSlices of this namespace only (default: all).
    #[arg(long, value_name = "NS", conflicts_with = "services")]
    namespace: Option<String>,
    /// Frames per burst (also `--batch`).
    #[arg(long, visible_alias = "batch", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=MAX_BURST as i64))]
    burst: u16,
    #[command(flatten)]
    tuning: Tuning,
}

/// Whichever source feeds the tables; dropping it stops it.
enum Source {
    File(FileSource),
    Kube(KubeSource),
}

fn start_source(
    args: &RunArgs,
    tables: &Tables,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
) -> Result<Source, String> {
    let publisher = Publisher::new(tables.clone(), args.tuning.model_options());
    if let Some(path) = &args.services {
        let hf = Arc::clone(health);
        let mf = Arc::clone(metrics);
        let (src, first) =
            FileSource::start(path.clone(), publisher, DEFAULT_POLL, move |ev| match ev {
                FileEvent::Loaded(p) => {
                    mf.observe_publication(p.took, p.stats.rebuilt, &p.triggers);
                    hf.add_skipped(p.warnings.len());
                    for w in &p.warnings {
                        tracing::warn!("{w}");
                    }
                    tracing::info!(
                        "services reloaded: generation {}, {}",
                        p.generation,
                        service_ports(p.stats.services)
                    );
                }
                FileEvent::Failed(e) => {
                    tracing::warn!("services reload failed, keeping the last tables: {e}")
                }
            })
            // The loader's error names the file already.
            .map_err(|e| e.to_string())?;
        metrics.observe_publication(first.took, first.stats.rebuilt, &first.triggers);
        health.add_skipped(first.warnings.len());
        for w in &first.warnings {
            tracing::warn!("{w}");
        }
        if first.stats.services == 0 {
            tracing::warn!(
                "0 service ports loaded from {}: every packet goes to the \
                 kernel until the file holds Services with ClusterIPs and ports",
                path.display()
            );
        }
        health.set_synced(true);
        return Ok(Source::File(src));
    }
    let cfg = KubeSourceConfig {
        kubeconfig: args.kubeconfig.clone(),
        namespace: args.namespace.clone(),
        ..KubeSourceConfig::default()
    };
    let h = Arc::clone(health);
    let m = Arc::clone(metrics);
    let mut publisher = publisher;
    let src = KubeSource::start(cfg, move |snap| {
        let p = publisher.publish_shared(&snap.services, &snap.slices);
        m.observe_publication(p.took, p.stats.rebuilt, &p.triggers);
        h.add_skipped(p.warnings.len());
        for w in &p.warnings {
            tracing::warn!("{w}");
        }
        h.set_synced(true);
    })
    .map_err(|e| format!("{e} (pass --services FILE or --kubeconfig PATH)"))?;
    Ok(Source::Kube(src))
}

/// The core worker `w` runs on: the i-th of `--cores` (wrapping), else
/// counted down from the last core, so the control thread and the kernel's
/// softirq work keep the low cores.
fn core_for(cores: &[usize], w: usize) -> Option<usize> {
    if !cores.is_empty() {
        return Some(cores[w % cores.len()]);
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(n - 1 - w % n)
}

/// A running worker thread, its published counters and its flow listings.
struct Running {
    handle: std::thread::JoinHandle<WorkerCounters>,
    shared: Arc<SharedCounters>,
    flows: Arc<FlowDump>,
}

/// Builds one worker per port list (all in one handoff group) and runs
/// each on its own pinned thread.
fn spawn_workers<I>(
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
    let mut running = Vec::with_capacity(built.len());
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
            })
            .map_err(|e| format!("cannot start worker thread {me}: {e}"))?;
        running.push(Running {
            handle,
            shared,
            flows,
        });
    }
    Ok(running)
}

pub fn run(args: RunArgs) -> Result<(), String> {
    let stop =
        worker::stop_on_signals().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let workers = usize::from(args.workers);
    let tables = Tables::empty(args.tuning.table_config());
    let health = Arc::new(Health::new());
    let metrics = Arc::new(Metrics::new(
        "starting",
        tables.clone(),
        Arc::clone(&health),
    ));
    let source = start_source(&args, &tables, &health, &metrics)?;
    let neigh = Arc::new(Neighbours::open(&args.ifaces)?);

    let ring = ports::PacketRing {
        kind: args.af_packet_ring.into(),
        slots: args.af_packet_slots,
    };
    let opened = ports::open(args.io, &args.ifaces, workers, ring)?;
    for line in opened.facts(&args.ifaces) {
        println!("vipgate: interface {line}");
    }
    let cfg = WorkerConfig {
        burst: usize::from(args.burst),
        pipeline: args.tuning.pipeline_config(),
    };
    let mut sync = SteerSync::default();
    let (running, mut xdp, io_desc) = match opened {
        Opened::Xdp(mut x) => {
            sync.apply(&tables.current(), &mut x.steering)?;
            let idle = x.ports.iter().filter(|p| p.is_empty()).count();
            if idle > 0 {
                tracing::info!("{idle} of {workers} workers have no rx queue (fewer queues than workers); they process frames handed over by the others"
                );
            }
            let r = spawn_workers(x.ports, cfg, &tables, &neigh, &args.cores, stop)?;
            let desc = format!("af_xdp ({} mode)", x.mode);
            (r, Some((x.steering, x.links)), desc)
        }
        Opened::Packet(p) => {
            let r = spawn_workers(p, cfg, &tables, &neigh, &args.cores, stop)?;
            let desc = if workers > 1 {
                "af_packet (fanout hash)".to_string()
            } else {
                "af_packet".to_string()
            };
            (r, None, desc)
        }
    };
    health.set_attached(true);
    metrics.set_workers(
        io_mode_label(&io_desc),
        running
            .iter()
            .map(|r| WorkerHandle {
                shared: Arc::clone(&r.shared),
                flows: Arc::clone(&r.flows),
            })
            .collect(),
    );
    let admin = AdminServer::start_with_metrics(
        args.admin_addr,
        tables.clone(),
        Arc::clone(&health),
        Arc::clone(&metrics),
    )
    .map_err(|e| {
        format!(
            "admin endpoint {}: {e} (pick another with --admin-addr)",
            args.admin_addr
        )
    })?;
    for b in backends(&tables) {
        neigh.resolve_if_unknown(&b);
    }
    println!(
        "vipgate: running on {} via {}, {} worker{}, {}, admin http://{}",
        args.ifaces.join(","),
        io_desc,
        workers,
        if workers == 1 { "" } else { "s" },
        service_ports(tables.current().len()),
        admin.local_addr()
    );
    let started = Instant::now();

    let mut last_gen = tables.current().generation();
    let mut api_healthy = true;
    let mut last_refresh = Instant::now();
    let mut gone: Option<String> = None;
    while !stop.load(Ordering::Relaxed) && !running.iter().any(|r| r.handle.is_finished()) {
        std::thread::sleep(SYNC_EVERY);
        if last_refresh.elapsed() >= NEIGH_REFRESH {
            // An interface that vanished (its namespace deleted, a pod's
            // veth removed) leaves nothing to serve: stop, rather than
            // poll dead sockets forever.
            if let Some(i) = args.ifaces.iter().find(|i| !interface_exists(i)) {
                gone = Some(i.clone());
                break;
            }
        }
        let t = tables.current();
        if t.generation() != last_gen {
            last_gen = t.generation();
            if let Some((steering, _)) = xdp.as_mut() {
                if let Err(e) = sync.apply(&t, steering) {
                    tracing::warn!("{e}");
                }
            }
            for b in backends(&tables) {
                neigh.resolve_if_unknown(&b);
            }
        }
        let asked = neigh.resolve_misses();
        if asked > 0 || last_refresh.elapsed() >= NEIGH_REFRESH {
            if let Err(e) = neigh.refresh() {
                tracing::warn!("neighbour refresh: {e}");
            }
            last_refresh = Instant::now();
        }
        if let Source::Kube(k) = &source {
            // An outage is shown in /readyz and logged once each way; the
            // last good tables keep serving through it.
            let st = k.status();
            let healthy = st.healthy();
            if healthy != api_healthy {
                match st.last_error() {
                    Some(e) if !healthy => tracing::warn!(
                        "Kubernetes API: {e}; serving the last good tables (generation {})",
                        tables.current().generation()
                    ),
                    _ => tracing::info!("Kubernetes API reachable again"),
                }
                api_healthy = healthy;
            }
            health.set_source_error(if healthy { None } else { st.last_error() });
        }
    }
    // A worker that ended on its own (a panic) stops the others too.
    stop.store(true, Ordering::Relaxed);
    health.set_attached(false);
    let mut counters = Vec::with_capacity(running.len());
    let mut panicked = Vec::new();
    for (w, r) in running.into_iter().enumerate() {
        match r.handle.join() {
            Ok(c) => counters.push(c),
            Err(_) => {
                panicked.push(w);
                counters.push(r.shared.load());
            }
        }
    }
    // Detach XDP (links drop) only after the workers closed their sockets.
    drop(xdp);
    admin.stop();
    match source {
        Source::File(f) => f.stop(),
        Source::Kube(k) => k.stop(),
    }
    let total = WorkerCounters::total(&counters);
    // Whoever read stdout may be gone (a closed pipe): the counters are
    // lost then, but that must not turn a clean stop into a panic.
    let mut out = std::io::stdout();
    let _ = write!(
        out,
        "{}",
        summary::to_text(&total, workers, started.elapsed().as_secs_f64())
    );
    if workers > 1 {
        let _ = write!(out, "{}", summary::per_worker(&counters));
    }
    let _ = out.flush();
    if !panicked.is_empty() {
        return Err(format!("worker thread(s) {panicked:?} panicked"));
    }
    if let Some(i) = gone {
        return Err(format!(
            "interface {i} disappeared (deleted, or its namespace was); stopped"
        ));
    }
    Ok(())
}

/// `af_xdp` or `af_packet`: the first word of the I/O description.
fn io_mode_label(desc: &str) -> &str {
    desc.split_whitespace().next().unwrap_or(desc)
}

/// "1 service port", "7 service ports".
fn service_ports(n: usize) -> String {
    format!("{n} service port{}", if n == 1 { "" } else { "s" })
}

/// Whether `ifname` exists in this network namespace.
fn interface_exists(ifname: &str) -> bool {
    dataplane::io::af_packet::interface_exists(ifname)
}

fn backends(tables: &Tables) -> Vec<dataplane::addr::Addr> {
    let t = tables.current();
    let mut v: Vec<_> = t
        .entries()
        .iter()
        .flat_map(|e| e.spec.backends.iter().map(|b| b.addr))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn service_ports_reads_right_for_one() {
        assert_eq!(super::service_ports(1), "1 service port");
        assert_eq!(super::service_ports(0), "0 service ports");
        assert_eq!(super::service_ports(7), "7 service ports");
    }
}
