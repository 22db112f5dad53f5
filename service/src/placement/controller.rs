//! One controller round: pure function from a [`ClusterView`] and the time
//! to a list of proposed moves. No IO; the caller persists and publishes.
//!
//! The round is greedy with lazy re-evaluation: every virtual node's best
//! feasible target is computed; candidates are taken best gain first, but a
//! candidate is re-scored against the loads left by the moves already taken
//! before it is accepted, so two virtual nodes never both "fill" the same
//! free capacity in one round.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use super::affinity::{ClusterView, Limits, Score, Weights, score};
use crate::domain::{NodeId, PhysicalState};

/// Tuning of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// A move is proposed only when the target's affinity beats the current
    /// node's by more than this (hysteresis against flapping). [0, 1].
    pub gain_threshold: f64,
    /// At most this many decisions per round.
    pub max_decisions_per_round: usize,
    /// A virtual node gets no new decision for this long after one, ms.
    pub cooldown_ms: i64,
    /// A move may not push a node's CPU utilisation above this. (0, 1].
    pub max_cpu_utilization: f64,
    /// Component weights.
    pub weights: Weights,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            gain_threshold: 0.1,
            max_decisions_per_round: 20,
            cooldown_ms: 30 * 60 * 1000,
            max_cpu_utilization: 0.9,
            weights: Weights::default(),
        }
    }
}

impl ControllerConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.gain_threshold) {
            return Err(format!("gain_threshold must be in [0, 1], got {}", self.gain_threshold));
        }
        if !(self.max_cpu_utilization > 0.0 && self.max_cpu_utilization <= 1.0) {
            return Err(format!("max_cpu_utilization must be in (0, 1], got {}", self.max_cpu_utilization));
        }
        if self.cooldown_ms < 0 {
            return Err("cooldown must not be negative".into());
        }
        self.weights.validate()
    }

    /// Feasibility limits.
    pub fn limits(&self) -> Limits {
        Limits { max_cpu_utilization: self.max_cpu_utilization }
    }
}

/// Why a move was proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalKind {
    /// Affinity gain above the threshold.
    MicroMigration,
    /// The current node is draining.
    Evacuation,
}

/// A proposed move.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Virtual node index in the view.
    pub virt: usize,
    /// Current physical node index.
    pub from: usize,
    /// Target physical node index.
    pub to: usize,
    /// Score where it runs.
    pub from_score: Score,
    /// Score on the target.
    pub to_score: Score,
    /// Why.
    pub kind: ProposalKind,
    /// For humans.
    pub reason: String,
}

impl Proposal {
    /// Affinity gain.
    pub fn gain(&self) -> f64 {
        self.to_score.score - self.from_score.score
    }
}

/// Outcome of a round.
#[derive(Debug, Clone, Default)]
pub struct RoundOutcome {
    /// Accepted proposals, in the order they were taken.
    pub proposals: Vec<Proposal>,
    /// Virtual nodes considered (placed, not pinned).
    pub evaluated: usize,
    /// Skipped because a recent decision put them in cooldown.
    pub skipped_cooldown: usize,
    /// Would have moved but the round's budget was spent.
    pub skipped_budget: usize,
}

struct Candidate {
    priority: f64,
    virt: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> Ordering {
        // Highest priority first; ties broken by index for determinism.
        self.priority.total_cmp(&o.priority).then_with(|| o.virt.cmp(&self.virt))
    }
}

/// Best feasible target for virtual node `vi` other than where it runs.
pub fn best_target(view: &ClusterView, vi: usize, cfg: &ControllerConfig) -> Option<(usize, Score)> {
    let v = &view.virt[vi];
    let limits = cfg.limits();
    let mut best: Option<(usize, Score)> = None;
    for (pi, p) in view.phys.iter().enumerate() {
        if Some(pi) == v.placement {
            continue;
        }
        let s = score(v, pi, p, &cfg.weights, &limits);
        if s.infeasible.is_some() {
            continue;
        }
        if best.as_ref().is_none_or(|(_, b)| s.score > b.score) {
            best = Some((pi, s));
        }
    }
    best
}

/// Evaluates one virtual node: `Some((priority, proposal))` when it should move.
fn evaluate(view: &ClusterView, vi: usize, cfg: &ControllerConfig) -> Option<(f64, Proposal)> {
    let v = &view.virt[vi];
    let from = v.placement?;
    let p = &view.phys[from];
    let from_score = score(v, from, p, &cfg.weights, &cfg.limits());
    let (to, to_score) = best_target(view, vi, cfg)?;
    let gain = to_score.score - from_score.score;
    let to_id = &view.phys[to].id;
    if p.state == PhysicalState::Draining {
        let reason = format!(
            "{} is draining; {} would be at {:.0}% CPU (affinity {:.2})",
            p.id,
            to_id,
            to_score.projected_cpu_util * 100.0,
            to_score.score
        );
        // Evacuations go before any optimisation.
        let prop = Proposal { virt: vi, from, to, from_score, to_score, kind: ProposalKind::Evacuation, reason };
        return Some((f64::MAX, prop));
    }
    if gain <= cfg.gain_threshold {
        return None;
    }
    let reason = format!(
        "{} at {:.0}% CPU (affinity {:.2}); {} would be at {:.0}% CPU (affinity {:.2}); gain {:.2} > threshold {:.2}",
        p.id,
        p.load.cpu_cores / p.capacity.cpu_cores.max(f64::MIN_POSITIVE) * 100.0,
        from_score.score,
        to_id,
        to_score.projected_cpu_util * 100.0,
        to_score.score,
        gain,
        cfg.gain_threshold
    );
    let prop = Proposal { virt: vi, from, to, from_score, to_score, kind: ProposalKind::MicroMigration, reason };
    Some((gain, prop))
}

/// Moves virtual node `vi` to `to` in the view (updates loads and groups).
pub fn apply_move(view: &mut ClusterView, vi: usize, to: usize) {
    let v = view.virt[vi].clone();
    if let Some(from) = v.placement {
        let p = &mut view.phys[from];
        p.load = p.load.minus(v.demand);
        if let Some(g) = &v.anti_affinity_group
            && let Some(c) = p.groups.get_mut(g)
        {
            *c = c.saturating_sub(1);
        }
    }
    let p = &mut view.phys[to];
    p.load = p.load.plus(v.demand);
    if let Some(g) = &v.anti_affinity_group {
        *p.groups.entry(g.clone()).or_default() += 1;
    }
    view.virt[vi].placement = Some(to);
}

/// Runs one round. `last_decided` maps virtual node ids to the time of their
/// latest decision (for the cooldown).
pub fn run_round(
    view: &ClusterView,
    now_ms: i64,
    last_decided: &HashMap<NodeId, i64>,
    cfg: &ControllerConfig,
) -> RoundOutcome {
    let mut out = RoundOutcome::default();
    let mut view = view.clone();
    let mut heap = BinaryHeap::new();
    for (vi, v) in view.virt.iter().enumerate() {
        let Some(at) = v.placement else { continue };
        let draining = view.phys[at].state == PhysicalState::Draining;
        if v.pinned.is_some() && !draining {
            continue;
        }
        out.evaluated += 1;
        if let Some(t) = last_decided.get(&v.id)
            && now_ms - t < cfg.cooldown_ms
            && !draining
        {
            out.skipped_cooldown += 1;
            continue;
        }
        if let Some((priority, _)) = evaluate(&view, vi, cfg) {
            heap.push(Candidate { priority, virt: vi });
        }
    }
    while let Some(c) = heap.pop() {
        // Re-score against the loads left by the moves already taken.
        let Some((priority, prop)) = evaluate(&view, c.virt, cfg) else { continue };
        if let Some(next) = heap.peek()
            && priority < c.priority
            && priority < next.priority
        {
            heap.push(Candidate { priority, virt: c.virt });
            continue;
        }
        if out.proposals.len() >= cfg.max_decisions_per_round {
            out.skipped_budget += 1 + heap.len();
            break;
        }
        apply_move(&mut view, prop.virt, prop.to);
        out.proposals.push(prop);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PhysicalNode, Resources, Topology, VirtualNode};
    use crate::placement::affinity::ObservedUsage;

    fn id(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    fn topo(phys: &[(&str, f64)], virt: &[(&str, f64, &str)]) -> Topology {
        let mut t = Topology::default();
        for (p, cpu) in phys {
            t.physical.insert(
                id(p),
                PhysicalNode {
                    id: id(p),
                    capacity: Resources { cpu_cores: *cpu, memory_bytes: 0.0, network_bps: 0.0 },
                    labels: Default::default(),
                    state: PhysicalState::Active,
                },
            );
        }
        for (v, cpu, at) in virt {
            t.virtual_nodes.insert(
                id(v),
                VirtualNode {
                    id: id(v),
                    requested: Resources { cpu_cores: *cpu, ..Default::default() },
                    state_size_bytes: 0,
                    group: None,
                    pinned: None,
                    anti_affinity_group: None,
                    placement: Some(id(at)),
                },
            );
        }
        t
    }

    #[test]
    fn overloaded_node_sheds_load_without_overfilling_the_target() {
        let t = topo(
            &[("hot", 10.0), ("cold", 10.0)],
            &[("a", 3.0, "hot"), ("b", 3.0, "hot"), ("c", 3.0, "hot"), ("d", 0.5, "cold")],
        );
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let out = run_round(&view, 0, &HashMap::new(), &ControllerConfig::default());
        assert!(!out.proposals.is_empty());
        // After the moves, no node above the 90% limit and loads are balanced-ish.
        let mut v = view.clone();
        for p in &out.proposals {
            assert_eq!(view.phys[p.to].id.as_str(), "cold");
            assert!(p.gain() > 0.1);
            apply_move(&mut v, p.virt, p.to);
        }
        for p in &v.phys {
            assert!(p.load.cpu_cores <= 9.0 + 1e-9, "{} overfilled: {}", p.id, p.load.cpu_cores);
        }
        // Once balanced, a second round proposes nothing (hysteresis).
        let again = run_round(&v, 0, &HashMap::new(), &ControllerConfig::default());
        assert!(again.proposals.is_empty(), "{:?}", again.proposals.iter().map(|p| &p.reason).collect::<Vec<_>>());
    }

    #[test]
    fn cooldown_budget_and_draining() {
        let big = topo(
            &[("hot", 20.0), ("cold", 20.0)],
            &[
                ("a", 3.0, "hot"),
                ("b", 3.0, "hot"),
                ("c", 3.0, "hot"),
                ("d", 3.0, "hot"),
                ("e", 3.0, "hot"),
                ("f", 3.0, "hot"),
            ],
        );
        let view = ClusterView::build(&big, &ObservedUsage::default());
        let cfg = ControllerConfig { max_decisions_per_round: 1, ..Default::default() };
        let out = run_round(&view, 0, &HashMap::new(), &cfg);
        assert_eq!(out.proposals.len(), 1);
        assert!(out.skipped_budget >= 1, "the others still want to move");
        let t = topo(&[("hot", 10.0), ("cold", 10.0)], &[("a", 3.0, "hot"), ("b", 3.0, "hot"), ("c", 3.0, "hot")]);
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let cooling: HashMap<_, _> = [(id("a"), 0), (id("b"), 0), (id("c"), 0)].into();
        let out = run_round(&view, 1000, &cooling, &ControllerConfig::default());
        assert!(out.proposals.is_empty());
        assert_eq!(out.skipped_cooldown, 3);
        let mut t2 = t.clone();
        t2.physical.get_mut("hot").unwrap().state = PhysicalState::Draining;
        let view = ClusterView::build(&t2, &ObservedUsage::default());
        let out = run_round(&view, 1000, &cooling, &ControllerConfig::default());
        // Draining overrides the cooldown; only capacity limits what moves (3 x 3 cores > 9).
        assert_eq!(out.proposals.len(), 3);
        assert!(out.proposals.iter().all(|p| p.kind == ProposalKind::Evacuation));
    }
}
