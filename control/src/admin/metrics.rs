//! `/metrics`: Prometheus / OpenMetrics text through the prometheus-client
//! crate. Worker counters are read at scrape time from the blocks the
//! workers publish once per burst (plain stores, see
//! `dataplane::worker::stats`), so a scrape costs a worker nothing; which
//! counters exist, their metric names, labels and help come from their one
//! declaration (`counter_set!`). The control side's own figures (sync
//! durations, network programming latency) are histograms it observes
//! when it publishes a generation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dataplane::conntrack;
use dataplane::counter_decl::{CounterDef, Kind};
use dataplane::counters::Counters;
use dataplane::generation::Tables;
use dataplane::io::IoStats;
use dataplane::service::BackendState;
use dataplane::verdict::DropReason;
use dataplane::worker::{FlowDump, SharedCounters, WorkerCounters};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::health::Health;

/// Help of the families whose members are told apart by a label (each
/// member's own help is its field's doc comment).
const FAMILY_HELP: &[(&str, &str)] = &[
    (
        "vipgate_packets",
        "Frames by the pipeline's verdict (forwarded + reversed + rejected + passed + dropped = vipgate_rx_packets); a frame dropped after its verdict (no_neighbour, tx_full, bad_checksum_offload) stays under it and is in vipgate_drops_total too",
    ),
    ("vipgate_drops", "Dropped frames by reason"),
    (
        "vipgate_io_kernel_drops",
        "Frames the kernel side of the sockets lost or refused, by interface and kind (sampled about once a second)",
    ),
    ("vipgate_handoff_frames", "Frames handed between workers to the owner of their flow"),
    ("vipgate_handoff_drops", "Frames that could not be handed to the owner of their flow"),
    ("vipgate_conntrack_removals", "Conntrack entries removed, by reason"),
];

/// What [`Metrics::observe_publication`] records of one publication.
#[derive(Clone, Copy, Debug)]
pub struct Publication<'a> {
    pub took: Duration,
    pub rebuilt: usize,
    pub rebuild_time: Duration,
    pub triggers: &'a [SystemTime],
}

impl<'a> From<&'a crate::publish::Published> for Publication<'a> {
    fn from(p: &'a crate::publish::Published) -> Publication<'a> {
        Publication {
            took: p.took,
            rebuilt: p.stats.rebuilt,
            rebuild_time: p.stats.rebuild_time,
            triggers: &p.triggers,
        }
    }
}

/// A running worker as the admin endpoint sees it.
#[derive(Clone, Debug)]
pub struct WorkerHandle {
    /// Its counters, published once per burst.
    pub shared: Arc<SharedCounters>,
    /// Where it answers conntrack listings.
    pub flows: Arc<FlowDump>,
}

/// Everything `/metrics` serves. Cheap to share: clone the `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    workers: Arc<Mutex<Vec<WorkerHandle>>>,
    io_mode: Arc<Mutex<String>>,
    sync: Histogram,
    programming: Histogram,
    last_sync: Gauge<f64, std::sync::atomic::AtomicU64>,
    rebuilds: Counter,
    rebuild_time: Histogram,
    publications: Counter,
    started: SystemTime,
}

impl Metrics {
    /// `io_mode` goes into `vipgate_build_info` (`af_xdp`, `af_packet`, ...).
    pub fn new(io_mode: &str, tables: Tables, health: Arc<Health>) -> Metrics {
        let mut registry = Registry::default();
        let workers = Arc::new(Mutex::new(Vec::new()));
        let io_mode = Arc::new(Mutex::new(io_mode.to_string()));
        // 1 ms .. ~65 s: a one-slice change takes a few ms, a full sync of
        // 10,000 Services about a second.
        let sync = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        // 10 ms .. ~5 min, around the Kubernetes SLO (p99 <= 30 s).
        let programming = Histogram::new(exponential_buckets(0.01, 2.0, 15));
        let last_sync = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let rebuilds = Counter::default();
        // 10 us (one small ring) .. ~5 s (a full sync of many large ones).
        let rebuild_time = Histogram::new(exponential_buckets(0.00001, 4.0, 12));
        let publications = Counter::default();
        registry.register(
            "vipgate_sync_duration_seconds",
            "Time from a set of changed objects to the table generation built from them being live",
            sync.clone(),
        );
        registry.register(
            "vipgate_network_programming_duration_seconds",
            "Time from an EndpointSlice's endpoints.kubernetes.io/last-change-trigger-time to the generation carrying it being live (kube-proxy's metric of that name).",
            programming.clone(),
        );
        registry.register(
            "vipgate_last_sync_timestamp_seconds",
            "Unix time of the last published table generation",
            last_sync.clone(),
        );
        registry.register(
            "vipgate_maglev_rebuilds",
            "Maglev rings built because a Service's backend set changed",
            rebuilds.clone(),
        );
        registry.register(
            "vipgate_maglev_rebuild_duration_seconds",
            "Time a publication spent building the Maglev rings of the Services whose backends changed (publications that rebuilt none are not observed)",
            rebuild_time.clone(),
        );
        registry.register(
            "vipgate_table_publications",
            "Table generations published",
            publications.clone(),
        );
        registry.register_collector(Box::new(Live {
            workers: Arc::clone(&workers),
            tables,
            health,
            io_mode: Arc::clone(&io_mode),
        }));
        Metrics {
            registry,
            workers,
            io_mode,
            sync,
            programming,
            last_sync,
            rebuilds,
            rebuild_time,
            publications,
            started: SystemTime::now(),
        }
    }

    /// The running workers, in worker order, and the I/O mode they use
    /// (set once they are started).
    pub fn set_workers(&self, io_mode: &str, workers: Vec<WorkerHandle>) {
        *self.io_mode.lock().unwrap_or_else(|e| e.into_inner()) = io_mode.to_string();
        *self.workers.lock().unwrap_or_else(|e| e.into_inner()) = workers;
    }

    /// The running workers (none before `set_workers`).
    pub fn workers(&self) -> Vec<WorkerHandle> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A generation went live: `took` from objects to swap, `rebuilt`
    /// Maglev rings in `rebuild_time`, and the trigger times of the
    /// EndpointSlice changes it carries. Trigger times from before this process started are not
    /// observed (kube-proxy does the same): they measure how long the
    /// gateway was down, not how fast it programs.
    pub fn observe_publication(&self, p: &Publication) {
        let (took, rebuilt, triggers) = (p.took, p.rebuilt, p.triggers);
        let now = SystemTime::now();
        self.sync.observe(took.as_secs_f64());
        self.rebuilds.inc_by(rebuilt as u64);
        if rebuilt > 0 {
            self.rebuild_time.observe(p.rebuild_time.as_secs_f64());
        }
        self.publications.inc();
        self.last_sync.set(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        for t in triggers {
            if *t < self.started {
                continue;
            }
            if let Ok(d) = now.duration_since(*t) {
                self.programming.observe(d.as_secs_f64());
            }
        }
    }

    /// The live counters as JSON (what `vipgate stats` reads): per worker
    /// and summed, keyed by the declared field names, plus each
    /// interface's kernel-side counters.
    pub fn stats_json(&self) -> serde_json::Value {
        let workers = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let all: Vec<WorkerCounters> = workers.iter().map(|h| h.shared.load()).collect();
        let mut ifaces = serde_json::Map::new();
        for (ifindex, io) in per_iface(&workers) {
            ifaces.insert(iface_name(ifindex), fields(IoStats::DEFS, &io.scalars()));
        }
        serde_json::json!({
            "uptime_seconds": self.started.elapsed().map_or(0.0, |d| d.as_secs_f64()),
            "total": counters_json(&WorkerCounters::total(&all)),
            "workers": all.iter().map(counters_json).collect::<Vec<_>>(),
            "interfaces": ifaces,
        })
    }

    /// The OpenMetrics text exposition (what Prometheus asks for).
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail; a collector error would be a
        // bug, and then the scrape shows what was encoded so far.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    /// The same samples in Prometheus' classic text format 0.0.4, for
    /// clients that do not ask for OpenMetrics (curl, `promtool check
    /// metrics`, older scrapers). prometheus-client writes only
    /// OpenMetrics; the two differ in the header lines alone: a counter's
    /// family is named with its `_total` suffix, and there is no `# EOF`.
    pub fn encode_classic(&self) -> String {
        to_classic(&self.encode())
    }
}

/// Values read at scrape time: the workers' published blocks and the
/// current table.
struct Live {
    workers: Arc<Mutex<Vec<WorkerHandle>>>,
    tables: Tables,
    health: Arc<Health>,
    io_mode: Arc<Mutex<String>>,
}

/// One metric family: its declared members and, per member, one value per
/// label set.
struct Family {
    help: String,
    kind: Kind,
    samples: Vec<(Vec<(&'static str, String)>, u64)>,
}

/// Families in the order first declared.
#[derive(Default)]
struct Families {
    order: Vec<&'static str>,
    by_name: BTreeMap<&'static str, Family>,
}

impl Families {
    fn add(
        &mut self,
        metric: &'static str,
        kind: Kind,
        help: impl FnOnce() -> String,
        labels: Vec<(&'static str, String)>,
        v: u64,
    ) {
        let f = self.by_name.entry(metric).or_insert_with(|| {
            self.order.push(metric);
            let help = FAMILY_HELP
                .iter()
                .find(|(m, _)| *m == metric)
                .map_or_else(help, |(_, h)| h.to_string());
            Family {
                help,
                kind,
                samples: Vec::new(),
            }
        });
        f.samples.push((labels, v));
    }

    /// Adds every declared field of one block, labelled `base` + its own label.
    fn add_defs(&mut self, defs: &[CounterDef], values: &[u64], base: &[(&'static str, String)]) {
        for (d, v) in defs.iter().zip(values) {
            let mut labels = base.to_vec();
            if let Some((k, val)) = d.label {
                labels.push((k, val.to_string()));
            }
            self.add(d.metric, d.kind, || d.help_line(), labels, *v);
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for name in &self.order {
            let f = &self.by_name[name];
            let ty = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            // One sentence, as the registered metrics read (the registry
            // adds their full stop).
            let help = if f.help.ends_with('.') {
                f.help.clone()
            } else {
                format!("{}.", f.help)
            };
            let mut me = encoder.encode_descriptor(name, &help, None, ty)?;
            let encode = |v: u64, e: MetricEncoder| match f.kind {
                Kind::Counter => ConstCounter::new(v).encode(e),
                Kind::Gauge => ConstGauge::new(v as i64).encode(e),
            };
            match f.samples.as_slice() {
                // A family without labels: one sample, no `{}` after its name.
                [(labels, v)] if labels.is_empty() => encode(*v, me)?,
                samples => {
                    for (labels, v) in samples {
                        encode(*v, me.encode_family(labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// OpenMetrics -> text format 0.0.4 (see [`Metrics::encode_classic`]).
fn to_classic(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len() + 64 * counters.len());
    for line in open.lines() {
        if line == "# EOF" {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match header {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{p}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `{key: value}` of one declared block.
fn fields(defs: &[CounterDef], values: &[u64]) -> serde_json::Value {
    defs.iter()
        .zip(values)
        .map(|(d, v)| (d.key.to_string(), serde_json::Value::from(*v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// One worker's (or the total's) counters: the pipeline's and the
/// worker's fields at the top, drops by reason and conntrack nested.
fn counters_json(c: &WorkerCounters) -> serde_json::Value {
    let mut v = fields(Counters::DEFS, &c.pipeline.scalars());
    let o = v.as_object_mut().expect("fields() makes an object");
    o.insert("dropped".into(), c.pipeline.dropped_total().into());
    if let serde_json::Value::Object(w) = fields(WorkerCounters::DEFS, &c.scalars()) {
        o.extend(w);
    }
    let drops: serde_json::Map<_, _> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), c.pipeline.dropped(*r).into()))
        .collect();
    o.insert("drops".into(), drops.into());
    o.insert(
        "conntrack".into(),
        fields(conntrack::Stats::DEFS, &c.conntrack.scalars()),
    );
    o.insert("io".into(), fields(IoStats::DEFS, &c.io.scalars()));
    v
}

/// Kernel-side counters summed per interface over every worker's ports.
fn per_iface(workers: &[WorkerHandle]) -> BTreeMap<u32, IoStats> {
    let mut m: BTreeMap<u32, IoStats> = BTreeMap::new();
    for h in workers {
        for (ifindex, io) in h.shared.load_ports() {
            m.entry(ifindex).or_default().add(&io);
        }
    }
    m
}

/// Interface name of `ifindex` (the index itself if it has none now).
fn iface_name(ifindex: u32) -> String {
    dataplane::io::af_packet::interface_name(ifindex).unwrap_or_else(|| ifindex.to_string())
}

impl Live {
    fn families(&self) -> Families {
        let mut f = Families::default();
        let workers = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (w, h) in workers.iter().enumerate() {
            let c: WorkerCounters = h.shared.load();
            let base = vec![("worker", w.to_string())];
            // Verdicts as first counted, so they never go down (a frame
            // dropped after its verdict moves in the summary's counts).
            let [fwd, rev, rej, pass, dropped_at_verdict] = c.pipeline.by_verdict();
            let gross = Counters {
                forwarded: fwd,
                reversed: rev,
                rejected: rej,
                passed: pass,
                ..c.pipeline
            };
            f.add_defs(Counters::DEFS, &gross.scalars(), &base);
            let mut dropped = base.clone();
            dropped.push(("verdict", "dropped".to_string()));
            f.add(
                "vipgate_packets",
                Kind::Counter,
                String::new,
                dropped,
                dropped_at_verdict,
            );
            for r in DropReason::ALL {
                let mut l = base.clone();
                l.push(("reason", r.name().to_string()));
                f.add(
                    "vipgate_drops",
                    Kind::Counter,
                    String::new,
                    l,
                    c.pipeline.dropped(r),
                );
            }
            f.add_defs(WorkerCounters::DEFS, &c.scalars(), &base);
            f.add_defs(conntrack::Stats::DEFS, &c.conntrack.scalars(), &base);
        }
        for (ifindex, io) in per_iface(&workers) {
            f.add_defs(
                IoStats::DEFS,
                &io.scalars(),
                &[("iface", iface_name(ifindex))],
            );
        }
        let table = self.tables.current();
        f.add(
            "vipgate_services",
            Kind::Gauge,
            || "Service ports (ClusterIP:port/protocol) in the live table".into(),
            vec![],
            table.len() as u64,
        );
        f.add(
            "vipgate_services_retired",
            Kind::Gauge,
            || {
                "Removed Service ports still translating their established TCP flows \
                 (kept for --retire-for, default the established-TCP conntrack timeout)"
                    .into()
            },
            vec![],
            table.retired() as u64,
        );
        let mut states = [0u64; 3];
        for e in table.entries().into_iter().filter(|e| !e.is_retired()) {
            for b in &e.spec.backends {
                states[match b.state {
                    BackendState::Ready => 0,
                    BackendState::ServingTerminating => 1,
                    BackendState::NotServing => 2,
                }] += 1;
            }
        }
        for (state, n) in ["ready", "serving_terminating", "not_serving"]
            .into_iter()
            .zip(states)
        {
            f.add(
                "vipgate_backends",
                Kind::Gauge,
                || "Backends of the live table's Service ports, by endpoint state".into(),
                vec![("state", state.to_string())],
                n,
            );
        }
        f.add(
            "vipgate_table_generation",
            Kind::Gauge,
            || "Generation number of the live table".into(),
            vec![],
            table.generation(),
        );
        f.add(
            "vipgate_skipped_objects",
            Kind::Counter,
            || "Kubernetes objects skipped as unusable (each logged with a warning)".into(),
            vec![],
            self.health.skipped(),
        );
        f.add(
            "vipgate_workers",
            Kind::Gauge,
            || "Worker threads running".into(),
            vec![],
            workers.len() as u64,
        );
        f
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("io_mode", &self.io_mode)
            .finish_non_exhaustive()
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.families().encode(&mut encoder)?;
        let io_mode = self
            .io_mode
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let labels = [
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("io_mode", io_mode),
        ];
        // A gauge of 1, as Kubernetes components export build_info:
        // promtool and Prometheus' text format know no "info" type.
        let mut me = encoder.encode_descriptor(
            "vipgate_build_info",
            "The running vipgate: version and I/O mode.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(me.encode_family(&labels)?)
    }
}
