//! Services declared in v1 whose behaviour lands with later work. Each call
//! answers UNIMPLEMENTED and says so, instead of pretending to work.

use swarm_proto::v1 as pb;
use tonic::{Request, Response, Status};

pub struct ReconfigurationSvc;

fn later(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is declared in swarm.v1 but not implemented by this server version yet; \
         decisions are available on Placement.WatchDecisions"
    ))
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
