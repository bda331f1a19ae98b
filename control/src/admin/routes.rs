//! Request routing without I/O: a method and a path in, a reply out, so the
//! rules are tested without sockets and the server stays a thin shell.

use dataplane::generation::Tables;
use http::{Method, StatusCode};

use super::explain::{explain_json, Question};
use super::flows::{flows_json, FlowFilter};
use super::health::{one_line, Health};
use super::metrics::Metrics;
use super::services::services_json;

/// What the server writes back.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    /// A request whose handler failed (a panic in it): said, not hidden.
    pub fn internal_error(e: &dyn std::fmt::Display) -> Reply {
        Reply::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    }

    fn text(status: StatusCode, body: impl Into<String>) -> Reply {
        let mut body = body.into();
        body.push('\n');
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// The admin paths; anything else is 404 whatever the method.
const ROUTES: [&str; 7] = [
    "/services",
    "/explain",
    "/healthz",
    "/readyz",
    "/metrics",
    "/stats",
    "/conntrack",
];

/// The content type Prometheus asks for and prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' classic text format, for everyone else.
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A request as routing sees it.
pub struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    /// The Accept header, if any: `/metrics` answers OpenMetrics only to
    /// clients that ask for it, as Prometheus does.
    pub accept: Option<&'a str>,
    /// The query string (`/conntrack?vip=...&client=...`).
    pub query: Option<&'a str>,
}

pub fn route(req: &Request, tables: &Tables, health: &Health, metrics: &Metrics) -> Reply {
    let (method, path) = (req.method, req.path);
    if !ROUTES.contains(&path) {
        return Reply::text(StatusCode::NOT_FOUND, format!("no route {path}"));
    }
    if method != Method::GET {
        return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed");
    }
    match path {
        "/services" => {
            let table = tables.current();
            let mut doc = services_json(&table);
            doc["skipped_objects_total"] = health.skipped().into();
            let mut body = doc.to_string();
            body.push('\n');
            Reply {
                status: StatusCode::OK,
                content_type: "application/json",
                body,
            }
        }
        "/metrics" => {
            if req
                .accept
                .is_some_and(|a| a.contains("application/openmetrics-text"))
            {
                Reply {
                    status: StatusCode::OK,
                    content_type: OPENMETRICS,
                    body: metrics.encode(),
                }
            } else {
                Reply {
                    status: StatusCode::OK,
                    content_type: CLASSIC,
                    body: metrics.encode_classic(),
                }
            }
        }
        "/stats" => {
            let mut body = metrics.stats_json().to_string();
            body.push('\n');
            Reply {
                status: StatusCode::OK,
                content_type: "application/json",
                body,
            }
        }
        "/explain" => match Question::from_query(req.query) {
            Ok(q) => {
                let mut body = explain_json(&tables.current(), &q).to_string();
                body.push('\n');
                Reply {
                    status: StatusCode::OK,
                    content_type: "application/json",
                    body,
                }
            }
            Err(e) => Reply::text(StatusCode::BAD_REQUEST, e),
        },
        "/conntrack" => {
            let listed = FlowFilter::from_query(req.query)
                .map_err(|e| (StatusCode::BAD_REQUEST, e))
                .and_then(|f| {
                    flows_json(&metrics.workers(), &f)
                        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))
                });
            match listed {
                Ok(v) => {
                    let mut body = v.to_string();
                    body.push('\n');
                    Reply {
                        status: StatusCode::OK,
                        content_type: "application/json",
                        body,
                    }
                }
                Err((status, e)) => Reply::text(status, e),
            }
        }
        "/healthz" => Reply::text(StatusCode::OK, "ok"),
        _ => readyz(health),
    }
}

fn readyz(health: &Health) -> Reply {
    match health.not_ready_reason() {
        Some(reason) => Reply::text(StatusCode::SERVICE_UNAVAILABLE, reason),
        None => match health.source_error() {
            // Still ready (see health.rs); the second line lets an operator
            // running curl see that the tables are going stale.
            Some(e) => Reply::text(
                StatusCode::OK,
                format!(
                    "ready\nwarning: serving the last good tables; source error: {}",
                    one_line(&e)
                ),
            ),
            None => Reply::text(StatusCode::OK, "ready"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::table::TableConfig;

    fn tables() -> Tables {
        Tables::empty(TableConfig::default())
    }

    fn route(method: &Method, path: &str, t: &Tables, h: &Health) -> Reply {
        let metrics = Metrics::new("none", t.clone(), std::sync::Arc::new(Health::new()));
        let req = Request {
            method,
            path,
            accept: None,
            query: None,
        };
        super::route(&req, t, h, &metrics)
    }

    #[test]
    fn unknown_paths_are_404_before_method_checks() {
        let h = Health::new();
        let t = tables();
        assert_eq!(
            route(&Method::POST, "/nope", &t, &h).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&Method::GET, "/", &t, &h).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&Method::GET, "/services/", &t, &h).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&Method::DELETE, "/healthz", &t, &h).status,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn readyz_warns_about_source_errors_once_ready() {
        let h = Health::new();
        let t = tables();
        h.set_synced(true);
        h.set_attached(true);
        h.set_source_error(Some("watch failed:\n410 Gone".into()));
        let r = route(&Method::GET, "/readyz", &t, &h);
        assert_eq!(r.status, StatusCode::OK);
        let lines: Vec<&str> = r.body.lines().collect();
        assert_eq!(lines[0], "ready");
        assert_eq!(
            lines[1],
            "warning: serving the last good tables; source error: watch failed: 410 Gone"
        );
    }

    #[test]
    fn empty_table_lists_generation_zero() {
        let r = route(&Method::GET, "/services", &tables(), &Health::new());
        assert_eq!(r.status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["generation"], 0);
        assert_eq!(v["services"].as_array().map(Vec::len), Some(0));
    }
}
