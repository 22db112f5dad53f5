//! `opentelemetry.proto.collector.metrics.v1.MetricsService/Export` on
//! swarmd's gRPC port: OpenTelemetry SDKs and collectors send metrics
//! straight to Swarm. Data points become samples ([`crate::otlp`]), are
//! validated and stored exactly as `Metrics.Ingest` stores them, and the
//! answer is sent once they are durable. What could not be taken (unknown
//! metrics, unsupported point types, unknown nodes, bad values) is counted
//! in OTLP's partial-success response, with the reasons.

use std::time::Instant;

use swarm_proto::otlp::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::MetricsService,
};
use tonic::{Request, Response, Status};

use super::metrics::validate_batch;
use crate::state::Swarm;

/// Reasons named in the partial-success message at most.
const MAX_REASONS: usize = 10;

pub struct OtlpSvc(pub Swarm);

#[tonic::async_trait]
impl MetricsService for OtlpSvc {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let swarm = &self.0;
        let mut permit =
            swarm.gate().open(req.remote_addr(), Instant::now()).map_err(|o| super::overloaded(swarm, "otlp", o))?;
        let req = req.into_inner();
        let topo = swarm.topology();
        let mut converted = crate::otlp::convert(&req, |id| topo.physical.contains_key(id));
        drop(topo);
        let samples = std::mem::take(&mut converted.samples);
        let mut cache = crate::validate::EntityCache::default();
        let cfg = swarm.config();
        let mut accepted = 0u64;
        for chunk in samples.chunks(cfg.max_batch_samples.max(1)) {
            let (valid, bad) = validate_batch(swarm, chunk, &mut cache);
            for (i, e) in bad {
                let name = crate::series::Metric::from_code(chunk[i].metric as u8).map_or("?", |m| m.name());
                converted.refuse(name, 1, format!("{}: {}", e.field, e.reason));
            }
            accepted += valid.len() as u64;
            swarm.telemetry().ingest("otlp", valid.len() as u64, 0);
            if !valid.is_empty() {
                let _admitted = swarm
                    .gate()
                    .admit(&mut permit, valid.len(), Instant::now())
                    .await
                    .map_err(|o| super::overloaded(swarm, "otlp", o))?;
                let done = swarm.append_start(valid).await.map_err(super::store_status)?;
                done.await.map_err(super::store_status)?;
            }
        }
        let rejected = converted.refused;
        swarm.telemetry().ingest("otlp", 0, rejected);
        tracing::debug!(accepted, rejected, "OTLP export");
        let partial_success = (rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: rejected as i64,
            error_message: converted.message(MAX_REASONS),
        });
        Ok(Response::new(ExportMetricsServiceResponse { partial_success }))
    }
}
