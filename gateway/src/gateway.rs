//! The gateway: everything `vipgate run` starts, as one value. It loads the
//! Services, opens the sockets, starts the pinned workers and the admin
//! endpoint (with the workers' counters and flow listings wired in), keeps
//! the XDP steering maps and the neighbour table in step with each
//! published generation, and on stop joins the workers and detaches.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::admin::{AdminServer, Health, Metrics};
use control::model::ModelOptions;
use control::service_health::ServiceHealthServer;
use dataplane::addr::Addr;
use dataplane::generation::Tables;
use dataplane::io::af_packet::interface_exists;
use dataplane::io::af_xdp::{XdpLink, XdpSteering};
use dataplane::neigh::Neighbours;
use dataplane::pipeline::NodeAddrs;
use dataplane::table::TableConfig;
use dataplane::worker::{WorkerConfig, WorkerCounters};

use crate::kernel_guard::{KernelGuard, SnatSpace};
use crate::ports::{self, IoMode, Opened, PacketRing};
use crate::source::{self, ServiceSource};
use crate::steer_sync::SteerSync;
use crate::workers;

/// How often the control side looks for a new generation and drains
/// unknown-neighbour reports.
const SYNC_EVERY: Duration = Duration::from_millis(20);
/// How often the neighbour snapshot is re-read from the kernel.
const NEIGH_REFRESH: Duration = Duration::from_millis(100);

/// What to start.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Interfaces carrying Service traffic.
    pub ifaces: Vec<String>,
    pub io: IoMode,
    /// The AF_PACKET rx ring.
    pub ring: PacketRing,
    pub workers: usize,
    /// Cores to pin workers to (worker i on the i-th, wrapping); empty:
    /// the last cores.
    pub cores: Vec<usize>,
    /// Admin endpoint; port 0 picks one.
    pub admin_addr: SocketAddr,
    pub source: ServiceSource,
    pub worker: WorkerConfig,
    pub table: TableConfig,
    pub model: ModelOptions,
    /// Where `healthCheckNodePort` health checks listen; empty: every
    /// address of the node, as kube-proxy without `--nodeport-addresses`.
    pub health_check_addrs: Vec<std::net::IpAddr>,
}

/// Why [`Gateway::serve`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The stop flag was set (SIGINT/SIGTERM).
    Stopped,
    /// A worker thread ended on its own (it panicked).
    WorkerEnded,
    /// This interface disappeared (deleted, or its namespace was).
    InterfaceGone(String),
}

/// What the gateway did, once stopped.
#[derive(Debug)]
pub struct Finished {
    /// Per worker, with its sockets' kernel-side losses.
    pub counters: Vec<WorkerCounters>,
    /// Workers whose thread panicked (their last published counters are
    /// in `counters`).
    pub panicked: Vec<usize>,
    /// From start to stop.
    pub seconds: f64,
}

/// A running gateway.
pub struct Gateway {
    ifaces: Vec<String>,
    tables: Tables,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    source: Option<source::Running>,
    /// The health check listeners; also held by the source's callback.
    service_health: Option<Arc<ServiceHealthServer>>,
    neigh: Arc<Neighbours>,
    running: Vec<workers::Running>,
    /// Steering programs' maps and the links that keep them attached.
    xdp: Option<(Vec<XdpSteering>, Vec<XdpLink>)>,
    sync: SteerSync,
    /// AF_PACKET only: keeps the kernel from answering node ports and
    /// source-NAT replies itself.
    kernel_guard: Option<KernelGuard>,
    admin: Option<AdminServer>,
    io_desc: String,
    facts: Vec<String>,
    stop: &'static AtomicBool,
    started: Instant,
}

impl Gateway {
    /// Starts everything; the workers run until `stop` is set.
    pub fn start(mut cfg: GatewayConfig, stop: &'static AtomicBool) -> Result<Gateway, String> {
        let workers = cfg.workers.max(1);
        let tables = Tables::empty(cfg.table);
        let health = Arc::new(Health::new());
        let metrics = Arc::new(Metrics::new(
            "starting",
            tables.clone(),
            Arc::clone(&health),
        ));
        let service_health = Arc::new(
            ServiceHealthServer::start(cfg.health_check_addrs.clone(), Arc::clone(&health))
                .map_err(|e| format!("health check server: {e}"))?,
        );
        let neigh = Arc::new(Neighbours::open(&cfg.ifaces)?);
        if cfg.model.node_addresses.is_empty() {
            cfg.model.node_addresses = iface_addrs(neigh.load().ifaces()).collect();
        }
        tracing::info!(
            "node ports are served on {}",
            if cfg.model.node_addresses.is_empty() {
                "no address (the interfaces have none; set --node-address)".to_string()
            } else {
                let a: Vec<String> = cfg
                    .model
                    .node_addresses
                    .iter()
                    .map(Addr::to_string)
                    .collect();
                a.join(", ")
            }
        );
        let node_port_addrs = cfg.model.node_addresses.clone();
        let source = source::start(
            &cfg.source,
            cfg.model,
            &tables,
            &health,
            &metrics,
            &service_health,
        )?;
        let pipeline = &mut cfg.worker.pipeline;
        let node = node_addrs(pipeline.node_addrs, neigh.load().ifaces());
        pipeline.node_addrs = node;
        let show =
            |a: Option<Addr>, missing: &str| a.map_or(missing.to_string(), |a| a.to_string());
        tracing::info!(
            "ICMP time exceeded is sent from {} / {}",
            show(node.v4, "(no IPv4 address: dropped)"),
            show(node.v6, "(no IPv6 address: dropped)"),
        );
        // Source NAT leaves from the node's address unless set.
        let snat = &mut pipeline.snat.addrs;
        snat.v4 = snat.v4.or(node.v4);
        snat.v6 = snat.v6.or(node.v6);
        warn_if_ephemeral(pipeline.snat.ports);
        tracing::info!(
            "source NAT (snat Services, hairpins, clashing flows) from {} / {}, ports {}-{}",
            show(snat.v4, "(no IPv4 address)"),
            show(snat.v6, "(no IPv6 address)"),
            pipeline.snat.ports.0,
            pipeline.snat.ports.1,
        );
        let opened = ports::open(cfg.io, &cfg.ifaces, workers, cfg.ring)?;
        let facts = opened.facts(&cfg.ifaces);
        let mut sync = SteerSync::default();
        let mut kernel_guard = None;
        let snat_space = SnatSpace {
            addrs: [
                cfg.worker.pipeline.snat.addrs.v4,
                cfg.worker.pipeline.snat.addrs.v6,
            ]
            .into_iter()
            .flatten()
            .collect(),
            ports: cfg.worker.pipeline.snat.ports,
        };
        let (running, xdp, io_desc) = match opened {
            Opened::Xdp(mut x) => {
                sync.apply(&tables.current(), &mut x.steering)?;
                let idle = x.ports.iter().filter(|p| p.is_empty()).count();
                if idle > 0 {
                    tracing::info!("{idle} of {workers} workers have no rx queue (fewer queues than workers); they process frames handed over by the others");
                }
                let r = workers::spawn(x.ports, cfg.worker, &tables, &neigh, &cfg.cores, stop)?;
                let desc = format!("af_xdp ({} mode)", x.mode);
                (r, Some((x.steering, x.links)), desc)
            }
            Opened::Packet(p) => {
                let mut guard = KernelGuard::new(&cfg.ifaces, &node_port_addrs, snat_space);
                guard.apply(&tables.current());
                kernel_guard = Some(guard);
                let r = workers::spawn(p, cfg.worker, &tables, &neigh, &cfg.cores, stop)?;
                let desc = if workers > 1 {
                    "af_packet (fanout hash)".to_string()
                } else {
                    "af_packet".to_string()
                };
                (r, None, desc)
            }
        };
        health.set_attached(true);
        let mode = io_desc.split_whitespace().next().unwrap_or("");
        metrics.set_workers(mode, running.iter().map(|r| r.handle()).collect());
        let mut gw = Gateway {
            ifaces: cfg.ifaces,
            tables,
            health,
            metrics,
            source: Some(source),
            service_health: Some(service_health),
            neigh,
            running,
            xdp,
            sync,
            kernel_guard,
            admin: None,
            io_desc,
            facts,
            stop,
            started: Instant::now(),
        };
        // From here on, an error stops the workers (Drop).
        let admin = AdminServer::start_with_metrics(
            cfg.admin_addr,
            gw.tables.clone(),
            Arc::clone(&gw.health),
            Arc::clone(&gw.metrics),
        )
        .map_err(|e| {
            format!(
                "admin endpoint {}: {e} (pick another with --admin-addr)",
                cfg.admin_addr
            )
        })?;
        gw.admin = Some(admin);
        for b in backends(&gw.tables) {
            gw.neigh.resolve_if_unknown(&b);
        }
        Ok(gw)
    }

    /// One line per interface: driver, MTU, offloads and what they mean
    /// for the I/O mode in use.
    pub fn facts(&self) -> &[String] {
        &self.facts
    }

    /// "af_xdp (copy mode)", "af_packet (fanout hash)", ...
    pub fn io_desc(&self) -> &str {
        &self.io_desc
    }

    pub fn workers(&self) -> usize {
        self.running.len()
    }

    /// The admin endpoint's bound address (the real port when asked for 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// The live tables.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// What `/metrics`, `/stats` and `/conntrack` read.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Keeps steering maps and neighbours in step with the published
    /// tables and watches the API's health, until the stop flag is set, a
    /// worker ends or an interface disappears.
    pub fn serve(&mut self) -> Ended {
        let mut last_gen = self.tables.current().generation();
        let mut api_healthy = true;
        let mut last_refresh = Instant::now();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ended::Stopped;
            }
            if self.running.iter().any(|r| r.handle.is_finished()) {
                return Ended::WorkerEnded;
            }
            std::thread::sleep(SYNC_EVERY);
            if last_refresh.elapsed() >= NEIGH_REFRESH {
                // An interface that vanished (its namespace deleted, a
                // pod's veth removed) leaves nothing to serve: stop, rather
                // than poll dead sockets forever.
                if let Some(i) = self.ifaces.iter().find(|i| !interface_exists(i)) {
                    return Ended::InterfaceGone(i.clone());
                }
            }
            let t = self.tables.current();
            if t.generation() != last_gen {
                last_gen = t.generation();
                if let Some((steering, _)) = self.xdp.as_mut() {
                    if let Err(e) = self.sync.apply(&t, steering) {
                        tracing::warn!("{e}");
                    }
                }
                if let Some(g) = self.kernel_guard.as_mut() {
                    g.apply(&t);
                }
                for b in backends(&self.tables) {
                    self.neigh.resolve_if_unknown(&b);
                }
            }
            let asked = self.neigh.resolve_misses();
            if asked > 0 || last_refresh.elapsed() >= NEIGH_REFRESH {
                if let Err(e) = self.neigh.refresh() {
                    tracing::warn!("neighbour refresh: {e}");
                }
                last_refresh = Instant::now();
            }
            if let Some(source::Running::Kube(k)) = &self.source {
                // An outage is shown in /readyz and logged once each way;
                // the last good tables keep serving through it.
                let st = k.status();
                let healthy = st.healthy();
                if healthy != api_healthy {
                    match st.last_error() {
                        Some(e) if !healthy => tracing::warn!(
                            "Kubernetes API: {e}; serving the last good tables (generation {})",
                            self.tables.current().generation()
                        ),
                        _ => tracing::info!("Kubernetes API reachable again"),
                    }
                    api_healthy = healthy;
                }
                self.health
                    .set_source_error(if healthy { None } else { st.last_error() });
            }
        }
    }

    /// Stops the workers (they close their sockets), detaches XDP, stops
    /// the admin endpoint and the source; returns what the workers did.
    pub fn shutdown(mut self) -> Finished {
        self.finish()
    }

    fn finish(&mut self) -> Finished {
        // A worker that ended on its own (a panic) stops the others too.
        self.stop.store(true, Ordering::Relaxed);
        self.health.set_attached(false);
        let mut counters = Vec::with_capacity(self.running.len());
        let mut panicked = Vec::new();
        for (w, r) in self.running.drain(..).enumerate() {
            match r.handle.join() {
                Ok(c) => counters.push(c),
                Err(_) => {
                    panicked.push(w);
                    counters.push(r.shared.load());
                }
            }
        }
        // Detach XDP (links drop) only after the workers closed their sockets.
        self.xdp = None;
        self.kernel_guard = None;
        if let Some(a) = self.admin.take() {
            a.stop();
        }
        if let Some(s) = self.source.take() {
            s.stop();
        }
        // The source's callback held the other reference: this closes them.
        self.service_health = None;
        Finished {
            counters,
            panicked,
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

impl Drop for Gateway {
    /// A gateway dropped without `shutdown` (an error after the workers
    /// started) still stops its workers and detaches.
    fn drop(&mut self) {
        if !self.running.is_empty() || self.admin.is_some() || self.source.is_some() {
            self.finish();
        }
    }
}

/// The node addresses the pipeline answers from: the configured ones, and
/// for a family without one the first address of that family on the
/// interfaces in order (IPv6 link-local skipped: it cannot reach a client
/// off the link).
fn node_addrs(set: NodeAddrs, ifaces: &[dataplane::neigh::Iface]) -> NodeAddrs {
    let first = |v6: bool| iface_addrs(ifaces).find(|a| a.is_v4() != v6);
    NodeAddrs {
        v4: set.v4.or_else(|| first(false)),
        v6: set.v6.or_else(|| first(true)),
    }
}

/// The kernel's own ephemeral ports must not be source-NAT ports: a reply
/// to the node's connection would be taken for a flow's (and, with
/// AF_PACKET, dropped from the kernel).
fn warn_if_ephemeral((first, last): (u16, u16)) {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    let mut it = text
        .split_whitespace()
        .filter_map(|t| t.parse::<u16>().ok());
    if let (Some(lo), Some(hi)) = (it.next(), it.next()) {
        if lo <= last && first <= hi {
            tracing::warn!(
                "source-NAT ports {first}-{last} overlap the kernel's ephemeral ports {lo}-{hi} \
                 (net.ipv4.ip_local_port_range): the node's own connections may lose replies; \
                 move one of them (--snat-ports)"
            );
        }
    }
}

/// The interfaces' addresses in order, without IPv6 link-local ones (they
/// cannot reach a client off the link, and kube-proxy skips them too).
fn iface_addrs(ifaces: &[dataplane::neigh::Iface]) -> impl Iterator<Item = Addr> + '_ {
    ifaces
        .iter()
        .flat_map(|i| &i.nets)
        .map(|&(a, _)| a)
        .filter(|a| !(!a.is_v4() && a.0[0] == 0xfe && a.0[1] & 0xc0 == 0x80))
}

fn backends(tables: &Tables) -> Vec<Addr> {
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
