//! The admin HTTP server: hyper (already in the tree through kube) on a
//! current-thread tokio runtime of its own thread, so the dataplane never
//! sees tokio and a slow admin client never touches a worker.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use dataplane::generation::Tables;
use http::header::{HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::health::Health;
use super::metrics::Metrics;
use super::routes::{route, Reply, Request as RouteRequest};

/// Connections served at once. Probes and `vipgate services` need a few;
/// the cap keeps a misbehaving local client from growing memory unbounded.
const MAX_CONNECTIONS: usize = 64;
/// Time a client gets to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on one connection's life, keep-alive included, so idle
/// clients cannot hold the connection slots forever.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Pause after a failed accept (EMFILE and friends) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

struct State {
    tables: Tables,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// A running admin endpoint. Dropping it (or `stop()`) shuts it down and
/// joins its thread.
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free one) and serves until stopped,
    /// with `/metrics` showing the table and control figures only (no
    /// workers). Bind errors are returned here, not discovered later by a
    /// probe.
    pub fn start(addr: SocketAddr, tables: Tables, health: Arc<Health>) -> io::Result<AdminServer> {
        let metrics = Arc::new(Metrics::new("none", tables.clone(), Arc::clone(&health)));
        AdminServer::start_with_metrics(addr, tables, health, metrics)
    }

    /// [`AdminServer::start`] serving `metrics` (the gateway's, with its
    /// workers) on `/metrics` and `/stats`.
    pub fn start_with_metrics(
        addr: SocketAddr,
        tables: Tables,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> io::Result<AdminServer> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let local_addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            // Registering with the I/O driver needs the runtime's context.
            let _ctx = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        let state = Arc::new(State {
            tables,
            health,
            metrics,
        });
        let thread = std::thread::Builder::new()
            .name("vipgate-admin".into())
            .spawn(move || runtime.block_on(serve(listener, state, stop_rx)))?;
        Ok(AdminServer {
            local_addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The bound address (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, drops open connections and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The receiver may be gone if the thread already ended.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic in the admin thread must not become a second panic
            // here (Drop may run during unwinding).
            let _ = thread.join();
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve(listener: TcpListener, state: Arc<State>, mut stop: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // A dropped sender also ends the loop.
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if conns.len() < MAX_CONNECTIONS => {
                    conns.spawn(serve_connection(stream, Arc::clone(&state)));
                }
                Ok((stream, peer)) => {
                    tracing::warn!(%peer, "admin: too many connections, closing");
                    drop(stream);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    // Dropping the set aborts open connections; the runtime ends with us.
    conns.shutdown().await;
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let svc = service_fn(move |req: Request<Incoming>| {
        let state = Arc::clone(&state);
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        let accept = req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // On the runtime's blocking pool: a conntrack listing waits for the
        // workers to walk their tables, and must not stall /healthz,
        // /readyz or a scrape behind it on this single-threaded runtime.
        let answer = tokio::task::spawn_blocking(move || {
            let r = RouteRequest {
                method: &method,
                path: &path,
                accept: accept.as_deref(),
                query: query.as_deref(),
            };
            route(&r, &state.tables, &state.health, &state.metrics)
        });
        async move {
            let reply = answer.await.unwrap_or_else(|e| Reply::internal_error(&e));
            Ok::<_, Infallible>(to_response(reply))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc);
    // Errors here are client-side (resets, garbage, timeouts): nothing to
    // report beyond a debug line.
    if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
        tracing::debug!(error = %e, "admin: connection error");
    }
}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = reply.status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if reply.status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET"));
    }
    resp
}
