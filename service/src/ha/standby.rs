//! What a standby replica serves while another leads: gRPC health (every
//! Swarm service NOT_SERVING, the server itself SERVING, so a load balancer
//! can tell a live standby from a dead one) and, for every other call,
//! UNAVAILABLE naming the leader (message and `swarm-leader` metadata), so
//! clients go there. Nothing is read from or written to the store here.

use std::future::Future;

use tokio::net::TcpListener;
use tokio::sync::watch;

/// The answer to any call on a standby.
pub fn not_leader(leader: &str) -> tonic::Status {
    let mut s = if leader.starts_with("http://") || leader.starts_with("https://") {
        tonic::Status::unavailable(format!("this swarmd replica is a standby; the leader is at {leader}"))
    } else {
        tonic::Status::unavailable(format!("this swarmd replica is a standby and no leader is known: {leader}"))
    };
    if let Ok(v) = leader.parse() {
        s.metadata_mut().insert("swarm-leader", v);
    }
    s
}

/// Serves the standby answers on `listener` until `stop` resolves, over
/// TLS when the leader would serve TLS (a client configured for https must
/// be able to hear where the leader is).
pub async fn serve(
    listener: TcpListener,
    tls: Option<&crate::security::Tls>,
    leader: watch::Receiver<String>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_svc) = tonic_health::server::health_reporter();
    // The services a standby does not serve.
    for name in crate::grpc::SERVICES.into_iter().chain([crate::grpc::OTLP_SERVICE]) {
        health.set_service_status(name, tonic_health::ServingStatus::NotServing).await;
    }
    let fallback = move || {
        let leader = leader.borrow().clone();
        async move { not_leader(&leader).into_http::<axum::body::Body>() }
    };
    let router = tonic::service::Routes::new(health_svc).into_axum_router().fallback(fallback);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    builder.add_routes(tonic::service::Routes::from(router)).serve_with_incoming_shutdown(incoming, stop).await
}
