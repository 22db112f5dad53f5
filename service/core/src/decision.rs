//! A decision: what the controller (or a reconfiguration plan) decided to
//! move, with the numbers it decided on. The domain form that the decision
//! log sequences, the store persists (in records of its own) and the gRPC
//! edge turns into `swarm.v1.Decision`.

use crate::domain::NodeId;
use crate::placement::affinity::{ClusterView, Components, Score};
use crate::placement::controller::{Proposal, ProposalKind};
use crate::placement::cost::CostEstimate;

/// Why a move was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    /// The target's affinity beats the current node's by more than the threshold.
    MicroMigration,
    /// The current node is draining.
    Evacuation,
    /// The current node's forecast crosses the overload threshold ahead.
    Predictive,
    /// The current node is overloaded now.
    Overload,
    /// A move of an applied reconfiguration plan.
    Reconfiguration,
    /// The virtual nodes on the current node have overloaded it together
    /// in the recent history (the risk-aware rule).
    Risk,
    /// An earlier move of this virtual node hurt its service (its measured
    /// outcome): it goes back where it came from.
    MoveBack,
}

impl DecisionKind {
    /// Every kind.
    pub const ALL: [DecisionKind; 7] = [
        DecisionKind::MicroMigration,
        DecisionKind::Evacuation,
        DecisionKind::Predictive,
        DecisionKind::Overload,
        DecisionKind::Reconfiguration,
        DecisionKind::Risk,
        DecisionKind::MoveBack,
    ];

    /// Short name (`micro-migration`, `predictive`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DecisionKind::MicroMigration => "micro-migration",
            DecisionKind::Evacuation => "evacuation",
            DecisionKind::Predictive => "predictive",
            DecisionKind::Overload => "overload",
            DecisionKind::Reconfiguration => "reconfiguration",
            DecisionKind::Risk => "risk",
            DecisionKind::MoveBack => "move-back",
        }
    }
}

impl From<ProposalKind> for DecisionKind {
    fn from(k: ProposalKind) -> Self {
        match k {
            ProposalKind::MicroMigration => DecisionKind::MicroMigration,
            ProposalKind::Evacuation => DecisionKind::Evacuation,
            ProposalKind::Predictive => DecisionKind::Predictive,
            ProposalKind::Overload => DecisionKind::Overload,
            ProposalKind::Risk => DecisionKind::Risk,
            ProposalKind::MoveBack => DecisionKind::MoveBack,
        }
    }
}

/// An affinity score as decided on: the value, its parts, and why the pair
/// was infeasible (as text: the decision keeps what was said, not the rule).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreSnapshot {
    /// Weighted score in [0, 1].
    pub score: f64,
    /// The components that made it.
    pub components: Components,
    /// Why the virtual node may not be there; `None` when it may.
    pub infeasible: Option<String>,
}

impl From<&Score> for ScoreSnapshot {
    fn from(s: &Score) -> Self {
        ScoreSnapshot {
            score: s.score,
            components: s.components,
            infeasible: s.infeasible.as_ref().map(|r| r.to_string()),
        }
    }
}

/// One decision. `sequence` and `round_id` are 0 until the log assigns them.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Gap-free, increasing from 1.
    pub sequence: u64,
    /// The round that made it.
    pub round_id: u64,
    /// When, ms since the epoch.
    pub decided_at_ms: i64,
    /// The virtual node to move.
    pub virt: NodeId,
    /// Where it runs.
    pub from: NodeId,
    /// Where it should run.
    pub to: NodeId,
    /// Affinity where it runs.
    pub from_score: Option<ScoreSnapshot>,
    /// Affinity on the target.
    pub to_score: Option<ScoreSnapshot>,
    /// Affinity gain (to − from).
    pub gain: f64,
    /// For people.
    pub reason: String,
    /// Why.
    pub kind: DecisionKind,
    /// The cost function's figures, when a cost model priced it.
    pub cost: Option<CostEstimate>,
    /// For relief moves: when the overload was expected, ms since the epoch.
    pub expected_overload_at_ms: Option<i64>,
    /// For a move back: the decision whose move it reverses.
    pub reverses: Option<u64>,
}

impl Decision {
    /// An unsequenced decision from a round's proposal; `step_ms` turns
    /// forecast steps into time.
    pub fn from_proposal(p: &Proposal, view: &ClusterView, round_id: u64, now_ms: i64, step_ms: i64) -> Decision {
        Decision {
            sequence: 0,
            round_id,
            decided_at_ms: now_ms,
            virt: view.virt[p.virt].id.clone(),
            from: view.phys[p.from].id.clone(),
            to: view.phys[p.to].id.clone(),
            from_score: Some((&p.from_score).into()),
            to_score: Some((&p.to_score).into()),
            gain: p.gain(),
            reason: p.reason.clone(),
            kind: p.kind.into(),
            cost: Some(p.cost),
            expected_overload_at_ms: p.expected_overload_step.map(|h| now_ms + h as i64 * step_ms),
            reverses: None,
        }
    }
}
