//! Incremental publication of live snapshots. The reflector stores hand
//! out the same `Arc` for an object until it changes, so comparing two
//! sorted snapshots by pointer finds what changed in one cheap pass; only
//! the Services touched by a change go through the model again, and the
//! table is derived from the previous one by removing and inserting keys.
//! Work per change is proportional to the change, not to the cluster.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use dataplane::service::{ServiceKey, ServiceSpec};
use dataplane::table::{BuildStats, ServiceTable};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::model::{self, ModelOptions};

/// The label tying an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service's identity: (namespace, name).
type Id = (String, String);

fn obj_id<K: ResourceExt>(o: &K) -> (&str, &str) {
    (
        o.meta().namespace.as_deref().unwrap_or(""),
        o.meta().name.as_deref().unwrap_or(""),
    )
}

fn owner_of(s: &EndpointSlice) -> Option<Id> {
    let svc = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((
        s.metadata.namespace.clone().unwrap_or_default(),
        svc.clone(),
    ))
}

/// Objects of `new` that are not (pointer-)identical to one in `old`, and
/// objects of `old` not identical to one in `new`; both sorted by id.
fn diff<K: ResourceExt>(old: &[Arc<K>], new: &[Arc<K>]) -> (Vec<Arc<K>>, Vec<Arc<K>>) {
    let (mut gone, mut came) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) => match obj_id(&**a).cmp(&obj_id(&**b)) {
                std::cmp::Ordering::Less => {
                    gone.push(a.clone());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    came.push(b.clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    gone.push(a.clone());
                    came.push(b.clone());
                    i += 1;
                    j += 1;
                }
            },
            (Some(a), None) => {
                gone.push(a.clone());
                i += 1;
            }
            (None, Some(b)) => {
                came.push(b.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    (gone, came)
}

fn sorted<K: ResourceExt>(objs: &[Arc<K>]) -> Vec<Arc<K>> {
    let mut v = objs.to_vec();
    if !v.is_sorted_by(|a, b| obj_id(&**a) <= obj_id(&**b)) {
        v.sort_by(|a, b| obj_id(&**a).cmp(&obj_id(&**b)));
    }
    v
}

/// What the last snapshot became.
#[derive(Default)]
pub(super) struct Live {
    services: Vec<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    slices_by_service: HashMap<Id, Vec<Arc<EndpointSlice>>>,
    specs: HashMap<Id, Vec<ServiceSpec>>,
    /// Every Service claiming a key, in name order: the first one serves it
    /// (as in `model::build`).
    claims: HashMap<ServiceKey, BTreeSet<Id>>,
}

/// The result of one incremental step.
pub(super) struct Step {
    pub table: ServiceTable,
    pub stats: BuildStats,
    pub warnings: Vec<String>,
    pub recomputed: usize,
}

impl Live {
    pub(super) fn step(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        current: &ServiceTable,
        opts: &ModelOptions,
    ) -> Step {
        let services = sorted(services);
        let slices = sorted(slices);
        let (svc_gone, svc_came) = diff(&self.services, &services);
        let (sl_gone, sl_came) = diff(&self.slices, &slices);

        let mut affected: HashSet<Id> = HashSet::new();
        for s in svc_gone.iter().chain(&svc_came) {
            let (ns, n) = obj_id(&**s);
            affected.insert((ns.to_string(), n.to_string()));
        }
        for s in &sl_gone {
            if let Some(id) = owner_of(s) {
                if let Some(v) = self.slices_by_service.get_mut(&id) {
                    v.retain(|x| !Arc::ptr_eq(x, s));
                    if v.is_empty() {
                        self.slices_by_service.remove(&id);
                    }
                }
                affected.insert(id);
            }
        }
        for s in &sl_came {
            if let Some(id) = owner_of(s) {
                self.slices_by_service
                    .entry(id.clone())
                    .or_default()
                    .push(s.clone());
                affected.insert(id);
            }
        }

        let mut warnings = Vec::new();
        let mut touched: HashSet<ServiceKey> = HashSet::new();
        let mut affected: Vec<Id> = affected.into_iter().collect();
        affected.sort();
        for id in &affected {
            if let Some(old) = self.specs.remove(id) {
                for spec in &old {
                    touched.insert(spec.key);
                    if let Some(c) = self.claims.get_mut(&spec.key) {
                        c.remove(id);
                        if c.is_empty() {
                            self.claims.remove(&spec.key);
                        }
                    }
                }
            }
            let Ok(pos) =
                services.binary_search_by(|s| obj_id(&**s).cmp(&(id.0.as_str(), id.1.as_str())))
            else {
                continue;
            };
            let mine: Vec<EndpointSlice> = self
                .slices_by_service
                .get(id)
                .map(|v| v.iter().map(|s| (**s).clone()).collect())
                .unwrap_or_default();
            let m = model::build(std::slice::from_ref(&*services[pos]), &mine, opts);
            warnings.extend(m.warnings);
            for spec in &m.services {
                touched.insert(spec.key);
                let c = self.claims.entry(spec.key).or_default();
                c.insert(id.clone());
                if let Some(winner) = c.first().filter(|w| *w != id) {
                    warnings.push(format!(
                        "Service {}: {} {}:{} is already served by {}/{}; skipped",
                        spec.name, spec.key.proto, spec.key.vip, spec.key.port, winner.0, winner.1
                    ));
                }
            }
            self.specs.insert(id.clone(), m.services);
        }

        let mut removed = Vec::new();
        let mut upserts = Vec::new();
        for key in &touched {
            let winner_spec = self
                .claims
                .get(key)
                .and_then(|c| c.first())
                .and_then(|w| self.specs.get(w))
                .and_then(|specs| specs.iter().find(|s| s.key == *key));
            match winner_spec {
                Some(s) => upserts.push(s),
                None => removed.push(*key),
            }
        }
        let (table, stats) = ServiceTable::apply(current, removed.iter(), upserts.into_iter());
        self.services = services;
        self.slices = slices;
        Step {
            table,
            stats,
            warnings,
            recomputed: affected.len(),
        }
    }
}
