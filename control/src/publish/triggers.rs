//! Which EndpointSlice changes a publication carries, by their
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation: the
//! EndpointSlice controller stamps it with the time of the Pod or Service
//! change that caused the update, and kube-proxy measures
//! `network_programming_duration_seconds` from it to the moment its rules
//! carry the change. vipgate does the same for its table generations.
//!
//! A slice counts as changed when its annotation differs from the one seen
//! at the last publication; a slice seen for the first time counts too
//! (the metric drops trigger times from before the process started).

use std::collections::HashMap;
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
}
