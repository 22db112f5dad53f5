//! Domain types to wire types.

use swarm_proto::v1 as pb;

pub use swarm_client::wire::{components_json, decision_kind, decision_kind_name, phase, phase_from_wire};
use swarm_core::decision::{Decision, ScoreSnapshot};
use swarm_core::domain::{PhysicalNode, PhysicalState, Resources, VirtualNode};
use swarm_core::outcome::{Side, Standing, Verdict};
use swarm_core::placement::affinity::{Components, Score, Weights};
use swarm_core::reconfig::Objective;
use swarm_core::reconfig::record::PlannedMove;

use crate::state::{AffinityMatrix, PlanSummary, ReconfigProgress, RoundReport};

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

/// Affinity components to the wire.
pub fn components(c: &Components) -> pb::AffinityComponents {
    pb::AffinityComponents {
        cpu_headroom: c.cpu_headroom,
        memory_headroom: c.memory_headroom,
        network_headroom: c.network_headroom,
        current_load: c.current_load,
        history: c.history,
        locality: c.locality,
        forecast_headroom: c.forecast_headroom,
    }
}

/// An affinity score to the wire.
pub fn score(s: &Score) -> pb::AffinityScore {
    score_snapshot(&s.into())
}

/// The cost function's figures.
pub fn cost(c: &swarm_core::placement::cost::CostEstimate) -> pb::MigrationCost {
    pb::MigrationCost {
        transfer_seconds: c.transfer_seconds,
        overhead_seconds: c.overhead_seconds,
        benefit: c.benefit,
        cost: c.cost,
    }
}

/// One assessed move.
pub fn assessment(a: &swarm_core::placement::assess::Assessment) -> pb::MoveAssessment {
    use swarm_core::placement::assess::Verdict;
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

/// A score as decided on, to the wire.
pub fn score_snapshot(s: &ScoreSnapshot) -> pb::AffinityScore {
    let c = &s.components;
    pb::AffinityScore {
        score: s.score,
        components: Some(components(c)),
        feasible: s.infeasible.is_none(),
        infeasible_reason: s.infeasible.clone().unwrap_or_default(),
    }
}

/// A decision to the wire.
pub fn decision(d: &Decision) -> pb::Decision {
    pb::Decision {
        sequence: d.sequence,
        round_id: d.round_id,
        decided_at_ms: d.decided_at_ms,
        virtual_node_id: d.virt.to_string(),
        from_node_id: d.from.to_string(),
        to_node_id: d.to.to_string(),
        from_score: d.from_score.as_ref().map(score_snapshot),
        to_score: d.to_score.as_ref().map(score_snapshot),
        gain: d.gain,
        reason: d.reason.clone(),
        kind: decision_kind(d.kind) as i32,
        cost: d.cost.as_ref().map(cost),
        expected_overload_at_ms: d.expected_overload_at_ms.unwrap_or(0),
        outcome: None,
        reverses_sequence: d.reverses.unwrap_or(0),
    }
}

/// The cost function's figures to the wire; `enabled`: learned ones are used.
pub fn cost_figures(c: &swarm_core::placement::calibration::Calibration, enabled: bool) -> Vec<pb::CostFigure> {
    c.named()
        .into_iter()
        .map(|(name, e)| pb::CostFigure {
            name: name.into(),
            configured: e.configured,
            learned: e.learned,
            samples: e.samples as u32,
            bounded: e.bounded,
            in_use: if enabled { e.value() } else { e.configured },
        })
        .collect()
}

/// A verdict to the wire.
pub fn verdict(v: Verdict) -> pb::Verdict {
    match v {
        Verdict::Helped => pb::Verdict::Helped,
        Verdict::Neutral => pb::Verdict::Neutral,
        Verdict::Hurt => pb::Verdict::Hurt,
    }
}

fn outcome_window(s: &Side) -> pb::OutcomeWindow {
    pb::OutcomeWindow {
        source_utilisation: s.source_utilisation,
        target_utilisation: s.target_utilisation,
        source_peak: s.source_peak,
        target_peak: s.target_peak,
        latency_ms: s.latency_ms,
        throughput_rps: s.throughput_rps,
    }
}

/// Where a decision's outcome stands, to the wire; `window_ms` is the
/// configured window (a measured outcome carries its own).
pub fn outcome(s: &Standing, window_ms: i64) -> pb::DecisionOutcome {
    match s {
        Standing::Measured(o) => pb::DecisionOutcome {
            verdict: verdict(o.verdict) as i32,
            summary: o.summary.clone(),
            cutover_at_ms: o.cutover_at_ms,
            window_ms: o.window_ms,
            measured_at_ms: o.measured_at_ms,
            before: Some(outcome_window(&o.before)),
            after: Some(outcome_window(&o.after)),
            source_peak_without_move: o.source_peak_without_move,
            overload_prevented: o.overload_prevented,
            predicted_relief: o.predicted_relief,
            realised_relief: o.realised_relief,
        },
        Standing::Pending(cutover) => pb::DecisionOutcome {
            verdict: pb::Verdict::Pending as i32,
            summary: s.summary().into(),
            cutover_at_ms: cutover.unwrap_or(0),
            window_ms,
            ..Default::default()
        },
        Standing::NotMoved => pb::DecisionOutcome {
            verdict: pb::Verdict::NotMoved as i32,
            summary: s.summary().into(),
            window_ms,
            ..Default::default()
        },
    }
}

/// An instruction to the wire.
pub fn instruction(i: swarm_core::migration::machine::Instruction) -> pb::Instruction {
    use swarm_core::migration::machine::Instruction::*;
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
pub fn migration(m: &swarm_core::migration::machine::Migration, with_history: bool) -> pb::Migration {
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
pub fn heatmap(h: &swarm_core::placement::heatmap::Heatmap) -> pb::GetHeatmapResponse {
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

/// A planned move to the wire.
pub fn planned_move(m: &PlannedMove) -> pb::PlannedMove {
    pb::PlannedMove {
        virtual_node_id: m.virt.clone(),
        from_node_id: m.from.clone(),
        to_node_id: m.to.clone(),
        bytes: m.bytes,
        reason: m.reason.clone(),
        estimated_seconds: m.seconds,
    }
}

/// A reconfiguration plan to the wire.
pub fn plan(p: &PlanSummary) -> pb::PlanResponse {
    pb::PlanResponse {
        plan_id: p.plan_id.clone(),
        moves: p.moves.iter().map(planned_move).collect(),
        total_bytes: p.total_bytes,
        estimated_seconds: p.estimated_seconds,
        placements: p
            .placements
            .iter()
            .map(|(v, to)| pb::PlannedMove {
                virtual_node_id: v.clone(),
                to_node_id: to.clone(),
                reason: "new virtual node".into(),
                ..Default::default()
            })
            .collect(),
        lower_bound: p.lower_bound,
        optimal: p.optimal,
        method: p.method.clone(),
        objective: match p.objective {
            Objective::Moves => pb::PlanObjective::FewestMoves,
            Objective::Bytes => pb::PlanObjective::FewestBytes,
        } as i32,
        expires_at_ms: p.expires_at_ms,
    }
}

/// An applied plan's progress to the wire.
pub fn reconfiguration(p: &ReconfigProgress) -> pb::GetReconfigurationResponse {
    let rec = &p.reconfiguration;
    let mut out = pb::GetReconfigurationResponse {
        total_moves: rec.moves.len() as u32,
        state: rec.state.name().into(),
        removals_pending: p.removals_pending.clone(),
        ..Default::default()
    };
    for (m, mig) in rec.moves.iter().zip(&p.migrations) {
        match mig.as_ref().map(|x| x.1) {
            Some(swarm_core::migration::machine::Phase::Completed) => out.completed_moves += 1,
            Some(ph) if ph.is_terminal() => out.failed_moves += 1,
            Some(_) => out.in_flight_moves += 1,
            None => out.pending_moves += 1,
        }
        out.moves.push(pb::ReconfigurationMove {
            r#move: Some(planned_move(m)),
            migration_id: mig.as_ref().map(|x| x.0.clone()).unwrap_or_default(),
            phase: mig.as_ref().map_or(pb::MigrationPhase::Unspecified, |x| phase(x.1)) as i32,
        });
    }
    out
}

/// A round's report to the wire.
pub fn round(r: &RoundReport) -> pb::RunRoundResponse {
    pb::RunRoundResponse {
        round_id: r.round_id,
        decisions: r.decisions.iter().map(decision).collect(),
        virtual_nodes_evaluated: r.evaluated as u32,
        skipped_cooldown: r.skipped_cooldown as u32,
        skipped_budget: r.skipped_budget as u32,
        duration_ms: r.duration_ms,
        dry_run: r.dry_run,
    }
}

/// An affinity matrix to the wire.
pub fn affinity(m: &AffinityMatrix) -> pb::GetAffinityResponse {
    pb::GetAffinityResponse {
        physical_node_ids: m.physical.iter().map(|p| p.to_string()).collect(),
        rows: m
            .rows
            .iter()
            .map(|r| pb::AffinityRow {
                virtual_node_id: r.virt.to_string(),
                current_node_id: r.current.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                scores: r.scores.iter().map(score).collect(),
                moves: r.moves.iter().map(assessment).collect(),
                would_move_to: r.would_move_to.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            })
            .collect(),
        weights: weights(&m.weights),
        computed_at_ms: m.computed_at_ms,
        cost_figures: Vec::new(),
    }
}

/// The risk-aware rule's settings as the API reports them.
pub fn tunables(t: &swarm_core::placement::tuning::Tunables) -> pb::RiskTunables {
    pb::RiskTunables {
        window_seconds: t.window_ms as f64 / 1000.0,
        confidence_z: t.confidence_z,
        interval_seconds: t.interval_ms as f64 / 1000.0,
        focus: t.focus,
    }
}

/// A self-tuning run as the API reports it.
pub fn tuning_run(t: &swarm_core::placement::tuning::Tuning) -> pb::TuningRun {
    let price = t.migration_price;
    pb::TuningRun {
        at_ms: t.at_ms,
        verdict: t.verdict.name().to_owned(),
        reason: t.reason.clone(),
        before: Some(tunables(&t.before)),
        after: Some(tunables(&t.after)),
        choose_steps: t.choose_steps as u32,
        confirm_steps: t.confirm_steps as u32,
        physical_nodes: t.hosts as u32,
        virtual_nodes: t.virtual_nodes as u32,
        migration_price: price,
        rows: t
            .rows
            .iter()
            .map(|r| pb::TuningRow {
                settings: Some(tunables(&r.tunables)),
                choose_overloads: r.choose.overloads,
                choose_migrations: r.choose.migrations,
                confirm_overloads: r.confirm.overloads,
                confirm_migrations: r.confirm.migrations,
                choose_objective: r.choose.objective(price),
                confirm_objective: r.confirm.objective(price),
            })
            .collect(),
    }
}

/// `Placement.GetPolicy`'s answer.
pub fn policy(p: &crate::state::PolicySnapshot) -> pb::GetPolicyResponse {
    pb::GetPolicyResponse {
        risk_enabled: p.risk_enabled,
        self_tuning: p.self_tuning,
        current: Some(tunables(&p.current)),
        configured: Some(tunables(&p.configured)),
        lower_bounds: Some(tunables(&p.bounds.0)),
        upper_bounds: Some(tunables(&p.bounds.1)),
        period_seconds: p.period_ms as f64 / 1000.0,
        last_run: p.last_run.as_ref().map(tuning_run),
        changes: p.changes.iter().map(tuning_run).collect(),
    }
}
