//! Live Services and EndpointSlices from the Kubernetes API.
//!
//! kube-runtime watchers feed reflector stores (they handle
//! resourceVersions, bookmarks and relisting after 410 Gone, with the
//! default backoff). The source runs on its own thread with a
//! current-thread tokio runtime, so callers need not be async. Changes are
//! coalesced: after a change the source waits `settle` for more (but at
//! most [`MAX_DELAY`] after the first unpublished change) and then hands
//! one [`Snapshot`] of both stores to the callback, on the source thread.
//!
//! No snapshot is delivered before both stores finished their initial
//! list, and a relist replaces a store only once it is complete, so a
//! snapshot is never a half view. While the API is unreachable nothing is
//! delivered: the caller keeps serving its last good tables.

/// Publish timing: settle period and cap.
mod coalesce;
/// This node's zone label, read once.
mod node;
/// Client middleware that notices successful API responses.
mod observe;
/// The async loop: reflectors, merge, coalesce, publish.
mod run;
/// Health shared with the admin endpoint.
mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::oneshot;

pub use self::coalesce::MAX_DELAY;
pub use self::node::{node_zone, ZONE_LABEL};
pub use self::status::SourceStatus;

/// Default quiet period before a snapshot is published.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(5);

/// Where to watch and how eagerly to publish.
#[derive(Clone, Debug)]
pub struct KubeSourceConfig {
    /// Explicit kubeconfig; `None` uses kube's inference (KUBECONFIG,
    /// ~/.kube/config, in-cluster service account).
    pub kubeconfig: Option<PathBuf>,
    /// Watch one namespace only; `None` watches all.
    pub namespace: Option<String>,
    /// Quiet period after a change before publishing (capped at
    /// [`MAX_DELAY`]).
    pub settle: Duration,
}

impl Default for KubeSourceConfig {
    fn default() -> Self {
        KubeSourceConfig {
            kubeconfig: None,
            namespace: None,
            settle: DEFAULT_SETTLE,
        }
    }
}

/// Everything both stores hold at one moment, in no particular order:
/// sorting 20,000 objects per snapshot would cost milliseconds on every change.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Shared with the reflector stores: a snapshot of 10,000 objects costs
    /// 10,000 reference counts, not 10,000 deep copies.
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    /// Completed (re)lists across both stores: 2 after the initial sync,
    /// growing by one each time a store relists (e.g. after 410 Gone).
    pub resync: u64,
}

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("no Kubernetes configuration found: {0}")]
    Infer(String),
    #[error("cannot build Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error("cannot start the source thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the source thread died while starting")]
    Died,
}

/// Owns the watch thread; [`KubeSource::stop`] or drop ends and joins it.
pub struct KubeSource {
    status: SourceStatus,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl KubeSource {
    /// Loads the configuration, builds the client and starts watching.
    /// Configuration errors are returned here; API errors after start are
    /// retried forever and reported through [`KubeSource::status`].
    /// `on_snapshot` runs on the source thread.
    pub fn start(
        cfg: KubeSourceConfig,
        on_snapshot: impl FnMut(Snapshot) + Send + 'static,
    ) -> Result<KubeSource, KubeSourceError> {
        let status = SourceStatus::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread_status = status.clone();
        let thread = std::thread::Builder::new()
            .name("vipgate-kube".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(KubeSourceError::Thread(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    let client = match connect(cfg.kubeconfig, &thread_status).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    run::run(
                        client,
                        cfg.namespace,
                        cfg.settle,
                        thread_status,
                        on_snapshot,
                        stop_rx,
                    )
                    .await;
                });
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(KubeSource {
                status,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(KubeSourceError::Died)
            }
        }
    }

    /// A handle on the source's health, valid after the source stops.
    pub fn status(&self) -> SourceStatus {
        self.status.clone()
    }

    /// Stops watching and joins the thread.
    pub fn stop(self) {}
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn connect(path: Option<PathBuf>, status: &SourceStatus) -> Result<Client, KubeSourceError> {
    let config = match path {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| KubeSourceError::Kubeconfig {
                path: path.clone(),
                message: e.to_string(),
            };
            let kc = Kubeconfig::read_from(&path).map_err(|e| bad(&e))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| bad(&e))?
        }
        None => Config::infer()
            .await
            .map_err(|e| KubeSourceError::Infer(e.to_string()))?,
    };
    let layer = observe::ObserveLayer {
        status: status.clone(),
    };
    Ok(ClientBuilder::try_from(config)?.with_layer(&layer).build())
}
