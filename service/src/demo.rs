//! `swarmd --demo`: a generated cluster, a load generator in accelerated
//! time, and a stand-in orchestrator that carries decisions out, all talking
//! real gRPC to the server they run in.
//!
//! The cluster: 20 physical nodes (16 cores, 64 GiB, 10 Gbit/s; 2 zones, 4
//! racks) and 200 virtual nodes (1, 2 or 4 cores) in 10 groups, packed so the
//! first nodes are crowded. Load follows a daily curve (a virtual day passes
//! every `day_seconds` real seconds) plus noise, and every few virtual hours
//! one group turns hot (2.5× its load) for a while, so hotspots form and
//! decisions appear within seconds.

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarm_proto::v1 as pb;
use tonic::transport::Channel;

const GIB: u64 = 1 << 30;

/// Parameters of the demo.
#[derive(Debug, Clone, Copy)]
pub struct DemoParams {
    /// Seed of everything random.
    pub seed: u64,
    /// Physical nodes.
    pub physical: usize,
    /// Virtual nodes.
    pub virtual_nodes: usize,
    /// Real seconds per virtual day.
    pub day_seconds: f64,
    /// Real time between samples.
    pub tick: Duration,
    /// Real delay before the stand-in orchestrator applies a decision.
    pub apply_delay: Duration,
}

impl Default for DemoParams {
    fn default() -> Self {
        DemoParams {
            seed: 42,
            physical: 20,
            virtual_nodes: 200,
            day_seconds: 240.0,
            tick: Duration::from_secs(1),
            apply_delay: Duration::from_secs(2),
        }
    }
}

/// The generated cluster.
#[derive(Debug, Clone)]
pub struct DemoCluster {
    /// Physical nodes.
    pub physical: Vec<pb::PhysicalNode>,
    /// Virtual nodes.
    pub virtual_nodes: Vec<pb::VirtualNode>,
    /// Initial placement.
    pub placements: Vec<pb::PlacementAssignment>,
    /// Base utilisation of each virtual node (fraction of its request).
    pub base_util: Vec<f64>,
    /// Group of each virtual node.
    pub group: Vec<usize>,
}

impl DemoCluster {
    /// Generates the cluster deterministically from `p.seed`.
    pub fn generate(p: &DemoParams) -> DemoCluster {
        let mut rng = StdRng::seed_from_u64(p.seed);
        let physical: Vec<pb::PhysicalNode> = (0..p.physical)
            .map(|i| pb::PhysicalNode {
                id: format!("p{i:02}"),
                capacity: Some(pb::Resources {
                    cpu_cores: 16.0,
                    memory_bytes: 64 * GIB,
                    network_bytes_per_sec: 1_250_000_000,
                }),
                labels: [
                    ("zone".to_string(), format!("z{}", i % 2 + 1)),
                    ("rack".to_string(), format!("r{}", i % 4 + 1)),
                ]
                .into(),
                state: pb::PhysicalNodeState::Active as i32,
            })
            .collect();
        let mut virtual_nodes = Vec::new();
        let mut base_util = Vec::new();
        let mut group = Vec::new();
        for i in 0..p.virtual_nodes {
            let cores = [1.0, 2.0, 4.0][rng.random_range(0..3)];
            let g = i % 10;
            virtual_nodes.push(pb::VirtualNode {
                id: format!("v{i:03}"),
                requested: Some(pb::Resources {
                    cpu_cores: cores,
                    memory_bytes: (cores as u64) * 2 * GIB,
                    network_bytes_per_sec: 10_000_000,
                }),
                state_size_bytes: rng.random_range(1..20) * GIB,
                group: format!("svc-{g}"),
                constraints: None,
                placement: String::new(),
            });
            base_util.push(rng.random_range(0.25..0.6));
            group.push(g);
        }
        // Crowd the first nodes: each virtual node lands on one of the first
        // third of the nodes with probability 0.6, while requests fit 1.5x.
        let mut used = vec![0.0; p.physical];
        let crowded = (p.physical / 3).max(1);
        let mut placements = Vec::new();
        for v in &virtual_nodes {
            let cores = v.requested.as_ref().map_or(1.0, |r| r.cpu_cores);
            let mut pick =
                if rng.random_bool(0.6) { rng.random_range(0..crowded) } else { rng.random_range(0..p.physical) };
            let mut tries = 0;
            while used[pick] + cores > 24.0 && tries < p.physical {
                pick = (pick + 1) % p.physical;
                tries += 1;
            }
            used[pick] += cores;
            placements.push(pb::PlacementAssignment {
                virtual_node_id: v.id.clone(),
                physical_node_id: physical[pick].id.clone(),
            });
        }
        DemoCluster { physical, virtual_nodes, placements, base_util, group }
    }

    /// CPU use (cores) of virtual node `i` at virtual time `t_days`.
    pub fn cpu(&self, i: usize, t_days: f64, noise: f64) -> f64 {
        let req = self.virtual_nodes[i].requested.as_ref().map_or(1.0, |r| r.cpu_cores);
        let daily = 0.75 + 0.35 * (std::f64::consts::TAU * (t_days - 0.25)).sin();
        // One group is hot for a quarter of each virtual day, rotating.
        let hot_group = ((t_days * 4.0).floor() as usize * 3) % 10;
        let hot = if self.group[i] == hot_group { 2.5 } else { 1.0 };
        (req * self.base_util[i] * daily * hot * (1.0 + noise)).clamp(0.0, req * 1.5)
    }
}

/// Registers the demo cluster on the server at `endpoint`, then feeds it
/// load and applies its decisions until the task is dropped.
pub async fn run(endpoint: String, p: DemoParams) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cluster = DemoCluster::generate(&p);
    let channel = connect(&endpoint).await?;
    let mut topo = pb::topology_client::TopologyClient::new(channel.clone());
    topo.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: cluster.physical.clone() }).await?;
    topo.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: cluster.virtual_nodes.clone() }).await?;
    // Keep placements from an earlier run of the demo (decisions applied then).
    let existing = topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await?.into_inner().nodes;
    let placed: HashMap<String, String> =
        existing.into_iter().filter(|v| !v.placement.is_empty()).map(|v| (v.id, v.placement)).collect();
    let initial: Vec<_> =
        cluster.placements.iter().filter(|pl| !placed.contains_key(&pl.virtual_node_id)).cloned().collect();
    if !initial.is_empty() {
        topo.set_placements(pb::SetPlacementsRequest { placements: initial }).await?;
    }
    tracing::info!(
        physical = cluster.physical.len(),
        virtual_nodes = cluster.virtual_nodes.len(),
        "demo cluster registered"
    );
    let orchestrator = tokio::spawn(apply_decisions(channel.clone(), p.apply_delay));
    let load = feed_load(channel, cluster, p);
    let r = load.await;
    orchestrator.abort();
    r
}

async fn connect(endpoint: &str) -> Result<Channel, tonic::transport::Error> {
    let mut last = None;
    for _ in 0..50 {
        match Channel::from_shared(endpoint.to_owned()).expect("valid endpoint").connect().await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.expect("tried at least once"))
}

async fn feed_load(
    channel: Channel,
    cluster: DemoCluster,
    p: DemoParams,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut metrics = pb::metrics_client::MetricsClient::new(channel.clone());
    let mut topo = pb::topology_client::TopologyClient::new(channel);
    let mut rng = StdRng::seed_from_u64(p.seed ^ 0x5eed);
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
            let cpu = cluster.cpu(i, t_days, rng.random_range(-0.1..0.1));
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
            let cpu = per_phys.get(&ph.id).copied().unwrap_or(0.0) + 0.3;
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

/// A stand-in orchestrator: applies each decision after a delay by
/// reporting the new placement, as a real orchestrator would after moving it.
async fn apply_decisions(channel: Channel, delay: Duration) {
    let mut placement = pb::placement_client::PlacementClient::new(channel.clone());
    let mut topo = pb::topology_client::TopologyClient::new(channel);
    let Ok(resp) = placement.watch_decisions(pb::WatchDecisionsRequest { from_sequence: 0 }).await else { return };
    let mut stream = resp.into_inner();
    while let Ok(Some(d)) = stream.message().await {
        tokio::time::sleep(delay).await;
        let r = topo
            .set_placements(pb::SetPlacementsRequest {
                placements: vec![pb::PlacementAssignment {
                    virtual_node_id: d.virtual_node_id.clone(),
                    physical_node_id: d.to_node_id.clone(),
                }],
            })
            .await;
        match r {
            Ok(_) => {
                tracing::info!(seq = d.sequence, vnode = %d.virtual_node_id, to = %d.to_node_id, "demo orchestrator moved")
            }
            Err(e) => tracing::warn!(error = %e, "demo orchestrator could not apply a decision"),
        }
    }
}

/// Adjusts the configuration for the demo's accelerated time: rounds every
/// 10 s (unless given), usage averaged over 30 s, a 60 s cooldown.
pub fn tune_config(cfg: &mut crate::config::Config, round_interval_given: bool) {
    if !round_interval_given {
        cfg.round_interval = Duration::from_secs(10);
    }
    cfg.usage_window = Duration::from_secs(30);
    cfg.controller.cooldown_ms = 60_000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_seeded_and_crowded() {
        let p = DemoParams::default();
        let a = DemoCluster::generate(&p);
        let b = DemoCluster::generate(&p);
        assert_eq!(a.placements, b.placements);
        assert_eq!(a.virtual_nodes.len(), 200);
        let mut per: HashMap<&str, f64> = HashMap::new();
        for (pl, v) in a.placements.iter().zip(&a.virtual_nodes) {
            *per.entry(pl.physical_node_id.as_str()).or_default() += v.requested.as_ref().unwrap().cpu_cores;
        }
        let max = per.values().cloned().fold(0.0, f64::max);
        let min = a.physical.iter().map(|p| per.get(p.id.as_str()).copied().unwrap_or(0.0)).fold(f64::MAX, f64::min);
        assert!(max > 2.0 * min, "the demo must start unbalanced: max {max}, min {min}");
        assert!(max <= 24.0);
    }

    #[test]
    fn load_is_bounded_and_has_a_hot_group() {
        let c = DemoCluster::generate(&DemoParams::default());
        for i in 0..c.virtual_nodes.len() {
            let req = c.virtual_nodes[i].requested.as_ref().unwrap().cpu_cores;
            for k in 0..20 {
                let v = c.cpu(i, k as f64 * 0.05, 0.1);
                assert!((0.0..=req * 1.5).contains(&v));
            }
        }
        // Group 0 is hot in the first quarter of day 0: its load is higher than group 1's.
        let mean = |g: usize| {
            let xs: Vec<f64> =
                (0..200).filter(|&i| c.group[i] == g).map(|i| c.cpu(i, 0.1, 0.0) / c.base_util[i]).collect();
            xs.iter().sum::<f64>() / xs.len() as f64
        };
        assert!(mean(0) > 1.5 * mean(1));
    }
}
