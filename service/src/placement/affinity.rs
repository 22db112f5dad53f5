//! Affinity of a virtual node for a physical node: pure math over a
//! [`ClusterView`], no IO, no clock.
//!
//! A score is the weighted mean of the components that could be computed,
//! each in [0, 1] with higher better. v0 computes resource headroom (CPU,
//! memory, network) and current load; history, locality and forecast are
//! reserved slots that the predictive controller fills, and a missing
//! component simply does not count (so adding one later does not rescale the
//! others' meaning).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::{NodeId, PhysicalState, Resources, Topology};

/// Weights of the affinity components. Zero disables a component.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    /// CPU headroom.
    pub cpu_headroom: f64,
    /// Memory headroom.
    pub memory_headroom: f64,
    /// Network headroom.
    pub network_headroom: f64,
    /// Current load of the physical node.
    pub current_load: f64,
    /// Historical performance (filled by the predictive controller).
    pub history: f64,
    /// Data locality (filled by the predictive controller).
    pub locality: f64,
    /// Forecast headroom (filled by the predictive controller).
    pub forecast_headroom: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            cpu_headroom: 3.0,
            memory_headroom: 1.0,
            network_headroom: 1.0,
            current_load: 1.0,
            history: 1.0,
            locality: 1.0,
            forecast_headroom: 2.0,
        }
    }
}

impl Weights {
    /// (name, weight) pairs, in the order of the wire message.
    pub fn named(&self) -> [(&'static str, f64); 7] {
        [
            ("cpu_headroom", self.cpu_headroom),
            ("memory_headroom", self.memory_headroom),
            ("network_headroom", self.network_headroom),
            ("current_load", self.current_load),
            ("history", self.history),
            ("locality", self.locality),
            ("forecast_headroom", self.forecast_headroom),
        ]
    }

    /// Checks the weights are finite, non-negative and not all zero.
    pub fn validate(&self) -> Result<(), String> {
        for (n, w) in self.named() {
            if !w.is_finite() || w < 0.0 {
                return Err(format!("weight {n} must be a finite number >= 0, got {w}"));
            }
        }
        if self.named().iter().all(|(_, w)| *w == 0.0) {
            return Err("at least one affinity weight must be > 0".into());
        }
        Ok(())
    }
}

/// Per-component values; `None` when not computed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Components {
    /// See [`Weights::cpu_headroom`].
    pub cpu_headroom: Option<f64>,
    /// See [`Weights::memory_headroom`].
    pub memory_headroom: Option<f64>,
    /// See [`Weights::network_headroom`].
    pub network_headroom: Option<f64>,
    /// See [`Weights::current_load`].
    pub current_load: Option<f64>,
    /// See [`Weights::history`].
    pub history: Option<f64>,
    /// See [`Weights::locality`].
    pub locality: Option<f64>,
    /// See [`Weights::forecast_headroom`].
    pub forecast_headroom: Option<f64>,
}

impl Components {
    fn values(&self) -> [Option<f64>; 7] {
        [
            self.cpu_headroom,
            self.memory_headroom,
            self.network_headroom,
            self.current_load,
            self.history,
            self.locality,
            self.forecast_headroom,
        ]
    }

    /// Weighted mean of the present components (0 when none is present).
    pub fn score(&self, w: &Weights) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (v, (_, w)) in self.values().into_iter().zip(w.named()) {
            if let Some(v) = v {
                num += w * v;
                den += w;
            }
        }
        if den > 0.0 { num / den } else { 0.0 }
    }
}

/// Why a physical node cannot take a virtual node.
#[derive(Debug, Clone, PartialEq)]
pub enum Infeasible {
    /// The node is draining or removed.
    NotActive(PhysicalState),
    /// The virtual node is pinned to another node.
    PinnedElsewhere(NodeId),
    /// The node already hosts a member of the same anti-affinity group.
    AntiAffinity(String),
    /// Not enough CPU below the utilisation limit.
    NoCpuRoom {
        /// Cores needed.
        need: f64,
        /// Cores free below the limit.
        free: f64,
    },
    /// Not enough memory.
    NoMemoryRoom {
        /// Bytes needed.
        need: f64,
        /// Bytes free.
        free: f64,
    },
}

impl std::fmt::Display for Infeasible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Infeasible::NotActive(s) => write!(f, "node is {}", s.name()),
            Infeasible::PinnedElsewhere(p) => write!(f, "virtual node is pinned to {p}"),
            Infeasible::AntiAffinity(g) => write!(f, "node already runs a member of anti-affinity group {g}"),
            Infeasible::NoCpuRoom { need, free } => {
                write!(f, "needs {need:.2} cores but only {free:.2} are free below the utilisation limit")
            }
            Infeasible::NoMemoryRoom { need, free } => {
                write!(f, "needs {:.0} MiB but only {:.0} MiB are free", need / 1048576.0, free / 1048576.0)
            }
        }
    }
}

/// A scored pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Weighted mean of `components`.
    pub score: f64,
    /// The breakdown.
    pub components: Components,
    /// Why the pair is not a valid move target; `None` when it is (or when it
    /// is the current placement, which is never "infeasible" to stay on).
    pub infeasible: Option<Infeasible>,
    /// CPU utilisation of the physical node with the virtual node on it.
    pub projected_cpu_util: f64,
}

/// A physical node as the placement math sees it.
#[derive(Debug, Clone)]
pub struct PhysView {
    /// Id.
    pub id: NodeId,
    /// Capacity.
    pub capacity: Resources,
    /// Lifecycle state.
    pub state: PhysicalState,
    /// Load now, including every virtual node placed on it.
    pub load: Resources,
    /// Anti-affinity groups present, with member counts.
    pub groups: HashMap<String, u32>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A virtual node as the placement math sees it.
#[derive(Debug, Clone)]
pub struct VirtView {
    /// Id.
    pub id: NodeId,
    /// What it uses (observed where known, else requested).
    pub demand: Resources,
    /// Index into [`ClusterView::phys`] of where it runs.
    pub placement: Option<usize>,
    /// Pinned node id.
    pub pinned: Option<NodeId>,
    /// Anti-affinity group.
    pub anti_affinity_group: Option<String>,
    /// Bytes a move transfers.
    pub state_size_bytes: u64,
}

/// Observed usage from metrics: mean over the controller's window.
#[derive(Debug, Clone, Default)]
pub struct ObservedUsage {
    /// Per physical node (only metrics that were reported are set).
    pub physical: HashMap<String, PartialResources>,
    /// Per virtual node.
    pub virtual_nodes: HashMap<String, PartialResources>,
}

/// Resources where each dimension may be unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PartialResources {
    /// Cores.
    pub cpu_cores: Option<f64>,
    /// Bytes.
    pub memory_bytes: Option<f64>,
    /// Bytes/s (rx + tx).
    pub network_bps: Option<f64>,
}

/// Everything the placement math needs, detached from storage.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Non-removed physical nodes, by id.
    pub phys: Vec<PhysView>,
    /// Virtual nodes, by id.
    pub virt: Vec<VirtView>,
    /// Index of a physical id in `phys`.
    pub phys_index: HashMap<NodeId, usize>,
}

impl ClusterView {
    /// Builds the view from the topology and observed usage. A virtual
    /// node's demand is its observed usage where reported, else its request;
    /// a physical node's load is its own observed usage where reported (it
    /// includes overhead Swarm cannot attribute), else the sum of its
    /// virtual nodes' demand.
    pub fn build(topo: &Topology, usage: &ObservedUsage) -> ClusterView {
        let mut phys: Vec<PhysView> = topo
            .physical
            .values()
            .filter(|p| p.state != PhysicalState::Removed)
            .map(|p| PhysView {
                id: p.id.clone(),
                capacity: p.capacity,
                state: p.state,
                load: Resources::default(),
                groups: HashMap::new(),
                labels: p.labels.clone(),
            })
            .collect();
        let phys_index: HashMap<NodeId, usize> = phys.iter().enumerate().map(|(i, p)| (p.id.clone(), i)).collect();
        let mut virt = Vec::with_capacity(topo.virtual_nodes.len());
        for v in topo.virtual_nodes.values() {
            let obs = usage.virtual_nodes.get(v.id.as_str()).copied().unwrap_or_default();
            let demand = Resources {
                cpu_cores: obs.cpu_cores.unwrap_or(v.requested.cpu_cores),
                memory_bytes: obs.memory_bytes.unwrap_or(v.requested.memory_bytes),
                network_bps: obs.network_bps.unwrap_or(v.requested.network_bps),
            };
            let placement = v.placement.as_ref().and_then(|p| phys_index.get(p).copied());
            if let Some(i) = placement {
                phys[i].load = phys[i].load.plus(demand);
                if let Some(g) = &v.anti_affinity_group {
                    *phys[i].groups.entry(g.clone()).or_default() += 1;
                }
            }
            virt.push(VirtView {
                id: v.id.clone(),
                demand,
                placement,
                pinned: v.pinned.clone(),
                anti_affinity_group: v.anti_affinity_group.clone(),
                state_size_bytes: v.state_size_bytes,
            });
        }
        for p in &mut phys {
            if let Some(obs) = usage.physical.get(p.id.as_str()) {
                if let Some(c) = obs.cpu_cores {
                    p.load.cpu_cores = c;
                }
                if let Some(m) = obs.memory_bytes {
                    p.load.memory_bytes = m;
                }
                if let Some(n) = obs.network_bps {
                    p.load.network_bps = n;
                }
            }
        }
        ClusterView { phys, virt, phys_index }
    }
}

/// Limits that decide feasibility.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A move may not take a node's CPU utilisation above this fraction.
    pub max_cpu_utilization: f64,
}

fn headroom(used: f64, cap: f64) -> Option<f64> {
    (cap > 0.0).then(|| (1.0 - used / cap).clamp(0.0, 1.0))
}

/// Scores virtual node `v` on physical node `p`, given the node's current load.
pub fn score(v: &VirtView, p_idx: usize, p: &PhysView, w: &Weights, limits: &Limits) -> Score {
    let current = v.placement == Some(p_idx);
    let base = if current { p.load.minus(v.demand) } else { p.load };
    let projected = base.plus(v.demand);
    let cap = p.capacity;
    let components = Components {
        cpu_headroom: headroom(projected.cpu_cores, cap.cpu_cores),
        memory_headroom: headroom(projected.memory_bytes, cap.memory_bytes),
        network_headroom: headroom(projected.network_bps, cap.network_bps),
        current_load: headroom(base.cpu_cores, cap.cpu_cores),
        ..Components::default()
    };
    let infeasible = if current { None } else { feasibility(v, p, base, limits) };
    Score {
        score: components.score(w),
        components,
        infeasible,
        projected_cpu_util: if cap.cpu_cores > 0.0 { projected.cpu_cores / cap.cpu_cores } else { f64::INFINITY },
    }
}

fn feasibility(v: &VirtView, p: &PhysView, base: Resources, limits: &Limits) -> Option<Infeasible> {
    if p.state != PhysicalState::Active {
        return Some(Infeasible::NotActive(p.state));
    }
    if let Some(pin) = &v.pinned
        && *pin != p.id
    {
        return Some(Infeasible::PinnedElsewhere(pin.clone()));
    }
    if let Some(g) = &v.anti_affinity_group
        && p.groups.get(g).copied().unwrap_or(0) > 0
    {
        return Some(Infeasible::AntiAffinity(g.clone()));
    }
    let free_cpu = p.capacity.cpu_cores * limits.max_cpu_utilization - base.cpu_cores;
    if v.demand.cpu_cores > free_cpu {
        return Some(Infeasible::NoCpuRoom { need: v.demand.cpu_cores, free: free_cpu.max(0.0) });
    }
    if p.capacity.memory_bytes > 0.0 {
        let free_mem = p.capacity.memory_bytes - base.memory_bytes;
        if v.demand.memory_bytes > free_mem {
            return Some(Infeasible::NoMemoryRoom { need: v.demand.memory_bytes, free: free_mem.max(0.0) });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    fn phys(name: &str, cpu: f64, load: f64) -> PhysView {
        PhysView {
            id: id(name),
            capacity: Resources { cpu_cores: cpu, memory_bytes: 0.0, network_bps: 0.0 },
            state: PhysicalState::Active,
            load: Resources { cpu_cores: load, ..Default::default() },
            groups: HashMap::new(),
            labels: BTreeMap::new(),
        }
    }

    fn virt(cpu: f64, at: Option<usize>) -> VirtView {
        VirtView {
            id: id("v"),
            demand: Resources { cpu_cores: cpu, ..Default::default() },
            placement: at,
            pinned: None,
            anti_affinity_group: None,
            state_size_bytes: 0,
        }
    }

    const L: Limits = Limits { max_cpu_utilization: 0.9 };

    #[test]
    fn emptier_node_scores_higher_and_current_excludes_itself() {
        let w = Weights::default();
        let busy = phys("a", 10.0, 9.0);
        let idle = phys("b", 10.0, 1.0);
        let v = virt(2.0, Some(0));
        let on_busy = score(&v, 0, &busy, &w, &L);
        let on_idle = score(&v, 1, &idle, &w, &L);
        assert!(on_idle.score > on_busy.score);
        assert_eq!(on_busy.infeasible, None, "staying is always allowed");
        // On the busy node, the virtual node's own 2 cores are part of the 9.
        assert!((on_busy.components.cpu_headroom.unwrap() - 0.1).abs() < 1e-9);
        assert!((on_busy.components.current_load.unwrap() - 0.3).abs() < 1e-9);
        assert!((on_idle.components.cpu_headroom.unwrap() - 0.7).abs() < 1e-9);
        // Memory and network capacity unknown: those components are absent.
        assert_eq!(on_idle.components.memory_headroom, None);
    }

    #[test]
    fn infeasible_reasons() {
        let w = Weights::default();
        let v = virt(2.0, None);
        let full = phys("a", 10.0, 7.5);
        let s = score(&v, 0, &full, &w, &L);
        assert!(matches!(s.infeasible, Some(Infeasible::NoCpuRoom { .. })));
        assert!(s.infeasible.unwrap().to_string().contains("1.50 are free"));
        let mut draining = phys("b", 10.0, 0.0);
        draining.state = PhysicalState::Draining;
        assert_eq!(score(&v, 1, &draining, &w, &L).infeasible, Some(Infeasible::NotActive(PhysicalState::Draining)));
        let mut grouped = phys("c", 10.0, 0.0);
        grouped.groups.insert("g".into(), 1);
        let mut vg = virt(1.0, None);
        vg.anti_affinity_group = Some("g".into());
        assert_eq!(score(&vg, 2, &grouped, &w, &L).infeasible, Some(Infeasible::AntiAffinity("g".into())));
        vg.anti_affinity_group = None;
        vg.pinned = Some(id("z"));
        assert!(matches!(score(&vg, 2, &grouped, &w, &L).infeasible, Some(Infeasible::PinnedElsewhere(_))));
    }

    #[test]
    fn weights_are_validated() {
        assert!(Weights::default().validate().is_ok());
        let w = Weights { cpu_headroom: f64::NAN, ..Default::default() };
        assert!(w.validate().unwrap_err().contains("cpu_headroom"));
        let zero = Weights {
            cpu_headroom: 0.0,
            memory_headroom: 0.0,
            network_headroom: 0.0,
            current_load: 0.0,
            history: 0.0,
            locality: 0.0,
            forecast_headroom: 0.0,
        };
        assert!(zero.validate().is_err());
    }
}
