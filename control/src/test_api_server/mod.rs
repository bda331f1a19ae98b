//! A small Kubernetes API server for tests and sync benchmarks.
//!
//! It speaks the real list/watch protocol for v1 Services and
//! discovery.k8s.io/v1 EndpointSlices over HTTP/1.1 on 127.0.0.1, so the
//! unmodified kube client (through a kubeconfig) can be pointed at it:
//!
//! - `GET /api/v1/services`, `/api/v1/namespaces/{ns}/services`,
//!   `/apis/discovery.k8s.io/v1/endpointslices` and
//!   `/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices`.
//! - Lists honour `limit`/`continue`; later pages come from a snapshot taken
//!   at the first page, as on a real server. `labelSelector` and
//!   `fieldSelector` are ignored (everything matches).
//! - `watch=true&resourceVersion=N` streams newline-delimited JSON events
//!   after N (chunked), `allowWatchBookmarks` enables BOOKMARK events,
//!   `timeoutSeconds` ends the stream. A watch from an N older than the
//!   compaction point gets one ERROR event with a 410 `Expired` Status.
//!   Streaming lists (`sendInitialEvents`) are refused with 400.
//! - `GET /api/v1/nodes/{name}` returns a Node put with `put_node` (no
//!   list or watch of Nodes).
//! - Requests must carry the bearer token written into the kubeconfig.
//!
//! Every method is synchronous; the server runs on its own tokio runtime.
//! Do not drop an `ApiServer` from inside an async context (tokio refuses to
//! drop a runtime there).

/// Service and EndpointSlice JSON builders.
pub mod fixtures;
/// Routing and list/watch responses over hyper.
mod handler;
/// The kubeconfig the server writes for clients.
mod kubeconfig;
/// Objects, resourceVersions, the event log and open watches.
mod store;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::handler::Shared;
pub use self::store::{Resource, StoreError};

/// A running test API server. Dropping it stops it.
pub struct ApiServer {
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
    addr: SocketAddr,
    serving: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl ApiServer {
    /// Starts a server on 127.0.0.1 with a free port.
    pub fn start() -> io::Result<ApiServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vipgate-test-apiserver")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let shared = Arc::new(Shared {
            store: Mutex::default(),
            token: format!("vipgate-test-{:x}-{nanos:x}", std::process::id()),
            nodes: Mutex::default(),
        });
        let mut server = ApiServer {
            shared,
            runtime: Some(runtime),
            addr,
            serving: None,
        };
        server.serve(listener);
        Ok(server)
    }

    fn serve(&mut self, listener: TcpListener) {
        if let Some(rt) = &self.runtime {
            let (stop, stopped) = oneshot::channel();
            let task = rt.spawn(handler::serve(listener, self.shared.clone(), stopped));
            self.serving = Some((stop, task));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on (kept across pause/resume).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bearer token clients must send.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Writes `dir/kubeconfig` (cluster, token user, context) and returns
    /// its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, kubeconfig::render(&self.url(), &self.shared.token))?;
        Ok(path)
    }

    /// Creates or replaces a Service or EndpointSlice (namespace defaults
    /// to `default`); returns the new global resourceVersion.
    pub fn apply(&self, obj: Value) -> Result<u64, StoreError> {
        self.shared.store().apply(obj)
    }

    /// Creates or replaces the Node `name` with these labels (served by
    /// `GET /api/v1/nodes/{name}` only).
    pub fn put_node(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let node = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels, "resourceVersion": "1"},
        });
        let mut nodes = self.shared.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.insert(name.to_string(), node);
    }

    /// Applies many objects under one lock (for large benchmarks); stops
    /// at the first invalid object and returns its error.
    pub fn apply_all(&self, objs: impl IntoIterator<Item = Value>) -> Result<u64, StoreError> {
        let mut store = self.shared.store();
        for obj in objs {
            store.apply(obj)?;
        }
        Ok(store.resource_version())
    }

    /// Deletes an object; returns the deletion's resourceVersion.
    pub fn delete(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Result<u64, StoreError> {
        self.shared.store().delete(resource, namespace, name)
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Number of stored objects of a resource.
    pub fn count(&self, resource: Resource) -> usize {
        self.shared.store().count(resource)
    }

    /// Number of watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.shared.store().open_watches()
    }

    /// Forgets history up to now: a watch resuming from an older
    /// resourceVersion gets 410 Gone and must relist. Open watches go on.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Sends a BOOKMARK to every open watch that allows bookmarks; returns
    /// how many were sent.
    pub fn send_bookmark(&self) -> usize {
        self.shared.store().send_bookmark()
    }

    /// Ends every open watch stream (as a watch timeout does); clients
    /// resume from their last resourceVersion.
    pub fn close_watches(&self) {
        self.shared.store().close_watches();
    }

    /// Stops listening and drops every connection, watches included, so
    /// clients see the server go away. Objects are kept. Idempotent.
    pub fn pause(&mut self) {
        if let (Some((stop, task)), Some(rt)) = (self.serving.take(), &self.runtime) {
            let _ = stop.send(());
            let _ = rt.block_on(task);
        }
    }

    /// Listens again on the same port after [`ApiServer::pause`].
    pub fn resume(&mut self) -> io::Result<()> {
        if self.serving.is_some() {
            return Ok(());
        }
        let Some(rt) = &self.runtime else {
            return Err(io::Error::other("server was shut down"));
        };
        let listener = rt.block_on(TcpListener::bind(self.addr))?;
        self.serve(listener);
        Ok(())
    }

    /// Stops the server for good.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.pause();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}
