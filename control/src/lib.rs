//! vipgate's control side: Kubernetes objects in, dataplane service specs out.

/// Errors of the control side.
pub mod error;
/// The pure function from Kubernetes objects to `ServiceSpec`s.
pub mod model;
/// Loading Service and EndpointSlice objects from a YAML/JSON dump.
pub mod objects;

pub use error::{Error, Result};
