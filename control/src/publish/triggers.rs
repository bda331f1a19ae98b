//! Which EndpointSlice changes a publication carries, by their
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation: the
//! EndpointSlice controller stamps it with the time of the Pod or Service
//! change that caused the update, and kube-proxy measures
//! `network_programming_duration_seconds` from it to the moment its rules
//! carry the change. vipgate does the same for its table generations.
//!
//! A slice counts as changed when its annotation differs from the one seen
//! at the last publication; a slice seen for the first time counts too
//! (the metric drops trigger times from before the process started). A
//! full publication compares every slice with what [`Triggers`] saw; an
//! incremental one ([`changed_between`]) only the slices that changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;

pub const TRIGGER_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// The last trigger-time annotation seen per slice (namespace/name).
#[derive(Default)]
pub struct Triggers {
    seen: HashMap<String, String>,
}

impl Triggers {
    /// Trigger times of the slices whose annotation changed; forgets
    /// slices that are gone. Unparseable annotations are ignored (a
    /// missing metric sample, never a failed publication).
    pub fn changed<'a>(
        &mut self,
        slices: impl Iterator<Item = &'a EndpointSlice>,
    ) -> Vec<SystemTime> {
        let mut next = HashMap::with_capacity(self.seen.len());
        let mut out = Vec::new();
        for s in slices {
            let meta = &s.metadata;
            let Some(value) = meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(TRIGGER_ANNOTATION))
            else {
                continue;
            };
            let key = format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or(""),
                meta.name.as_deref().unwrap_or("")
            );
            if self.seen.get(&key) != Some(value) {
                if let Ok(t) = value.parse::<Timestamp>() {
                    out.push(SystemTime::from(t));
                }
            }
            next.insert(key, value.clone());
        }
        self.seen = next;
        out
    }
}

fn annotation(s: &EndpointSlice) -> Option<&String> {
    s.metadata.annotations.as_ref()?.get(TRIGGER_ANNOTATION)
}

fn id(s: &EndpointSlice) -> (&str, &str) {
    (
        s.metadata.namespace.as_deref().unwrap_or(""),
        s.metadata.name.as_deref().unwrap_or(""),
    )
}

/// Trigger times of the slices in `came` (new or changed objects) whose
/// annotation differs from that of the object of the same name in `gone`
/// (what they replaced), if any: work in proportion to the change.
pub fn changed_between(
    gone: &[Arc<EndpointSlice>],
    came: &[Arc<EndpointSlice>],
) -> Vec<SystemTime> {
    let before: HashMap<(&str, &str), Option<&String>> =
        gone.iter().map(|s| (id(s), annotation(s))).collect();
    came.iter()
        .filter_map(|s| {
            let a = annotation(s)?;
            if before.get(&id(s)) == Some(&Some(a)) {
                return None;
            }
            a.parse::<Timestamp>().ok().map(SystemTime::from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn slice(name: &str, trigger: Option<&str>) -> EndpointSlice {
        let mut s = EndpointSlice::default();
        s.metadata.namespace = Some("ns".into());
        s.metadata.name = Some(name.into());
        s.metadata.annotations =
            trigger.map(|t| BTreeMap::from([(TRIGGER_ANNOTATION.to_string(), t.to_string())]));
        s
    }

    #[test]
    fn only_new_or_changed_annotations_count() {
        let mut t = Triggers::default();
        let a = slice("a", Some("2026-12-03T10:00:00Z"));
        let b = slice("b", None);
        let c = slice("c", Some("not a time"));
        let got = t.changed([&a, &b, &c].into_iter());
        assert_eq!(
            got,
            vec![SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_292_000)]
        );
        assert!(t.changed([&a, &b, &c].into_iter()).is_empty());
        let a2 = slice("a", Some("2026-12-03T10:00:01.5Z"));
        let got = t.changed([&a2].into_iter());
        assert_eq!(
            got,
            vec![SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_292_001_500)]
        );
        // Gone, then back with the same stamp: new again.
        assert!(t.changed(std::iter::empty()).is_empty());
        assert_eq!(t.changed([&a2].into_iter()).len(), 1);
    }

    #[test]
    fn between_snapshots_only_a_changed_stamp_counts() {
        let old = Arc::new(slice("a", Some("2026-12-03T10:00:00Z")));
        let relabelled = Arc::new(slice("a", Some("2026-12-03T10:00:00Z")));
        let moved = Arc::new(slice("a", Some("2026-12-03T10:00:02Z")));
        let fresh = Arc::new(slice("b", Some("2026-12-03T10:00:03Z")));
        assert!(changed_between(&[Arc::clone(&old)], &[relabelled]).is_empty());
        assert_eq!(
            changed_between(&[old], &[moved, fresh]),
            vec![
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_292_002),
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_292_003),
            ]
        );
    }
}
