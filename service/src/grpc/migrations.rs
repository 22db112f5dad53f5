//! `swarm.v1.Migrations`: the protocol orchestrators drive.

use swarm_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::state::Swarm;
use crate::validate::FieldError;
use swarm_core::migration::book::Book;
use swarm_core::migration::machine::Health;

pub struct MigrationsSvc(pub Swarm);

/// `ListMigrations` over a book (the leader's, or a standby's copy).
pub(super) fn list(book: &Book, r: pb::ListMigrationsRequest) -> pb::ListMigrationsResponse {
    let limit = super::page_limit(r.limit);
    let virt = (!r.virtual_node_id.is_empty()).then_some(r.virtual_node_id.as_str());
    let migrations = book.list(r.live_only, virt, limit).into_iter().map(|m| convert::migration(m, false)).collect();
    pb::ListMigrationsResponse { migrations }
}

/// `GetMigration` over a book.
pub(super) fn get(book: &Book, id: &str) -> Result<pb::GetMigrationResponse, Status> {
    let m = book.by_id(id).ok_or_else(|| crate::state::unknown_migration(id))?;
    Ok(pb::GetMigrationResponse { migration: Some(convert::migration(m, true)) })
}

#[tonic::async_trait]
impl pb::migrations_server::Migrations for MigrationsSvc {
    async fn accept_migration(
        &self,
        req: Request<pb::AcceptMigrationRequest>,
    ) -> Result<Response<pb::AcceptMigrationResponse>, Status> {
        let r = req.into_inner();
        let m = self.0.accept_migration(r.decision_sequence, &r.orchestrator_id).await?;
        Ok(Response::new(pb::AcceptMigrationResponse {
            epoch: m.epoch,
            instruction: convert::instruction(m.instruction()) as i32,
            migration: Some(convert::migration(&m, true)),
        }))
    }

    async fn reject_migration(
        &self,
        req: Request<pb::RejectMigrationRequest>,
    ) -> Result<Response<pb::RejectMigrationResponse>, Status> {
        let r = req.into_inner();
        self.0.reject_migration(r.decision_sequence, &r.orchestrator_id, r.reason).await?;
        Ok(Response::new(pb::RejectMigrationResponse {}))
    }

    async fn report_progress(
        &self,
        req: Request<pb::ReportProgressRequest>,
    ) -> Result<Response<pb::ReportProgressResponse>, Status> {
        let r = req.into_inner();
        let phase = convert::phase_from_wire(r.phase)
            .ok_or_else(|| FieldError::new("phase", format!("unknown or unspecified phase {}", r.phase)))?;
        let health = r.health.map(|h| Health {
            latency_ms: h.latency_ms,
            original_latency_ms: h.original_latency_ms,
            error_rate: h.error_rate,
            lag_ms: h.lag_ms,
        });
        let m = self.0.report_progress(&r.migration_id, r.epoch, phase, health, r.request_id).await?;
        Ok(Response::new(pb::ReportProgressResponse {
            instruction: convert::instruction(m.instruction()) as i32,
            migration: Some(convert::migration(&m, true)),
        }))
    }

    async fn list_migrations(
        &self,
        req: Request<pb::ListMigrationsRequest>,
    ) -> Result<Response<pb::ListMigrationsResponse>, Status> {
        Ok(Response::new(self.0.read_book(|b| list(b, req.into_inner()))))
    }

    async fn get_migration(
        &self,
        req: Request<pb::GetMigrationRequest>,
    ) -> Result<Response<pb::GetMigrationResponse>, Status> {
        Ok(Response::new(self.0.read_book(|b| get(b, &req.into_inner().id))?))
    }

    async fn abort_migration(
        &self,
        req: Request<pb::AbortMigrationRequest>,
    ) -> Result<Response<pb::AbortMigrationResponse>, Status> {
        let r = req.into_inner();
        let m = self.0.abort_migration(&r.id, r.reason).await?;
        Ok(Response::new(pb::AbortMigrationResponse { migration: Some(convert::migration(&m, true)) }))
    }
}
