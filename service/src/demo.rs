//! `swarmd --demo`: a generated cluster, a load generator in accelerated
//! time, and the reference orchestrator ([`crate::migration::agent`]) that
//! carries decisions out through the migration protocol, all talking real
//! gRPC to the server they run in.
//!
//! The cluster and its load come from the one synthetic generator,
//! [`swarm_datasets::synth`]: 20 physical nodes (16 cores; 2 zones, 4 racks)
//! and 200 virtual nodes (1, 2 or 4 cores) in 10 correlated groups, packed so
//! the first nodes are crowded; a virtual day passes every `day_seconds` real
//! seconds, so daily cycles and group bursts make hotspots form and decisions
//! appear within seconds.

use std::collections::HashMap;
use std::time::Duration;

use swarm_core::locality::{RACK_LABEL, ZONE_LABEL};
use swarm_datasets::synth::{Cluster, SynthParams};
use swarm_proto::v1 as pb;
use tonic::transport::Channel;

use swarm_client::Conn;

use swarm_client::agent::{self, AgentConfig};

/// Parameters of the demo.
#[derive(Debug, Clone, Copy)]
pub struct DemoParams {
    /// The synthetic cluster (seed, sizes, load shape).
    pub synth: SynthParams,
    /// Real seconds per virtual day.
    pub day_seconds: f64,
    /// Real time between samples.
    pub tick: Duration,
    /// Real time the demo's orchestrator takes to start a shadow (and
    /// between its health reports).
    pub shadow_start: Duration,
}

impl Default for DemoParams {
    fn default() -> Self {
        DemoParams {
            synth: SynthParams { bursts_per_day: 4.0, ..SynthParams::default() },
            day_seconds: 240.0,
            tick: Duration::from_secs(1),
            shadow_start: Duration::from_millis(500),
        }
    }
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

/// Registers the demo cluster on the server at `endpoint`, then feeds it
/// load and applies its decisions until the task is dropped.
pub async fn run(endpoint: String, p: DemoParams) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cluster = Cluster::generate(p.synth);
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
    tracing::info!(
        physical = cluster.physical.len(),
        virtual_nodes = cluster.virtual_nodes.len(),
        "demo cluster registered"
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
    let load = feed_load(channel, cluster, p);
    let r = load.await;
    orchestrator.abort();
    r
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
    p: DemoParams,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut metrics = pb::metrics_client::MetricsClient::new(channel.clone());
    let mut topo = pb::topology_client::TopologyClient::new(channel);
    let start = std::time::Instant::now();
    let mut tick = tokio::time::interval(p.tick);
    let index: HashMap<String, usize> =
        cluster.virtual_nodes.iter().enumerate().map(|(i, v)| (v.id.clone(), i)).collect();
    loop {
        tick.tick().await;
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        let t_days = start.elapsed().as_secs_f64() / p.day_seconds;
        // Physical load follows where the virtual nodes are now.
        let placement = topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await?.into_inner().nodes;
        let mut per_phys: HashMap<String, f64> = HashMap::new();
        let mut samples = Vec::with_capacity(cluster.virtual_nodes.len() * 2 + cluster.physical.len());
        for v in placement {
            let Some(&i) = index.get(&v.id) else { continue };
            let cpu = cluster.cpu_cores(i, t_days);
            *per_phys.entry(v.placement.clone()).or_default() += cpu;
            let mem = v.requested.as_ref().map_or(0, |r| r.memory_bytes) as f64 * 0.6;
            for (metric, value) in [(pb::Metric::CpuUsage, cpu), (pb::Metric::MemoryBytes, mem)] {
                samples.push(pb::Sample {
                    entity_kind: pb::EntityKind::Virtual as i32,
                    entity_id: v.id.clone(),
                    metric: metric as i32,
                    timestamp_ms: now_ms,
                    value,
                    location: String::new(),
                });
            }
        }
        for ph in &cluster.physical {
            let cpu = per_phys.get(&ph.id).copied().unwrap_or(0.0) + 0.3; // hypervisor overhead
            samples.push(pb::Sample {
                entity_kind: pb::EntityKind::Physical as i32,
                entity_id: ph.id.clone(),
                metric: pb::Metric::CpuUsage as i32,
                timestamp_ms: now_ms,
                value: cpu,
                location: String::new(),
            });
        }
        let batch = pb::IngestBatch { samples };
        metrics.ingest(tokio_stream::iter([batch])).await?;
    }
}

/// Adjusts the configuration for the demo's accelerated time: rounds every
/// 10 s (unless given), usage averaged over 30 s, a 60 s cooldown, a 2 s
/// shadow verification window, VM-style 2x CPU overcommit (the generated
/// cluster's requests exceed its cores on the crowded nodes), and the
/// dashboard on 127.0.0.1:8080 unless an address was given.
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
}
