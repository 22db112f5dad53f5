//! The bearer-token check in front of every gRPC service: a tower layer on
//! the server (interceptors do not see which method is called). Refusals
//! are answered here, before any handler runs, so a refused call changes
//! nothing: UNAUTHENTICATED without a known token, PERMISSION_DENIED for a
//! read-only token on a call that changes state.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;

use crate::auth::Tokens;

/// Told the status code of every refused call (to count it).
pub type OnRefused = Arc<dyn Fn(&'static str) + Send + Sync>;

/// The layer.
#[derive(Clone)]
pub struct AuthLayer {
    tokens: Arc<Tokens>,
    refused: OnRefused,
}

impl AuthLayer {
    /// Checks calls against `tokens`; tells `refused` of each refusal.
    pub fn new(tokens: Arc<Tokens>, refused: OnRefused) -> Self {
        AuthLayer { tokens, refused }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, tokens: self.tokens.clone(), refused: self.refused.clone() }
    }
}

/// The service the layer wraps around the routes.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    tokens: Arc<Tokens>,
    refused: OnRefused,
}

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let header = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match self.tokens.check(req.uri().path(), header) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(denied) => {
                let status = if denied.unauthenticated() {
                    (self.refused)("unauthenticated");
                    Status::unauthenticated(denied.to_string())
                } else {
                    (self.refused)("permission_denied");
                    Status::permission_denied(denied.to_string())
                };
                tracing::debug!(path = req.uri().path(), %status, "call refused");
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
