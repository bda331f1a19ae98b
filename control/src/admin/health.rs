//! What `/readyz` reports: has the control side synced once, are the
//! interfaces attached, and the latest error of the Kubernetes source.
//!
//! Readiness policy, after kube-proxy: kube-proxy's health check fails when
//! it has changes it could not program, not when the API server is merely
//! unreachable (then there is nothing new to program and its rules keep
//! serving). Here the "programming" is publishing tables to attached
//! interfaces, so readiness is `synced && attached`. A source error after
//! the first full sync keeps readiness: the last good tables keep serving,
//! and flipping every gateway of a cluster to unready during one API outage
//! would only stall rollouts without moving traffic anywhere better. The
//! error is still reported (a warning line on `/readyz`, `source_error()`).
//! Before the first sync the error is the reason shown for not being ready.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Health shared between the control thread, the I/O setup and the admin
/// endpoint. Share it in an `Arc`; every method takes `&self`.
#[derive(Debug, Default)]
pub struct Health {
    synced: AtomicBool,
    attached: AtomicBool,
    // A String cannot live in an atomic; this lock is taken only by the
    // control thread on errors and by admin requests, never by workers.
    source_error: Mutex<Option<String>>,
    /// Objects (or parts of them) skipped with a warning, since start.
    skipped: AtomicU64,
}

impl Health {
    /// Not synced, not attached, no error.
    pub fn new() -> Health {
        Health::default()
    }

    /// The first full sync of Services and EndpointSlices was published.
    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::Release);
    }

    /// The dataplane is attached to its interfaces (rings bound, XDP
    /// program linked) and processing packets.
    pub fn set_attached(&self, attached: bool) {
        self.attached.store(attached, Ordering::Release);
    }

    /// Counts objects the model skipped (one per warning it printed).
    pub fn add_skipped(&self, n: usize) {
        self.skipped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Objects skipped with a warning since start.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// The latest error of the Kubernetes source; `None` once it recovers.
    pub fn set_source_error(&self, error: Option<String>) {
        *self.lock_error() = error;
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }

    pub fn source_error(&self) -> Option<String> {
        self.lock_error().clone()
    }

    /// Synced at least once and attached (see the module docs for why a
    /// later source error does not count).
    pub fn ready(&self) -> bool {
        self.synced() && self.attached()
    }

    /// Why the gateway is not ready, as one line; `None` when it is ready.
    pub fn not_ready_reason(&self) -> Option<String> {
        if !self.synced() {
            return Some(match self.source_error() {
                Some(e) => format!("source error: {}", one_line(&e)),
                None => "waiting for the first full sync".to_string(),
            });
        }
        if !self.attached() {
            return Some("interfaces not attached".to_string());
        }
        None
    }

    fn lock_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // Each update replaces the whole value, so a poisoned lock still
        // holds a consistent one.
        self.source_error.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Errors from the API can span lines (status bodies); probes and logs
/// want one.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_sync_and_attach() {
        let h = Health::new();
        assert!(!h.ready());
        assert_eq!(
            h.not_ready_reason().as_deref(),
            Some("waiting for the first full sync")
        );
        h.set_synced(true);
        assert!(!h.ready());
        assert_eq!(
            h.not_ready_reason().as_deref(),
            Some("interfaces not attached")
        );
        h.set_attached(true);
        assert!(h.ready());
        assert_eq!(h.not_ready_reason(), None);
    }

    #[test]
    fn source_error_explains_missing_sync_but_keeps_readiness_after_it() {
        let h = Health::new();
        h.set_attached(true);
        h.set_source_error(Some("connection refused\n  (retrying)".into()));
        assert_eq!(
            h.not_ready_reason().as_deref(),
            Some("source error: connection refused (retrying)")
        );
        h.set_synced(true);
        assert!(h.ready());
        assert_eq!(
            h.source_error().as_deref(),
            Some("connection refused\n  (retrying)")
        );
        h.set_source_error(None);
        assert_eq!(h.source_error(), None);
    }
}
