//! The one door from control to dataplane: the current service table,
//! swapped atomically. Workers load it once per burst without locking or
//! blocking (arc-swap's fast path is a few atomic loads, no allocation); the
//! control side stores a new generation whenever it has built one, and a
//! worker in the middle of a burst keeps the table it loaded.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::table::{ServiceTable, TableConfig};

/// Shared handle to the published table. Clone it into every worker.
#[derive(Clone)]
pub struct Tables(Arc<ArcSwap<ServiceTable>>);

impl Tables {
    pub fn new(initial: ServiceTable) -> Tables {
        Tables(Arc::new(ArcSwap::from_pointee(initial)))
    }

    pub fn empty(cfg: TableConfig) -> Tables {
        Tables::new(ServiceTable::empty(cfg))
    }

    /// The current table, for one burst.
    #[inline]
    pub fn load(&self) -> Guard<Arc<ServiceTable>> {
        self.0.load()
    }

    /// The current table as an owned Arc (control side, admin endpoint).
    pub fn current(&self) -> Arc<ServiceTable> {
        self.0.load_full()
    }

    /// Publishes a new generation.
    pub fn publish(&self, table: ServiceTable) {
        self.0.store(Arc::new(table));
    }
}
