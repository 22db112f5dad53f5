//! A request that is not valid protobuf is the caller's mistake, so it is
//! answered INVALID_ARGUMENT. tonic's codec answers INTERNAL (its reading of
//! gRPC's status table), which tells a client to retry or page someone
//! instead of fixing its encoder. This layer rewrites exactly that answer
//! for unary calls; streaming handlers map the same error with [`remap`].

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::{Code, Status};

/// What prost's decode errors say first.
const DECODE_FAILURE: &str = "failed to decode Protobuf message";

/// `s` as INVALID_ARGUMENT if it is a request decode failure, else as is.
pub(crate) fn remap(s: Status) -> Status {
    if s.code() == Code::Internal && s.message().starts_with(DECODE_FAILURE) {
        Status::invalid_argument(format!("the request is not a valid protobuf message of this method: {}", s.message()))
    } else {
        s
    }
}

/// The layer.
#[derive(Clone, Copy, Default)]
pub struct DecodeErrorsLayer;

impl<S> tower::Layer<S> for DecodeErrorsLayer {
    type Service = DecodeErrors<S>;

    fn layer(&self, inner: S) -> DecodeErrors<S> {
        DecodeErrors { inner }
    }
}

/// The service the layer wraps around the routes.
#[derive(Clone)]
pub struct DecodeErrors<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for DecodeErrors<S>
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
        let answer = self.inner.call(req);
        Box::pin(async move {
            let response = answer.await?;
            // A unary decode failure is a trailers-only answer: the status
            // is in the headers, and there is no body to keep.
            match Status::from_header_map(response.headers()) {
                Some(s) if s.code() == Code::Internal && s.message().starts_with(DECODE_FAILURE) => {
                    Ok(remap(s).into_http())
                }
                _ => Ok(response),
            }
        })
    }
}
