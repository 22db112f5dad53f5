//! Domain types to wire types.

use swarm_proto::v1 as pb;

use crate::domain::{PhysicalNode, PhysicalState, Resources, VirtualNode};
use crate::placement::affinity::{Score, Weights};
use crate::placement::controller::{Proposal, ProposalKind};

/// Resources to the wire (bytes are rounded down).
pub fn resources(r: &Resources) -> pb::Resources {
    pb::Resources {
        cpu_cores: r.cpu_cores,
        memory_bytes: r.memory_bytes as u64,
        network_bytes_per_sec: r.network_bps as u64,
    }
}

/// A physical node to the wire.
pub fn physical(n: &PhysicalNode) -> pb::PhysicalNode {
    pb::PhysicalNode {
        id: n.id.to_string(),
        capacity: Some(resources(&n.capacity)),
        labels: n.labels.clone().into_iter().collect(),
        state: match n.state {
            PhysicalState::Active => pb::PhysicalNodeState::Active,
            PhysicalState::Draining => pb::PhysicalNodeState::Draining,
            PhysicalState::Removed => pb::PhysicalNodeState::Removed,
        } as i32,
    }
}

/// A virtual node to the wire.
pub fn virtual_node(n: &VirtualNode) -> pb::VirtualNode {
    pb::VirtualNode {
        id: n.id.to_string(),
        requested: Some(resources(&n.requested)),
        state_size_bytes: n.state_size_bytes,
        group: n.group.clone().unwrap_or_default(),
        constraints: Some(pb::Constraints {
            pinned_node: n.pinned.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            anti_affinity_group: n.anti_affinity_group.clone().unwrap_or_default(),
        }),
        placement: n.placement.as_ref().map(|p| p.to_string()).unwrap_or_default(),
    }
}

/// An affinity score to the wire.
pub fn score(s: &Score) -> pb::AffinityScore {
    let c = &s.components;
    pb::AffinityScore {
        score: s.score,
        components: Some(pb::AffinityComponents {
            cpu_headroom: c.cpu_headroom,
            memory_headroom: c.memory_headroom,
            network_headroom: c.network_headroom,
            current_load: c.current_load,
            history: c.history,
            locality: c.locality,
            forecast_headroom: c.forecast_headroom,
        }),
        feasible: s.infeasible.is_none(),
        infeasible_reason: s.infeasible.as_ref().map(|r| r.to_string()).unwrap_or_default(),
    }
}

/// An affinity breakdown as JSON (the dashboard's API and `swarmctl
/// affinity --output json`); absent components are `null`.
pub fn components_json(c: &Option<pb::AffinityComponents>) -> serde_json::Value {
    let c = c.unwrap_or_default();
    serde_json::json!({
        "cpu_headroom": c.cpu_headroom, "memory_headroom": c.memory_headroom,
        "network_headroom": c.network_headroom, "current_load": c.current_load,
        "history": c.history, "locality": c.locality, "forecast_headroom": c.forecast_headroom,
    })
}

/// A decision kind's short name (`micro-migration`, `predictive`, ...).
pub fn decision_kind_name(k: pb::DecisionKind) -> &'static str {
    match k {
        pb::DecisionKind::MicroMigration => "micro-migration",
        pb::DecisionKind::Evacuation => "evacuation",
        pb::DecisionKind::Predictive => "predictive",
        pb::DecisionKind::Overload => "overload",
        pb::DecisionKind::Reconfiguration => "reconfiguration",
        pb::DecisionKind::Unspecified => "unspecified",
    }
}

/// The cost function's figures.
pub fn cost(c: &crate::placement::cost::CostEstimate) -> pb::MigrationCost {
    pb::MigrationCost {
        transfer_seconds: c.transfer_seconds,
        overhead_seconds: c.overhead_seconds,
        benefit: c.benefit,
        cost: c.cost,
    }
}

/// One assessed move.
pub fn assessment(a: &crate::placement::assess::Assessment) -> pb::MoveAssessment {
    use crate::placement::assess::Verdict;
    let verdict = match a.verdict {
        Verdict::Current => pb::MoveVerdict::Current,
        Verdict::Unplaced => pb::MoveVerdict::Unplaced,
        Verdict::Infeasible(_) => pb::MoveVerdict::Infeasible,
        Verdict::Migrating => pb::MoveVerdict::Migrating,
        Verdict::Cooling { .. } => pb::MoveVerdict::Cooling,
        Verdict::Busy { .. } => pb::MoveVerdict::Busy,
        Verdict::BelowThreshold { .. } => pb::MoveVerdict::BelowThreshold,
        Verdict::DoesNotPay { .. } => pb::MoveVerdict::DoesNotPay,
        Verdict::Pays(_) => pb::MoveVerdict::Pays,
    };
    pb::MoveAssessment {
        verdict: verdict as i32,
        explanation: a.explanation.clone(),
        cost: a.cost.as_ref().map(cost),
        gain: a.gain,
    }
}

/// The weights as a name → weight map.
pub fn weights(w: &Weights) -> std::collections::HashMap<String, f64> {
    w.named().into_iter().map(|(n, w)| (n.to_owned(), w)).collect()
}

/// A proposal to an (unsequenced) decision; `step_ms` turns forecast steps into time.
pub fn decision(
    p: &Proposal,
    view: &crate::placement::affinity::ClusterView,
    round_id: u64,
    now_ms: i64,
    step_ms: i64,
) -> pb::Decision {
    pb::Decision {
        sequence: 0,
        round_id,
        decided_at_ms: now_ms,
        virtual_node_id: view.virt[p.virt].id.to_string(),
        from_node_id: view.phys[p.from].id.to_string(),
        to_node_id: view.phys[p.to].id.to_string(),
        from_score: Some(score(&p.from_score)),
        to_score: Some(score(&p.to_score)),
        gain: p.gain(),
        reason: p.reason.clone(),
        kind: match p.kind {
            ProposalKind::MicroMigration => pb::DecisionKind::MicroMigration,
            ProposalKind::Evacuation => pb::DecisionKind::Evacuation,
            ProposalKind::Predictive => pb::DecisionKind::Predictive,
            ProposalKind::Overload => pb::DecisionKind::Overload,
        } as i32,
        cost: Some(cost(&p.cost)),
        expected_overload_at_ms: p.expected_overload_step.map(|h| now_ms + h as i64 * step_ms).unwrap_or(0),
    }
}

/// A migration phase to the wire.
pub fn phase(p: crate::migration::machine::Phase) -> pb::MigrationPhase {
    use crate::migration::machine::Phase::*;
    match p {
        Proposed => pb::MigrationPhase::Proposed,
        Accepted => pb::MigrationPhase::Accepted,
        ShadowStarting => pb::MigrationPhase::ShadowStarting,
        Shadowing => pb::MigrationPhase::Shadowing,
        Verified => pb::MigrationPhase::Verified,
        CuttingOver => pb::MigrationPhase::CuttingOver,
        Completed => pb::MigrationPhase::Completed,
        Rejected => pb::MigrationPhase::Rejected,
        TimedOut => pb::MigrationPhase::TimedOut,
        ShadowUnhealthy => pb::MigrationPhase::ShadowUnhealthy,
        RolledBack => pb::MigrationPhase::RolledBack,
        Aborted => pb::MigrationPhase::Aborted,
    }
}

/// A wire phase to the domain; `None` for unspecified or unknown values.
pub fn phase_from_wire(p: i32) -> Option<crate::migration::machine::Phase> {
    use crate::migration::machine::Phase::*;
    Some(match pb::MigrationPhase::try_from(p).ok()? {
        pb::MigrationPhase::Unspecified => return None,
        pb::MigrationPhase::Proposed => Proposed,
        pb::MigrationPhase::Accepted => Accepted,
        pb::MigrationPhase::ShadowStarting => ShadowStarting,
        pb::MigrationPhase::Shadowing => Shadowing,
        pb::MigrationPhase::Verified => Verified,
        pb::MigrationPhase::CuttingOver => CuttingOver,
        pb::MigrationPhase::Completed => Completed,
        pb::MigrationPhase::Rejected => Rejected,
        pb::MigrationPhase::TimedOut => TimedOut,
        pb::MigrationPhase::ShadowUnhealthy => ShadowUnhealthy,
        pb::MigrationPhase::RolledBack => RolledBack,
        pb::MigrationPhase::Aborted => Aborted,
    })
}

/// An instruction to the wire.
pub fn instruction(i: crate::migration::machine::Instruction) -> pb::Instruction {
    use crate::migration::machine::Instruction::*;
    match i {
        // Not accepted yet: the orchestrator has nothing to do.
        Wait => pb::Instruction::Unspecified,
        StartShadow => pb::Instruction::StartShadow,
        KeepShadowing => pb::Instruction::KeepShadowing,
        CutOver => pb::Instruction::CutOver,
        RollBack => pb::Instruction::RollBack,
        Done => pb::Instruction::Done,
    }
}

/// A migration to the wire, with or without its history.
pub fn migration(m: &crate::migration::machine::Migration, with_history: bool) -> pb::Migration {
    pb::Migration {
        id: m.id.clone(),
        decision_sequence: m.decision_sequence,
        virtual_node_id: m.virt.clone(),
        from_node_id: m.from.clone(),
        to_node_id: m.to.clone(),
        phase: phase(m.phase) as i32,
        epoch: m.epoch,
        history: if with_history {
            m.history
                .iter()
                .map(|t| pb::MigrationTransition {
                    phase: phase(t.phase) as i32,
                    at_ms: t.at_ms,
                    cause: t.cause.clone(),
                })
                .collect()
        } else {
            Vec::new()
        },
        orchestrator_id: m.owner.clone().unwrap_or_default(),
        instruction: instruction(m.instruction()) as i32,
        phase_since_ms: m.phase_since_ms(),
        reserves_target: m.reserves_target(),
    }
}

/// The heatmap to the wire.
pub fn heatmap(h: &crate::placement::heatmap::Heatmap) -> pb::GetHeatmapResponse {
    let col = |c: Option<usize>| c.map_or(-1, |c| c as i32);
    pb::GetHeatmapResponse {
        group_by: format!("{:?}", h.group_by).to_lowercase(),
        columns: h
            .columns
            .iter()
            .map(|c| pb::HeatmapColumn {
                label: c.label.clone(),
                zone: c.zone.clone().unwrap_or_default(),
                members: c.members.clone(),
                draining: c.draining,
            })
            .collect(),
        rows: h
            .rows
            .iter()
            .map(|r| pb::HeatmapRow {
                virtual_node_id: r.id.clone(),
                current: col(r.current),
                best: col(r.best),
                gain: r.gain,
                cells: r.cells.iter().map(|c| c.unwrap_or(f64::NAN)).collect(),
                migration_to: col(r.migration.as_ref().map(|m| m.to)),
                migration_phase: r.migration.as_ref().map(|m| m.phase.clone()).unwrap_or_default(),
            })
            .collect(),
        virtual_nodes: h.virtual_nodes as u32,
    }
}
