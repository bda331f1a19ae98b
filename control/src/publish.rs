//! The publisher: the one door from control to dataplane. A snapshot of
//! Kubernetes objects goes through the pure model, becomes the next table
//! generation (rebuilding Maglev rings only for services whose backends
//! changed), and is swapped in atomically. A snapshot that yields nothing
//! usable never replaces tables that served: the last good generation stays.

use std::time::{Duration, Instant};

use dataplane::generation::Tables;
use dataplane::table::{BuildStats, ServiceTable};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{self, ModelOptions};

/// What one publication did.
#[derive(Clone, Debug, Default)]
pub struct Published {
    pub generation: u64,
    pub stats: BuildStats,
    pub warnings: Vec<String>,
    /// Objects -> specs -> tables -> swap.
    pub took: Duration,
}

/// Turns object snapshots into published generations.
pub struct Publisher {
    tables: Tables,
    opts: ModelOptions,
}

impl Publisher {
    pub fn new(tables: Tables, opts: ModelOptions) -> Publisher {
        Publisher { tables, opts }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Builds and publishes the generation for this snapshot.
    pub fn publish(&mut self, services: &[Service], slices: &[EndpointSlice]) -> Published {
        let start = Instant::now();
        let m = model::build(services, slices, &self.opts);
        let current = self.tables.current();
        let (next, stats) = ServiceTable::build(m.services, &current);
        let generation = next.generation();
        self.tables.publish(next);
        Published {
            generation,
            stats,
            warnings: m.warnings,
            took: start.elapsed(),
        }
    }
}
