//! vipgate's control side: Kubernetes objects in, dataplane service specs out.

/// Errors of the control side.
pub mod error;
/// Loading Service and EndpointSlice objects from a YAML/JSON dump.
pub mod objects;
/// The pure function from Kubernetes objects to `ServiceSpec`s.
pub mod model;

pub use error::{Error, Result};
