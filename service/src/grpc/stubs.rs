//! Services declared in v1 whose behaviour lands with later work. Each call
//! answers UNIMPLEMENTED and says so, instead of pretending to work.

use swarm_proto::v1 as pb;
use tonic::{Request, Response, Status};

pub struct MigrationsSvc;
pub struct ReconfigurationSvc;

fn later(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is declared in swarm.v1 but not implemented by this server version yet; \
         decisions are available on Placement.WatchDecisions"
    ))
}

#[tonic::async_trait]
impl pb::migrations_server::Migrations for MigrationsSvc {
    async fn accept_migration(
        &self,
        _: Request<pb::AcceptMigrationRequest>,
    ) -> Result<Response<pb::AcceptMigrationResponse>, Status> {
        Err(later("Migrations.AcceptMigration"))
    }
    async fn reject_migration(
        &self,
        _: Request<pb::RejectMigrationRequest>,
    ) -> Result<Response<pb::RejectMigrationResponse>, Status> {
        Err(later("Migrations.RejectMigration"))
    }
    async fn report_progress(
        &self,
        _: Request<pb::ReportProgressRequest>,
    ) -> Result<Response<pb::ReportProgressResponse>, Status> {
        Err(later("Migrations.ReportProgress"))
    }
    async fn list_migrations(
        &self,
        _: Request<pb::ListMigrationsRequest>,
    ) -> Result<Response<pb::ListMigrationsResponse>, Status> {
        Err(later("Migrations.ListMigrations"))
    }
    async fn get_migration(
        &self,
        _: Request<pb::GetMigrationRequest>,
    ) -> Result<Response<pb::GetMigrationResponse>, Status> {
        Err(later("Migrations.GetMigration"))
    }
    async fn abort_migration(
        &self,
        _: Request<pb::AbortMigrationRequest>,
    ) -> Result<Response<pb::AbortMigrationResponse>, Status> {
        Err(later("Migrations.AbortMigration"))
    }
}

#[tonic::async_trait]
impl pb::reconfiguration_server::Reconfiguration for ReconfigurationSvc {
    async fn plan(&self, _: Request<pb::PlanRequest>) -> Result<Response<pb::PlanResponse>, Status> {
        Err(later("Reconfiguration.Plan"))
    }
    async fn apply(&self, _: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyResponse>, Status> {
        Err(later("Reconfiguration.Apply"))
    }
    async fn get_reconfiguration(
        &self,
        _: Request<pb::GetReconfigurationRequest>,
    ) -> Result<Response<pb::GetReconfigurationResponse>, Status> {
        Err(later("Reconfiguration.GetReconfiguration"))
    }
}
