//! One error type for the control side.

use std::path::PathBuf;

/// Errors of loading and watching Kubernetes objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a Kubernetes object dump: {message}")]
    Parse { path: PathBuf, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
