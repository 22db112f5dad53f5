//! `swarm.v1.Placement`: affinity, rounds, decisions, forecasts.

use std::pin::Pin;

use swarm_proto::v1 as pb;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use crate::decisions::DecisionLog;
use crate::state::Swarm;
use crate::validate;
use swarm_core::outcome::standing;

pub struct PlacementSvc(pub Swarm);

pub(super) type DecisionStream = Pin<Box<dyn Stream<Item = Result<pb::Decision, Status>> + Send>>;

/// `WatchDecisions` over a decision log (the leader's, or a standby's).
pub(super) fn watch(
    log: &DecisionLog,
    from_sequence: u64,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<DecisionStream, Status> {
    let rx = log.watch(from_sequence, shutdown)?;
    let stream = ReceiverStream::new(rx)
        .map(|r| r.map(|d| crate::convert::decision(&d)).map_err(|e| Status::unavailable(e.to_string())));
    Ok(Box::pin(stream))
}

#[tonic::async_trait]
impl pb::placement_server::Placement for PlacementSvc {
    async fn get_affinity(
        &self,
        req: Request<pb::GetAffinityRequest>,
    ) -> Result<Response<pb::GetAffinityResponse>, Status> {
        let r = req.into_inner();
        let m = self.0.affinity(r.virtual_node_ids, r.physical_node_ids, r.assess_moves).await?;
        let mut resp = crate::convert::affinity(&m);
        resp.cost_figures = crate::convert::cost_figures(&self.0.calibration(), self.0.calibration_enabled());
        Ok(Response::new(resp))
    }

    async fn run_round(&self, req: Request<pb::RunRoundRequest>) -> Result<Response<pb::RunRoundResponse>, Status> {
        Ok(Response::new(crate::convert::round(&self.0.run_round(req.into_inner().dry_run).await?)))
    }

    type WatchDecisionsStream = DecisionStream;

    async fn watch_decisions(
        &self,
        req: Request<pb::WatchDecisionsRequest>,
    ) -> Result<Response<Self::WatchDecisionsStream>, Status> {
        Ok(Response::new(watch(self.0.decisions(), req.into_inner().from_sequence, self.0.shutdown_signal())?))
    }

    async fn list_decisions(
        &self,
        req: Request<pb::ListDecisionsRequest>,
    ) -> Result<Response<pb::ListDecisionsResponse>, Status> {
        let r = req.into_inner();
        let limit = super::page_limit(r.limit);
        let last_sequence = self.0.decisions().last_sequence();
        let decisions = self.0.list_decisions(r.from_sequence, limit).await?;
        let window = self.0.outcome_window_ms();
        let decisions = self.0.read_book(|book| {
            decisions
                .iter()
                .map(|d| pb::Decision {
                    outcome: Some(crate::convert::outcome(&standing(book.get(d.sequence)), window)),
                    ..crate::convert::decision(d)
                })
                .collect()
        });
        Ok(Response::new(pb::ListDecisionsResponse { decisions, last_sequence }))
    }

    async fn get_forecast(
        &self,
        req: Request<pb::GetForecastRequest>,
    ) -> Result<Response<pb::GetForecastResponse>, Status> {
        let r = req.into_inner();
        let kind = validate::entity_kind("entity_kind", r.entity_kind)?;
        let metric = validate::metric("metric", r.metric)?;
        const WEEK_MS: i64 = 7 * 24 * 3_600_000;
        if !(0..=WEEK_MS).contains(&r.history_ms) {
            return Err(Status::invalid_argument(format!(
                "history_ms must be 0..={WEEK_MS} (7 days), got {}",
                r.history_ms
            )));
        }
        let forecast = self.0.forecast(kind, r.entity_id.clone(), metric, r.horizon_steps as usize).await?;
        let history = if r.history_ms > 0 {
            let from = self.0.now_ms() - r.history_ms;
            self.0.recent_points(kind, metric, &r.entity_id, from).await?
        } else {
            Vec::new()
        };
        let overload = self.0.config().controller.overload_threshold;
        let (threshold, label) =
            crate::forecast::threshold(&self.0.topology(), overload, kind, &r.entity_id, metric).unwrap_or((0.0, ""));
        let m = self.0.model();
        Ok(Response::new(pb::GetForecastResponse {
            points: forecast
                .points
                .iter()
                .map(|p| pb::ForecastPoint {
                    timestamp_ms: p.timestamp_ms,
                    mean: p.mean,
                    lower: p.lower,
                    upper: p.upper,
                })
                .collect(),
            interval_coverage: m.intervals.coverage,
            model: format!("{} model of {} ({})", m.model.kind_name(), m.metric, m.produced_by),
            history: history.into_iter().map(|(timestamp_ms, value)| pb::Point { timestamp_ms, value }).collect(),
            threshold,
            threshold_label: label.into(),
            step_ms: self.0.step_ms(),
            period_steps: forecast.period.map_or(0, |p| p.steps as u32),
            period_strength: forecast.period.map_or(0.0, |p| p.strength),
        }))
    }

    async fn get_heatmap(
        &self,
        req: Request<pb::GetHeatmapRequest>,
    ) -> Result<Response<pb::GetHeatmapResponse>, Status> {
        let r = req.into_inner();
        let top = if r.top == 0 { 40 } else { r.top.min(1000) as usize };
        let cols = if r.max_columns == 0 { 60 } else { r.max_columns.min(1000) as usize };
        let h = self.0.heatmap(top, cols).await?;
        Ok(Response::new(crate::convert::heatmap(&h)))
    }

    async fn get_policy(&self, _: Request<pb::GetPolicyRequest>) -> Result<Response<pb::GetPolicyResponse>, Status> {
        Ok(Response::new(crate::convert::policy(&self.0.risk_policy())))
    }
}
