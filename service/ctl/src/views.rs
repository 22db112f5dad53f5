//! One serializable view per tabular result. `--output json` is the view
//! serialized; `--output table` and `csv` are its cells. Both come from the
//! same value, so the JSON and the table of a command cannot disagree about
//! what it returned.

use std::collections::HashMap;

use serde::Serialize;
use swarm_proto::v1 as pb;

use super::output::{comp, gib, json, pct, table};
use super::{CtlError, Output};

/// A row of a command's result: its JSON form and its table cells.
pub(super) trait TableView: Serialize {
    /// Column names of the table (and of the CSV header).
    const HEADER: &'static [&'static str];
    /// The row's cells, in `HEADER`'s order.
    fn cells(&self) -> Vec<String>;
}

/// Prints `rows` as `out` says: a JSON array of the views, or their table.
pub(super) fn emit<V: TableView>(out: Output, rows: &[V]) -> Result<(), CtlError> {
    if out == Output::Json {
        return json(&serde_json::to_value(rows).map_err(std::io::Error::other)?);
    }
    table(out, V::HEADER, &rows.iter().map(TableView::cells).collect::<Vec<_>>())
}

fn state_name(s: i32) -> &'static str {
    match pb::PhysicalNodeState::try_from(s) {
        Ok(pb::PhysicalNodeState::Draining) => "draining",
        Ok(pb::PhysicalNodeState::Removed) => "removed",
        _ => "active",
    }
}

/// `nodes list`: a physical node with what runs on it.
#[derive(Serialize)]
pub(super) struct PhysicalNodeView {
    id: String,
    state: &'static str,
    cpu_cores: f64,
    memory_bytes: u64,
    network_bytes_per_sec: u64,
    labels: HashMap<String, String>,
    virtual_nodes: usize,
    requested_cpu_cores: f64,
}

impl PhysicalNodeView {
    /// Every physical node, with the count and requested cores of the virtual nodes placed on it.
    pub(super) fn all(nodes: &[pb::PhysicalNode], vnodes: &[pb::VirtualNode]) -> Vec<PhysicalNodeView> {
        let mut count: HashMap<&str, (usize, f64)> = HashMap::new();
        for v in vnodes {
            let e = count.entry(v.placement.as_str()).or_default();
            e.0 += 1;
            e.1 += v.requested.as_ref().map_or(0.0, |r| r.cpu_cores);
        }
        nodes
            .iter()
            .map(|n| {
                let c = n.capacity.unwrap_or_default();
                let (vn, req) = count.get(n.id.as_str()).copied().unwrap_or_default();
                PhysicalNodeView {
                    id: n.id.clone(),
                    state: state_name(n.state),
                    cpu_cores: c.cpu_cores,
                    memory_bytes: c.memory_bytes,
                    network_bytes_per_sec: c.network_bytes_per_sec,
                    labels: n.labels.clone(),
                    virtual_nodes: vn,
                    requested_cpu_cores: req,
                }
            })
            .collect()
    }
}

impl TableView for PhysicalNodeView {
    const HEADER: &'static [&'static str] = &["ID", "STATE", "ZONE", "RACK", "CORES", "MEM_GIB", "VNODES", "REQ_CORES"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.state.into(),
            swarm_core::locality::zone_of(&self.labels).unwrap_or_default().to_owned(),
            swarm_core::locality::rack_of(&self.labels).unwrap_or_default().to_owned(),
            format!("{}", self.cpu_cores),
            gib(self.memory_bytes),
            self.virtual_nodes.to_string(),
            format!("{}", self.requested_cpu_cores),
        ]
    }
}

/// `nodes list --virtual`.
#[derive(Serialize)]
pub(super) struct VirtualNodeView {
    id: String,
    placement: String,
    cpu_cores: f64,
    memory_bytes: u64,
    state_size_bytes: u64,
    group: String,
    pinned_node: String,
    anti_affinity_group: String,
}

impl From<&pb::VirtualNode> for VirtualNodeView {
    fn from(v: &pb::VirtualNode) -> Self {
        let r = v.requested.unwrap_or_default();
        let c = v.constraints.clone().unwrap_or_default();
        VirtualNodeView {
            id: v.id.clone(),
            placement: v.placement.clone(),
            cpu_cores: r.cpu_cores,
            memory_bytes: r.memory_bytes,
            state_size_bytes: v.state_size_bytes,
            group: v.group.clone(),
            pinned_node: c.pinned_node,
            anti_affinity_group: c.anti_affinity_group,
        }
    }
}

impl TableView for VirtualNodeView {
    const HEADER: &'static [&'static str] = &["ID", "ON", "CORES", "MEM_GIB", "STATE_GIB", "GROUP"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            if self.placement.is_empty() { "-".into() } else { self.placement.clone() },
            format!("{}", self.cpu_cores),
            gib(self.memory_bytes),
            gib(self.state_size_bytes),
            self.group.clone(),
        ]
    }
}

/// The cost function's figures of a decision.
#[derive(Serialize)]
struct CostView {
    transfer_seconds: f64,
    overhead_seconds: f64,
    benefit: f64,
    cost: f64,
}

/// Means over one outcome window.
#[derive(Serialize)]
struct OutcomeWindowView {
    source_utilisation: Option<f64>,
    target_utilisation: Option<f64>,
    source_peak: Option<f64>,
    target_peak: Option<f64>,
    latency_ms: Option<f64>,
    throughput_rps: Option<f64>,
}

impl From<&pb::OutcomeWindow> for OutcomeWindowView {
    fn from(w: &pb::OutcomeWindow) -> Self {
        OutcomeWindowView {
            source_utilisation: w.source_utilisation,
            target_utilisation: w.target_utilisation,
            source_peak: w.source_peak,
            target_peak: w.target_peak,
            latency_ms: w.latency_ms,
            throughput_rps: w.throughput_rps,
        }
    }
}

/// What a decision's move achieved (README "Decision outcomes").
#[derive(Serialize)]
pub(super) struct OutcomeView {
    pub(super) verdict: &'static str,
    pub(super) summary: String,
    pub(super) cutover_at_ms: Option<i64>,
    pub(super) window_ms: i64,
    pub(super) measured_at_ms: Option<i64>,
    before: Option<OutcomeWindowView>,
    after: Option<OutcomeWindowView>,
    pub(super) source_peak_without_move: Option<f64>,
    pub(super) overload_prevented: bool,
    pub(super) predicted_relief: Option<f64>,
    pub(super) realised_relief: Option<f64>,
}

impl From<&pb::DecisionOutcome> for OutcomeView {
    fn from(o: &pb::DecisionOutcome) -> Self {
        let at = |ms: i64| (ms != 0).then_some(ms);
        OutcomeView {
            verdict: outcome_verdict_name(o.verdict),
            summary: o.summary.clone(),
            cutover_at_ms: at(o.cutover_at_ms),
            window_ms: o.window_ms,
            measured_at_ms: at(o.measured_at_ms),
            before: o.before.as_ref().map(OutcomeWindowView::from),
            after: o.after.as_ref().map(OutcomeWindowView::from),
            source_peak_without_move: o.source_peak_without_move,
            overload_prevented: o.overload_prevented,
            predicted_relief: o.predicted_relief,
            realised_relief: o.realised_relief,
        }
    }
}

impl OutcomeView {
    /// Before and after, one row per figure, for people.
    pub(super) fn rows(&self) -> Vec<Vec<String>> {
        let (b, a) = (self.before.as_ref(), self.after.as_ref());
        let row = |name: &str, f: &dyn Fn(&OutcomeWindowView) -> String| {
            vec![name.to_owned(), b.map_or("-".into(), f), a.map_or("-".into(), f)]
        };
        vec![
            row("source utilisation (mean)", &|w| pct(w.source_utilisation)),
            row("source utilisation (peak)", &|w| pct(w.source_peak)),
            row("target utilisation (mean)", &|w| pct(w.target_utilisation)),
            row("target utilisation (peak)", &|w| pct(w.target_peak)),
            row("latency ms (mean)", &|w| comp(w.latency_ms)),
            row("throughput rps (mean)", &|w| comp(w.throughput_rps)),
        ]
    }
}

/// A wire outcome verdict's name: `pending`, `helped`, `neutral`, `hurt`, `not moved`.
pub(super) fn outcome_verdict_name(v: i32) -> &'static str {
    match pb::Verdict::try_from(v) {
        Ok(pb::Verdict::Pending) => "pending",
        Ok(pb::Verdict::Helped) => "helped",
        Ok(pb::Verdict::Neutral) => "neutral",
        Ok(pb::Verdict::Hurt) => "hurt",
        Ok(pb::Verdict::NotMoved) => "not moved",
        Ok(pb::Verdict::Unspecified) | Err(_) => "-",
    }
}

/// A decision (`decisions list`, `round`, each line of `decisions watch --output json`).
#[derive(Serialize)]
pub(super) struct DecisionView {
    sequence: u64,
    round_id: u64,
    decided_at_ms: i64,
    virtual_node_id: String,
    from_node_id: String,
    to_node_id: String,
    from_score: Option<f64>,
    to_score: Option<f64>,
    gain: f64,
    kind: &'static str,
    reason: String,
    cost: Option<CostView>,
    expected_overload_at_ms: Option<i64>,
    /// Absent where the server does not say (rounds, watches).
    pub(super) outcome: Option<OutcomeView>,
}

impl From<&pb::Decision> for DecisionView {
    fn from(d: &pb::Decision) -> Self {
        DecisionView {
            sequence: d.sequence,
            round_id: d.round_id,
            decided_at_ms: d.decided_at_ms,
            virtual_node_id: d.virtual_node_id.clone(),
            from_node_id: d.from_node_id.clone(),
            to_node_id: d.to_node_id.clone(),
            from_score: d.from_score.as_ref().map(|s| s.score),
            to_score: d.to_score.as_ref().map(|s| s.score),
            gain: d.gain,
            kind: kind_name(d.kind),
            reason: d.reason.clone(),
            cost: d.cost.as_ref().map(|c| CostView {
                transfer_seconds: c.transfer_seconds,
                overhead_seconds: c.overhead_seconds,
                benefit: c.benefit,
                cost: c.cost,
            }),
            expected_overload_at_ms: (d.expected_overload_at_ms != 0).then_some(d.expected_overload_at_ms),
            outcome: d.outcome.as_ref().map(OutcomeView::from),
        }
    }
}

impl TableView for DecisionView {
    const HEADER: &'static [&'static str] = &["SEQ", "VNODE", "MOVE", "GAIN", "KIND", "VERDICT", "REASON"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.sequence.to_string(),
            self.virtual_node_id.clone(),
            format!("{} -> {}", self.from_node_id, self.to_node_id),
            format!("{:+.2}", self.gain),
            self.kind.into(),
            self.outcome.as_ref().map_or("-", |o| o.verdict).into(),
            self.reason.clone(),
        ]
    }
}

/// A wire decision kind's name.
pub(super) fn kind_name(k: i32) -> &'static str {
    pb::DecisionKind::try_from(k).map_or("unspecified", swarm_client::wire::decision_kind_name)
}

/// A migration phase's name.
pub(super) fn phase_name(p: i32) -> &'static str {
    swarm_client::wire::phase_from_wire(p).map_or("unspecified", |p| p.name())
}

/// A wire instruction's name.
pub(super) fn instruction_name(i: i32) -> &'static str {
    match pb::Instruction::try_from(i) {
        Ok(pb::Instruction::StartShadow) => "start-shadow",
        Ok(pb::Instruction::KeepShadowing) => "keep-shadowing",
        Ok(pb::Instruction::CutOver) => "cut-over",
        Ok(pb::Instruction::RollBack) => "roll-back",
        Ok(pb::Instruction::Done) => "done",
        _ => "wait",
    }
}

/// One transition of a migration.
#[derive(Serialize)]
pub(super) struct TransitionView {
    phase: &'static str,
    at_ms: i64,
    cause: String,
}

/// A migration (`migrations list`, `show`, `abort`).
#[derive(Serialize)]
pub(super) struct MigrationView {
    id: String,
    decision_sequence: u64,
    virtual_node_id: String,
    from_node_id: String,
    to_node_id: String,
    phase: &'static str,
    epoch: u64,
    orchestrator_id: String,
    instruction: &'static str,
    phase_since_ms: i64,
    reserves_target: bool,
    history: Vec<TransitionView>,
}

impl From<&pb::Migration> for MigrationView {
    fn from(m: &pb::Migration) -> Self {
        MigrationView {
            id: m.id.clone(),
            decision_sequence: m.decision_sequence,
            virtual_node_id: m.virtual_node_id.clone(),
            from_node_id: m.from_node_id.clone(),
            to_node_id: m.to_node_id.clone(),
            phase: phase_name(m.phase),
            epoch: m.epoch,
            orchestrator_id: m.orchestrator_id.clone(),
            instruction: instruction_name(m.instruction),
            phase_since_ms: m.phase_since_ms,
            reserves_target: m.reserves_target,
            history: m
                .history
                .iter()
                .map(|t| TransitionView { phase: phase_name(t.phase), at_ms: t.at_ms, cause: t.cause.clone() })
                .collect(),
        }
    }
}

impl TableView for MigrationView {
    const HEADER: &'static [&'static str] = &["ID", "VNODE", "MOVE", "PHASE", "HELD_BY", "NEXT"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.virtual_node_id.clone(),
            format!("{} -> {}", self.from_node_id, self.to_node_id),
            self.phase.into(),
            if self.orchestrator_id.is_empty() {
                "-".into()
            } else {
                format!("{}@{}", self.orchestrator_id, self.epoch)
            },
            self.instruction.into(),
        ]
    }
}

/// The cost function's figures of a move.
#[derive(Serialize, Clone, Copy)]
pub(super) struct MoveCostView {
    pub(super) transfer_seconds: f64,
    pub(super) overhead_seconds: f64,
    pub(super) benefit: f64,
    pub(super) cost: f64,
    net: f64,
}

/// One physical node in `affinity VNODE`'s ranking.
#[derive(Serialize)]
pub(super) struct RankView {
    pub(super) physical_node_id: String,
    pub(super) current: bool,
    pub(super) score: f64,
    feasible: bool,
    infeasible_reason: String,
    #[serde(skip)]
    pub(super) parts: pb::AffinityComponents,
    components: serde_json::Value,
    pub(super) verdict: &'static str,
    pub(super) gain: f64,
    pub(super) explanation: String,
    pub(super) cost: Option<MoveCostView>,
}

/// A figure of the cost function, configured and learned.
#[derive(Serialize)]
pub(super) struct CostFigureView {
    pub(super) name: String,
    pub(super) configured: f64,
    pub(super) learned: Option<f64>,
    pub(super) samples: u32,
    pub(super) bounded: bool,
    pub(super) in_use: f64,
}

/// `affinity VNODE`: physical nodes ranked best first (feasible, then by
/// score, then by id), each with what the controller makes of moving there.
#[derive(Serialize)]
pub(super) struct AffinityView {
    pub(super) virtual_node_id: String,
    pub(super) current_node_id: String,
    pub(super) would_move_to: Option<String>,
    weights: HashMap<String, f64>,
    pub(super) ranking: Vec<RankView>,
    pub(super) cost_figures: Vec<CostFigureView>,
}

/// A move verdict's name (`pays`, `cooling`, ...).
fn move_verdict_name(v: i32) -> &'static str {
    match pb::MoveVerdict::try_from(v) {
        Ok(pb::MoveVerdict::Current) => "current",
        Ok(pb::MoveVerdict::Unplaced) => "unplaced",
        Ok(pb::MoveVerdict::Infeasible) => "infeasible",
        Ok(pb::MoveVerdict::Migrating) => "migrating",
        Ok(pb::MoveVerdict::Cooling) => "cooling",
        Ok(pb::MoveVerdict::Busy) => "busy",
        Ok(pb::MoveVerdict::BelowThreshold) => "below-threshold",
        Ok(pb::MoveVerdict::DoesNotPay) => "does-not-pay",
        Ok(pb::MoveVerdict::Pays) => "pays",
        _ => "-",
    }
}

impl AffinityView {
    /// The view of the first row of `r` (`None`: the server sent no row).
    pub(super) fn of(r: &pb::GetAffinityResponse) -> Option<AffinityView> {
        let row = r.rows.first()?;
        let none = pb::MoveAssessment::default();
        let mut ranking: Vec<RankView> = r
            .physical_node_ids
            .iter()
            .zip(&row.scores)
            .enumerate()
            .map(|(i, (id, s))| {
                let m = row.moves.get(i).unwrap_or(&none);
                RankView {
                    physical_node_id: id.clone(),
                    current: *id == row.current_node_id,
                    score: s.score,
                    feasible: s.feasible,
                    infeasible_reason: s.infeasible_reason.clone(),
                    parts: s.components.unwrap_or_default(),
                    components: swarm_client::wire::components_json(&s.components),
                    verdict: move_verdict_name(m.verdict),
                    gain: m.gain,
                    explanation: m.explanation.clone(),
                    cost: m.cost.as_ref().map(|c| MoveCostView {
                        transfer_seconds: c.transfer_seconds,
                        overhead_seconds: c.overhead_seconds,
                        benefit: c.benefit,
                        cost: c.cost,
                        net: c.benefit - c.cost,
                    }),
                }
            })
            .collect();
        ranking.sort_by(|a, b| {
            b.feasible
                .cmp(&a.feasible)
                .then(b.score.total_cmp(&a.score))
                .then_with(|| a.physical_node_id.cmp(&b.physical_node_id))
        });
        Some(AffinityView {
            virtual_node_id: row.virtual_node_id.clone(),
            current_node_id: row.current_node_id.clone(),
            would_move_to: (!row.would_move_to.is_empty()).then(|| row.would_move_to.clone()),
            weights: r.weights.clone(),
            ranking,
            cost_figures: r
                .cost_figures
                .iter()
                .map(|f| CostFigureView {
                    name: f.name.clone(),
                    configured: f.configured,
                    learned: f.learned,
                    samples: f.samples,
                    bounded: f.bounded,
                    in_use: f.in_use,
                })
                .collect(),
        })
    }
}
