//! A client middleware that marks a watch healthy when the API server
//! answers it with success.
//!
//! The watcher emits nothing when it quietly resumes a watch after an
//! outage, so without this the status would stay unhealthy until the next
//! object change, which on a quiet cluster may never come.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};

use super::status::{SourceStatus, Watched};

/// Wraps the kube client's HTTP stack with [`Observe`].
#[derive(Clone)]
pub(crate) struct ObserveLayer {
    pub(crate) status: SourceStatus,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            status: self.status.clone(),
        }
    }
}

/// Records every 2xx response to a watched resource as a success.
pub(crate) struct Observe<S> {
    inner: S,
    status: SourceStatus,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Observe<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let watched = Watched::from_path(req.uri().path());
        let status = self.status.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let resp = response.await?;
            if let Some(w) = watched.filter(|_| resp.status().is_success()) {
                status.record_ok(w);
            }
            Ok(resp)
        })
    }
}
