//! The admin HTTP endpoint: `/services` (the live table as JSON),
//! `/healthz` (liveness), `/readyz` (first sync done and interfaces
//! attached), `/metrics` (Prometheus), `/stats` (the live counters as
//! JSON) and `/conntrack` (the live flows), plus the blocking client and
//! renderers behind `vipgate services`, `vipgate stats` and
//! `vipgate conntrack`.

/// Blocking HTTP/1.1 client on std sockets, for the CLI.
pub mod client;
/// `/explain`: what the table does with a new flow, and why.
pub mod explain;
/// `/conntrack`: the workers' flows, listed while they run; its table.
pub mod flows;
/// Sync, attach and source-error state, and the readiness rule.
pub mod health;
/// `/metrics` and `/stats`: worker counters read at scrape time, control figures.
pub mod metrics;
/// The human table printed by `vipgate services`.
pub mod render;
/// The counter table printed by `vipgate stats`.
pub mod render_stats;
/// Method + path -> reply, without I/O.
pub mod routes;
/// The hyper server on its own thread and tokio runtime.
pub mod server;
/// The `/services` JSON document.
pub mod services;

pub use client::{fetch_json, fetch_services, http_request, HttpResponse};
pub use explain::{explain_json, render_explain, Question};
pub use flows::{render_flows, Endpoint, FlowFilter};
pub use health::Health;
pub use metrics::{Metrics, Publication, WorkerHandle};
pub use render::render_services_table;
pub use render_stats::render_stats;
pub use server::AdminServer;
pub use services::services_json;

/// Where `vipgate run` serves the admin endpoint unless told otherwise:
/// loopback only, since `/services` shows the cluster's backends and the
/// kubelet probes a hostNetwork pod on 127.0.0.1 anyway.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9901";
