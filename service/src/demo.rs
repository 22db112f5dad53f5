//! `swarmd --demo`: a generated cluster, its load, and the reference
//! orchestrator ([`swarm_client::agent`]) that carries decisions out through
//! the migration protocol, all talking real gRPC to the server they run in.
//!
//! The cluster and its load come from the one synthetic generator,
//! [`swarm_datasets::synth`]: 20 physical nodes (16 cores; 2 zones, 4 racks)
//! and 200 virtual nodes (1, 2 or 4 cores) in 10 correlated groups, packed so
//! the first nodes are crowded. The load runs in *real* time, and the demo
//! first writes the week before now through the normal ingest path, so the
//! forecaster has the history it needs from the first round. One group
//! peaks at the same time every day, starting [`DemoParams::peak_lead`]
//! after the demo starts: the week of history shows it, the forecast
//! foresees it, and the controller moves virtual nodes off the host that
//! would be overloaded *before* it is (predictive decisions), beside the
//! reactive ones on the crowded nodes.

use std::collections::HashMap;
use std::time::Duration;

use swarm_core::locality::{RACK_LABEL, ZONE_LABEL};
use swarm_datasets::synth::{Cluster, ScheduledPeak, SynthParams};
use swarm_proto::v1 as pb;
use tonic::transport::Channel;

use swarm_client::Conn;

use swarm_client::agent::{self, AgentConfig};

const DAY_MS: i64 = 86_400_000;
/// The history's spacing: the bundled model's grid.
const HISTORY_STEP_MS: i64 = 300_000;

/// Parameters of the demo.
#[derive(Debug, Clone, Copy)]
pub struct DemoParams {
    /// The synthetic cluster (seed, sizes, load shape); its scheduled peak
    /// is set by [`run`].
    pub synth: SynthParams,
    /// Real time between samples.
    pub tick: Duration,
    /// Real time the demo's orchestrator takes to start a shadow (and
    /// between its health reports).
    pub shadow_start: Duration,
    /// How long after the start the daily peak begins.
    pub peak_lead: Duration,
    /// History written at start (the bundled model needs a week).
    pub history: Duration,
}

impl Default for DemoParams {
    fn default() -> Self {
        DemoParams {
            synth: SynthParams { bursts_per_day: 4.0, daily_amplitude: 0.5, ..SynthParams::default() },
            tick: Duration::from_secs(1),
            shadow_start: Duration::from_millis(500),
            peak_lead: Duration::from_secs(20 * 60),
            history: Duration::from_secs(7 * 86_400 + 2 * 3_600),
        }
    }
}

/// Maps wall-clock time to the generator's days. Day 0 of the generator
/// lies a week (plus the time of day the demo starts at) before the start,
/// so the history and the live load are one series.
#[derive(Debug, Clone, Copy)]
struct LoadClock {
    origin_ms: i64,
}

impl LoadClock {
    /// The demo starts at this fraction of a generator day: morning, with
    /// the daily cycle still rising.
    const START_OF_DAY: f64 = 0.3;

    fn new(start_ms: i64) -> Self {
        LoadClock { origin_ms: start_ms - 7 * DAY_MS - (Self::START_OF_DAY * DAY_MS as f64) as i64 }
    }

    fn t_days(&self, ms: i64) -> f64 {
        (ms - self.origin_ms) as f64 / DAY_MS as f64
    }
}

/// The group with the most requested cores on one physical node: its daily
/// peak overloads that node (and the forecast can see it coming).
fn peak_group(c: &Cluster, placement: &HashMap<String, usize>) -> usize {
    let mut per: HashMap<(usize, usize), f64> = HashMap::new();
    for v in &c.virtual_nodes {
        let at = placement.get(&v.id).copied().unwrap_or(v.placement);
        *per.entry((v.group, at)).or_default() += v.cores;
    }
    per.into_iter().max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0))).map_or(0, |((g, _), _)| g)
}

/// The cluster in wire form.
fn wire(c: &Cluster) -> (Vec<pb::PhysicalNode>, Vec<pb::VirtualNode>, Vec<pb::PlacementAssignment>) {
    let physical = c
        .physical
        .iter()
        .map(|p| pb::PhysicalNode {
            id: p.id.clone(),
            capacity: Some(pb::Resources {
                cpu_cores: p.cores,
                memory_bytes: p.memory_bytes,
                network_bytes_per_sec: 1_250_000_000,
            }),
            labels: [(ZONE_LABEL.to_string(), p.zone.clone()), (RACK_LABEL.to_string(), p.rack.clone())].into(),
            state: pb::PhysicalNodeState::Active as i32,
        })
        .collect();
    let virtual_nodes = c
        .virtual_nodes
        .iter()
        .map(|v| pb::VirtualNode {
            id: v.id.clone(),
            requested: Some(pb::Resources {
                cpu_cores: v.cores,
                memory_bytes: v.memory_bytes,
                network_bytes_per_sec: 10_000_000,
            }),
            state_size_bytes: v.state_size_bytes,
            group: format!("svc-{}", v.group),
            constraints: None,
            placement: String::new(),
        })
        .collect();
    let placements = c
        .virtual_nodes
        .iter()
        .map(|v| pb::PlacementAssignment {
            virtual_node_id: v.id.clone(),
            physical_node_id: c.physical[v.placement].id.clone(),
        })
        .collect();
    (physical, virtual_nodes, placements)
}

/// Registers the demo cluster on the server at `endpoint`, writes its
/// history, then feeds it load and applies its decisions until the task is
/// dropped.
pub async fn run(endpoint: String, p: DemoParams) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let start_ms = wall_ms()?;
    let clock = LoadClock::new(start_ms);
    let mut cluster = Cluster::generate(p.synth);
    let (physical, virtual_nodes, placements) = wire(&cluster);
    let channel = connect(&endpoint).await?;
    let mut topo = pb::topology_client::TopologyClient::new(channel.clone());
    topo.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: physical }).await?;
    topo.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: virtual_nodes }).await?;
    // Keep placements from an earlier run of the demo (decisions applied then).
    let existing = topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await?.into_inner().nodes;
    let placed: HashMap<String, String> =
        existing.into_iter().filter(|v| !v.placement.is_empty()).map(|v| (v.id, v.placement)).collect();
    let initial: Vec<_> = placements.into_iter().filter(|pl| !placed.contains_key(&pl.virtual_node_id)).collect();
    if !initial.is_empty() {
        topo.set_placements(pb::SetPlacementsRequest { placements: initial }).await?;
    }
    let host_index: HashMap<&str, usize> =
        cluster.physical.iter().enumerate().map(|(i, h)| (h.id.as_str(), i)).collect();
    let now_placed: HashMap<String, usize> =
        placed.iter().filter_map(|(v, h)| host_index.get(h.as_str()).map(|&i| (v.clone(), i))).collect();
    let peak = ScheduledPeak {
        group: peak_group(&cluster, &now_placed),
        at_day: (LoadClock::START_OF_DAY + p.peak_lead.as_secs_f64() / 86_400.0).rem_euclid(1.0),
        hours: 1.5,
        scale: 3.0,
    };
    // The peak changes only the load, which reads the parameters.
    cluster.params.scheduled_peak = Some(peak);
    let written = write_history(channel.clone(), &cluster, &clock, &now_placed, start_ms, p.history).await?;
    tracing::info!(
        physical = cluster.physical.len(),
        virtual_nodes = cluster.virtual_nodes.len(),
        history_samples = written,
        peak_group = format!("svc-{}", peak.group),
        peak_in_min = p.peak_lead.as_secs() / 60,
        "demo cluster registered with a week of history"
    );
    // The reference orchestrator carries decisions out through the
    // migration protocol (shadow, verify, cut over), as in production.
    let agent_cfg = AgentConfig {
        orchestrator_id: "demo-agent".into(),
        shadow_start: p.shadow_start,
        report_every: p.shadow_start,
        ..AgentConfig::default()
    };
    let orchestrator = tokio::spawn(agent::run(channel.clone(), agent_cfg, std::future::pending()));
    let load = feed_load(channel, cluster, clock, p);
    let r = load.await;
    orchestrator.abort();
    r
}

fn wall_ms() -> Result<i64, std::time::SystemTimeError> {
    Ok(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64)
}

/// One sample in wire form.
fn sample(kind: pb::EntityKind, id: &str, metric: pb::Metric, ts: i64, value: f64) -> pb::Sample {
    pb::Sample {
        entity_kind: kind as i32,
        entity_id: id.to_owned(),
        metric: metric as i32,
        timestamp_ms: ts,
        value,
        location: String::new(),
    }
}

/// CPU samples of every virtual node at `ts`, and of every physical node
/// (the sum of what runs on it, plus hypervisor overhead), pushed to `out`.
fn cpu_samples(
    c: &Cluster,
    t_days: f64,
    ts: i64,
    placement: impl Fn(usize) -> Option<usize>,
    out: &mut Vec<pb::Sample>,
) {
    let mut per_phys = vec![0.3; c.physical.len()];
    for (i, v) in c.virtual_nodes.iter().enumerate() {
        let cpu = c.cpu_cores(i, t_days);
        if let Some(h) = placement(i) {
            per_phys[h] += cpu;
        }
        out.push(sample(pb::EntityKind::Virtual, &v.id, pb::Metric::CpuUsage, ts, cpu));
    }
    for (h, p) in c.physical.iter().enumerate() {
        out.push(sample(pb::EntityKind::Physical, &p.id, pb::Metric::CpuUsage, ts, per_phys[h]));
    }
}

/// Writes `span` of history before `start_ms` on the model's 5-minute grid
/// through `Metrics.Ingest`, as any collector would; returns the samples
/// written. Timestamps are grid-aligned, so a restarted demo rewrites the
/// same points instead of adding others.
async fn write_history(
    channel: Conn,
    c: &Cluster,
    clock: &LoadClock,
    placed: &HashMap<String, usize>,
    start_ms: i64,
    span: Duration,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let mut metrics = pb::metrics_client::MetricsClient::new(channel);
    let at = |i: usize| Some(placed.get(&c.virtual_nodes[i].id).copied().unwrap_or(c.virtual_nodes[i].placement));
    let last = start_ms - start_ms.rem_euclid(HISTORY_STEP_MS);
    let first = last - span.as_millis() as i64;
    let per_batch = (50_000 / (c.virtual_nodes.len() + c.physical.len()).max(1)).max(1) as i64;
    let mut batches = Vec::new();
    let mut ts = first;
    while ts <= last {
        let mut samples = Vec::new();
        for _ in 0..per_batch {
            if ts > last {
                break;
            }
            cpu_samples(c, clock.t_days(ts), ts, at, &mut samples);
            ts += HISTORY_STEP_MS;
        }
        batches.push(pb::IngestBatch { samples });
    }
    let r = metrics.ingest(tokio_stream::iter(batches)).await?.into_inner();
    if r.rejected > 0 {
        tracing::warn!(rejected = r.rejected, first = ?r.rejections.first(), "demo history partly rejected");
    }
    Ok(r.accepted)
}

async fn connect(endpoint: &str) -> Result<Conn, tonic::transport::Error> {
    let mut last = None;
    for _ in 0..50 {
        match Channel::from_shared(endpoint.to_owned()).expect("valid endpoint").connect().await {
            Ok(c) => return Ok(swarm_client::with_token(c, None).expect("no token")),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.expect("tried at least once"))
}

async fn feed_load(
    channel: Conn,
    cluster: Cluster,
    clock: LoadClock,
    p: DemoParams,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut metrics = pb::metrics_client::MetricsClient::new(channel.clone());
    let mut topo = pb::topology_client::TopologyClient::new(channel);
    let mut tick = tokio::time::interval(p.tick);
    let index: HashMap<String, usize> =
        cluster.virtual_nodes.iter().enumerate().map(|(i, v)| (v.id.clone(), i)).collect();
    let hosts: HashMap<String, usize> = cluster.physical.iter().enumerate().map(|(i, h)| (h.id.clone(), i)).collect();
    loop {
        tick.tick().await;
        let now_ms = wall_ms()?;
        // Physical load follows where the virtual nodes are now.
        let nodes = topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await?.into_inner().nodes;
        let mut at = vec![None; cluster.virtual_nodes.len()];
        let mut samples = Vec::with_capacity(cluster.virtual_nodes.len() * 2 + cluster.physical.len());
        for v in &nodes {
            let Some(&i) = index.get(&v.id) else { continue };
            at[i] = hosts.get(&v.placement).copied();
            let mem = v.requested.as_ref().map_or(0, |r| r.memory_bytes) as f64 * 0.6;
            samples.push(sample(pb::EntityKind::Virtual, &v.id, pb::Metric::MemoryBytes, now_ms, mem));
        }
        cpu_samples(&cluster, clock.t_days(now_ms), now_ms, |i| at[i], &mut samples);
        let batch = pb::IngestBatch { samples };
        metrics.ingest(tokio_stream::iter([batch])).await?;
    }
}

/// Adjusts the configuration for a demo that should show something within
/// a minute: rounds every 10 s (unless given), usage averaged over 30 s, a
/// 60 s cooldown, a 2 s shadow verification window, VM-style 2x CPU
/// overcommit (the generated cluster's requests exceed its cores on the
/// crowded nodes), and the dashboard on 127.0.0.1:8080 unless an address
/// was given.
pub fn tune_config(cfg: &mut crate::config::Config, round_interval_given: bool) {
    if !round_interval_given {
        cfg.round_interval = Duration::from_secs(10);
    }
    cfg.usage_window = Duration::from_secs(30);
    cfg.controller.cooldown_ms = 60_000;
    cfg.migration.verify_window_ms = 2_000;
    cfg.migration.cpu_overcommit = 2.0;
    if cfg.http.is_none() {
        cfg.http = Some("127.0.0.1:8080".parse().expect("valid address"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_matches_the_generated_cluster() {
        let c = Cluster::generate(DemoParams::default().synth);
        let (p, v, pl) = wire(&c);
        assert_eq!((p.len(), v.len(), pl.len()), (20, 200, 200));
        assert_eq!(pl[3].physical_node_id, c.physical[c.virtual_nodes[3].placement].id);
        assert_eq!(p[0].labels["zone"], "z1");
    }

    #[test]
    fn the_clock_puts_a_week_of_history_before_the_start() {
        let start = 1_800_000_000_000;
        let c = LoadClock::new(start);
        assert!((c.t_days(start) - (7.0 + LoadClock::START_OF_DAY)).abs() < 1e-9);
        assert!((c.t_days(start - 7 * DAY_MS) - LoadClock::START_OF_DAY).abs() < 1e-9);
    }

    #[test]
    fn the_peak_group_is_the_most_concentrated_one() {
        let c = Cluster::generate(DemoParams::default().synth);
        let g = peak_group(&c, &HashMap::new());
        let on = |g: usize, h: usize| -> f64 {
            c.virtual_nodes.iter().filter(|v| v.group == g && v.placement == h).map(|v| v.cores).sum()
        };
        let best = (0..c.physical.len()).map(|h| on(g, h)).fold(0.0, f64::max);
        for other in 0..10 {
            assert!((0..c.physical.len()).all(|h| on(other, h) <= best), "group {other} is more concentrated");
        }
    }
}
