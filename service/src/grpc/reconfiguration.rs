//! `swarm.v1.Reconfiguration`: plans with minimal movement, applied through
//! the migration protocol.

use swarm_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::state::Swarm;

pub struct ReconfigurationSvc(pub Swarm);

#[tonic::async_trait]
impl pb::reconfiguration_server::Reconfiguration for ReconfigurationSvc {
    async fn plan(&self, req: Request<pb::PlanRequest>) -> Result<Response<pb::PlanResponse>, Status> {
        let r = req.into_inner();
        let change = crate::validate::configuration_change(&r.change.unwrap_or_default())?;
        let objective = crate::validate::objective(r.objective)?;
        Ok(Response::new(convert::plan(&self.0.plan_reconfiguration(change, objective).await?)))
    }

    async fn apply(&self, req: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyResponse>, Status> {
        let r = req.into_inner();
        let reconfiguration_id = self.0.apply_reconfiguration(&r.plan_id, r.max_concurrent).await?;
        Ok(Response::new(pb::ApplyResponse { reconfiguration_id }))
    }

    async fn get_reconfiguration(
        &self,
        req: Request<pb::GetReconfigurationRequest>,
    ) -> Result<Response<pb::GetReconfigurationResponse>, Status> {
        Ok(Response::new(convert::reconfiguration(&self.0.reconfiguration(&req.into_inner().reconfiguration_id)?)))
    }
}
