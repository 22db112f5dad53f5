//! A request that is not valid protobuf is the caller's mistake, so it is
//! answered INVALID_ARGUMENT. tonic's codec answers INTERNAL (its reading of
//! gRPC's status table), which tells a client to retry or page someone
//! instead of fixing its encoder. [`remap_response`] (a tower map-response
//! layer) rewrites exactly that answer for unary calls; streaming handlers
//! map the same error with [`remap`].

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

/// A unary decode failure is a trailers-only answer: the status is in the
/// headers, and there is no body to keep. Every other answer passes as is.
/// Used as `tower::util::MapResponseLayer::new(remap_response)`.
pub(crate) fn remap_response(response: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    match Status::from_header_map(response.headers()) {
        Some(s) if s.code() == Code::Internal && s.message().starts_with(DECODE_FAILURE) => remap(s).into_http(),
        _ => response,
    }
}
