//! The source's event loop: two reflectors, merged, coalesced into
//! snapshots.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::coalesce::{Coalescer, MAX_DELAY};
use super::status::{SourceStatus, Watched};
use super::Snapshot;

/// What one watcher step did, stripped of the object type so both
/// streams merge into one.
enum Step {
    /// A store changed (watch event, or a finished (re)list).
    Changed,
    /// A (re)list finished and was swapped into the store.
    Listed,
    /// Progress that does not change the store yet (list items, restarts).
    Progress {
        object: bool,
    },
    Failed(String),
}

fn step<K>(r: watcher::Result<watcher::Event<K>>) -> Step {
    match r {
        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Step::Changed,
        Ok(watcher::Event::InitDone) => Step::Listed,
        Ok(watcher::Event::InitApply(_)) => Step::Progress { object: true },
        Ok(watcher::Event::Init) => Step::Progress { object: false },
        Err(e) => Step::Failed(e.to_string()),
    }
}

fn reflect<K>(
    api: Api<K>,
    watched: Watched,
) -> (Store<K>, impl Stream<Item = (Watched, Step)> + Send)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .map(move |r| (watched, step(r)));
    (store, stream)
}

/// Runs until `stop` fires (or its sender is dropped).
pub(crate) async fn run(
    client: Client,
    namespace: Option<String>,
    settle: Duration,
    status: SourceStatus,
    mut on_snapshot: impl FnMut(Snapshot),
    mut stop: oneshot::Receiver<()>,
) {
    let (svc_api, slice_api) = match &namespace {
        Some(ns) => (
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<EndpointSlice>::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let (services, svc_events) = reflect(svc_api, Watched::Services);
    let (slices, slice_events) = reflect(slice_api, Watched::Slices);
    let mut events = std::pin::pin!(futures::stream::select(svc_events, slice_events));
    let mut pending = Coalescer::new(settle, MAX_DELAY);
    let mut resync = 0u64;
    loop {
        let deadline = pending.deadline();
        // Already due (the leading edge): publish now rather than through
        // the timer, whose tick would add up to a millisecond.
        if deadline.is_some_and(|d| d <= std::time::Instant::now()) {
            pending.clear(std::time::Instant::now());
            on_snapshot(Snapshot {
                services: services.state(),
                slices: slices.state(),
                resync,
            });
            continue;
        }
        let wake = tokio::time::Instant::from_std(
            deadline.unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(3600)),
        );
        tokio::select! {
            _ = &mut stop => return,
            next = events.next() => {
                let Some((watched, step)) = next else { return };
                let changed = match step {
                    Step::Changed => {
                        status.record_event();
                        status.record_ok(watched);
                        true
                    }
                    Step::Listed => {
                        resync += 1;
                        status.record_synced(watched);
                        true
                    }
                    Step::Progress { object } => {
                        if object {
                            status.record_event();
                        }
                        status.record_ok(watched);
                        false
                    }
                    Step::Failed(e) => {
                        tracing::warn!(%watched, error = %e, "kubernetes watch failed");
                        status.record_error(watched, format!("{watched}: {e}"));
                        false
                    }
                };
                // Until both stores are listed a snapshot would be half a view.
                if changed && status.synced() {
                    pending.note(std::time::Instant::now());
                }
            }
            _ = tokio::time::sleep_until(wake), if deadline.is_some() => {
                pending.clear(std::time::Instant::now());
                on_snapshot(Snapshot {
                    services: services.state(),
                    slices: slices.state(),
                    resync,
                });
            }
        }
    }
}
