//! kube-proxy's per-Service health check (`healthCheckNodePort`) for
//! `type: LoadBalancer` Services with `externalTrafficPolicy: Local`: an
//! HTTP listener per Service on its port, answering any method and path
//! with the count of the Service's ready endpoints on this node, 200 when
//! there is one and the gateway is ready, else 503, so that the external
//! load balancer sends only to nodes that have somewhere to send to.
//! Reply, headers and listener handling follow kube-proxy's
//! pkg/proxy/healthcheck/service_health.go.
//!
//! Listeners follow [`ServiceHealthServer::sync`]: a Service that is gone
//! or whose port changed is closed, a new one is opened. A port that
//! cannot be bound is reported once (a warning) and retried at each sync,
//! as kube-proxy retries it. The server runs on a current-thread tokio
//! runtime of its own thread, like the admin endpoint.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle as TaskHandle, JoinSet};

use crate::admin::Health;
use crate::model::HealthCheck;

/// Connections served at once per listener: load balancers probe every few
/// seconds from a handful of addresses.
const MAX_CONNECTIONS: usize = 32;
/// Time a client gets to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on one connection's life, keep-alive included.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Pause after a failed accept (EMFILE and friends) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait for the runtime thread to close an aborted listener.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// (namespace, name).
type Id = (String, String);

/// The reply to a probe: kube-proxy's status rule and body (tab-indented
/// JSON, as its template prints it).
pub fn reply(
    namespace: &str,
    name: &str,
    local_endpoints: usize,
    healthy: bool,
) -> (StatusCode, String) {
    let status = if local_endpoints != 0 && healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // serde_json quotes names as Go's %q does for the characters a
    // Kubernetes name may hold.
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {local_endpoints},\n\t\"serviceProxyHealthy\": {healthy}\n}}",
        q(namespace),
        q(name)
    );
    (status, body)
}

fn response(
    namespace: &str,
    name: &str,
    local_endpoints: usize,
    healthy: bool,
) -> Response<Full<Bytes>> {
    let (status, body) = reply(namespace, name, local_endpoints, healthy);
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    // Newer kube-proxy also reports the count as a weight (read by
    // weighted load balancers, e.g. Google Cloud's WEIGHTED_MAGLEV).
    h.insert(
        HeaderName::from_static("x-load-balancing-endpoint-weight"),
        HeaderValue::from(local_endpoints),
    );
    resp
}

/// One Service's open listeners.
struct Instance {
    port: u16,
    local_endpoints: Arc<AtomicUsize>,
    addrs: Vec<SocketAddr>,
    tasks: Vec<TaskHandle<()>>,
    /// Disconnected once the task dropped its listener.
    closed: Vec<mpsc::Receiver<()>>,
}

impl Drop for Instance {
    /// Closes the listeners before returning, so the port is free for the
    /// next sync (a Service whose port moved to another).
    fn drop(&mut self) {
        // Aborting the accept task drops its listener and its connections
        // on the runtime's thread.
        for t in &self.tasks {
            t.abort();
        }
        for c in &self.closed {
            let _ = c.recv_timeout(CLOSE_WAIT);
        }
    }
}

/// A listener and the sender that tells, by being dropped after it, that
/// it is closed (fields drop in order).
struct Listening {
    listener: TcpListener,
    _closed: mpsc::Sender<()>,
}

#[derive(Default)]
struct Open {
    instances: HashMap<Id, Instance>,
    /// Services whose port could not be bound, and which port: warned once.
    failed: HashMap<Id, u16>,
}

/// The running health check listeners. Dropping it closes them all.
pub struct ServiceHealthServer {
    /// Addresses to listen on; empty: every address of the node.
    bind: Vec<IpAddr>,
    health: Arc<Health>,
    runtime: tokio::runtime::Handle,
    open: Mutex<Open>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServiceHealthServer {
    /// Starts the runtime thread; listeners open at [`sync`](Self::sync).
    /// `bind` empty listens on every address (kube-proxy's default, when
    /// `--nodeport-addresses` is not set); `health` gives
    /// `serviceProxyHealthy` (the gateway's readiness).
    pub fn start(bind: Vec<IpAddr>, health: Arc<Health>) -> io::Result<ServiceHealthServer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vipgate-svc-health".into())
            .spawn(move || {
                runtime.block_on(async {
                    // A dropped sender ends it too.
                    let _ = stop_rx.await;
                });
            })?;
        Ok(ServiceHealthServer {
            bind,
            health,
            runtime: handle,
            open: Mutex::new(Open::default()),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Makes the listeners match `checks` and updates the counts; returns
    /// the warnings it logged (ports that could not be bound, once each).
    pub fn sync(&self, checks: &[HealthCheck]) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let wanted: HashMap<Id, &HealthCheck> = checks
            .iter()
            .map(|c| ((c.namespace.clone(), c.name.clone()), c))
            .collect();
        open.instances.retain(|id, inst| {
            let keep = wanted.get(id).is_some_and(|c| c.port == inst.port);
            if !keep {
                tracing::info!(
                    "health check of Service {}/{} on port {} closed",
                    id.0,
                    id.1,
                    inst.port
                );
            }
            keep
        });
        open.failed
            .retain(|id, port| wanted.get(id).is_some_and(|c| c.port == *port));
        for (id, check) in wanted {
            if let Some(inst) = open.instances.get(&id) {
                inst.local_endpoints
                    .store(check.local_endpoints, Ordering::Relaxed);
                continue;
            }
            match self.listen(check) {
                Ok(inst) => {
                    tracing::info!(
                        "health check of Service {}/{} on port {} ({} local endpoints)",
                        id.0,
                        id.1,
                        check.port,
                        check.local_endpoints
                    );
                    open.failed.remove(&id);
                    open.instances.insert(id, inst);
                }
                Err(e) => {
                    if open.failed.insert(id.clone(), check.port) != Some(check.port) {
                        let w = format!(
                            "Service {}/{}: cannot listen on healthCheckNodePort {}: {e} \
                             (kube-proxy on this node serves it too?); retried at each change",
                            id.0, id.1, check.port
                        );
                        tracing::warn!("{w}");
                        warnings.push(w);
                    }
                }
            }
        }
        warnings
    }

    /// The addresses each Service listens on, for tests and logs.
    pub fn listening(&self) -> Vec<(String, String, Vec<SocketAddr>)> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = open
            .instances
            .iter()
            .map(|(id, i)| (id.0.clone(), id.1.clone(), i.addrs.clone()))
            .collect();
        v.sort();
        v
    }

    /// Binds every address first, so a Service is served on all of them
    /// or on none (kube-proxy closes what it opened when one fails).
    fn listen(&self, check: &HealthCheck) -> io::Result<Instance> {
        let listeners = if self.bind.is_empty() {
            vec![bind_any(check.port)?]
        } else {
            self.bind
                .iter()
                .map(|ip| std::net::TcpListener::bind((*ip, check.port)))
                .collect::<io::Result<Vec<_>>>()?
        };
        let local_endpoints = Arc::new(AtomicUsize::new(check.local_endpoints));
        let mut addrs = Vec::with_capacity(listeners.len());
        let mut tasks = Vec::with_capacity(listeners.len());
        let mut closed = Vec::with_capacity(listeners.len());
        for l in listeners {
            l.set_nonblocking(true)?;
            addrs.push(l.local_addr()?);
            let listener = {
                let _ctx = self.runtime.enter();
                TcpListener::from_std(l)?
            };
            let served = Served {
                namespace: check.namespace.clone(),
                name: check.name.clone(),
                local_endpoints: Arc::clone(&local_endpoints),
                health: Arc::clone(&self.health),
            };
            let (tx, rx) = mpsc::channel();
            closed.push(rx);
            let l = Listening {
                listener,
                _closed: tx,
            };
            tasks.push(self.runtime.spawn(accept(l, Arc::new(served))));
        }
        Ok(Instance {
            port: check.port,
            local_endpoints,
            addrs,
            tasks,
            closed,
        })
    }

    fn shutdown(&mut self) {
        // Closed while the runtime thread still runs to drop them.
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            open.instances.clear();
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Closes every listener and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }
}

impl Drop for ServiceHealthServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Every address, both families: `[::]` takes IPv4 too (Linux's default
/// `net.ipv6.bindv6only=0`), as Go's listener on "" or "0.0.0.0" does;
/// `0.0.0.0` where IPv6 is off.
fn bind_any(port: u16) -> io::Result<std::net::TcpListener> {
    match std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(l) => Ok(l),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
            ) =>
        {
            Err(e)
        }
        Err(_) => std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)),
    }
}

/// What one listener answers about.
struct Served {
    namespace: String,
    name: String,
    local_endpoints: Arc<AtomicUsize>,
    health: Arc<Health>,
}

async fn accept(l: Listening, served: Arc<Served>) {
    let listener = &l.listener;
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if conns.len() < MAX_CONNECTIONS => {
                    let served = Arc::clone(&served);
                    conns.spawn(async move {
                        let svc = service_fn(move |_req| {
                            let n = served.local_endpoints.load(Ordering::Relaxed);
                            let r = response(&served.namespace, &served.name, n, served.health.ready());
                            async move { Ok::<_, Infallible>(r) }
                        });
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), svc);
                        let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
                    });
                }
                Ok((stream, _)) => drop(stream),
                Err(e) => {
                    tracing::debug!(error = %e, "health check: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_is_kube_proxys() {
        let (status, body) = reply("shop", "edge", 2, true);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"shop\",\n\t\t\"name\": \"edge\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["service"]["name"], "edge");
        assert_eq!(
            reply("shop", "edge", 0, true).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        // Endpoints here but the gateway not ready: unhealthy, as kube-proxy.
        let (status, body) = reply("shop", "edge", 3, false);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"serviceProxyHealthy\": false"), "{body}");
    }

    #[test]
    fn headers() {
        let r = response("shop", "edge", 4, true);
        let h = r.headers();
        assert_eq!(h[CONTENT_TYPE], "application/json");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-load-balancing-endpoint-weight"], "4");
    }
}
