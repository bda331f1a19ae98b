//! HTTP side of the test API server: routing, query parsing, list and
//! watch responses, served by hyper over HTTP/1.1.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::store::{expired_line, status_json, Resource, Store, StoreError};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// State shared by the control API and every connection.
pub struct Shared {
    pub store: Mutex<Store>,
    pub token: String,
    /// core/v1 Nodes by name, served by `get` only (no list or watch).
    pub nodes: Mutex<std::collections::HashMap<String, serde_json::Value>>,
}

impl Shared {
    /// Locks the store; a panic elsewhere while holding it leaves data that
    /// is still consistent per call, so poisoning is ignored.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts connections until `stop` fires, then drops the listener and
/// every open connection (watch streams included) before returning.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Like the real API server (Go sets TCP_NODELAY by default):
                // without it, small watch events wait for the client's
                // delayed ACK (Nagle), ~20-40 ms.
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(req, shared.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Body>, Infallible> {
    Ok(respond(&req, &shared))
}

fn respond(req: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    if req.method() != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only GET is served",
        );
    }
    let expected = format!("Bearer {}", shared.token);
    if req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        != Some(expected.as_bytes())
    {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    if let Some(name) = req.uri().path().strip_prefix("/api/v1/nodes/") {
        let nodes = shared.nodes.lock().unwrap_or_else(|e| e.into_inner());
        return match nodes.get(name) {
            Some(n) => json_response(StatusCode::OK, full(Bytes::from(n.to_string()))),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("nodes \"{name}\" not found"),
            ),
        };
    }
    let Some((resource, namespace)) = route(req.uri().path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let query = Query::parse(req.uri().query().unwrap_or(""));
    let result = if query.flag("watch") {
        watch(shared, resource, namespace.as_deref(), &query)
    } else {
        list(shared, resource, namespace.as_deref(), &query)
    };
    result.unwrap_or_else(|e| match e {
        StoreError::Expired(m) => status(StatusCode::GONE, "Expired", &m),
        StoreError::BadRequest(m) | StoreError::Invalid(m) => {
            status(StatusCode::BAD_REQUEST, "BadRequest", &m)
        }
        e @ StoreError::NotFound { .. } => {
            status(StatusCode::NOT_FOUND, "NotFound", &e.to_string())
        }
    })
}

fn list(
    shared: &Shared,
    resource: Resource,
    namespace: Option<&str>,
    q: &Query,
) -> Result<Response<Body>, StoreError> {
    let limit = q.number("limit")?.map(|l| l as usize);
    let cont = q.get("continue").filter(|c| !c.is_empty());
    let page = shared.store().list(resource, namespace, limit, cont)?;
    Ok(json_response(StatusCode::OK, full(page.body)))
}

fn watch(
    shared: &Shared,
    resource: Resource,
    namespace: Option<&str>,
    q: &Query,
) -> Result<Response<Body>, StoreError> {
    if q.flag("sendInitialEvents") {
        return Err(StoreError::BadRequest(
            "sendInitialEvents is not supported".into(),
        ));
    }
    let from = q.number("resourceVersion")?;
    let timeout = q.number("timeoutSeconds")?.map(Duration::from_secs);
    let bookmarks = q.flag("allowWatchBookmarks");
    let rx = match shared.store().watch(resource, namespace, from, bookmarks) {
        Ok(rx) => rx,
        // The API server answers an expired watch with 200 and one ERROR event.
        Err(StoreError::Expired(m)) => {
            return Ok(json_response(StatusCode::OK, full(expired_line(&m))))
        }
        Err(e) => return Err(e),
    };
    let frames = rx.map(|line| Ok::<_, Infallible>(Frame::data(line)));
    let body = match timeout {
        Some(t) => StreamBody::new(frames.take_until(tokio::time::sleep(t))).boxed_unsync(),
        None => StreamBody::new(frames).boxed_unsync(),
    };
    Ok(json_response(StatusCode::OK, body))
}

/// Maps a request path to the resource and optional namespace it names.
fn route(path: &str) -> Option<(Resource, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (resource, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (Resource::Service, rest),
        ["apis", "discovery.k8s.io", "v1", rest @ ..] => (Resource::EndpointSlice, rest),
        _ => return None,
    };
    let plural = match resource {
        Resource::Service => "services",
        Resource::EndpointSlice => "endpointslices",
    };
    match rest {
        [p] if *p == plural => Some((resource, None)),
        ["namespaces", ns, p] if *p == plural && !ns.is_empty() => {
            Some((resource, Some(percent_decode(ns))))
        }
        _ => None,
    }
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: &str) -> Query {
        Query(
            q.split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// A numeric parameter; absent or empty is `None`.
    fn number(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| StoreError::BadRequest(format!("invalid {key}: {v:?}"))),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn full(body: Bytes) -> Body {
    Full::new(body).boxed_unsync()
}

fn json_response(code: StatusCode, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, full(status_json(code.as_u16(), reason, message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/api/v1/services"), Some((Resource::Service, None)));
        assert_eq!(
            route("/api/v1/namespaces/team-a/services"),
            Some((Resource::Service, Some("team-a".into())))
        );
        assert_eq!(
            route("/apis/discovery.k8s.io/v1/endpointslices"),
            Some((Resource::EndpointSlice, None))
        );
        assert_eq!(
            route("/apis/discovery.k8s.io/v1/namespaces/b/endpointslices"),
            Some((Resource::EndpointSlice, Some("b".into())))
        );
        assert_eq!(route("/api/v1/pods"), None);
        assert_eq!(route("/api/v1/namespaces//services"), None);
        assert_eq!(route("/apis/discovery.k8s.io/v1/services"), None);
    }

    #[test]
    fn query_parsing() {
        let q = Query::parse("&watch=true&resourceVersion=12&labelSelector=a%3Db&x");
        assert!(q.flag("watch"));
        assert_eq!(q.number("resourceVersion").unwrap(), Some(12));
        assert_eq!(q.get("labelSelector"), Some("a=b"));
        assert_eq!(q.get("x"), Some(""));
        assert!(!q.flag("allowWatchBookmarks"));
        assert!(Query::parse("limit=abc").number("limit").is_err());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
