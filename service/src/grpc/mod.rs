//! The gRPC surface: thin adapters from `swarm.v1` services to [`Swarm`].
//!
//! Handlers validate nothing themselves beyond what the wire implies; they
//! call [`crate::state`] and map its errors to status codes here, in one place.

mod metrics;
mod migrations;
mod placement;
mod reconfiguration;
mod topology;

use std::future::Future;

use swarm_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Status;

use crate::decisions::WatchError;
use crate::state::{ApiError, Swarm};

/// Largest request accepted, bytes. An ingest batch of the default 100,000
/// samples with 30-byte ids is about 6 MB.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::InvalidArgument(f) => Status::invalid_argument(f.to_string()),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::OutOfRange(m) => Status::out_of_range(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::Internal(m) => Status::internal(m),
        }
    }
}

impl From<crate::validate::FieldError> for Status {
    fn from(e: crate::validate::FieldError) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

impl From<WatchError> for Status {
    fn from(e: WatchError) -> Status {
        Status::out_of_range(e.to_string())
    }
}

/// Serves every `swarm.v1` service on `listener` until `shutdown` resolves,
/// then stops accepting, ends watch streams, waits for in-flight calls, and
/// flushes the series store. The caller owns the listener (so tests can bind
/// port 0) and the shutdown future (so tests can trigger it).
pub async fn serve(
    listener: TcpListener,
    swarm: Swarm,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let s = swarm.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight calls");
        s.begin_shutdown();
    };
    let result = tonic::transport::Server::builder()
        .add_service(
            pb::topology_server::TopologyServer::new(topology::TopologySvc(swarm.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::metrics_server::MetricsServer::new(metrics::MetricsSvc(swarm.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(pb::placement_server::PlacementServer::new(placement::PlacementSvc(swarm.clone())))
        .add_service(pb::migrations_server::MigrationsServer::new(migrations::MigrationsSvc(swarm.clone())))
        .add_service(
            pb::reconfiguration_server::ReconfigurationServer::new(reconfiguration::ReconfigurationSvc(swarm.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
        .await;
    swarm.close().await;
    tracing::info!("stopped");
    result
}
