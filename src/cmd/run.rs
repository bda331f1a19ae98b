//! `vipgate run`: the gateway on real interfaces. Loads services (a file,
//! reloaded on change, or the Kubernetes API), opens AF_XDP or AF_PACKET
//! sockets, serves the admin endpoint, runs the worker on a pinned core,
//! and on SIGINT/SIGTERM stops, detaches and prints its counters.

/// Opening sockets per I/O mode, with the AF_XDP -> AF_PACKET fallback.
mod ports;
/// XDP steering maps kept equal to the published table.
mod steer_sync;
/// Final counters as text.
mod summary;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use control::admin::{AdminServer, Health, DEFAULT_ADMIN_ADDR};
use control::file_source::{FileEvent, FileSource, DEFAULT_POLL};
use control::kube_source::{KubeSource, KubeSourceConfig};
use control::publish::Publisher;
use dataplane::generation::Tables;
use dataplane::io::{PacketIo, MAX_BURST};
use dataplane::neigh::Neighbours;
use dataplane::worker::{
    self, IdleWait, Port, SharedCounters, Worker, WorkerConfig, WorkerCounters,
};

use self::ports::{IoMode, Opened};
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
    /// Worker threads. This version runs one worker (one conntrack) that
    /// polls every socket; more are refused with a warning.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Cores to pin workers to (comma-separated); default: the last core.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    cores: Vec<usize>,
    /// Admin endpoint (/services, /healthz, /readyz); port 0 picks one.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    admin_addr: SocketAddr,
    /// Services and EndpointSlices YAML (reloaded when it changes) instead
    /// of the Kubernetes API.
    #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
    services: Option<PathBuf>,
    /// Kubeconfig for the API; default: KUBECONFIG, ~/.kube/config or in-cluster.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Frames per burst.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=MAX_BURST as i64))]
    burst: u16,
    #[command(flatten)]
    tuning: Tuning,
}

/// Whichever source feeds the tables; dropping it stops it.
enum Source {
    File(FileSource),
    Kube(KubeSource),
}

fn start_source(args: &RunArgs, tables: &Tables, health: &Arc<Health>) -> Result<Source, String> {
    let publisher = Publisher::new(tables.clone(), args.tuning.model_options());
    if let Some(path) = &args.services {
        let (src, first) =
            FileSource::start(path.clone(), publisher, DEFAULT_POLL, |ev| match ev {
                FileEvent::Loaded(p) => {
                    for w in &p.warnings {
                        eprintln!("vipgate: warning: {w}");
                    }
                    eprintln!(
                        "vipgate: services reloaded: generation {}, {} service ports",
                        p.generation, p.stats.services
                    );
                }
                FileEvent::Failed(e) => {
                    eprintln!(
                        "vipgate: warning: services reload failed, keeping the last tables: {e}"
                    )
                }
            })
            .map_err(|e| format!("services file {}: {e}", path.display()))?;
        for w in &first.warnings {
            eprintln!("vipgate: warning: {w}");
        }
        health.set_synced(true);
        return Ok(Source::File(src));
    }
    let cfg = KubeSourceConfig {
        kubeconfig: args.kubeconfig.clone(),
        ..KubeSourceConfig::default()
    };
    let h = Arc::clone(health);
    let mut publisher = publisher;
    let src = KubeSource::start(cfg, move |snap| {
        let p = publisher.publish_shared(&snap.services, &snap.slices);
        for w in &p.warnings {
            eprintln!("vipgate: warning: {w}");
        }
        h.set_synced(true);
    })
    .map_err(|e| format!("{e} (pass --services FILE or --kubeconfig PATH)"))?;
    Ok(Source::Kube(src))
}

fn default_core() -> Option<usize> {
    dataplane_cores().last().copied()
}

fn dataplane_cores() -> Vec<usize> {
    std::thread::available_parallelism()
        .map(|n| (0..n.get()).collect())
        .unwrap_or_default()
}

/// Builds the worker and runs it on its own pinned thread.
fn spawn_worker<I>(
    ports: Vec<Port<I>>,
    cfg: WorkerConfig,
    tables: Tables,
    neigh: Arc<Neighbours>,
    core: Option<usize>,
    stop: &'static AtomicBool,
) -> Result<(std::thread::JoinHandle<WorkerCounters>, Arc<SharedCounters>), String>
where
    I: PacketIo + IdleWait + Send + 'static,
{
    let mut w = Worker::new(ports, &cfg, tables, neigh)?;
    let shared = w.shared();
    let h = std::thread::Builder::new()
        .name("vipgate-worker-0".into())
        .spawn(move || {
            if let Some(c) = core {
                if !worker::pin_to_core(c) {
                    eprintln!(
                        "vipgate: warning: cannot pin the worker to core {c}; running unpinned"
                    );
                }
            }
            w.run(stop)
            // The worker (sockets) drops here, on its own thread.
        })
        .map_err(|e| format!("cannot start the worker thread: {e}"))?;
    Ok((h, shared))
}

pub fn run(args: RunArgs) -> Result<(), String> {
    let stop =
        worker::stop_on_signals().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    if args.workers > 1 {
        eprintln!(
            "vipgate: warning: --workers {} not supported yet: running 1 worker that polls every socket (one conntrack keeps both directions of each flow together)",
            args.workers
        );
    }
    let core = args.cores.first().copied().or_else(default_core);
    let tables = Tables::empty(args.tuning.table_config());
    let health = Arc::new(Health::new());
    let source = start_source(&args, &tables, &health)?;
    let neigh = Arc::new(Neighbours::open(&args.ifaces)?);

    let opened = ports::open(args.io, &args.ifaces)?;
    let cfg = WorkerConfig {
        burst: usize::from(args.burst),
        pipeline: args.tuning.pipeline_config(),
    };
    let mut sync = SteerSync::default();
    let (handle, shared, mut xdp, io_desc) = match opened {
        Opened::Xdp(mut x) => {
            sync.apply(&tables.current(), &mut x.steering)?;
            let (h, s) =
                spawn_worker(x.ports, cfg, tables.clone(), Arc::clone(&neigh), core, stop)?;
            let desc = format!("af_xdp ({} mode)", x.mode);
            (h, s, Some((x.steering, x.links)), desc)
        }
        Opened::Packet(p) => {
            let (h, s) = spawn_worker(p, cfg, tables.clone(), Arc::clone(&neigh), core, stop)?;
            (h, s, None, "af_packet".to_string())
        }
    };
    health.set_attached(true);
    let admin =
        AdminServer::start(args.admin_addr, tables.clone(), Arc::clone(&health)).map_err(|e| {
            format!(
                "admin endpoint {}: {e} (pick another with --admin-addr)",
                args.admin_addr
            )
        })?;
    for b in backends(&tables) {
        neigh.resolve_if_unknown(&b);
    }
    println!(
        "vipgate: running on {} via {}, {} service ports, admin http://{}",
        args.ifaces.join(","),
        io_desc,
        tables.current().len(),
        admin.local_addr()
    );
    let started = Instant::now();

    let mut last_gen = tables.current().generation();
    let mut last_refresh = Instant::now();
    while !stop.load(Ordering::Relaxed) && !handle.is_finished() {
        std::thread::sleep(SYNC_EVERY);
        let t = tables.current();
        if t.generation() != last_gen {
            last_gen = t.generation();
            if let Some((steering, _)) = xdp.as_mut() {
                if let Err(e) = sync.apply(&t, steering) {
                    eprintln!("vipgate: warning: {e}");
                }
            }
            for b in backends(&tables) {
                neigh.resolve_if_unknown(&b);
            }
        }
        let asked = neigh.resolve_misses();
        if asked > 0 || last_refresh.elapsed() >= NEIGH_REFRESH {
            if let Err(e) = neigh.refresh() {
                eprintln!("vipgate: warning: neighbour refresh: {e}");
            }
            last_refresh = Instant::now();
        }
        if let Source::Kube(k) = &source {
            health.set_source_error(k.status().last_error());
        }
    }
    stop.store(true, Ordering::Relaxed);
    health.set_attached(false);
    let joined = handle.join();
    // Detach XDP (links drop) only after the worker closed its sockets.
    drop(xdp);
    admin.stop();
    match source {
        Source::File(f) => f.stop(),
        Source::Kube(k) => k.stop(),
    }
    let counters = match joined {
        Ok(c) => c,
        Err(_) => {
            let last = shared.load();
            print!(
                "{}",
                summary::to_text(&last, 1, started.elapsed().as_secs_f64())
            );
            return Err("the worker thread panicked".into());
        }
    };
    print!(
        "{}",
        summary::to_text(&counters, 1, started.elapsed().as_secs_f64())
    );
    Ok(())
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
