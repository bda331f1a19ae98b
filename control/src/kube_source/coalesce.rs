//! When to publish: after a quiet `settle` period, but never later than
//! `max_delay` after the first unpublished change, so a continuous stream
//! of changes still publishes regularly.

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
}

impl Coalescer {
    pub(crate) fn new(settle: Duration, max_delay: Duration) -> Coalescer {
        Coalescer {
            settle: settle.min(max_delay),
            max_delay,
            first: None,
            last: None,
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
        Some((last + self.settle).min(first + self.max_delay))
    }

    /// The pending changes were published.
    pub(crate) fn clear(&mut self) {
        self.first = None;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn quiet_period_then_publish() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(5 * MS, MAX_DELAY);
        assert_eq!(c.deadline(), None);
        c.note(t0);
        assert_eq!(c.deadline(), Some(t0 + 5 * MS));
        c.note(t0 + 3 * MS);
        assert_eq!(c.deadline(), Some(t0 + 8 * MS));
        c.clear();
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn continuous_changes_are_capped() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(5 * MS, MAX_DELAY);
        for i in 0..200 {
            c.note(t0 + i * MS);
        }
        assert_eq!(c.deadline(), Some(t0 + MAX_DELAY));
    }

    #[test]
    fn settle_longer_than_the_cap_is_capped() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(5), MAX_DELAY);
        c.note(t0);
        assert_eq!(c.deadline(), Some(t0 + MAX_DELAY));
    }
}
