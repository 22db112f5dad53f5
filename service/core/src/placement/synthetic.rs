//! Seeded random clusters for the placement math's tests and benchmarks:
//! zones and racks, mixed node sizes, draining nodes, pinned and grouped
//! virtual nodes, forecasts, history and data reads — every input the
//! pruned search has to get right. Built through [`ClusterView::build_with`],
//! the same path `swarmd` uses.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::view::{ClusterView, CpuForecast, ViewInputs};
use crate::domain::{NodeId, PhysicalNode, PhysicalState, Resources, Topology, VirtualNode};

/// Shape of a synthetic cluster.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticParams {
    /// Virtual nodes.
    pub virt: usize,
    /// Physical nodes.
    pub phys: usize,
    /// Zones.
    pub zones: usize,
    /// Physical nodes per rack.
    pub rack_size: usize,
    /// Forecast steps.
    pub horizon: usize,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SyntheticParams {
    fn default() -> Self {
        SyntheticParams { virt: 1000, phys: 100, zones: 3, rack_size: 20, horizon: 6, seed: 1 }
    }
}

fn id(s: String) -> NodeId {
    NodeId::parse(&s).expect("generated ids are valid")
}

/// Generates the topology and inputs.
pub fn synthetic_inputs(p: &SyntheticParams) -> (Topology, ViewInputs) {
    let mut rng = StdRng::seed_from_u64(p.seed);
    let mut t = Topology::default();
    let mut names = Vec::with_capacity(p.phys);
    let mut free = Vec::with_capacity(p.phys);
    for i in 0..p.phys {
        let cores = [16.0, 32.0, 64.0][rng.random_range(0..3)];
        let zone = format!("z{}", i % p.zones.max(1));
        let rack = format!("r{}", i / p.rack_size.max(1));
        let name = format!("p{i}");
        let state = if rng.random_bool(0.02) { PhysicalState::Draining } else { PhysicalState::Active };
        t.physical.insert(
            id(name.clone()),
            PhysicalNode {
                id: id(name.clone()),
                capacity: Resources { cpu_cores: cores, memory_bytes: cores * 8.0 * 1073741824.0, network_bps: 1.25e9 },
                labels: [
                    (crate::locality::ZONE_LABEL.to_string(), zone),
                    (crate::locality::RACK_LABEL.to_string(), rack),
                    ("class".to_string(), format!("c{}", i % 2)),
                ]
                .into(),
                state,
            },
        );
        names.push(name);
        free.push(cores * 1.2);
    }
    let mut inp = ViewInputs { horizon: p.horizon, ..Default::default() };
    for j in 0..p.virt {
        let cores = [1.0, 2.0, 4.0, 8.0][rng.random_range(0..4)];
        let util: f64 = rng.random_range(0.05..1.0);
        let mut host = rng.random_range(0..p.phys);
        for _ in 0..8 {
            if free[host] >= cores {
                break;
            }
            host = rng.random_range(0..p.phys);
        }
        free[host] -= cores;
        let name = format!("v{j}");
        let pinned = rng.random_bool(0.01).then(|| id(names[host].clone()));
        let anti_affinity_group = rng.random_bool(0.05).then(|| format!("g{}", rng.random_range(0..50)));
        t.virtual_nodes.insert(
            id(name.clone()),
            VirtualNode {
                id: id(name.clone()),
                requested: Resources {
                    cpu_cores: cores,
                    memory_bytes: cores * 4.0 * 1073741824.0,
                    network_bps: cores * 1e6,
                },
                state_size_bytes: (cores * 2.0 * 1073741824.0) as u64,
                group: None,
                pinned,
                anti_affinity_group,
                placement: Some(id(names[host].clone())),
            },
        );
        let now = cores * util;
        inp.usage.virtual_nodes.insert(
            name.clone(),
            super::view::PartialResources { cpu_cores: Some(now), memory_bytes: None, network_bps: None },
        );
        if p.horizon > 0 && rng.random_bool(0.7) {
            let trend: f64 = rng.random_range(-0.05..0.08);
            let mean: Vec<f64> = (1..=p.horizon).map(|h| (now * (1.0 + trend * h as f64)).clamp(0.0, cores)).collect();
            let upper = mean.iter().map(|m| m * rng.random_range(1.05..1.4)).collect();
            inp.forecasts.insert(name.clone(), CpuForecast { mean, upper });
        }
        if rng.random_bool(0.3) {
            for _ in 0..rng.random_range(1..4) {
                let pn = &names[rng.random_range(0..p.phys)];
                inp.history.insert((name.clone(), pn.clone()), rng.random_range(0.2..1.0));
            }
        }
        if rng.random_bool(0.2) {
            let mut reads = Vec::new();
            for _ in 0..rng.random_range(1..3) {
                let loc = match rng.random_range(0..3) {
                    0 => names[rng.random_range(0..p.phys)].clone(),
                    1 => format!(
                        "z{}/r{}",
                        rng.random_range(0..p.zones.max(1)),
                        rng.random_range(0..p.phys / p.rack_size.max(1) + 1)
                    ),
                    _ => format!("z{}", rng.random_range(0..p.zones.max(1))),
                };
                reads.push((loc, rng.random_range(1e3..1e8)));
            }
            inp.data_access.insert(name, reads);
        }
    }
    (t, inp)
}

/// Generates a view.
pub fn synthetic_view(p: &SyntheticParams) -> ClusterView {
    let (t, inp) = synthetic_inputs(p);
    ClusterView::build_with(&t, &inp)
}
