//! When to publish. A lone change after a quiet period publishes at once
//! (leading edge: one EndpointSlice update reaches the dataplane in
//! milliseconds). Changes arriving close together, or within `settle` of
//! the last publication, wait for a quiet `settle` period (trailing edge),
//! but never longer than `max_delay` after the first unpublished change, so
//! a continuous stream still publishes regularly.

use std::time::{Duration, Instant};

/// Upper bound between a change and the snapshot that contains it.
pub const MAX_DELAY: Duration = Duration::from_millis(100);

/// Tracks unpublished changes and computes the publish deadline.
#[derive(Debug)]
pub(crate) struct Coalescer {
    settle: Duration,
    max_delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
    published: Option<Instant>,
}

impl Coalescer {
    pub(crate) fn new(settle: Duration, max_delay: Duration) -> Coalescer {
        Coalescer {
            settle: settle.min(max_delay),
            max_delay,
            first: None,
            last: None,
            published: None,
        }
    }

    /// A change happened at `now`.
    pub(crate) fn note(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the pending changes should be published; `None` if none are.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        // The first change after a quiet period is due at once, even if
        // more arrived before the publisher got to it (they ride along).
        if self.published.is_none_or(|p| first >= p + self.settle) {
            return Some(first);
        }
        Some((last + self.settle).min(first + self.max_delay))
    }

    /// The pending changes were published at `now`.
    pub(crate) fn clear(&mut self, now: Instant) {
        self.first = None;
        self.last = None;
        self.published = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn lone_change_publishes_at_once_then_bursts_settle() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(5 * MS, MAX_DELAY);
        assert_eq!(c.deadline(), None);
        c.note(t0);
        assert_eq!(c.deadline(), Some(t0), "leading edge");
        c.note(t0 + 3 * MS);
        assert_eq!(
            c.deadline(),
            Some(t0),
            "still due: later changes ride along"
        );
        c.clear(t0 + 3 * MS);
        assert_eq!(c.deadline(), None);
        // Right after a publication: trailing edge (a burst settles).
        c.note(t0 + 4 * MS);
        c.note(t0 + 6 * MS);
        assert_eq!(c.deadline(), Some(t0 + 11 * MS));
        c.clear(t0 + 11 * MS);
        // After a quiet period: leading edge again.
        c.note(t0 + 30 * MS);
        assert_eq!(c.deadline(), Some(t0 + 30 * MS));
    }

    #[test]
    fn continuous_changes_are_capped() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(5 * MS, MAX_DELAY);
        c.clear(t0);
        for i in 0..200 {
            c.note(t0 + i * MS);
        }
        assert_eq!(c.deadline(), Some(t0 + MAX_DELAY));
    }

    #[test]
    fn settle_longer_than_the_cap_is_capped() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(5), MAX_DELAY);
        c.clear(t0);
        c.note(t0);
        assert_eq!(c.deadline(), Some(t0 + MAX_DELAY));
    }
}
