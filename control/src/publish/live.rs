//! Incremental publication of live snapshots. The reflector stores hand
//! out the same `Arc` for an object until it changes, so comparing two
//! snapshots by pointer finds what changed in one cheap hashing pass (no
//! sorting); only the Services touched by a change go through the model
//! again, and the table is derived from the previous one by removing and
//! inserting keys. The previous snapshot's Arcs are held until the next
//! one, so an address cannot be reused by a different object meanwhile.

use std::collections::{BTreeSet, HashMap, HashSet};

use ahash::AHashMap;
use std::sync::Arc;

use dataplane::service::{ServiceKey, ServiceSpec};
use dataplane::table::{BuildStats, ServiceTable};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::model::{self, HealthCheck, ModelOptions};

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

/// A snapshot's objects by address.
type ByPtr<K> = AHashMap<usize, Arc<K>>;

fn addr<K>(a: &Arc<K>) -> usize {
    Arc::as_ptr(a) as usize
}

/// The objects of `new` not in `old` (new or changed) and those of `old`
/// not in `new` (deleted or replaced), plus `new` by address.
fn diff<K>(old: &ByPtr<K>, new: &[Arc<K>]) -> (Vec<Arc<K>>, Vec<Arc<K>>, ByPtr<K>) {
    let next: ByPtr<K> = new.iter().map(|a| (addr(a), Arc::clone(a))).collect();
    let came = new
        .iter()
        .filter(|a| !old.contains_key(&addr(a)))
        .cloned()
        .collect();
    let gone = old
        .iter()
        .filter(|(p, _)| !next.contains_key(p))
        .map(|(_, a)| Arc::clone(a))
        .collect();
    (gone, came, next)
}

/// What the last snapshot became.
#[derive(Default)]
pub(super) struct Live {
    services: ByPtr<Service>,
    slices: ByPtr<EndpointSlice>,
    slices_by_service: HashMap<Id, Vec<Arc<EndpointSlice>>>,
    specs: HashMap<Id, Vec<ServiceSpec>>,
    /// Every Service claiming a key, in name order: the first one serves it
    /// (as in `model::build`).
    claims: HashMap<ServiceKey, BTreeSet<Id>>,
    /// The health checks each Service's model asked for.
    health: HashMap<Id, Vec<HealthCheck>>,
}

/// The result of one incremental step.
pub(super) struct Step {
    pub table: ServiceTable,
    pub stats: BuildStats,
    pub warnings: Vec<String>,
    pub recomputed: usize,
    /// Every Service's health checks, sorted.
    pub health_checks: Vec<HealthCheck>,
    /// Trigger times of the EndpointSlice changes this step carries.
    pub triggers: Vec<std::time::SystemTime>,
}

impl Live {
    pub(super) fn step(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        current: &ServiceTable,
        opts: &ModelOptions,
    ) -> Step {
        let (svc_gone, svc_came, services_now) = diff(&self.services, services);
        let (sl_gone, sl_came, slices_now) = diff(&self.slices, slices);

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
            self.health.remove(id);
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
            let is_it = |s: &&Arc<Service>| obj_id(&***s) == (id.0.as_str(), id.1.as_str());
            // A new or changed Service is among the few that came; one whose
            // slices changed is looked up in the snapshot (a scan of
            // pointers and names per affected Service).
            let Some(svc) = svc_came
                .iter()
                .find(is_it)
                .or_else(|| services.iter().find(is_it))
            else {
                continue;
            };
            let mine: Vec<EndpointSlice> = self
                .slices_by_service
                .get(id)
                .map(|v| v.iter().map(|s| (**s).clone()).collect())
                .unwrap_or_default();
            let m = model::build(std::slice::from_ref(&**svc), &mine, opts);
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
            if !m.health_checks.is_empty() {
                self.health.insert(id.clone(), m.health_checks);
            }
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
        self.services = services_now;
        self.slices = slices_now;
        let mut health_checks: Vec<HealthCheck> = self.health.values().flatten().cloned().collect();
        health_checks.sort();
        Step {
            table,
            stats,
            warnings,
            recomputed: affected.len(),
            health_checks,
            triggers: super::triggers::changed_between(&sl_gone, &sl_came),
        }
    }
}
