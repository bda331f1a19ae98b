//! The service table of one generation: Service keys to their Maglev rings,
//! built from `ServiceSpec`s. Immutable once built; a new set of specs
//! builds a new table, reusing the entries of services that did not change,
//! so only changed services pay for a Maglev rebuild.

/// The flat, prefetchable key -> entry array that per-packet lookups probe.
mod index;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ahash::RandomState;

use crate::addr::{Addr, Proto, Tuple};
use crate::affinity::backend_fingerprint;
use crate::hash::{client_hash, flow_hash, DEFAULT_SEED};
use crate::maglev::{table_size, Maglev, DEFAULT_MAX_TABLE_SIZE};
use crate::service::{Affinity, BackendSpec, ServiceKey, ServiceSpec};

/// How Maglev tables are built. Every gateway of a cluster must use the same
/// values, or they pick different backends for the same flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// Upper bound on a service's ring size (a prime from the fixed list).
    pub max_table_size: u32,
    /// Seed of the stable hashes (flow picks and permutations).
    pub seed: u64,
    /// How long a removed Service port stays in the table as *retired*,
    /// in seconds: its established TCP flows keep being translated (as
    /// kube-proxy's conntrack entries outlive their rules) until they end
    /// or time out; it takes no new flow. The default is conntrack's
    /// established-TCP timeout, the longest a flow can idle.
    pub retire_for_s: u32,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            max_table_size: DEFAULT_MAX_TABLE_SIZE,
            seed: DEFAULT_SEED,
            retire_for_s: crate::conntrack::Timeouts::default().tcp_established,
        }
    }
}

/// One Service port, ready for lookups.
#[derive(Debug)]
pub struct ServiceEntry {
    pub spec: ServiceSpec,
    /// The backends taking new flows; the Maglev ring indexes this list.
    pub active: Vec<BackendSpec>,
    pub maglev: Maglev,
    /// (addr, port) of `active`, sorted: membership checks for UDP flows,
    /// which re-balance when their backend leaves.
    active_sorted: Vec<(Addr, u16)>,
    /// ([`backend_fingerprint`], index into `active`), sorted: how a
    /// ClientIP affinity record finds its backend again.
    active_by_fingerprint: Vec<(u32, u32)>,
    /// Set when the Service port was removed: since then it only serves the
    /// established TCP flows it had (see [`TableConfig::retire_for_s`]).
    retired_at: Option<std::time::Instant>,
}

impl ServiceEntry {
    fn build(spec: ServiceSpec, cfg: &TableConfig) -> ServiceEntry {
        let active = spec.active_backends();
        let m = table_size(active.len(), cfg.max_table_size);
        let maglev = Maglev::build(&active, m, cfg.seed);
        let mut active_sorted: Vec<(Addr, u16)> = active.iter().map(|b| (b.addr, b.port)).collect();
        active_sorted.sort_unstable();
        let mut active_by_fingerprint: Vec<(u32, u32)> = active
            .iter()
            .enumerate()
            .map(|(i, b)| (backend_fingerprint(&b.addr, b.port), i as u32))
            .collect();
        active_by_fingerprint.sort_unstable();
        ServiceEntry {
            spec,
            active,
            maglev,
            active_sorted,
            active_by_fingerprint,
            retired_at: None,
        }
    }

    /// This entry once its Service port is removed (at `now`): same spec
    /// (its backends' replies are still steered in and translated), no
    /// backend for new flows.
    fn retired(&self, now: std::time::Instant, cfg: &TableConfig) -> ServiceEntry {
        ServiceEntry {
            spec: self.spec.clone(),
            active: Vec::new(),
            maglev: Maglev::build(&[], table_size(0, cfg.max_table_size), cfg.seed),
            active_sorted: Vec::new(),
            active_by_fingerprint: Vec::new(),
            retired_at: Some(now),
        }
    }

    /// Whether the Service port was removed (it only finishes the
    /// established TCP flows it had).
    #[inline]
    pub fn is_retired(&self) -> bool {
        self.retired_at.is_some()
    }

    /// Whether a retired entry has outlived `cfg.retire_for_s` at `now`.
    fn retirement_over(&self, now: std::time::Instant, cfg: &TableConfig) -> bool {
        self.retired_at.is_some_and(|t| {
            now.saturating_duration_since(t).as_secs() >= u64::from(cfg.retire_for_s)
        })
    }

    /// An entry that a spec equal to `spec` can keep using as is.
    fn serves(&self, spec: &ServiceSpec) -> bool {
        !self.is_retired() && self.spec == *spec
    }

    /// The backend for a new flow whose original tuple is `t`, or None when
    /// the service has no backend taking new flows.
    #[inline]
    pub fn pick(&self, t: &Tuple, seed: u64) -> Option<&BackendSpec> {
        self.pick_hashed(self.pick_hash(t, seed))
    }

    /// The hash [`ServiceEntry::pick`] places `t` with: of the 5-tuple, or
    /// of the client alone under ClientIP affinity.
    #[inline]
    pub fn pick_hash(&self, t: &Tuple, seed: u64) -> u64 {
        match self.spec.affinity {
            Affinity::None => flow_hash(t, seed),
            Affinity::ClientIp { .. } => client_hash(&t.src, seed),
        }
    }

    /// [`ServiceEntry::pick`] given `h` = [`ServiceEntry::pick_hash`].
    #[inline]
    pub fn pick_hashed(&self, h: u64) -> Option<&BackendSpec> {
        self.maglev.pick(h).map(|i| &self.active[i])
    }

    /// Starts loading this entry's own fields (ring and backend list
    /// headers, affinity): with thousands of services they are rarely cached.
    #[inline]
    pub fn prefetch(&self) {
        crate::prefetch::read_all(self);
    }

    /// Starts loading the ring slot that [`ServiceEntry::pick_hashed`]`(h)`
    /// reads: the rings of a large table do not fit in the caches.
    #[inline]
    pub fn prefetch_pick(&self, h: u64) {
        let slots = self.maglev.slots();
        if !slots.is_empty() {
            crate::prefetch::read(&slots[(h % slots.len() as u64) as usize]);
        }
    }

    /// Starts loading the backend that [`ServiceEntry::pick_hashed`]`(h)`
    /// returns. Reads the ring slot: call once [`ServiceEntry::prefetch_pick`]
    /// has had time to bring it in.
    #[inline]
    pub fn prefetch_backend(&self, h: u64) {
        if let Some(b) = self.maglev.pick(h).and_then(|i| self.active.get(i)) {
            crate::prefetch::read(b);
        }
    }

    /// Starts loading the first probes of [`ServiceEntry::is_active`]'s
    /// binary search (the whole list, for a service of a few backends).
    #[inline]
    pub fn prefetch_is_active(&self) {
        let v = &self.active_sorted;
        let n = v.len();
        if n > 0 {
            for i in [n / 2, n / 4, n / 2 + n / 4] {
                crate::prefetch::read(&v[i]);
            }
        }
    }

    /// The backend taking new flows whose [`backend_fingerprint`] is `fp`
    /// (a ClientIP affinity record), if it still takes them.
    #[inline]
    pub fn active_by_fingerprint(&self, fp: u32) -> Option<&BackendSpec> {
        let v = &self.active_by_fingerprint;
        let i = v.partition_point(|&(f, _)| f < fp);
        match v.get(i) {
            Some(&(f, idx)) if f == fp => self.active.get(idx as usize),
            _ => None,
        }
    }

    /// Whether (addr, port) still takes new flows of this service.
    #[inline]
    pub fn is_active(&self, addr: &Addr, port: u16) -> bool {
        self.active_sorted.binary_search(&(*addr, port)).is_ok()
    }
}

/// Below this many rings a build stays on the calling thread: a few rings
/// (one Service changed) take well under a millisecond, less than spawning
/// threads would.
const PARALLEL_BUILD_MIN: usize = 256;

/// Builds entries (and their Maglev rings) for `specs`, in order. A large
/// batch (a full sync: 10,000 rings take ~0.5 s on one core) is split over
/// the machine's cores with scoped threads that end with the build, rather
/// than a resident thread pool beside the pinned workers; if a thread cannot
/// be started its share is built here.
fn build_entries(specs: &[&ServiceSpec], cfg: &TableConfig) -> Vec<Arc<ServiceEntry>> {
    let build = |spec: &&ServiceSpec| Arc::new(ServiceEntry::build((*spec).clone(), cfg));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(specs.len() / PARALLEL_BUILD_MIN).max(1);
    if threads == 1 {
        return specs.iter().map(build).collect();
    }
    let chunk = specs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = specs
            .chunks(chunk)
            .map(|part| {
                let spawned = std::thread::Builder::new()
                    .name("vipgate-ring-build".into())
                    .spawn_scoped(scope, move || part.iter().map(build).collect::<Vec<_>>());
                (part, spawned)
            })
            .collect();
        let mut out = Vec::with_capacity(specs.len());
        for (part, spawned) in parts {
            match spawned.map(|h| h.join()) {
                Ok(Ok(built)) => out.extend(built),
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(_) => out.extend(part.iter().map(build)),
            }
        }
        out
    })
}

/// What a removed Service port's entry `old` becomes in the next
/// generation: retired as of `now`, still retired, or gone (None) once
/// its retirement is over.
fn retire(
    old: &Arc<ServiceEntry>,
    now: std::time::Instant,
    cfg: &TableConfig,
) -> Option<Arc<ServiceEntry>> {
    if !old.is_retired() {
        return Some(Arc::new(old.retired(now, cfg)));
    }
    (!old.retirement_over(now, cfg)).then(|| Arc::clone(old))
}

/// What a build reused and rebuilt (for logs, metrics and the sync benchmark).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildStats {
    pub services: usize,
    pub rebuilt: usize,
    pub reused: usize,
    /// Time spent building the `rebuilt` entries' Maglev rings.
    pub rebuild_time: std::time::Duration,
}

/// All services of one generation.
#[derive(Debug)]
pub struct ServiceTable {
    generation: u64,
    cfg: TableConfig,
    /// Where generations are built from (reuse checks, `apply`'s copy).
    /// Never changed once built: `index` points into its entries.
    services: HashMap<ServiceKey, Arc<ServiceEntry>, RandomState>,
    /// The same entries, for per-packet lookups (prefetchable).
    index: index::Index,
    /// Every VIP address, for "is this addressed to us at all" checks
    /// (fragments, ICMP to a VIP). Retired ones included.
    vips: HashSet<Addr, RandomState>,
    /// How many of `services` are retired.
    retired: usize,
}

impl ServiceTable {
    /// An empty table (generation 0).
    pub fn empty(cfg: TableConfig) -> ServiceTable {
        let services = HashMap::default();
        ServiceTable {
            generation: 0,
            cfg,
            // SAFETY: the table owns `services` beside the index and never
            // changes it.
            index: unsafe { index::Index::build(&services) },
            services,
            vips: HashSet::default(),
            retired: 0,
        }
    }

    /// Builds the next generation from `specs`, reusing `previous`'s entries
    /// whose spec is unchanged (same backends, states and weights).
    /// Duplicate keys: the first spec wins.
    pub fn build(specs: Vec<ServiceSpec>, previous: &ServiceTable) -> (ServiceTable, BuildStats) {
        ServiceTable::build_from(specs.iter(), previous)
    }

    /// As [`ServiceTable::build`], from borrowed specs: only services whose
    /// spec changed are cloned and get a new Maglev ring.
    pub fn build_from<'a>(
        specs: impl Iterator<Item = &'a ServiceSpec>,
        previous: &ServiceTable,
    ) -> (ServiceTable, BuildStats) {
        let cfg = previous.cfg;
        let mut stats = BuildStats::default();
        let mut services: HashMap<ServiceKey, Arc<ServiceEntry>, RandomState> = HashMap::default();
        services.reserve(previous.services.len());
        let mut vips = HashSet::default();
        let mut changed: Vec<&ServiceSpec> = Vec::new();
        let mut seen: HashSet<ServiceKey, RandomState> = HashSet::default();
        for spec in specs {
            if !seen.insert(spec.key) {
                continue;
            }
            vips.insert(spec.key.vip);
            match previous.services.get(&spec.key) {
                Some(old) if old.serves(spec) => {
                    stats.reused += 1;
                    services.insert(spec.key, Arc::clone(old));
                }
                _ => changed.push(spec),
            }
        }
        stats.rebuilt = changed.len();
        let t0 = std::time::Instant::now();
        let built = build_entries(&changed, &cfg);
        stats.rebuild_time = t0.elapsed();
        for entry in built {
            services.insert(entry.spec.key, entry);
        }
        // Keys no spec names any more: retired (or kept so) for a while.
        let now = std::time::Instant::now();
        for (k, old) in &previous.services {
            if !seen.contains(k) {
                if let Some(e) = retire(old, now, &cfg) {
                    vips.insert(k.vip);
                    services.insert(*k, e);
                }
            }
        }
        let retired = services.values().filter(|e| e.is_retired()).count();
        stats.services = services.len() - retired;
        let table = ServiceTable {
            generation: previous.generation + 1,
            cfg,
            // SAFETY: the table owns `services` beside the index and never
            // changes it.
            index: unsafe { index::Index::build(&services) },
            services,
            vips,
            retired,
        };
        (table, stats)
    }

    /// The next generation as `previous` with some keys removed and some
    /// specs inserted or replaced: cost proportional to the change (plus a
    /// shallow copy of the map), for live updates of one Service among
    /// thousands. Unchanged specs keep their entry and Maglev ring.
    pub fn apply<'a>(
        previous: &ServiceTable,
        removed: impl Iterator<Item = &'a ServiceKey>,
        upserts: impl Iterator<Item = &'a ServiceSpec>,
    ) -> (ServiceTable, BuildStats) {
        let cfg = previous.cfg;
        let mut stats = BuildStats::default();
        let mut services = previous.services.clone();
        let now = std::time::Instant::now();
        if previous.retired > 0 {
            services.retain(|_, e| !e.retirement_over(now, &cfg));
        }
        for k in removed {
            if let Some(old) = services.remove(k) {
                if let Some(e) = retire(&old, now, &cfg) {
                    services.insert(*k, e);
                }
            }
        }
        let mut changed: Vec<&ServiceSpec> = Vec::new();
        for spec in upserts {
            match services.get(&spec.key) {
                Some(old) if old.serves(spec) => stats.reused += 1,
                _ => changed.push(spec),
            }
        }
        stats.rebuilt = changed.len();
        let t0 = std::time::Instant::now();
        let built = build_entries(&changed, &cfg);
        stats.rebuild_time = t0.elapsed();
        for entry in built {
            services.insert(entry.spec.key, entry);
        }
        let vips = services.keys().map(|k| k.vip).collect();
        let retired = services.values().filter(|e| e.is_retired()).count();
        stats.services = services.len() - retired;
        let table = ServiceTable {
            generation: previous.generation + 1,
            cfg,
            // SAFETY: the table owns `services` beside the index and never
            // changes it.
            index: unsafe { index::Index::build(&services) },
            services,
            vips,
            retired,
        };
        (table, stats)
    }

    /// Builds generation 1 from scratch.
    pub fn from_specs(specs: Vec<ServiceSpec>, cfg: TableConfig) -> ServiceTable {
        ServiceTable::build(specs, &ServiceTable::empty(cfg)).0
    }

    /// The service of (vip, port, proto), if any.
    #[inline]
    pub fn lookup(&self, vip: &Addr, port: u16, proto: Proto) -> Option<&ServiceEntry> {
        let key = ServiceKey {
            vip: *vip,
            port,
            proto,
        };
        self.lookup_hashed(self.key_hash(&key), &key)
    }

    /// The hash [`ServiceTable::prefetch_lookup`] and
    /// [`ServiceTable::lookup_hashed`] take for `key`. Seeded per table:
    /// valid for this table only.
    #[inline]
    pub fn key_hash(&self, key: &ServiceKey) -> u64 {
        self.index.hash(key)
    }

    /// Starts loading what [`ServiceTable::lookup_hashed`]`(hash, _)` will
    /// read first, so that a burst overlaps its lookups' misses.
    #[inline]
    pub fn prefetch_lookup(&self, hash: u64) {
        self.index.prefetch(hash)
    }

    /// [`ServiceTable::lookup`] of `key`, given `hash` =
    /// [`ServiceTable::key_hash`]`(key)` (of this table).
    #[inline]
    pub fn lookup_hashed(&self, hash: u64, key: &ServiceKey) -> Option<&ServiceEntry> {
        self.index.get(hash, key)
    }

    #[inline]
    pub fn is_vip(&self, addr: &Addr) -> bool {
        self.vips.contains(addr)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    /// Live Service ports (retired ones not counted).
    pub fn len(&self) -> usize {
        self.services.len() - self.retired
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removed Service ports still finishing their TCP flows.
    pub fn retired(&self) -> usize {
        self.retired
    }

    /// All entries, retired ones included, sorted by key (for listings and
    /// steering maps).
    pub fn entries(&self) -> Vec<&ServiceEntry> {
        let mut v: Vec<&ServiceEntry> = self.services.values().map(|e| &**e).collect();
        v.sort_by_key(|e| e.spec.key);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::BackendState;

    fn spec(vip_last: u8, backends: &[u8]) -> ServiceSpec {
        ServiceSpec {
            key: ServiceKey {
                vip: Addr::from_v4([198, 19, 0, vip_last]),
                port: 80,
                proto: Proto::Tcp,
            },
            name: format!("default/svc{vip_last}:http"),
            backends: backends
                .iter()
                .map(|b| BackendSpec {
                    addr: Addr::from_v4([198, 18, 1, *b]),
                    port: 8080,
                    weight: 1,
                    state: BackendState::Ready,
                })
                .collect(),
            affinity: Affinity::None,
            no_endpoints: crate::service::NoEndpoints::Reject,
            forwarding: Default::default(),
            source_ranges: Vec::new(),
        }
    }

    #[test]
    fn large_builds_split_over_threads_give_the_same_entries() {
        // Enough rings for several build threads; every 7th spec repeats the
        // key of the one 3 before it with other backends, and must lose
        // ("first wins").
        let vip = |i: u32| {
            let [_, _, hi, lo] = i.to_be_bytes();
            Addr::from_v4([198, 19, hi, lo])
        };
        let specs: Vec<ServiceSpec> = (0..1_500u32)
            .map(|i| {
                let mut s = spec(0, &[1 + (i % 50) as u8, 60 + (i % 13) as u8, 100]);
                s.key.vip = vip(if i % 7 == 6 { i - 3 } else { i });
                s
            })
            .collect();
        let firsts: Vec<&ServiceSpec> = specs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 7 != 6)
            .map(|(_, s)| s)
            .collect();
        let cfg = TableConfig::default();
        let (table, stats) = ServiceTable::build(specs.clone(), &ServiceTable::empty(cfg));
        assert_eq!((table.len(), stats.rebuilt), (firsts.len(), firsts.len()));
        for want in &firsts {
            let got = table.lookup(&want.key.vip, 80, Proto::Tcp).unwrap();
            assert_eq!(&got.spec, *want);
            let active = want.active_backends();
            let m = table_size(active.len(), cfg.max_table_size);
            assert_eq!(got.maglev, Maglev::build(&active, m, cfg.seed));
        }
        // The same specs again: every entry reused.
        let (again, stats) = ServiceTable::build(specs.clone(), &table);
        assert_eq!((stats.rebuilt, stats.reused), (0, firsts.len()));
        assert_eq!(again.len(), firsts.len());
    }

    #[test]
    fn unchanged_services_are_reused() {
        let t1 = ServiceTable::from_specs(
            vec![spec(1, &[1, 2]), spec(2, &[3])],
            TableConfig::default(),
        );
        let (t2, stats) = ServiceTable::build(vec![spec(1, &[1, 2]), spec(2, &[3, 4])], &t1);
        assert_eq!(
            (stats.services, stats.rebuilt, stats.reused),
            (2, 1, 1),
            "{stats:?}"
        );
        assert!(stats.rebuild_time > std::time::Duration::ZERO);
        assert_eq!(t2.generation(), 2);
        let a = t1
            .lookup(&Addr::from_v4([198, 19, 0, 1]), 80, Proto::Tcp)
            .unwrap();
        let b = t2
            .lookup(&Addr::from_v4([198, 19, 0, 1]), 80, Proto::Tcp)
            .unwrap();
        assert!(
            std::ptr::eq(a, b),
            "unchanged entry must be shared, not rebuilt"
        );
    }

    #[test]
    fn lookup_misses_other_ports_and_protocols() {
        let t = ServiceTable::from_specs(vec![spec(1, &[1])], TableConfig::default());
        let vip = Addr::from_v4([198, 19, 0, 1]);
        assert!(t.lookup(&vip, 80, Proto::Tcp).is_some());
        assert!(t.lookup(&vip, 81, Proto::Tcp).is_none());
        assert!(t.lookup(&vip, 80, Proto::Udp).is_none());
        assert!(t.is_vip(&vip));
        assert!(!t.is_vip(&Addr::from_v4([198, 19, 0, 2])));
    }

    #[test]
    fn pick_is_stable_and_active_membership_holds() {
        let t = ServiceTable::from_specs(vec![spec(1, &[1, 2, 3])], TableConfig::default());
        let e = t
            .lookup(&Addr::from_v4([198, 19, 0, 1]), 80, Proto::Tcp)
            .unwrap();
        let tuple = Tuple {
            src: Addr::from_v4([198, 18, 0, 9]),
            dst: Addr::from_v4([198, 19, 0, 1]),
            sport: 40000,
            dport: 80,
            proto: Proto::Tcp,
        };
        let b1 = *e.pick(&tuple, DEFAULT_SEED).unwrap();
        let b2 = *e.pick(&tuple, DEFAULT_SEED).unwrap();
        assert_eq!(b1, b2);
        assert!(e.is_active(&b1.addr, b1.port));
        assert!(!e.is_active(&Addr::from_v4([198, 18, 1, 99]), 8080));
    }

    /// Both build paths (full and incremental) retire a removed port,
    /// keep it retired (steered, no new flow) while `retire_for_s` runs,
    /// and bring it back live when it is added again.
    #[test]
    fn removed_ports_are_retired_by_both_build_paths() {
        let vip = Addr::from_v4([198, 19, 0, 2]);
        let cfg = TableConfig::default();
        let t1 = ServiceTable::from_specs(vec![spec(1, &[1]), spec(2, &[3])], cfg);
        let key = t1.lookup(&vip, 80, Proto::Tcp).unwrap().spec.key;
        let (full, stats) = ServiceTable::build(vec![spec(1, &[1])], &t1);
        let (incr, _) = ServiceTable::apply(&t1, [key].iter(), std::iter::empty());
        for t in [&full, &incr] {
            assert_eq!((t.len(), t.retired()), (1, 1));
            let e = t.lookup(&vip, 80, Proto::Tcp).expect("retired entry");
            assert!(e.is_retired());
            assert!(e.pick_hashed(7).is_none(), "no new flows");
            assert!(t.is_vip(&vip));
            assert_eq!(t.entries().len(), 2, "still listed and steered");
        }
        assert_eq!(stats.services, 1);
        // Still retired a generation later (same Arc), by both paths.
        let (full2, _) = ServiceTable::build(vec![spec(1, &[1])], &full);
        let (incr2, _) = ServiceTable::apply(&incr, std::iter::empty(), std::iter::empty());
        for (a, b) in [(&full, &full2), (&incr, &incr2)] {
            assert!(std::ptr::eq(
                a.lookup(&vip, 80, Proto::Tcp).unwrap(),
                b.lookup(&vip, 80, Proto::Tcp).unwrap()
            ));
        }
        // Added again: a live entry, not the retired one.
        let back = spec(2, &[3]);
        let (full3, stats) = ServiceTable::build(vec![spec(1, &[1]), back.clone()], &full2);
        let (incr3, _) = ServiceTable::apply(&incr2, std::iter::empty(), [back].iter());
        assert_eq!(stats.rebuilt, 1);
        for t in [&full3, &incr3] {
            assert_eq!((t.len(), t.retired()), (2, 0));
            assert!(!t.lookup(&vip, 80, Proto::Tcp).unwrap().is_retired());
        }
        // With no retirement time, gone at the next build.
        let now_cfg = TableConfig {
            retire_for_s: 0,
            ..cfg
        };
        let t = ServiceTable::from_specs(vec![spec(2, &[3])], now_cfg);
        let (t, _) = ServiceTable::build(vec![], &t);
        assert_eq!(t.retired(), 1);
        let (t, _) = ServiceTable::apply(&t, std::iter::empty(), std::iter::empty());
        assert_eq!(t.retired(), 0);
        assert!(!t.is_vip(&vip));
    }
}
