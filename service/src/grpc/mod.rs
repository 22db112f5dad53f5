//! The gRPC surface: thin adapters from `swarm.v1` services to [`Swarm`].
//!
//! Handlers validate nothing themselves beyond what the wire implies; they
//! call [`crate::state`] and map its errors to status codes here, in one place.

mod auth;
mod decode_errors;
mod metrics;
mod migrations;
mod otlp;
mod placement;
mod reconfiguration;
pub mod standby;
mod topology;

use std::future::Future;

use swarm_proto::v1 as pb;
use tokio::net::TcpListener;
use tonic::Status;

use crate::decisions::WatchError;
use crate::security::Security;
use crate::state::{ApiError, Swarm};

/// The page a list call with `limit` reads (0: the default of 1,000; at
/// most 10,000), for decisions and migrations alike.
pub(super) fn page_limit(limit: u32) -> usize {
    if limit == 0 { 1000 } else { limit.min(10_000) as usize }
}

/// RESOURCE_EXHAUSTED for an overloaded ingest call, with a
/// `retry-after-ms` hint, counted in the telemetry.
pub(crate) fn overloaded(swarm: &Swarm, source: &'static str, o: crate::limits::Overload) -> Status {
    swarm.telemetry().overload(source, o.reason());
    let mut status = Status::resource_exhausted(o.to_string());
    if let Ok(v) = o.retry_after_ms().to_string().parse() {
        status.metadata_mut().insert("retry-after-ms", v);
    }
    status
}

/// Swarm's own services, by their gRPC names (health reports each).
pub(crate) const SERVICES: [&str; 5] =
    ["swarm.v1.Topology", "swarm.v1.Metrics", "swarm.v1.Placement", "swarm.v1.Migrations", "swarm.v1.Reconfiguration"];
/// The OTLP metrics receiver's gRPC name.
pub(crate) const OTLP_SERVICE: &str = "opentelemetry.proto.collector.metrics.v1.MetricsService";

/// A batch the metric store did not take: refused by the backend as bad
/// data (INVALID_ARGUMENT, the client's to fix), else UNAVAILABLE (retry).
pub(crate) fn store_status(e: crate::series::SeriesError) -> Status {
    match e {
        crate::series::SeriesError::Rejected(m) => Status::invalid_argument(m),
        e => Status::unavailable(e.to_string()),
    }
}

/// A failure to read a stream's next message, as the client should see it:
/// tonic reports a message over the size limit as OUT_OF_RANGE, where gRPC's
/// convention (and what clients retry on smaller batches) is
/// RESOURCE_EXHAUSTED with the limit named; and a message that is not valid
/// protobuf as INTERNAL, where it is INVALID_ARGUMENT.
pub(crate) fn read_error(s: Status, limit: usize) -> Status {
    let s = decode_errors::remap(s);
    if s.code() == tonic::Code::OutOfRange && s.message().contains("too large") {
        Status::resource_exhausted(format!("{}; split the batch (limits.max_message_bytes = {limit})", s.message()))
    } else {
        s
    }
}

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
    serve_with(listener, swarm, Security::default(), shutdown).await
}

/// [`serve`] with TLS and bearer tokens (see [`crate::security`]): refused
/// calls are answered by the `auth` layer before any handler runs.
pub async fn serve_with(
    listener: TcpListener,
    swarm: Swarm,
    security: Security,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let s = swarm.clone();
    // An ingest batch of the default 100,000 samples with 30-byte ids is
    // about 6 MB; the default limit is 16 MiB.
    let max = swarm.config().limits.max_message_bytes;
    // gRPC health checking: every service (and "", the server) is SERVING
    // until shutdown begins, then NOT_SERVING while calls drain.
    let (health, health_svc) = tonic_health::server::health_reporter();
    let otlp_name = OTLP_SERVICE;
    let every = || [""].into_iter().chain(SERVICES).chain([OTLP_SERVICE]);
    for name in every() {
        health.set_service_status(name, tonic_health::ServingStatus::Serving).await;
    }
    // With a Prometheus backend, swarm.v1.Metrics (and the OTLP receiver)
    // follow its health: neither can store or read a sample while it is down.
    if let Some(p) = swarm.metrics_backend() {
        let (health, mut rx) = (health.clone(), p.health());
        let mut stop = swarm.shutdown_signal();
        tokio::spawn(async move {
            loop {
                let up = !matches!(*rx.borrow_and_update(), crate::prometheus::Health::Down(_));
                let status =
                    if up { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
                for name in ["swarm.v1.Metrics", otlp_name] {
                    health.set_service_status(name, status).await;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = crate::state::stopped(&mut stop) => return,
                }
            }
        });
    }
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight calls");
        for name in every() {
            health.set_service_status(name, tonic_health::ServingStatus::NotServing).await;
        }
        s.begin_shutdown();
    };
    // Server reflection, so grpcurl and other tools list and call everything.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().expect("the descriptor sets are valid");
    let reflection_v1alpha = reflection().build_v1alpha().expect("the descriptor sets are valid");
    use swarm_proto::otlp::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
    // Keep-alive pings find peers that vanished without closing (a
    // crashed host, a dropped NAT entry) so their calls and slots end.
    let limits = swarm.config().limits;
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout));
    // TCP keep-alive too, for peers that stop answering before HTTP/2 is up.
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(limits.keepalive_interval));
    if let Some(tls) = &security.tls {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let result = builder
        .layer(auth::AuthLayer::new(security.tokens.clone(), {
            let s = swarm.clone();
            std::sync::Arc::new(move |code| s.telemetry().auth_denied(code))
        }))
        .layer(tower::util::MapResponseLayer::new(decode_errors::remap_response))
        .add_service(health_svc)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            pb::topology_server::TopologyServer::new(topology::TopologySvc(swarm.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::metrics_server::MetricsServer::new(metrics::MetricsSvc(swarm.clone())).max_decoding_message_size(max),
        )
        .add_service(MetricsServiceServer::new(otlp::OtlpSvc(swarm.clone())).max_decoding_message_size(max))
        .add_service(
            pb::placement_server::PlacementServer::new(placement::PlacementSvc(swarm.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::migrations_server::MigrationsServer::new(migrations::MigrationsSvc(swarm.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::reconfiguration_server::ReconfigurationServer::new(reconfiguration::ReconfigurationSvc(swarm.clone()))
                .max_decoding_message_size(max),
        )
        .serve_with_incoming_shutdown(incoming, signal)
        .await;
    swarm.close().await;
    tracing::info!("stopped");
    result
}
