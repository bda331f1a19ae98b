//! The publisher: the one door from control to dataplane. A snapshot of
//! Kubernetes objects goes through the pure model, becomes the next table
//! generation (rebuilding Maglev rings only for services whose backends
//! changed), and is swapped in atomically.
//!
//! Live snapshots (shared objects from the watch) are published
//! incrementally ([`live`]): a change to one EndpointSlice re-runs the model
//! for one Service and touches its keys in the table, not all 10,000.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dataplane::generation::Tables;
use dataplane::table::{BuildStats, ServiceTable};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{self, HealthCheck, ModelOptions};

/// Incremental publication of live snapshots.
mod live;
/// EndpointSlice change trigger times, for the programming-latency metric.
mod triggers;

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
    /// The `healthCheckNodePort` checks this node serves, as the model
    /// gives them for the whole snapshot (sorted by Service).
    pub health_checks: Vec<HealthCheck>,
    /// `endpoints.kubernetes.io/last-change-trigger-time` of each
    /// EndpointSlice whose annotation changed since the last publication.
    pub triggers: Vec<SystemTime>,
}

/// Turns object snapshots into published generations.
pub struct Publisher {
    tables: Tables,
    opts: ModelOptions,
    live: live::Live,
    triggers: triggers::Triggers,
}

impl Publisher {
    pub fn new(tables: Tables, opts: ModelOptions) -> Publisher {
        Publisher {
            tables,
            opts,
            live: live::Live::default(),
            triggers: triggers::Triggers::default(),
        }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Builds and publishes the generation for this snapshot, running the
    /// model over everything (file sources, one-off loads).
    pub fn publish(&mut self, services: &[Service], slices: &[EndpointSlice]) -> Published {
        let start = Instant::now();
        let triggers = self.triggers.changed(slices.iter());
        let m = model::build(services, slices, &self.opts);
        let current = self.tables.current();
        let (next, stats) = ServiceTable::build(m.services, &current);
        let generation = next.generation();
        self.tables.publish(next);
        // A full publish starts the incremental state over.
        self.live = live::Live::default();
        Published {
            generation,
            stats,
            warnings: m.warnings,
            took: start.elapsed(),
            recomputed: services.len(),
            health_checks: m.health_checks,
            triggers,
        }
    }

    /// Publishes a live snapshot (objects shared with the watch's stores),
    /// re-running the model only for Services whose object or slices
    /// changed since the last call; see [`live`].
    pub fn publish_shared(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
    ) -> Published {
        let start = Instant::now();
        let current = self.tables.current();
        let step = self.live.step(services, slices, &current, &self.opts);
        let generation = step.table.generation();
        self.tables.publish(step.table);
        Published {
            generation,
            stats: step.stats,
            warnings: step.warnings,
            took: start.elapsed(),
            recomputed: step.recomputed,
            health_checks: step.health_checks,
            triggers: step.triggers,
        }
    }
}
