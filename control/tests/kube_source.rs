//! The Kubernetes source against the test API server, through the real
//! kube client and a kubeconfig. Every wait is bounded; loopback only.

mod kube_common;

use std::time::Duration;

use control::kube_source::{KubeSource, KubeSourceConfig, KubeSourceError};
use control::test_api_server::{ApiServer, Resource};
use kube_common::*;

fn seeded() -> ApiServer {
    let server = ApiServer::start().unwrap();
    for (i, (ns, name)) in [("team-a", "web"), ("team-a", "api"), ("team-b", "db")]
        .into_iter()
        .enumerate()
    {
        server.apply(svc(ns, name, i as u32 + 1)).unwrap();
        server.apply(slice(ns, name, i as u32 * 3)).unwrap();
    }
    server
}

#[test]
fn initial_sync_delivers_everything() {
    let server = seeded();
    let w = watch(&server, None);
    let first = w.until("the first snapshot", |_| true);
    assert_eq!(
        names(&first.services),
        ["team-a/api", "team-a/web", "team-b/db"]
    );
    assert_eq!(
        names(&first.slices),
        ["team-a/api-abc", "team-a/web-abc", "team-b/db-abc"]
    );
    assert_eq!(
        cluster_ip(&first, "team-b", "db").as_deref(),
        Some("198.19.0.3")
    );
    let eps = first.slices[2].endpoints.as_ref().map_or(0, Vec::len);
    assert_eq!(eps, 3);
    assert_eq!(first.resync, 2);
    let status = w.source.status();
    assert!(status.synced());
    assert!(status.healthy());
    assert!(status.events() >= 6, "events {}", status.events());
    assert_eq!(status.last_error(), None);
}

#[test]
fn service_changes_arrive() {
    let server = seeded();
    let w = watch(&server, None);
    w.until("initial sync", |s| s.services.len() == 3);

    server.apply(svc("team-a", "new", 40)).unwrap();
    let s = w.until("the added service", |s| has_service(s, "team-a", "new"));
    assert_eq!(s.services.len(), 4);

    server.apply(svc("team-a", "new", 41)).unwrap();
    w.until("the modified clusterIP", |s| {
        cluster_ip(s, "team-a", "new").as_deref() == Some("198.19.0.41")
    });

    server.delete(Resource::Service, "team-a", "new").unwrap();
    let s = w.until("the deletion", |s| !has_service(s, "team-a", "new"));
    assert_eq!(s.services.len(), 3);
    assert_eq!(s.slices.len(), 3);
    assert_eq!(s.resync, 2, "changes must not relist");
}

#[test]
fn slice_changes_arrive() {
    let server = seeded();
    let w = watch(&server, None);
    w.until("initial sync", |s| s.slices.len() == 3);

    server.apply(slice("team-b", "extra", 100)).unwrap();
    w.until("the added slice", |s| has_slice(s, "team-b", "extra-abc"));

    let six: Vec<_> = (0..6).map(backend6).collect();
    let modified = control::test_api_server::fixtures::endpoint_slice(
        "team-b",
        "extra-abc",
        "extra",
        &six,
        8080,
    );
    server.apply(modified).unwrap();
    let s = w.until("the modified endpoints", |s| {
        s.slices.iter().any(|e| {
            e.metadata.name.as_deref() == Some("extra-abc")
                && e.endpoints.as_ref().map_or(0, Vec::len) == 6
        })
    });
    let extra = s
        .slices
        .iter()
        .find(|e| e.metadata.name.as_deref() == Some("extra-abc"))
        .unwrap();
    assert_eq!(extra.address_type, "IPv6");
    assert_eq!(
        extra.endpoints.as_ref().unwrap()[5].addresses,
        ["fd00:0:0:1::6"]
    );

    server
        .delete(Resource::EndpointSlice, "team-b", "extra-abc")
        .unwrap();
    let s = w.until("the deletion", |s| !has_slice(s, "team-b", "extra-abc"));
    assert_eq!(s.slices.len(), 3);
}

#[test]
fn quick_changes_are_coalesced() {
    let server = seeded();
    let w = watch(&server, None);
    w.until("initial sync", |s| s.services.len() == 3);

    for i in 0..100 {
        server
            .apply(svc("burst", &format!("s{i:03}"), 100 + i))
            .unwrap();
    }
    let last = w.until("all 100 services", |s| s.services.len() == 103);
    // Anything still queued or arriving later must not differ from `last`.
    let late = w.quiet_for(Duration::from_millis(300));
    assert!(
        late.is_empty(),
        "{} snapshots after the complete one",
        late.len()
    );
    assert_eq!(last.services.len(), 103);
    assert_eq!(last.slices.len(), 3);
    assert!(has_service(&last, "burst", "s099"));
}

#[test]
fn burst_produces_few_snapshots() {
    let server = seeded();
    let w = watch(&server, None);
    w.until("initial sync", |s| s.services.len() == 3);

    for i in 0..100 {
        server
            .apply(svc("burst", &format!("s{i:03}"), 100 + i))
            .unwrap();
    }
    let mut count = 0;
    let mut complete = false;
    let end = std::time::Instant::now() + WAIT;
    while !complete {
        let left = end.saturating_duration_since(std::time::Instant::now());
        let s = w
            .snapshots
            .recv_timeout(left)
            .expect("snapshots within 10 s");
        count += 1;
        complete = s.services.len() == 103;
    }
    assert!(count <= 10, "100 quick changes gave {count} snapshots");
}

#[test]
fn relist_after_410_gone_is_complete() {
    let mut server = seeded();
    let w = watch(&server, None);
    w.until("initial sync", |s| s.resync == 2);

    // While the client is away, history moves on and is compacted, so its
    // resumed watch finds its resourceVersion expired.
    server.pause();
    server.apply(svc("team-c", "late", 50)).unwrap();
    server.apply(slice("team-c", "late", 50)).unwrap();
    server.delete(Resource::Service, "team-a", "web").unwrap();
    server.compact();
    server.resume().unwrap();

    let s = w.until("the relisted view", |s| s.resync >= 4);
    assert_eq!(
        names(&s.services),
        ["team-a/api", "team-b/db", "team-c/late"]
    );
    assert_eq!(
        names(&s.slices),
        [
            "team-a/api-abc",
            "team-a/web-abc",
            "team-b/db-abc",
            "team-c/late-abc"
        ]
    );
    let status = w.source.status();
    assert!(
        status.last_error().unwrap().contains("410")
            || status.last_error().unwrap().contains("resource version"),
        "last error: {:?}",
        status.last_error()
    );
    eventually("healthy after relist", WAIT, || status.healthy());
}

#[test]
fn api_outage_keeps_quiet_then_recovers() {
    let mut server = seeded();
    let w = watch(&server, None);
    w.until("initial sync", |s| s.services.len() == 3);
    let status = w.source.status();

    server.pause();
    eventually("unhealthy during the outage", WAIT, || !status.healthy());
    assert!(status.last_error().is_some());
    assert!(status.synced(), "an outage does not undo the initial sync");
    let during = w.quiet_for(Duration::from_millis(1500));
    assert!(
        during.is_empty(),
        "{} snapshots during the outage",
        during.len()
    );
    assert!(!status.healthy());

    server.resume().unwrap();
    // Backoff grows while the server is down: allow a few rounds.
    eventually(
        "healthy after the API returns",
        Duration::from_secs(30),
        || status.healthy(),
    );
    server.apply(svc("team-a", "after", 60)).unwrap();
    let s = w.until("a change after the outage", |s| {
        has_service(s, "team-a", "after")
    });
    assert_eq!(s.services.len(), 4);
    assert!(status.healthy());
}

#[test]
fn bookmarks_change_nothing() {
    let server = seeded();
    let w = watch(&server, None);
    let first = w.until("initial sync", |s| s.services.len() == 3);
    eventually("both watches open", WAIT, || server.open_watches() == 2);

    assert_eq!(server.send_bookmark(), 2);
    let after = w.quiet_for(Duration::from_millis(300));
    assert!(
        after.is_empty(),
        "a bookmark published {} snapshots",
        after.len()
    );
    assert!(w.source.status().healthy());

    // The watch goes on after the bookmark, and a reconnect resumes from it.
    server.apply(svc("team-b", "after-bookmark", 70)).unwrap();
    w.until("a change after the bookmark", |s| {
        has_service(s, "team-b", "after-bookmark")
    });
    server.send_bookmark();
    server.close_watches();
    server.apply(svc("team-b", "after-reconnect", 71)).unwrap();
    let s = w.until("a change after reconnecting", |s| {
        has_service(s, "team-b", "after-reconnect")
    });
    assert_eq!(s.resync, first.resync, "a resumed watch must not relist");
}

#[test]
fn namespace_limited_watch() {
    let server = seeded();
    let w = watch(&server, Some("team-a"));
    let first = w.until("initial sync", |_| true);
    assert_eq!(names(&first.services), ["team-a/api", "team-a/web"]);
    assert_eq!(names(&first.slices), ["team-a/api-abc", "team-a/web-abc"]);

    server.apply(svc("team-b", "other", 80)).unwrap();
    let other = w.quiet_for(Duration::from_millis(300));
    assert!(other.is_empty(), "another namespace's change was published");

    server.apply(svc("team-a", "mine", 81)).unwrap();
    let s = w.until("a change in the namespace", |s| {
        has_service(s, "team-a", "mine")
    });
    assert!(s
        .services
        .iter()
        .all(|o| o.metadata.namespace.as_deref() == Some("team-a")));
}

#[test]
fn wrong_token_is_unhealthy_and_silent() {
    let server = seeded();
    let dir = Scratch::new("badtoken");
    let path = server.write_kubeconfig(&dir.0).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(server.token(), "not-the-token")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let source = KubeSource::start(
        KubeSourceConfig {
            kubeconfig: Some(path),
            ..KubeSourceConfig::default()
        },
        move |s| {
            let _ = tx.send(s);
        },
    )
    .unwrap();
    let status = source.status();
    eventually("an error is reported", WAIT, || {
        status.last_error().is_some()
    });
    assert!(!status.healthy());
    assert!(!status.synced());
    assert!(
        status.last_error().unwrap().contains("401")
            || status.last_error().unwrap().contains("Unauthorized"),
        "{:?}",
        status.last_error()
    );
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    source.stop();
}

#[test]
fn unreadable_kubeconfig_fails_start() {
    let dir = Scratch::new("nokubeconfig");
    let cfg = KubeSourceConfig {
        kubeconfig: Some(dir.0.join("missing")),
        ..KubeSourceConfig::default()
    };
    match KubeSource::start(cfg, |_| {}) {
        Err(KubeSourceError::Kubeconfig { path, .. }) => assert!(path.ends_with("missing")),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("started without a kubeconfig"),
    }
    std::fs::write(dir.0.join("garbage"), "clusters: [[[").unwrap();
    let cfg = KubeSourceConfig {
        kubeconfig: Some(dir.0.join("garbage")),
        ..KubeSourceConfig::default()
    };
    assert!(matches!(
        KubeSource::start(cfg, |_| {}),
        Err(KubeSourceError::Kubeconfig { .. })
    ));
}
