//! The publisher: the one door from control to dataplane. A snapshot of
//! Kubernetes objects goes through the pure model, becomes the next table
//! generation (rebuilding Maglev rings only for services whose backends
//! changed), and is swapped in atomically.
//!
//! Live snapshots (shared objects from the watch) are published
//! incrementally: each Service's specs are cached under a fingerprint of
//! its own and its slices' resourceVersions, so a change to one
//! EndpointSlice re-runs the model for one Service, not for 10,000.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::generation::Tables;
use dataplane::service::{ServiceKey, ServiceSpec};
use dataplane::table::{BuildStats, ServiceTable};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{self, ModelOptions};

/// The label tying an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What one publication did.
#[derive(Clone, Debug, Default)]
pub struct Published {
    pub generation: u64,
    pub stats: BuildStats,
    pub warnings: Vec<String>,
    /// Objects -> specs -> tables -> swap.
    pub took: Duration,
    /// Services whose model was recomputed (all, for a full publish).
    pub recomputed: usize,
}

/// One Service's specs, valid while its fingerprint holds.
struct Cached {
    fingerprint: u64,
    specs: Vec<ServiceSpec>,
}

/// Turns object snapshots into published generations.
pub struct Publisher {
    tables: Tables,
    opts: ModelOptions,
    cache: HashMap<(String, String), Cached>,
    /// Bumped for objects without a resourceVersion, which can never be
    /// proven unchanged.
    unversioned: u64,
}

impl Publisher {
    pub fn new(tables: Tables, opts: ModelOptions) -> Publisher {
        Publisher {
            tables,
            opts,
            cache: HashMap::new(),
            unversioned: 0,
        }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Builds and publishes the generation for this snapshot, running the
    /// model over everything (file sources, one-off loads).
    pub fn publish(&mut self, services: &[Service], slices: &[EndpointSlice]) -> Published {
        let start = Instant::now();
        let m = model::build(services, slices, &self.opts);
        let current = self.tables.current();
        let (next, stats) = ServiceTable::build(m.services, &current);
        let generation = next.generation();
        self.tables.publish(next);
        self.cache.clear();
        Published {
            generation,
            stats,
            warnings: m.warnings,
            took: start.elapsed(),
            recomputed: services.len(),
        }
    }

    /// Publishes a live snapshot, re-running the model only for Services
    /// whose object or slices changed since the last call. Services are
    /// merged in namespace/name order, so when two claim the same
    /// VIP:port the same one wins as in [`model::build`].
    pub fn publish_shared(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
    ) -> Published {
        let start = Instant::now();
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in slices {
            let ns = s.metadata.namespace.as_deref().unwrap_or("");
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                by_service.entry((ns, svc.as_str())).or_default().push(s);
            }
        }
        let mut order: Vec<&Service> = services.iter().map(|s| &**s).collect();
        order.sort_by(|a, b| id(a).cmp(&id(b)));

        let mut warnings = Vec::new();
        let mut recomputed = 0;
        let mut next_cache = HashMap::with_capacity(order.len());
        for svc in &order {
            let (ns, name) = id(svc);
            let mine = by_service
                .get(&(ns, name))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let fp = self.fingerprint(svc, mine);
            let key = (ns.to_string(), name.to_string());
            let cached = match self.cache.remove(&key) {
                Some(c) if c.fingerprint == fp => c,
                _ => {
                    recomputed += 1;
                    let owned: Vec<EndpointSlice> = mine.iter().map(|s| (*s).clone()).collect();
                    let m = model::build(std::slice::from_ref(*svc), &owned, &self.opts);
                    warnings.extend(m.warnings);
                    Cached {
                        fingerprint: fp,
                        specs: m.services,
                    }
                }
            };
            next_cache.insert(key, cached);
        }
        self.cache = next_cache;

        // Merge: first Service (by name) to claim a key keeps it.
        let mut claimed: HashMap<ServiceKey, &str> = HashMap::with_capacity(order.len());
        let mut merged: Vec<&ServiceSpec> = Vec::with_capacity(order.len());
        for svc in &order {
            let (ns, name) = id(svc);
            let Some(c) = self.cache.get(&(ns.to_string(), name.to_string())) else {
                continue;
            };
            for spec in &c.specs {
                match claimed.get(&spec.key) {
                    None => {
                        claimed.insert(spec.key, &spec.name);
                        merged.push(spec);
                    }
                    Some(owner) if recomputed > 0 => warnings.push(format!(
                        "Service {}: {} {}:{} is already served by {owner}; skipped",
                        spec.name, spec.key.proto, spec.key.vip, spec.key.port
                    )),
                    Some(_) => {}
                }
            }
        }
        let current = self.tables.current();
        let (next, stats) = ServiceTable::build_from(merged.into_iter(), &current);
        let generation = next.generation();
        self.tables.publish(next);
        Published {
            generation,
            stats,
            warnings,
            took: start.elapsed(),
            recomputed,
        }
    }

    /// Identity of a Service and its slices at this moment: their
    /// resourceVersions (the API bumps them on every change).
    fn fingerprint(&mut self, svc: &Service, slices: &[&EndpointSlice]) -> u64 {
        let mut h = ahash::AHasher::default();
        let mut versioned = true;
        let mut add = |h: &mut ahash::AHasher, name: Option<&String>, rv: Option<&String>| {
            name.hash(h);
            match rv {
                Some(rv) => rv.hash(h),
                None => versioned = false,
            }
        };
        add(
            &mut h,
            svc.metadata.uid.as_ref(),
            svc.metadata.resource_version.as_ref(),
        );
        let mut sorted: Vec<&&EndpointSlice> = slices.iter().collect();
        sorted.sort_by_key(|s| s.metadata.name.as_deref());
        for s in sorted {
            add(
                &mut h,
                s.metadata.name.as_ref(),
                s.metadata.resource_version.as_ref(),
            );
        }
        if !versioned {
            self.unversioned += 1;
            self.unversioned.hash(&mut h);
        }
        h.finish()
    }
}

fn id(s: &Service) -> (&str, &str) {
    (
        s.metadata.namespace.as_deref().unwrap_or(""),
        s.metadata.name.as_deref().unwrap_or(""),
    )
}
