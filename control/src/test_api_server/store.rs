//! The object store behind the test API server: objects, a global
//! resourceVersion, the event log watches resume from, and open watchers.
//!
//! Everything here is synchronous and runs under one mutex, so a watch that
//! replays the log and then registers for new events can never miss or
//! duplicate an event that happens in between.

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use serde_json::{json, Map, Value};

/// Events kept for resuming watches; older ones are compacted away, as etcd
/// does, so a watcher that fell further behind relists after a 410.
const LOG_CAPACITY: usize = 200_000;

/// Paginated lists kept alive for `continue` tokens; a client that pauses
/// longer than this many newer lists gets 410 and restarts its list.
const PAGED_LISTS: usize = 64;

/// The resources the server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// core/v1 Service.
    Service,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
}

impl Resource {
    /// The object's `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Service => "Service",
            Resource::EndpointSlice => "EndpointSlice",
        }
    }

    /// The object's `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Service => "v1",
            Resource::EndpointSlice => "discovery.k8s.io/v1",
        }
    }

    fn list_kind(self) -> &'static str {
        match self {
            Resource::Service => "ServiceList",
            Resource::EndpointSlice => "EndpointSliceList",
        }
    }

    /// Looks a resource up by its `kind`.
    pub fn from_kind(kind: &str) -> Option<Resource> {
        match kind {
            "Service" => Some(Resource::Service),
            "EndpointSlice" => Some(Resource::EndpointSlice),
            _ => None,
        }
    }
}

/// Why the server rejected an object or a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The object is not JSON the server understands.
    #[error("invalid object: {0}")]
    Invalid(String),
    /// Delete of an object that does not exist.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// The requested resourceVersion or continue token is older than what
    /// the server still keeps (HTTP 410, reason Expired).
    #[error("{0}")]
    Expired(String),
    /// A query parameter the server cannot interpret (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
}

struct Stored {
    value: Value,
    json: Bytes,
}

struct LoggedEvent {
    rv: u64,
    resource: Resource,
    namespace: String,
    line: Bytes,
}

struct Watcher {
    resource: Resource,
    namespace: Option<String>,
    bookmarks: bool,
    tx: UnboundedSender<Bytes>,
}

struct PagedList {
    resource: Resource,
    rv: u64,
    items: Vec<Bytes>,
}

type Key = (Resource, String, String);

/// All server state; callers hold it behind one mutex.
#[derive(Default)]
pub struct Store {
    rv: u64,
    uids: u64,
    objects: BTreeMap<Key, Stored>,
    log: VecDeque<LoggedEvent>,
    /// Watches must start at or after this resourceVersion.
    compacted: u64,
    watchers: Vec<Watcher>,
    pages: BTreeMap<u64, PagedList>,
    page_ids: u64,
}

/// One page of a list response, already serialized.
pub struct ListPage {
    pub body: Bytes,
}

impl Store {
    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Number of stored objects of `resource`.
    pub fn count(&self, resource: Resource) -> usize {
        self.objects.keys().filter(|k| k.0 == resource).count()
    }

    /// Number of watch streams still connected.
    pub fn open_watches(&mut self) -> usize {
        self.watchers.retain(|w| !w.tx.is_closed());
        self.watchers.len()
    }

    /// Creates or replaces an object; returns its new resourceVersion.
    pub fn apply(&mut self, mut obj: Value) -> Result<u64, StoreError> {
        let (resource, namespace, name) = identify(&obj)?;
        let key = (resource, namespace.clone(), name);
        let previous = self.objects.get(&key).map(|s| &s.value["metadata"]);
        let (uid, created, generation) = match previous {
            Some(meta) => (
                meta["uid"].clone(),
                meta["creationTimestamp"].clone(),
                meta["generation"].as_u64().unwrap_or(1) + 1,
            ),
            None => {
                self.uids += 1;
                (
                    Value::String(format!("00000000-0000-4000-8000-{:012x}", self.uids)),
                    Value::String(rfc3339_now()),
                    1,
                )
            }
        };
        let event_type = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.rv += 1;
        let rv = self.rv;
        let meta = obj["metadata"]
            .as_object_mut()
            .ok_or_else(|| StoreError::Invalid("metadata is not an object".into()))?;
        meta.insert("namespace".into(), Value::String(namespace.clone()));
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        meta.insert("uid".into(), uid);
        meta.insert("creationTimestamp".into(), created);
        meta.insert("generation".into(), json!(generation));
        let json = to_bytes(&obj);
        let line = event_line(event_type, &json);
        self.objects.insert(key, Stored { value: obj, json });
        self.record(rv, resource, namespace, line);
        Ok(rv)
    }

    /// Deletes an object; returns the deletion's resourceVersion.
    pub fn delete(
        &mut self,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Result<u64, StoreError> {
        let key = (resource, namespace.to_string(), name.to_string());
        let Some(mut stored) = self.objects.remove(&key) else {
            return Err(StoreError::NotFound {
                kind: resource.kind(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        };
        self.rv += 1;
        let rv = self.rv;
        // The API server reports a deleted object at the deletion's version.
        stored.value["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let line = event_line("DELETED", &to_bytes(&stored.value));
        self.record(rv, resource, namespace.to_string(), line);
        Ok(rv)
    }

    /// Forgets the event history: watches from an older resourceVersion
    /// than the current one now get 410 Gone.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.log.clear();
        self.pages.clear();
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watcher
    /// that asked for bookmarks; returns how many got one.
    pub fn send_bookmark(&mut self) -> usize {
        let rv = self.rv.to_string();
        let mut sent = 0;
        self.watchers.retain(|w| {
            if !w.bookmarks {
                return !w.tx.is_closed();
            }
            let obj = json!({
                "kind": w.resource.kind(),
                "apiVersion": w.resource.api_version(),
                "metadata": {"resourceVersion": rv},
            });
            let ok =
                w.tx.unbounded_send(event_line("BOOKMARK", &to_bytes(&obj)))
                    .is_ok();
            sent += usize::from(ok);
            ok
        });
        sent
    }

    /// Drops every open watch stream, as an API server does when a watch
    /// times out; clients resume from their last resourceVersion.
    pub fn close_watches(&mut self) {
        self.watchers.clear();
    }

    fn record(&mut self, rv: u64, resource: Resource, namespace: String, line: Bytes) {
        self.watchers.retain(|w| {
            if w.resource != resource || w.namespace.as_ref().is_some_and(|ns| *ns != namespace) {
                return !w.tx.is_closed();
            }
            w.tx.unbounded_send(line.clone()).is_ok()
        });
        self.log.push_back(LoggedEvent {
            rv,
            resource,
            namespace,
            line,
        });
        while self.log.len() > LOG_CAPACITY {
            if let Some(old) = self.log.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// Opens a watch. `from` is the client's resourceVersion: `None` (or 0)
    /// starts with synthetic ADDED events for every current object, as the
    /// API server does; otherwise every event after `from` is replayed.
    pub fn watch(
        &mut self,
        resource: Resource,
        namespace: Option<&str>,
        from: Option<u64>,
        bookmarks: bool,
    ) -> Result<UnboundedReceiver<Bytes>, StoreError> {
        let (tx, rx) = unbounded();
        let wanted = |ns: &str| namespace.is_none_or(|n| n == ns);
        match from {
            None | Some(0) => {
                for ((r, ns, _), stored) in &self.objects {
                    if *r == resource && wanted(ns) {
                        let _ = tx.unbounded_send(event_line("ADDED", &stored.json));
                    }
                }
            }
            Some(rv) if rv < self.compacted => {
                return Err(StoreError::Expired(format!(
                    "too old resource version: {rv} ({})",
                    self.compacted
                )));
            }
            Some(rv) => {
                let start = self.log.partition_point(|e| e.rv <= rv);
                for e in self.log.range(start..) {
                    if e.resource == resource && wanted(&e.namespace) {
                        let _ = tx.unbounded_send(e.line.clone());
                    }
                }
            }
        }
        self.watchers.push(Watcher {
            resource,
            namespace: namespace.map(str::to_string),
            bookmarks,
            tx,
        });
        Ok(rx)
    }

    /// Lists objects. With `limit`, the first call snapshots the whole
    /// result so later pages (by `continue` token) are consistent with the
    /// first page's resourceVersion, as they are on a real API server.
    pub fn list(
        &mut self,
        resource: Resource,
        namespace: Option<&str>,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, StoreError> {
        let limit = limit.filter(|l| *l > 0);
        let (id, offset) = match continue_token {
            Some(token) => parse_token(token)?,
            None => {
                let items: Vec<Bytes> = self
                    .objects
                    .iter()
                    .filter(|((r, ns, _), _)| *r == resource && namespace.is_none_or(|n| n == ns))
                    .map(|(_, s)| s.json.clone())
                    .collect();
                let Some(limit) = limit.filter(|l| *l < items.len()) else {
                    return Ok(ListPage {
                        body: list_body(resource, self.rv, None, &items),
                    });
                };
                self.page_ids += 1;
                let id = self.page_ids;
                let rv = self.rv;
                let first = list_body(resource, rv, Some(&token(id, limit)), &items[..limit]);
                self.pages.insert(
                    id,
                    PagedList {
                        resource,
                        rv,
                        items,
                    },
                );
                while self.pages.len() > PAGED_LISTS {
                    self.pages.pop_first();
                }
                return Ok(ListPage { body: first });
            }
        };
        let page = self
            .pages
            .get(&id)
            .filter(|p| p.resource == resource)
            .ok_or_else(|| StoreError::Expired("continue token expired".into()))?;
        let offset = offset.min(page.items.len());
        let end = limit.map_or(page.items.len(), |l| (offset + l).min(page.items.len()));
        let next = (end < page.items.len()).then(|| token(id, end));
        let body = list_body(resource, page.rv, next.as_deref(), &page.items[offset..end]);
        if next.is_none() {
            self.pages.remove(&id);
        }
        Ok(ListPage { body })
    }
}

/// Extracts (resource, namespace, name) and checks the object's shape.
fn identify(obj: &Value) -> Result<(Resource, String, String), StoreError> {
    let kind = obj["kind"]
        .as_str()
        .ok_or_else(|| StoreError::Invalid("missing kind".into()))?;
    let resource = Resource::from_kind(kind)
        .ok_or_else(|| StoreError::Invalid(format!("unsupported kind {kind:?}")))?;
    if obj["apiVersion"].as_str() != Some(resource.api_version()) {
        return Err(StoreError::Invalid(format!(
            "{kind} needs apiVersion {}",
            resource.api_version()
        )));
    }
    let meta = obj["metadata"]
        .as_object()
        .ok_or_else(|| StoreError::Invalid("missing metadata".into()))?;
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| StoreError::Invalid("missing metadata.name".into()))?;
    let namespace = match meta.get("namespace") {
        None | Some(Value::Null) => "default",
        Some(Value::String(ns)) if !ns.is_empty() => ns,
        Some(_) => return Err(StoreError::Invalid("bad metadata.namespace".into())),
    };
    Ok((resource, namespace.to_string(), name.to_string()))
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// A watch event line; the object is spliced in already serialized.
fn event_line(event_type: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(event_type.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// The body of a watch that ends with 410 Gone.
pub fn expired_line(message: &str) -> Bytes {
    event_line("ERROR", &status_json(410, "Expired", message))
}

/// A serialized v1 Status, the body of every API error.
pub fn status_json(code: u16, reason: &str, message: &str) -> Bytes {
    to_bytes(&json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }))
}

fn list_body(resource: Resource, rv: u64, next: Option<&str>, items: &[Bytes]) -> Bytes {
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    if let Some(next) = next {
        meta.insert("continue".into(), Value::String(next.to_string()));
    }
    let head = format!(
        "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        resource.list_kind(),
        resource.api_version(),
        Value::Object(meta)
    );
    let size = head.len() + items.iter().map(|i| i.len() + 1).sum::<usize>() + 2;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head.as_bytes());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

fn token(id: u64, offset: usize) -> String {
    format!("p{id}o{offset}")
}

fn parse_token(token: &str) -> Result<(u64, usize), StoreError> {
    let bad = || StoreError::BadRequest(format!("invalid continue token {token:?}"));
    let rest = token.strip_prefix('p').ok_or_else(bad)?;
    let (id, offset) = rest.split_once('o').ok_or_else(bad)?;
    Ok((
        id.parse().map_err(|_| bad())?,
        offset.parse().map_err(|_| bad())?,
    ))
}

/// Current UTC time as the API server writes timestamps.
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn svc(name: &str, ns: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": ns},
               "spec": {"clusterIP": "198.19.0.1"}})
    }

    fn drain(rx: &mut UnboundedReceiver<Bytes>) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(line) = rx.try_recv() {
            out.push(serde_json::from_slice(&line).unwrap());
        }
        out
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn apply_sets_metadata_and_bumps_versions() {
        let mut s = Store::default();
        assert_eq!(s.apply(svc("a", "x")).unwrap(), 1);
        assert_eq!(s.apply(svc("a", "x")).unwrap(), 2);
        let stored = &s.objects[&(Resource::Service, "x".into(), "a".into())].value;
        assert_eq!(stored["metadata"]["resourceVersion"], "2");
        assert_eq!(stored["metadata"]["generation"], 2);
        assert!(stored["metadata"]["uid"].as_str().unwrap().len() == 36);
        assert!(stored["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
    }

    #[test]
    fn malformed_objects_are_errors() {
        let mut s = Store::default();
        assert!(matches!(s.apply(json!([])), Err(StoreError::Invalid(_))));
        assert!(matches!(
            s.apply(json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}})),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.apply(json!({"kind": "Service", "apiVersion": "v1", "metadata": {}})),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.delete(Resource::Service, "x", "nope"),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(s.resource_version(), 0);
    }

    #[test]
    fn watch_replays_after_rv_and_follows_namespace() {
        let mut s = Store::default();
        s.apply(svc("a", "x")).unwrap();
        s.apply(svc("b", "y")).unwrap();
        let mut all = s.watch(Resource::Service, None, Some(1), true).unwrap();
        let mut only_x = s
            .watch(Resource::Service, Some("x"), Some(0), true)
            .unwrap();
        s.delete(Resource::Service, "x", "a").unwrap();
        let got = drain(&mut all);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["type"], "ADDED");
        assert_eq!(got[0]["object"]["metadata"]["name"], "b");
        assert_eq!(got[1]["type"], "DELETED");
        assert_eq!(got[1]["object"]["metadata"]["resourceVersion"], "3");
        let got = drain(&mut only_x);
        assert_eq!(got.len(), 2);
        assert!(got
            .iter()
            .all(|e| e["object"]["metadata"]["namespace"] == "x"));
        assert_eq!(s.send_bookmark(), 2);
        let bm = drain(&mut all);
        assert_eq!(bm[0]["type"], "BOOKMARK");
        assert_eq!(bm[0]["object"]["metadata"]["resourceVersion"], "3");
    }

    #[test]
    fn compaction_expires_old_versions() {
        let mut s = Store::default();
        s.apply(svc("a", "x")).unwrap();
        s.apply(svc("b", "x")).unwrap();
        s.compact();
        assert!(matches!(
            s.watch(Resource::Service, None, Some(1), true),
            Err(StoreError::Expired(_))
        ));
        assert!(s.watch(Resource::Service, None, Some(2), true).is_ok());
    }

    #[test]
    fn paged_list_is_a_consistent_snapshot() {
        let mut s = Store::default();
        for i in 0..5 {
            s.apply(svc(&format!("s{i}"), "x")).unwrap();
        }
        let page: Value =
            serde_json::from_slice(&s.list(Resource::Service, None, Some(2), None).unwrap().body)
                .unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        let mut next = page["metadata"]["continue"].as_str().unwrap().to_string();
        // A change between pages must not show up in later pages.
        s.apply(svc("s9", "x")).unwrap();
        let mut names: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        loop {
            let p: Value = serde_json::from_slice(
                &s.list(Resource::Service, None, Some(2), Some(&next))
                    .unwrap()
                    .body,
            )
            .unwrap();
            assert_eq!(p["metadata"]["resourceVersion"], "5");
            names.extend(
                p["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
            );
            match p["metadata"]["continue"].as_str() {
                Some(t) => next = t.to_string(),
                None => break,
            }
        }
        assert_eq!(names, ["s0", "s1", "s2", "s3", "s4"]);
        assert!(matches!(
            s.list(Resource::Service, None, Some(2), Some("p99o2")),
            Err(StoreError::Expired(_))
        ));
        assert!(matches!(
            s.list(Resource::Service, None, Some(2), Some("garbage")),
            Err(StoreError::BadRequest(_))
        ));
    }

    #[test]
    fn closed_watchers_are_pruned() {
        let mut s = Store::default();
        let rx = s.watch(Resource::Service, None, None, false).unwrap();
        assert_eq!(s.open_watches(), 1);
        drop(rx);
        s.apply(svc("a", "x")).unwrap();
        assert_eq!(s.open_watches(), 0);
        let mut rx = s.watch(Resource::Service, None, None, false).unwrap();
        let first = futures::executor::block_on(rx.next()).unwrap();
        assert!(first.ends_with(b"}\n"));
    }
}
