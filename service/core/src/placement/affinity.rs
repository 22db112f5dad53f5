//! Affinity of a virtual node for a physical node: pure math over a
//! [`ClusterView`], no IO, no clock.
//!
//! A score is the weighted mean of the components that could be computed,
//! each in [0, 1] with higher better:
//! - headroom on CPU, memory and network with the virtual node added, now;
//! - forecast headroom: CPU headroom at the highest forecast upper bound
//!   within the horizon, the virtual node's own forecast included;
//! - current load of the physical node (without the virtual node);
//! - history: the virtual node's decayed observed performance there, or the
//!   node's prior (see [`super::view`]);
//! - locality: proximity to the data it reads, weighted by read rate.
//!
//! A component that cannot be computed (no memory capacity given, no data
//! read, forecasting off) does not count, so it neither helps nor hurts and
//! the others keep their meaning.

use serde::{Deserialize, Serialize};

pub use super::view::{ClusterView, ObservedUsage, PartialResources, PhysView, VirtView};
use crate::domain::{NodeId, PhysicalState, Resources};

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
    /// Historical performance of the virtual node on the physical node.
    pub history: f64,
    /// Data locality.
    pub locality: f64,
    /// CPU headroom at the forecast peak (upper bound) within the horizon.
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
    /// The forecast upper bound with the virtual node added would pass the
    /// utilisation limit within the horizon.
    NoForecastRoom {
        /// Peak forecast utilisation with it.
        peak: f64,
        /// Steps ahead the peak falls.
        step: usize,
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
            Infeasible::NoForecastRoom { peak, step } => {
                write!(f, "forecast upper bound would reach {:.0}% CPU {step} step(s) ahead", peak * 100.0)
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
    /// Forecast peak utilisation (upper bound) with it, and the step (1 =
    /// next) it falls at; `None` without forecasting.
    pub forecast_peak: Option<(f64, usize)>,
}

/// Limits that decide feasibility.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A move may not take a node's CPU utilisation (now, or its forecast
    /// upper bound within the horizon) above this fraction.
    pub max_cpu_utilization: f64,
}

fn headroom(used: f64, cap: f64) -> Option<f64> {
    (cap > 0.0).then(|| (1.0 - used / cap).clamp(0.0, 1.0))
}

/// Historical performance of `v` on physical node `pi`: its own decayed
/// observation there, else the node's prior (what virtual nodes did on
/// nodes of the same hardware class).
pub fn history(v: &VirtView, pi: usize, p: &PhysView) -> f64 {
    v.history.iter().find(|(i, _)| *i == pi).map(|(_, x)| *x).unwrap_or(p.history_prior)
}

/// Data locality of `v` on `pi`: proximity to each place it reads, weighted
/// by read rate; `None` when it reads nothing.
pub fn locality(view: &ClusterView, v: &VirtView, pi: usize) -> Option<f64> {
    if v.data.is_empty() {
        return None;
    }
    let (mut num, mut den) = (0.0, 0.0);
    for (place, rate) in &v.data {
        num += rate * view.distance(pi, place).proximity();
        den += rate;
    }
    Some(num / den)
}

/// What the node-level part of a score can be at most, for pruning: the
/// components with the virtual node's own demand left out (which can only
/// raise headroom), history at the node's prior, and locality at `locality`
/// (-infinity for nodes that are not active: they are never targets).
pub fn node_bound(view: &ClusterView, pi: usize, w: &Weights, locality: Option<f64>) -> f64 {
    let p = &view.phys[pi];
    if p.state != PhysicalState::Active {
        // Never a feasible target: nothing to bound.
        return f64::NEG_INFINITY;
    }
    let cap = p.capacity;
    let fc = if view.horizon > 0 { p.fc_peak(None, 0.0) } else { None };
    Components {
        cpu_headroom: headroom(p.load.cpu_cores, cap.cpu_cores),
        memory_headroom: headroom(p.load.memory_bytes, cap.memory_bytes),
        network_headroom: headroom(p.load.network_bps, cap.network_bps),
        current_load: headroom(p.load.cpu_cores, cap.cpu_cores),
        history: Some(p.history_prior),
        locality,
        forecast_headroom: fc.filter(|_| cap.cpu_cores > 0.0).map(|(u, _)| (1.0 - u).clamp(0.0, 1.0)),
    }
    .score(w)
}

/// Scores virtual node `vi` on physical node `pi` given the loads in `view`.
pub fn score(view: &ClusterView, vi: usize, pi: usize, w: &Weights, limits: &Limits) -> Score {
    let v = &view.virt[vi];
    let p = &view.phys[pi];
    let current = v.placement == Some(pi);
    let base = if current { p.load.minus(v.demand) } else { p.load };
    let projected = base.plus(v.demand);
    let cap = p.capacity;
    let fc = if view.horizon == 0 {
        None
    } else if current {
        p.fc_peak(None, 0.0)
    } else {
        p.fc_peak(Some(v), 1.0)
    };
    let components = Components {
        cpu_headroom: headroom(projected.cpu_cores, cap.cpu_cores),
        memory_headroom: headroom(projected.memory_bytes, cap.memory_bytes),
        network_headroom: headroom(projected.network_bps, cap.network_bps),
        current_load: headroom(base.cpu_cores, cap.cpu_cores),
        history: Some(history(v, pi, p)),
        locality: locality(view, v, pi),
        forecast_headroom: fc.filter(|_| cap.cpu_cores > 0.0).map(|(u, _)| (1.0 - u).clamp(0.0, 1.0)),
    };
    let infeasible = if current { None } else { feasibility(v, p, base, fc, limits) };
    Score {
        score: components.score(w),
        components,
        infeasible,
        projected_cpu_util: if cap.cpu_cores > 0.0 { projected.cpu_cores / cap.cpu_cores } else { f64::INFINITY },
        forecast_peak: fc.map(|(u, h)| (u, h + 1)),
    }
}

fn feasibility(
    v: &VirtView,
    p: &PhysView,
    base: Resources,
    fc: Option<(f64, usize)>,
    limits: &Limits,
) -> Option<Infeasible> {
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
    if let Some((u, h)) = fc
        && u > limits.max_cpu_utilization
    {
        return Some(Infeasible::NoForecastRoom { peak: u, step: h + 1 });
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
    use std::collections::HashMap;

    use super::*;
    use crate::placement::view::{CpuForecast, ViewInputs};

    use crate::placement::testing::{id, topology as topo};

    const L: Limits = Limits { max_cpu_utilization: 0.9 };

    #[test]
    fn emptier_node_scores_higher_and_current_excludes_itself() {
        let w = Weights::default();
        let t =
            topo(&[("a", 10.0, "z", "r"), ("b", 10.0, "z", "r")], &[("v", 2.0, "a"), ("x", 7.0, "a"), ("y", 1.0, "b")]);
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let vi = view.virt.iter().position(|v| v.id.as_str() == "v").unwrap();
        let on_busy = score(&view, vi, 0, &w, &L);
        let on_idle = score(&view, vi, 1, &w, &L);
        assert!(on_idle.score > on_busy.score);
        assert_eq!(on_busy.infeasible, None, "staying is always allowed");
        // On the busy node, the virtual node's own 2 cores are part of the 9.
        assert!((on_busy.components.cpu_headroom.unwrap() - 0.1).abs() < 1e-9);
        assert!((on_busy.components.current_load.unwrap() - 0.3).abs() < 1e-9);
        assert!((on_idle.components.cpu_headroom.unwrap() - 0.7).abs() < 1e-9);
        // Memory capacity unknown, no data read, no forecasting: those components are absent.
        assert_eq!(on_idle.components.memory_headroom, None);
        assert_eq!(on_idle.components.locality, None);
        assert_eq!(on_idle.components.forecast_headroom, None);
        assert_eq!(on_idle.components.history, Some(crate::placement::view::NEUTRAL_HISTORY));
    }

    #[test]
    fn infeasible_reasons() {
        let w = Weights::default();
        let mut t = topo(
            &[("a", 10.0, "z", "r"), ("b", 10.0, "z", "r"), ("c", 10.0, "z", "r"), ("d", 10.0, "z", "r")],
            &[("v", 2.0, ""), ("fill", 7.5, "a"), ("g1", 1.0, "c")],
        );
        t.physical.get_mut("b").unwrap().state = PhysicalState::Draining;
        t.virtual_nodes.get_mut("g1").unwrap().anti_affinity_group = Some("g".into());
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let vi = view.virt.iter().position(|v| v.id.as_str() == "v").unwrap();
        let s = score(&view, vi, 0, &w, &L);
        assert!(matches!(s.infeasible, Some(Infeasible::NoCpuRoom { .. })));
        assert!(s.infeasible.unwrap().to_string().contains("1.50 are free"));
        assert_eq!(score(&view, vi, 1, &w, &L).infeasible, Some(Infeasible::NotActive(PhysicalState::Draining)));
        let mut grouped = view.clone();
        grouped.virt[vi].anti_affinity_group = Some("g".into());
        assert_eq!(score(&grouped, vi, 2, &w, &L).infeasible, Some(Infeasible::AntiAffinity("g".into())));
        grouped.virt[vi].anti_affinity_group = None;
        grouped.virt[vi].pinned = Some(id("z"));
        assert!(matches!(score(&grouped, vi, 2, &w, &L).infeasible, Some(Infeasible::PinnedElsewhere(_))));
        assert_eq!(score(&view, vi, 3, &w, &L).infeasible, None);
    }

    #[test]
    fn forecast_upper_bound_excludes_a_node_that_is_fine_now() {
        let w = Weights::default();
        let t = topo(
            &[("a", 10.0, "z", "r"), ("b", 10.0, "z", "r")],
            &[("v", 1.0, "a"), ("rising", 2.0, "b"), ("steady", 2.0, "b")],
        );
        let mut inp = ViewInputs { horizon: 3, ..Default::default() };
        // "rising" is at 2 cores now but forecast to 5 then 7 (upper 8).
        inp.forecasts.insert("rising".into(), CpuForecast { mean: vec![2.0, 5.0, 7.0], upper: vec![2.5, 6.0, 8.0] });
        let view = ClusterView::build_with(&t, &inp);
        let vi = view.virt.iter().position(|v| v.id.as_str() == "v").unwrap();
        let s = score(&view, vi, 1, &w, &L);
        // Now: 4 + 1 = 5 of 10 cores, fine; at step 3: 7 + 2 + 1 + 1 (spread) = 11 > 9.
        assert!((s.projected_cpu_util - 0.5).abs() < 1e-9);
        assert_eq!(s.forecast_peak.map(|(_, h)| h), Some(3));
        assert!(matches!(s.infeasible, Some(Infeasible::NoForecastRoom { step: 3, .. })), "{:?}", s.infeasible);
        assert_eq!(s.components.forecast_headroom, Some(0.0));
        // Spreads add in quadrature: two members with spread 3 and 4 give 5, not 7.
        let mut inp2 = ViewInputs { horizon: 1, ..Default::default() };
        inp2.forecasts.insert("rising".into(), CpuForecast { mean: vec![1.0], upper: vec![4.0] });
        inp2.forecasts.insert("steady".into(), CpuForecast { mean: vec![1.0], upper: vec![5.0] });
        let v2 = ClusterView::build_with(&t, &inp2);
        let (u, _) = v2.phys[1].fc_peak(None, 0.0).unwrap();
        assert!((u - 0.7).abs() < 1e-9, "{u}");
    }

    #[test]
    fn locality_and_history_prior() {
        let w = Weights::default();
        let mut t = topo(
            &[("n1", 10.0, "z1", "r1"), ("n2", 10.0, "z1", "r1"), ("n3", 10.0, "z1", "r2"), ("n4", 10.0, "z2", "r3")],
            &[("v", 1.0, "n4"), ("u", 1.0, "n4")],
        );
        for n in ["n1", "n2", "n3"] {
            t.physical.get_mut(n).unwrap().labels.insert("class".into(), "fast".into());
        }
        let mut inp = ViewInputs::default();
        // v reads 3 units/s from n1 and 1 unit/s from zone z2.
        inp.data_access.insert("v".into(), vec![("n1".into(), 3.0), ("z2".into(), 1.0)]);
        inp.history.insert(("u".into(), "n1".into()), 0.9);
        inp.history.insert(("u".into(), "n4".into()), 0.2);
        let view = ClusterView::build_with(&t, &inp);
        let vi = view.virt.iter().position(|v| v.id.as_str() == "v").unwrap();
        let loc = |pi: usize| score(&view, vi, pi, &w, &L).components.locality.unwrap();
        assert!((loc(0) - 0.75).abs() < 1e-9, "same node for 3/4 of the reads");
        assert!((loc(1) - 0.5625).abs() < 1e-9, "same rack: 0.75 * 3/4");
        assert!((loc(2) - 0.375).abs() < 1e-9, "same zone: 0.5 * 3/4");
        assert!((loc(3) - 0.125).abs() < 1e-9, "only the zone-2 reads are local: 0.5 * 1/4");
        // v was never seen anywhere: the prior of n2 (class fast) is what u did on n1.
        assert_eq!(score(&view, vi, 1, &w, &L).components.history, Some(0.9));
        let ui = view.virt.iter().position(|v| v.id.as_str() == "u").unwrap();
        assert_eq!(score(&view, ui, 3, &w, &L).components.history, Some(0.2));
    }

    #[test]
    fn node_bound_is_an_upper_bound() {
        let w = Weights::default();
        let t = topo(
            &[("a", 10.0, "z", "r"), ("b", 8.0, "z", "r"), ("c", 12.0, "y", "q")],
            &[("v", 2.0, "a"), ("x", 3.0, "b"), ("y", 1.5, "c")],
        );
        let mut inp = ViewInputs { horizon: 2, ..Default::default() };
        inp.forecasts.insert("v".into(), CpuForecast { mean: vec![2.0, 3.0], upper: vec![3.0, 4.0] });
        inp.forecasts.insert("x".into(), CpuForecast { mean: vec![3.0, 1.0], upper: vec![3.5, 2.0] });
        let view = ClusterView::build_with(&t, &inp);
        let _ = HashMap::<u8, u8>::new();
        for vi in 0..view.virt.len() {
            for pi in 0..view.phys.len() {
                if view.virt[vi].placement == Some(pi) {
                    continue;
                }
                let s = score(&view, vi, pi, &w, &L);
                assert!(node_bound(&view, pi, &w, None) >= s.score);
            }
        }
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
