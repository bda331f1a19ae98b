//! Shared helpers for the kube source tests: a scratch directory, object
//! builders on the benchmark address ranges, and bounded waits.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use control::kube_source::{KubeSource, KubeSourceConfig, Snapshot};
use control::test_api_server::{fixtures, ApiServer};
use kube::ResourceExt;
use serde_json::Value;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// A directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "vipgate-kube-{tag}-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// VIP number `i` in 198.19.0.0/16.
pub fn vip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8))
}

/// Backend number `i` in 198.18.1.0/24 (wraps, skipping .0 and .255).
pub fn backend(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 1, (i % 254 + 1) as u8))
}

/// Backend number `i` in fd00::/8.
pub fn backend6(i: u32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, i as u16 + 1))
}

pub fn svc(ns: &str, name: &str, i: u32) -> Value {
    fixtures::service(ns, name, vip(i), 80)
}

pub fn slice(ns: &str, svc_name: &str, first_backend: u32) -> Value {
    let addrs: Vec<IpAddr> = (first_backend..first_backend + 3).map(backend).collect();
    fixtures::endpoint_slice(ns, &format!("{svc_name}-abc"), svc_name, &addrs, 8080)
}

/// A source started against `server`, collecting snapshots.
pub struct Watching {
    pub source: KubeSource,
    pub snapshots: Receiver<Snapshot>,
    _dir: Scratch,
}

pub fn watch(server: &ApiServer, namespace: Option<&str>) -> Watching {
    let dir = Scratch::new("cfg");
    let kubeconfig = server.write_kubeconfig(&dir.0).unwrap();
    let (tx, rx) = channel();
    let cfg = KubeSourceConfig {
        kubeconfig: Some(kubeconfig),
        namespace: namespace.map(str::to_string),
        ..KubeSourceConfig::default()
    };
    let source = KubeSource::start(cfg, move |s| {
        let _ = tx.send(s);
    })
    .unwrap();
    Watching {
        source,
        snapshots: rx,
        _dir: dir,
    }
}

impl Watching {
    /// The first snapshot that satisfies `pred`, or a panic after [`WAIT`].
    pub fn until(&self, what: &str, pred: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let end = Instant::now() + WAIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.snapshots.recv_timeout(left) {
                Ok(s) if pred(&s) => return s,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("no snapshot with {what} within {WAIT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("source ended waiting for {what}"),
            }
        }
    }

    /// Snapshots that arrive within `d`.
    pub fn quiet_for(&self, d: Duration) -> Vec<Snapshot> {
        let end = Instant::now() + d;
        let mut got = Vec::new();
        while let Ok(s) = self
            .snapshots
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            got.push(s);
        }
        got
    }
}

/// Polls `cond` every 20 ms for at most `limit`.
pub fn eventually(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// namespace/name of each object, sorted (snapshots come in no order).
pub fn names<K: ResourceExt>(objs: &[std::sync::Arc<K>]) -> Vec<String> {
    let mut v: Vec<String> = objs
        .iter()
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .collect();
    v.sort();
    v
}

pub fn has_service(s: &Snapshot, ns: &str, name: &str) -> bool {
    names(&s.services).contains(&format!("{ns}/{name}"))
}

pub fn has_slice(s: &Snapshot, ns: &str, name: &str) -> bool {
    names(&s.slices).contains(&format!("{ns}/{name}"))
}

pub fn cluster_ip(s: &Snapshot, ns: &str, name: &str) -> Option<String> {
    s.services
        .iter()
        .find(|o| o.namespace().as_deref() == Some(ns) && o.name_any() == name)
        .and_then(|o| o.spec.as_ref()?.cluster_ip.clone())
}
