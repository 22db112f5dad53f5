//! `swarm.v1.Metrics`: ingest and series queries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use swarm_proto::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use crate::state::Swarm;
use crate::validate::{self, SampleLimits};

/// Rejection reasons returned in full; the counts are always complete.
const MAX_REJECTIONS: usize = 100;
/// Batches of one stream waiting for their group commit at most; beyond
/// that the handler waits, which back-pressures the client.
const MAX_IN_FLIGHT: usize = 32;

pub struct MetricsSvc(pub Swarm);

/// Validates one batch against the topology, the clock and the retention
/// window: the one check both intakes (`Ingest` and OTLP `Export`) run.
/// Returns the valid samples and, by index, why the others were refused.
/// `cache` keeps what the stream's earlier batches learnt of their entities.
pub(crate) fn validate_batch(
    swarm: &Swarm,
    samples: &[pb::Sample],
    cache: &mut validate::EntityCache,
) -> (Vec<crate::series::Sample>, Vec<(usize, validate::FieldError)>) {
    let cfg = swarm.config();
    let topo = swarm.topology();
    let limits = SampleLimits {
        now_ms: swarm.now_ms(),
        max_future_skew_ms: cfg.max_future_skew.as_millis() as i64,
        oldest_ms: swarm.series().cutoff_ms(),
        cpu_multiple: cfg.limits.max_cpu_multiple,
        memory_multiple: cfg.limits.max_memory_multiple,
    };
    let mut valid = Vec::with_capacity(samples.len());
    let mut rejected = Vec::new();
    let mut locations = LocationBudget::new(swarm, cfg.limits.max_locations_per_node);
    for (i, s) in samples.iter().enumerate() {
        match validate::sample(s, &topo, &limits, cache)
            .and_then(|v| if v.metric.needs_location() { locations.admit(&topo, v) } else { Ok(v) })
        {
            Ok(v) => valid.push(v),
            Err(e) => rejected.push((i, e)),
        }
    }
    (valid, rejected)
}

/// Data locations of one batch: each must be known to the topology, and a
/// virtual node gets at most `max` distinct ones (each is a series held in
/// memory; an orchestrator bug once sent 150,000 for one node). Concurrent
/// streams may each add up to the limit before seeing the other's, so the
/// bound can be passed by at most one batch per stream, never without end.
struct LocationBudget<'a> {
    swarm: &'a Swarm,
    max: usize,
    known: Option<validate::KnownLocations>,
    /// Locations this batch adds, per entity.
    fresh: HashMap<Arc<str>, std::collections::HashSet<Arc<str>>>,
}

impl<'a> LocationBudget<'a> {
    fn new(swarm: &'a Swarm, max: usize) -> Self {
        LocationBudget { swarm, max, known: None, fresh: HashMap::new() }
    }

    fn admit(
        &mut self,
        topo: &swarm_core::domain::Topology,
        v: crate::series::Sample,
    ) -> Result<crate::series::Sample, validate::FieldError> {
        self.known.get_or_insert_with(|| validate::KnownLocations::of(topo)).check(topo, &v.location)?;
        let fresh = self.fresh.entry(v.entity.clone()).or_default();
        if fresh.contains(&v.location) {
            return Ok(v);
        }
        let read = || self.swarm.series().read(|f| f.locations(v.kind, v.metric, &v.entity, &v.location));
        // The frames' lock may be held by a merge for a while: on the
        // multi-threaded runtime let the worker's other tasks move away.
        let (held, has) = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(read),
            _ => read(),
        };
        if has {
            return Ok(v);
        }
        if held + fresh.len() >= self.max {
            return Err(validate::FieldError::new(
                "location",
                format!(
                    "{} node {:?} already has {} distinct data locations, the limit (limits.max_locations_per_node); report data by zone or rack instead of by object",
                    v.kind.name(),
                    v.entity,
                    held + fresh.len()
                ),
            ));
        }
        fresh.insert(v.location.clone());
        Ok(v)
    }
}

/// Waits until every batch still in flight is durable.
async fn all_durable(
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<Result<(), crate::series::SeriesError>>>,
) -> Result<(), Status> {
    for done in in_flight {
        durable(done).await?;
    }
    Ok(())
}

/// Waits for a batch's durability task.
async fn durable(t: tokio::task::JoinHandle<Result<(), crate::series::SeriesError>>) -> Result<(), Status> {
    match t.await {
        Ok(r) => r.map_err(super::store_status),
        Err(e) => Err(Status::internal(format!("durability task failed: {e}"))),
    }
}

#[tonic::async_trait]
impl pb::metrics_server::Metrics for MetricsSvc {
    async fn ingest(&self, req: Request<Streaming<pb::IngestBatch>>) -> Result<Response<pb::IngestResponse>, Status> {
        let swarm = &self.0;
        let cfg = swarm.config();
        let peer = req.remote_addr();
        let mut stream = req.into_inner();
        let mut out = pb::IngestResponse::default();
        let mut cache = validate::EntityCache::default();
        let mut in_flight = std::collections::VecDeque::new();
        let mut batch_index: u32 = 0;
        let mut permit = swarm.gate().open(peer, Instant::now()).map_err(|o| super::overloaded(swarm, "grpc", o))?;
        let idle = swarm.gate().idle_timeout();
        loop {
            let next = match tokio::time::timeout(idle, stream.message()).await {
                Ok(next) => next.map_err(|s| super::read_error(s, cfg.limits.max_message_bytes))?,
                Err(_) => {
                    // What came before is stored: make it durable before
                    // saying so, then free the slot for someone who writes.
                    all_durable(in_flight).await?;
                    swarm.telemetry().overload("grpc", "idle");
                    return Err(Status::deadline_exceeded(format!(
                        "no batch arrived for {} (limits.stream_idle_timeout), so the stream was ended; the {} samples accepted from its earlier batches are durable; open a new stream to send more",
                        humantime::format_duration(idle),
                        out.accepted
                    )));
                }
            };
            let Some(batch) = next else { break };
            if batch.samples.len() > cfg.max_batch_samples {
                return Err(Status::invalid_argument(format!(
                    "batches[{batch_index}].samples: has {} samples; the limit is {} per batch (max_batch_samples); split the batch",
                    batch.samples.len(),
                    cfg.max_batch_samples
                )));
            }
            let (valid, rejected) = validate_batch(swarm, &batch.samples, &mut cache);
            swarm.telemetry().ingest("grpc", valid.len() as u64, rejected.len() as u64);
            out.rejected += rejected.len() as u64;
            for (i, e) in rejected.into_iter().take(MAX_REJECTIONS.saturating_sub(out.rejections.len())) {
                out.rejections.push(pb::SampleRejection {
                    batch_index,
                    sample_index: i as u32,
                    field: e.field,
                    reason: e.reason,
                });
            }
            out.accepted += valid.len() as u64;
            if !valid.is_empty() {
                // Room among the pending samples, held until the batch is durable.
                let admitted = swarm
                    .gate()
                    .admit(&mut permit, valid.len(), Instant::now())
                    .await
                    .map_err(|o| super::overloaded(swarm, "grpc", o))?;
                let done = swarm.append_start(valid).await.map_err(super::store_status)?;
                // The room is given back the moment the batch is durable,
                // not when this handler gets round to looking.
                in_flight.push_back(tokio::spawn(async move {
                    let r = done.await;
                    drop(admitted);
                    r
                }));
                if in_flight.len() > MAX_IN_FLIGHT
                    && let Some(oldest) = in_flight.pop_front()
                {
                    durable(oldest).await?;
                }
            }
            batch_index = batch_index.saturating_add(1);
        }
        // Acknowledge only what is durable.
        all_durable(in_flight).await?;
        Ok(Response::new(out))
    }

    async fn query_series(
        &self,
        req: Request<pb::QuerySeriesRequest>,
    ) -> Result<Response<pb::QuerySeriesResponse>, Status> {
        let r = req.into_inner();
        let kind = validate::entity_kind("entity_kind", r.entity_kind)?;
        let metric = validate::metric("metric", r.metric)?;
        let topo = self.0.topology();
        if !validate::known(&topo, kind, &r.entity_id) {
            return Err(Status::not_found(format!("entity_id: unknown {} node {:?}", kind.name(), r.entity_id)));
        }
        if r.from_ms < 0 || r.to_ms < 0 || (r.to_ms != 0 && r.to_ms < r.from_ms) {
            return Err(Status::invalid_argument(format!(
                "from_ms/to_ms: invalid range [{}, {}); both must be >= 0 and from <= to",
                r.from_ms, r.to_ms
            )));
        }
        let to = if r.to_ms == 0 { i64::MAX } else { r.to_ms };
        let limit = if r.limit == 0 { 100_000 } else { r.limit.min(1_000_000) as usize };
        let (points, truncated) =
            self.0.query_series(kind, metric, &r.entity_id, &r.location, r.from_ms, to, limit).await?;
        Ok(Response::new(pb::QuerySeriesResponse {
            points: points.into_iter().map(|(timestamp_ms, value)| pb::Point { timestamp_ms, value }).collect(),
            truncated,
        }))
    }
}
