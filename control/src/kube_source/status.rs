//! Health of the Kubernetes source, shared with the admin endpoint.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One of the two watched resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watched {
    Services = 0,
    Slices = 1,
}

impl Watched {
    /// Which watch a request path belongs to, if any.
    pub(crate) fn from_path(path: &str) -> Option<Watched> {
        if path.ends_with("/endpointslices") {
            Some(Watched::Slices)
        } else if path.ends_with("/services") {
            Some(Watched::Services)
        } else {
            None
        }
    }
}

impl fmt::Display for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Watched::Services => "services",
            Watched::Slices => "endpointslices",
        })
    }
}

#[derive(Default)]
struct State {
    synced: [bool; 2],
    failing: [bool; 2],
    last_error: Option<String>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    events: AtomicU64,
}

/// Health the admin endpoint reports. Cheap to clone (Arc inside),
/// readable from any thread.
#[derive(Clone, Default)]
pub struct SourceStatus {
    inner: Arc<Inner>,
}

impl SourceStatus {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole, so a poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Both stores completed an initial list.
    pub fn synced(&self) -> bool {
        self.state().synced.iter().all(|s| *s)
    }

    /// Neither watch failed since its last successful event or API
    /// response. A watch that reconnects without news counts as healthy as
    /// soon as the API server accepts the request again.
    pub fn healthy(&self) -> bool {
        !self.state().failing.iter().any(|f| *f)
    }

    /// The most recent watch error, kept after recovery for diagnosis.
    pub fn last_error(&self) -> Option<String> {
        self.state().last_error.clone()
    }

    /// Object events applied to the stores (list items and watch events).
    pub fn events(&self) -> u64 {
        self.inner.events.load(Ordering::Relaxed)
    }

    pub(crate) fn record_ok(&self, w: Watched) {
        self.state().failing[w as usize] = false;
    }

    pub(crate) fn record_error(&self, w: Watched, message: String) {
        let mut s = self.state();
        s.failing[w as usize] = true;
        s.last_error = Some(message);
    }

    pub(crate) fn record_synced(&self, w: Watched) {
        let mut s = self.state();
        s.synced[w as usize] = true;
        s.failing[w as usize] = false;
    }

    pub(crate) fn record_event(&self) {
        self.inner.events.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_last_outcome_of_each_watch() {
        let s = SourceStatus::default();
        assert!(!s.synced());
        assert!(s.healthy());
        s.record_synced(Watched::Services);
        assert!(!s.synced());
        s.record_synced(Watched::Slices);
        assert!(s.synced());
        s.record_error(Watched::Slices, "boom".into());
        let reader = s.clone();
        assert!(!reader.healthy());
        // Success of the other watch does not hide the failing one.
        s.record_ok(Watched::Services);
        assert!(!reader.healthy());
        s.record_ok(Watched::Slices);
        assert!(reader.healthy());
        assert_eq!(reader.last_error().as_deref(), Some("boom"));
        s.record_event();
        assert_eq!(reader.events(), 1);
    }

    #[test]
    fn paths_map_to_watches() {
        assert_eq!(
            Watched::from_path("/api/v1/services"),
            Some(Watched::Services)
        );
        assert_eq!(
            Watched::from_path("/apis/discovery.k8s.io/v1/namespaces/a/endpointslices"),
            Some(Watched::Slices)
        );
        assert_eq!(Watched::from_path("/version"), None);
    }
}
