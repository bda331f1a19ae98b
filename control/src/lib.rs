//! vipgate's control side: Kubernetes objects in, dataplane service specs out.

/// The admin HTTP endpoint (/services, /healthz, /readyz) and its CLI client.
pub mod admin;
/// Errors of the control side.
pub mod error;
/// The services file as a source, reloaded when it changes.
pub mod file_source;
/// Live Services and EndpointSlices from the Kubernetes API (watch + reflectors).
pub mod kube_source;
/// The pure function from Kubernetes objects to `ServiceSpec`s.
pub mod model;
/// Loading Service and EndpointSlice objects from a YAML/JSON dump.
pub mod objects;
/// Publishing snapshots as table generations: the door to the dataplane.
pub mod publish;
/// kube-proxy's `healthCheckNodePort` listeners, one per `Local` LoadBalancer Service.
pub mod service_health;
/// A small list/watch Kubernetes API server for tests and sync benchmarks.
pub mod test_api_server;

pub use error::{Error, Result};
