//! `swarm.v1.Topology`.

use swarm_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::state::Swarm;
use crate::validate;
use swarm_core::domain::{PhysicalState, Topology};

pub struct TopologySvc(pub Swarm);

/// `ListPhysicalNodes` over a topology (the leader's, or a standby's copy).
pub(super) fn physical_nodes(t: &Topology, r: pb::ListPhysicalNodesRequest) -> pb::ListPhysicalNodesResponse {
    let all = r.include_removed;
    let nodes =
        t.physical.values().filter(|n| all || n.state != PhysicalState::Removed).map(convert::physical).collect();
    pb::ListPhysicalNodesResponse { nodes }
}

/// `ListVirtualNodes` over a topology.
pub(super) fn virtual_nodes(
    t: &Topology,
    r: pb::ListVirtualNodesRequest,
) -> Result<pb::ListVirtualNodesResponse, Status> {
    let on = r.physical_node_id;
    if !on.is_empty() && !t.physical.contains_key(on.as_str()) {
        return Err(Status::not_found(format!("physical_node_id: unknown physical node {on:?}")));
    }
    let nodes = t
        .virtual_nodes
        .values()
        .filter(|v| on.is_empty() || v.placement.as_ref().is_some_and(|p| p.as_str() == on))
        .map(convert::virtual_node)
        .collect();
    Ok(pb::ListVirtualNodesResponse { nodes })
}

#[tonic::async_trait]
impl pb::topology_server::Topology for TopologySvc {
    async fn upsert_physical_nodes(
        &self,
        req: Request<pb::UpsertPhysicalNodesRequest>,
    ) -> Result<Response<pb::UpsertPhysicalNodesResponse>, Status> {
        let nodes = validate::physical_nodes(&req.into_inner().nodes)?;
        let (created, updated) = self.0.upsert_physical(nodes).await?;
        Ok(Response::new(pb::UpsertPhysicalNodesResponse { created, updated }))
    }

    async fn remove_physical_node(
        &self,
        req: Request<pb::RemovePhysicalNodeRequest>,
    ) -> Result<Response<pb::RemovePhysicalNodeResponse>, Status> {
        self.0.remove_physical(validate::node_id("id", &req.into_inner().id)?).await?;
        Ok(Response::new(pb::RemovePhysicalNodeResponse {}))
    }

    async fn list_physical_nodes(
        &self,
        req: Request<pb::ListPhysicalNodesRequest>,
    ) -> Result<Response<pb::ListPhysicalNodesResponse>, Status> {
        Ok(Response::new(physical_nodes(&self.0.topology(), req.into_inner())))
    }

    async fn upsert_virtual_nodes(
        &self,
        req: Request<pb::UpsertVirtualNodesRequest>,
    ) -> Result<Response<pb::UpsertVirtualNodesResponse>, Status> {
        let nodes = validate::virtual_nodes(&req.into_inner().nodes)?;
        let (created, updated) = self.0.upsert_virtual(nodes).await?;
        Ok(Response::new(pb::UpsertVirtualNodesResponse { created, updated }))
    }

    async fn remove_virtual_node(
        &self,
        req: Request<pb::RemoveVirtualNodeRequest>,
    ) -> Result<Response<pb::RemoveVirtualNodeResponse>, Status> {
        self.0.remove_virtual(validate::node_id("id", &req.into_inner().id)?).await?;
        Ok(Response::new(pb::RemoveVirtualNodeResponse {}))
    }

    async fn list_virtual_nodes(
        &self,
        req: Request<pb::ListVirtualNodesRequest>,
    ) -> Result<Response<pb::ListVirtualNodesResponse>, Status> {
        Ok(Response::new(virtual_nodes(&self.0.topology(), req.into_inner())?))
    }

    async fn set_placements(
        &self,
        req: Request<pb::SetPlacementsRequest>,
    ) -> Result<Response<pb::SetPlacementsResponse>, Status> {
        let placements = validate::placements(&req.into_inner().placements)?;
        let changed = self.0.set_placements(placements).await?;
        Ok(Response::new(pb::SetPlacementsResponse { changed }))
    }
}
