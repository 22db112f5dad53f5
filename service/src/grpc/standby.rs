//! What a standby replica serves while another leads.
//!
//! - **Reads** of topology, decisions and migrations, from the standby's
//!   etcd-fed copy ([`crate::ha::follower`]), through the same handlers the
//!   leader uses: `ListPhysicalNodes`, `ListVirtualNodes`, `ListDecisions`,
//!   `WatchDecisions`, `ListMigrations`, `GetMigration`. Each answer carries
//!   `swarm-role: standby`, the leader in `swarm-leader` and the etcd
//!   revision the copy reflects in `swarm-revision`, since it may lag.
//! - **Everything else** (every write, and the reads that need the leader's
//!   series or models: affinity, forecasts, heatmap, metrics) is answered
//!   UNAVAILABLE naming the leader (message and `swarm-leader`), so clients
//!   go there.
//! - **Health**: every Swarm service NOT_SERVING (a standby does not lead),
//!   the server itself SERVING, so a load balancer can tell a live standby
//!   from a dead one.
//!
//! Bearer tokens are checked as on the leader: a standby's reads are no
//! more open than the leader's.

use std::future::Future;

use swarm_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::page_limit;
use super::placement::DecisionStream;
use crate::ha::follower::Follower;
use crate::security::Security;

/// The answer to a call a standby does not serve.
pub fn not_leader(leader: &str) -> Status {
    let mut s = if leader.starts_with("http://") || leader.starts_with("https://") {
        Status::unavailable(format!("this swarmd replica is a standby; the leader is at {leader}"))
    } else {
        Status::unavailable(format!("this swarmd replica is a standby and no leader is known: {leader}"))
    };
    if let Ok(v) = leader.parse() {
        s.metadata_mut().insert("swarm-leader", v);
    }
    s
}

/// The standby's state shared by its services.
#[derive(Clone)]
struct Standby {
    follower: Follower,
    leader: watch::Receiver<String>,
    stop: watch::Receiver<bool>,
}

impl Standby {
    fn refuse<T>(&self) -> Result<Response<T>, Status> {
        Err(not_leader(&self.leader.borrow()))
    }

    /// `msg` with the metadata that says where it came from.
    fn answer<T>(&self, msg: T) -> Response<T> {
        let mut r = Response::new(msg);
        let md = r.metadata_mut();
        md.insert("swarm-role", "standby".parse().expect("ascii"));
        if let Ok(v) = self.leader.borrow().parse() {
            md.insert("swarm-leader", v);
        }
        let revision = self.follower.read(|v| v.revision);
        md.insert("swarm-revision", revision.to_string().parse().expect("digits"));
        r
    }

    /// Refuses reads until the copy has been loaded once: an empty answer
    /// would read as "nothing exists".
    fn loaded(&self) -> Result<(), Status> {
        let (revision, why) = self.follower.read(|v| (v.revision, v.stale.clone()));
        if revision > 0 {
            return Ok(());
        }
        let s = not_leader(&self.leader.borrow());
        let why = why.unwrap_or_else(|| "not loaded yet".into());
        let message = format!("{}; its copy of the state is not loaded: {why}", s.message());
        Err(Status::with_metadata(tonic::Code::Unavailable, message, s.metadata().clone()))
    }
}

struct PlacementRead(Standby);

#[tonic::async_trait]
impl pb::placement_server::Placement for PlacementRead {
    async fn get_affinity(
        &self,
        _: Request<pb::GetAffinityRequest>,
    ) -> Result<Response<pb::GetAffinityResponse>, Status> {
        self.0.refuse()
    }

    async fn run_round(&self, _: Request<pb::RunRoundRequest>) -> Result<Response<pb::RunRoundResponse>, Status> {
        self.0.refuse()
    }

    type WatchDecisionsStream = DecisionStream;

    async fn watch_decisions(
        &self,
        req: Request<pb::WatchDecisionsRequest>,
    ) -> Result<Response<DecisionStream>, Status> {
        self.0.loaded()?;
        let s = super::placement::watch(self.0.follower.log(), req.into_inner().from_sequence, self.0.stop.clone())?;
        Ok(self.0.answer(s))
    }

    async fn list_decisions(
        &self,
        req: Request<pb::ListDecisionsRequest>,
    ) -> Result<Response<pb::ListDecisionsResponse>, Status> {
        self.0.loaded()?;
        let r = req.into_inner();
        let log = self.0.follower.log().clone();
        let last_sequence = log.last_sequence();
        let limit = page_limit(r.limit);
        let decisions = tokio::task::spawn_blocking(move || log.list(r.from_sequence, limit))
            .await
            .map_err(|e| Status::internal(format!("reading decisions: {e}")))?
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let decisions = decisions.iter().map(crate::convert::decision).collect();
        Ok(self.0.answer(pb::ListDecisionsResponse { decisions, last_sequence }))
    }

    async fn get_forecast(
        &self,
        _: Request<pb::GetForecastRequest>,
    ) -> Result<Response<pb::GetForecastResponse>, Status> {
        self.0.refuse()
    }

    async fn get_heatmap(&self, _: Request<pb::GetHeatmapRequest>) -> Result<Response<pb::GetHeatmapResponse>, Status> {
        self.0.refuse()
    }

    async fn get_policy(&self, _: Request<pb::GetPolicyRequest>) -> Result<Response<pb::GetPolicyResponse>, Status> {
        self.0.refuse()
    }
}

struct TopologyRead(Standby);

#[tonic::async_trait]
impl pb::topology_server::Topology for TopologyRead {
    async fn upsert_physical_nodes(
        &self,
        _: Request<pb::UpsertPhysicalNodesRequest>,
    ) -> Result<Response<pb::UpsertPhysicalNodesResponse>, Status> {
        self.0.refuse()
    }

    async fn remove_physical_node(
        &self,
        _: Request<pb::RemovePhysicalNodeRequest>,
    ) -> Result<Response<pb::RemovePhysicalNodeResponse>, Status> {
        self.0.refuse()
    }

    async fn list_physical_nodes(
        &self,
        req: Request<pb::ListPhysicalNodesRequest>,
    ) -> Result<Response<pb::ListPhysicalNodesResponse>, Status> {
        self.0.loaded()?;
        let r = self.0.follower.read(|v| super::topology::physical_nodes(&v.topology, req.into_inner()));
        Ok(self.0.answer(r))
    }

    async fn upsert_virtual_nodes(
        &self,
        _: Request<pb::UpsertVirtualNodesRequest>,
    ) -> Result<Response<pb::UpsertVirtualNodesResponse>, Status> {
        self.0.refuse()
    }

    async fn remove_virtual_node(
        &self,
        _: Request<pb::RemoveVirtualNodeRequest>,
    ) -> Result<Response<pb::RemoveVirtualNodeResponse>, Status> {
        self.0.refuse()
    }

    async fn list_virtual_nodes(
        &self,
        req: Request<pb::ListVirtualNodesRequest>,
    ) -> Result<Response<pb::ListVirtualNodesResponse>, Status> {
        self.0.loaded()?;
        let r = self.0.follower.read(|v| super::topology::virtual_nodes(&v.topology, req.into_inner()))?;
        Ok(self.0.answer(r))
    }

    async fn set_placements(
        &self,
        _: Request<pb::SetPlacementsRequest>,
    ) -> Result<Response<pb::SetPlacementsResponse>, Status> {
        self.0.refuse()
    }
}

struct MigrationsRead(Standby);

#[tonic::async_trait]
impl pb::migrations_server::Migrations for MigrationsRead {
    async fn accept_migration(
        &self,
        _: Request<pb::AcceptMigrationRequest>,
    ) -> Result<Response<pb::AcceptMigrationResponse>, Status> {
        self.0.refuse()
    }

    async fn reject_migration(
        &self,
        _: Request<pb::RejectMigrationRequest>,
    ) -> Result<Response<pb::RejectMigrationResponse>, Status> {
        self.0.refuse()
    }

    async fn report_progress(
        &self,
        _: Request<pb::ReportProgressRequest>,
    ) -> Result<Response<pb::ReportProgressResponse>, Status> {
        self.0.refuse()
    }

    async fn list_migrations(
        &self,
        req: Request<pb::ListMigrationsRequest>,
    ) -> Result<Response<pb::ListMigrationsResponse>, Status> {
        self.0.loaded()?;
        let r = self.0.follower.read(|v| super::migrations::list(&v.book, req.into_inner()));
        Ok(self.0.answer(r))
    }

    async fn get_migration(
        &self,
        req: Request<pb::GetMigrationRequest>,
    ) -> Result<Response<pb::GetMigrationResponse>, Status> {
        self.0.loaded()?;
        let r = self.0.follower.read(|v| super::migrations::get(&v.book, &req.into_inner().id))?;
        Ok(self.0.answer(r))
    }

    async fn abort_migration(
        &self,
        _: Request<pb::AbortMigrationRequest>,
    ) -> Result<Response<pb::AbortMigrationResponse>, Status> {
        self.0.refuse()
    }
}

/// Serves the standby on `listener` until `stop` resolves (then watch
/// streams end), over TLS when the leader would serve TLS (a client
/// configured for https must be able to hear where the leader is).
pub async fn serve(
    listener: TcpListener,
    security: &Security,
    follower: Follower,
    leader: watch::Receiver<String>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_svc) = tonic_health::server::health_reporter();
    for name in super::SERVICES.into_iter().chain([super::OTLP_SERVICE]) {
        health.set_service_status(name, tonic_health::ServingStatus::NotServing).await;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let standby = Standby { follower, leader: leader.clone(), stop: stop_rx };
    let fallback = move || {
        let leader = leader.borrow().clone();
        async move { not_leader(&leader).into_http::<axum::body::Body>() }
    };
    let router = tonic::service::Routes::new(health_svc)
        .add_service(pb::placement_server::PlacementServer::new(PlacementRead(standby.clone())))
        .add_service(pb::topology_server::TopologyServer::new(TopologyRead(standby.clone())))
        .add_service(pb::migrations_server::MigrationsServer::new(MigrationsRead(standby)))
        .into_axum_router()
        .fallback(fallback);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &security.tls {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let signal = async move {
        stop.await;
        let _ = stop_tx.send(true);
    };
    builder
        .layer(super::auth::AuthLayer::new(
            security.tokens.clone(),
            std::sync::Arc::new(|code| tracing::debug!(code, "a call to the standby was refused")),
        ))
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(incoming, signal)
        .await
}
