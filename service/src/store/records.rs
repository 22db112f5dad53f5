//! The store's own record types: what is on disk, versioned, owned here.
//!
//! Why: the on-disk format must not change when the API (`swarm.v1`) or a
//! domain type changes, and a second backend (etcd) must be able to write
//! the same records. Each record converts to and from its domain type;
//! nothing else in the server sees these.
//!
//! - **Decisions** are protobuf messages whose tags are those the first
//!   release wrote (then as `swarm.v1.Decision`), so every data dir since
//!   opens. Fields may be added under new tags; `record_version` (absent
//!   means 1) says when a reader must refuse a record it does not know.
//! - **Migrations** and **reconfigurations** are JSON objects with a `"v"`
//!   field (absent means 1, as the first release wrote them without it),
//!   their enums spelled by this module, not by the domain's `Debug` names.

use prost::Message;
use serde::{Deserialize, Serialize};

use super::StoreError;
use swarm_core::decision::{Decision, DecisionKind, ScoreSnapshot};
use swarm_core::domain::NodeId;
use swarm_core::migration::machine::{Migration, Phase, Transition};
use swarm_core::outcome::{Outcome, Side, Verdict};
use swarm_core::placement::affinity::Components;
use swarm_core::placement::cost::CostEstimate;
use swarm_core::reconfig::record::{Origin, PlannedMove, ReconfigState, Reconfiguration};

/// The newest record version this build writes and reads.
pub const VERSION: u32 = 1;

fn newer(what: &'static str, key: String, v: u32) -> StoreError {
    StoreError::Corrupt {
        what,
        key,
        reason: format!(
            "record version {v} was written by a newer swarmd (this one reads up to {VERSION}); run that release"
        ),
    }
}

// ---------------------------------------------------------------- decisions

/// A decision on disk.
#[derive(Clone, PartialEq, Message)]
pub struct DecisionRecord {
    /// Sequence (also the key).
    #[prost(uint64, tag = "1")]
    pub sequence: u64,
    /// Round.
    #[prost(uint64, tag = "2")]
    pub round_id: u64,
    /// When, ms.
    #[prost(int64, tag = "3")]
    pub decided_at_ms: i64,
    /// Virtual node.
    #[prost(string, tag = "4")]
    pub virt: String,
    /// From.
    #[prost(string, tag = "5")]
    pub from: String,
    /// To.
    #[prost(string, tag = "6")]
    pub to: String,
    /// Score where it ran.
    #[prost(message, optional, tag = "7")]
    pub from_score: Option<ScoreRecord>,
    /// Score on the target.
    #[prost(message, optional, tag = "8")]
    pub to_score: Option<ScoreRecord>,
    /// Gain.
    #[prost(double, tag = "9")]
    pub gain: f64,
    /// Reason.
    #[prost(string, tag = "10")]
    pub reason: String,
    /// Kind: 1 micro-migration, 2 evacuation, 3 predictive, 4 overload, 5 reconfiguration, 6 risk, 7 move back.
    #[prost(int32, tag = "11")]
    pub kind: i32,
    /// Cost figures.
    #[prost(message, optional, tag = "12")]
    pub cost: Option<CostRecord>,
    /// Expected overload time, ms; 0 when none.
    #[prost(int64, tag = "13")]
    pub expected_overload_at_ms: i64,
    /// For a move back: the decision it reverses (absent in older records).
    #[prost(uint64, optional, tag = "14")]
    pub reverses: Option<u64>,
    /// Record version; absent (0) means 1.
    #[prost(uint32, tag = "100")]
    pub record_version: u32,
}

/// An affinity score on disk.
#[derive(Clone, PartialEq, Message)]
pub struct ScoreRecord {
    /// Score.
    #[prost(double, tag = "1")]
    pub score: f64,
    /// Components.
    #[prost(message, optional, tag = "2")]
    pub components: Option<ComponentsRecord>,
    /// Feasible.
    #[prost(bool, tag = "3")]
    pub feasible: bool,
    /// Why not.
    #[prost(string, tag = "4")]
    pub infeasible_reason: String,
}

/// Affinity components on disk.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct ComponentsRecord {
    /// CPU headroom.
    #[prost(double, optional, tag = "1")]
    pub cpu_headroom: Option<f64>,
    /// Memory headroom.
    #[prost(double, optional, tag = "2")]
    pub memory_headroom: Option<f64>,
    /// Network headroom.
    #[prost(double, optional, tag = "3")]
    pub network_headroom: Option<f64>,
    /// Current load.
    #[prost(double, optional, tag = "4")]
    pub current_load: Option<f64>,
    /// History.
    #[prost(double, optional, tag = "5")]
    pub history: Option<f64>,
    /// Locality.
    #[prost(double, optional, tag = "6")]
    pub locality: Option<f64>,
    /// Forecast headroom.
    #[prost(double, optional, tag = "7")]
    pub forecast_headroom: Option<f64>,
}

/// Cost figures on disk.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct CostRecord {
    /// Transfer, s.
    #[prost(double, tag = "1")]
    pub transfer_seconds: f64,
    /// Start + stop, s.
    #[prost(double, tag = "2")]
    pub overhead_seconds: f64,
    /// Benefit.
    #[prost(double, tag = "3")]
    pub benefit: f64,
    /// Cost.
    #[prost(double, tag = "4")]
    pub cost: f64,
}

fn kind_code(k: DecisionKind) -> i32 {
    match k {
        DecisionKind::MicroMigration => 1,
        DecisionKind::Evacuation => 2,
        DecisionKind::Predictive => 3,
        DecisionKind::Overload => 4,
        DecisionKind::Reconfiguration => 5,
        DecisionKind::Risk => 6,
        DecisionKind::MoveBack => 7,
    }
}

fn kind_from_code(c: i32) -> Option<DecisionKind> {
    DecisionKind::ALL.into_iter().find(|&k| kind_code(k) == c)
}

impl From<&ScoreSnapshot> for ScoreRecord {
    fn from(s: &ScoreSnapshot) -> Self {
        let c = &s.components;
        ScoreRecord {
            score: s.score,
            components: Some(ComponentsRecord {
                cpu_headroom: c.cpu_headroom,
                memory_headroom: c.memory_headroom,
                network_headroom: c.network_headroom,
                current_load: c.current_load,
                history: c.history,
                locality: c.locality,
                forecast_headroom: c.forecast_headroom,
            }),
            feasible: s.infeasible.is_none(),
            infeasible_reason: s.infeasible.clone().unwrap_or_default(),
        }
    }
}

impl From<&ScoreRecord> for ScoreSnapshot {
    fn from(r: &ScoreRecord) -> Self {
        let c = r.components.unwrap_or_default();
        ScoreSnapshot {
            score: r.score,
            components: Components {
                cpu_headroom: c.cpu_headroom,
                memory_headroom: c.memory_headroom,
                network_headroom: c.network_headroom,
                current_load: c.current_load,
                history: c.history,
                locality: c.locality,
                forecast_headroom: c.forecast_headroom,
            },
            infeasible: (!r.feasible).then(|| r.infeasible_reason.clone()),
        }
    }
}

/// Encodes a decision for the store.
pub fn encode_decision(d: &Decision) -> Vec<u8> {
    DecisionRecord {
        sequence: d.sequence,
        round_id: d.round_id,
        decided_at_ms: d.decided_at_ms,
        virt: d.virt.to_string(),
        from: d.from.to_string(),
        to: d.to.to_string(),
        from_score: d.from_score.as_ref().map(Into::into),
        to_score: d.to_score.as_ref().map(Into::into),
        gain: d.gain,
        reason: d.reason.clone(),
        kind: kind_code(d.kind),
        cost: d.cost.map(|c| CostRecord {
            transfer_seconds: c.transfer_seconds,
            overhead_seconds: c.overhead_seconds,
            benefit: c.benefit,
            cost: c.cost,
        }),
        expected_overload_at_ms: d.expected_overload_at_ms.unwrap_or(0),
        reverses: d.reverses,
        record_version: VERSION,
    }
    .encode_to_vec()
}

/// Decodes a stored decision (key `seq`).
pub fn decode_decision(seq: u64, bytes: &[u8]) -> Result<Decision, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { what: "decision", key: seq.to_string(), reason };
    let r = DecisionRecord::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    if r.record_version > VERSION {
        return Err(newer("decision", seq.to_string(), r.record_version));
    }
    let id = |field: &str, s: &str| NodeId::parse(s).map_err(|e| corrupt(format!("{field} {e}")));
    Ok(Decision {
        sequence: r.sequence,
        round_id: r.round_id,
        decided_at_ms: r.decided_at_ms,
        virt: id("virtual node id", &r.virt)?,
        from: id("source id", &r.from)?,
        to: id("target id", &r.to)?,
        from_score: r.from_score.as_ref().map(Into::into),
        to_score: r.to_score.as_ref().map(Into::into),
        gain: r.gain,
        reason: r.reason,
        kind: kind_from_code(r.kind).ok_or_else(|| corrupt(format!("unknown decision kind {}", r.kind)))?,
        cost: r.cost.map(|c| CostEstimate {
            transfer_seconds: c.transfer_seconds,
            overhead_seconds: c.overhead_seconds,
            benefit: c.benefit,
            cost: c.cost,
        }),
        expected_overload_at_ms: (r.expected_overload_at_ms != 0).then_some(r.expected_overload_at_ms),
        reverses: r.reverses,
    })
}

// --------------------------------------------------------------- migrations

fn v1() -> u32 {
    1
}

/// A migration phase as the store spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum PhaseRecord {
    Proposed,
    Accepted,
    ShadowStarting,
    Shadowing,
    Verified,
    CuttingOver,
    Completed,
    Rejected,
    TimedOut,
    ShadowUnhealthy,
    RolledBack,
    Aborted,
}

const PHASES: [(Phase, PhaseRecord); 12] = [
    (Phase::Proposed, PhaseRecord::Proposed),
    (Phase::Accepted, PhaseRecord::Accepted),
    (Phase::ShadowStarting, PhaseRecord::ShadowStarting),
    (Phase::Shadowing, PhaseRecord::Shadowing),
    (Phase::Verified, PhaseRecord::Verified),
    (Phase::CuttingOver, PhaseRecord::CuttingOver),
    (Phase::Completed, PhaseRecord::Completed),
    (Phase::Rejected, PhaseRecord::Rejected),
    (Phase::TimedOut, PhaseRecord::TimedOut),
    (Phase::ShadowUnhealthy, PhaseRecord::ShadowUnhealthy),
    (Phase::RolledBack, PhaseRecord::RolledBack),
    (Phase::Aborted, PhaseRecord::Aborted),
];

impl From<Phase> for PhaseRecord {
    fn from(p: Phase) -> Self {
        PHASES.iter().find(|(d, _)| *d == p).expect("every phase has a record").1
    }
}

impl From<PhaseRecord> for Phase {
    fn from(p: PhaseRecord) -> Self {
        PHASES.iter().find(|(_, r)| *r == p).expect("every record has a phase").0
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TransitionRecord {
    phase: PhaseRecord,
    at_ms: i64,
    cause: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OriginRecord {
    reconfiguration: String,
    index: usize,
}

/// A migration on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MigrationRecord {
    #[serde(default = "v1")]
    v: u32,
    id: String,
    decision_sequence: u64,
    virt: String,
    from: String,
    to: String,
    phase: PhaseRecord,
    epoch: u64,
    owner: Option<String>,
    healthy_since_ms: Option<i64>,
    history: Vec<TransitionRecord>,
    seen_requests: Vec<String>,
    #[serde(default)]
    origin: Option<OriginRecord>,
    /// Added after the first release: absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<OutcomeRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reverses: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum VerdictRecord {
    Helped,
    Neutral,
    Hurt,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct SideRecord {
    source_utilisation: Option<f64>,
    target_utilisation: Option<f64>,
    source_peak: Option<f64>,
    target_peak: Option<f64>,
    latency_ms: Option<f64>,
    throughput_rps: Option<f64>,
}

/// What a completed migration achieved, on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OutcomeRecord {
    /// The decision's kind, coded as in decision records.
    kind: i32,
    cutover_at_ms: i64,
    window_ms: i64,
    measured_at_ms: i64,
    before: SideRecord,
    after: SideRecord,
    source_peak_without_move: Option<f64>,
    overload_prevented: bool,
    #[serde(default)]
    service_worse: bool,
    predicted_relief: Option<f64>,
    realised_relief: Option<f64>,
    verdict: VerdictRecord,
    summary: String,
}

impl From<&Side> for SideRecord {
    fn from(s: &Side) -> Self {
        SideRecord {
            source_utilisation: s.source_utilisation,
            target_utilisation: s.target_utilisation,
            source_peak: s.source_peak,
            target_peak: s.target_peak,
            latency_ms: s.latency_ms,
            throughput_rps: s.throughput_rps,
        }
    }
}

impl From<SideRecord> for Side {
    fn from(s: SideRecord) -> Self {
        Side {
            source_utilisation: s.source_utilisation,
            target_utilisation: s.target_utilisation,
            source_peak: s.source_peak,
            target_peak: s.target_peak,
            latency_ms: s.latency_ms,
            throughput_rps: s.throughput_rps,
        }
    }
}

impl From<&Outcome> for OutcomeRecord {
    fn from(o: &Outcome) -> Self {
        OutcomeRecord {
            kind: kind_code(o.kind),
            cutover_at_ms: o.cutover_at_ms,
            window_ms: o.window_ms,
            measured_at_ms: o.measured_at_ms,
            before: (&o.before).into(),
            after: (&o.after).into(),
            source_peak_without_move: o.source_peak_without_move,
            overload_prevented: o.overload_prevented,
            service_worse: o.service_worse,
            predicted_relief: o.predicted_relief,
            realised_relief: o.realised_relief,
            verdict: match o.verdict {
                Verdict::Helped => VerdictRecord::Helped,
                Verdict::Neutral => VerdictRecord::Neutral,
                Verdict::Hurt => VerdictRecord::Hurt,
            },
            summary: o.summary.clone(),
        }
    }
}

impl OutcomeRecord {
    fn into_outcome(self, seq: u64) -> Result<Outcome, StoreError> {
        let r = self;
        let kind = kind_from_code(r.kind).ok_or_else(|| StoreError::Corrupt {
            what: "migration",
            key: seq.to_string(),
            reason: format!("unknown decision kind {} in its outcome", r.kind),
        })?;
        Ok(Outcome {
            kind,
            cutover_at_ms: r.cutover_at_ms,
            window_ms: r.window_ms,
            measured_at_ms: r.measured_at_ms,
            before: r.before.into(),
            after: r.after.into(),
            source_peak_without_move: r.source_peak_without_move,
            overload_prevented: r.overload_prevented,
            service_worse: r.service_worse,
            predicted_relief: r.predicted_relief,
            realised_relief: r.realised_relief,
            verdict: match r.verdict {
                VerdictRecord::Helped => Verdict::Helped,
                VerdictRecord::Neutral => Verdict::Neutral,
                VerdictRecord::Hurt => Verdict::Hurt,
            },
            summary: r.summary,
        })
    }
}

/// Encodes a migration for the store.
pub fn encode_migration(m: &Migration) -> Vec<u8> {
    let r = MigrationRecord {
        v: VERSION,
        id: m.id.clone(),
        decision_sequence: m.decision_sequence,
        virt: m.virt.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
        phase: m.phase.into(),
        epoch: m.epoch,
        owner: m.owner.clone(),
        healthy_since_ms: m.healthy_since_ms,
        history: m
            .history
            .iter()
            .map(|t| TransitionRecord { phase: t.phase.into(), at_ms: t.at_ms, cause: t.cause.clone() })
            .collect(),
        seen_requests: m.seen_requests.clone(),
        origin: m.origin.as_ref().map(|o| OriginRecord { reconfiguration: o.reconfiguration.clone(), index: o.index }),
        outcome: m.outcome.as_ref().map(OutcomeRecord::from),
        reverses: m.reverses,
    };
    serde_json::to_vec(&r).expect("records serialize")
}

/// Decodes a stored migration (key `seq`).
pub fn decode_migration(seq: u64, bytes: &[u8]) -> Result<Migration, StoreError> {
    let r: MigrationRecord = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: "migration",
        key: seq.to_string(),
        reason: e.to_string(),
    })?;
    if r.v > VERSION {
        return Err(newer("migration", seq.to_string(), r.v));
    }
    Ok(Migration {
        id: r.id,
        decision_sequence: r.decision_sequence,
        virt: r.virt,
        from: r.from,
        to: r.to,
        phase: r.phase.into(),
        epoch: r.epoch,
        owner: r.owner,
        healthy_since_ms: r.healthy_since_ms,
        history: r
            .history
            .into_iter()
            .map(|t| Transition { phase: t.phase.into(), at_ms: t.at_ms, cause: t.cause })
            .collect(),
        seen_requests: r.seen_requests,
        origin: r.origin.map(|o| Origin { reconfiguration: o.reconfiguration, index: o.index }),
        outcome: r.outcome.map(|o| o.into_outcome(seq)).transpose()?,
        reverses: r.reverses,
    })
}

// -------------------------------------------------------- reconfigurations

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum ReconfigStateRecord {
    Running,
    Completed,
    CompletedWithFailures,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlannedMoveRecord {
    virt: String,
    from: String,
    to: String,
    bytes: u64,
    reason: String,
    seconds: f64,
}

/// An applied reconfiguration plan on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReconfigurationRecord {
    #[serde(default = "v1")]
    v: u32,
    id: String,
    plan_id: String,
    applied_at_ms: i64,
    moves: Vec<PlannedMoveRecord>,
    max_concurrent: u32,
    removals: Vec<String>,
    state: ReconfigStateRecord,
}

/// Encodes a reconfiguration for the store.
pub fn encode_reconfiguration(r: &Reconfiguration) -> Vec<u8> {
    let rec = ReconfigurationRecord {
        v: VERSION,
        id: r.id.clone(),
        plan_id: r.plan_id.clone(),
        applied_at_ms: r.applied_at_ms,
        moves: r
            .moves
            .iter()
            .map(|m| PlannedMoveRecord {
                virt: m.virt.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                bytes: m.bytes,
                reason: m.reason.clone(),
                seconds: m.seconds,
            })
            .collect(),
        max_concurrent: r.max_concurrent,
        removals: r.removals.clone(),
        state: match r.state {
            ReconfigState::Running => ReconfigStateRecord::Running,
            ReconfigState::Completed => ReconfigStateRecord::Completed,
            ReconfigState::CompletedWithFailures => ReconfigStateRecord::CompletedWithFailures,
        },
    };
    serde_json::to_vec(&rec).expect("records serialize")
}

/// Decodes a stored reconfiguration (key `id`).
pub fn decode_reconfiguration(id: &str, bytes: &[u8]) -> Result<Reconfiguration, StoreError> {
    let r: ReconfigurationRecord = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: "reconfiguration",
        key: id.to_owned(),
        reason: e.to_string(),
    })?;
    if r.v > VERSION {
        return Err(newer("reconfiguration", id.to_owned(), r.v));
    }
    Ok(Reconfiguration {
        id: r.id,
        plan_id: r.plan_id,
        applied_at_ms: r.applied_at_ms,
        moves: r
            .moves
            .into_iter()
            .map(|m| PlannedMove {
                virt: m.virt,
                from: m.from,
                to: m.to,
                bytes: m.bytes,
                reason: m.reason,
                seconds: m.seconds,
            })
            .collect(),
        max_concurrent: r.max_concurrent,
        removals: r.removals,
        state: match r.state {
            ReconfigStateRecord::Running => ReconfigState::Running,
            ReconfigStateRecord::Completed => ReconfigState::Completed,
            ReconfigStateRecord::CompletedWithFailures => ReconfigState::CompletedWithFailures,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision() -> Decision {
        Decision {
            sequence: 7,
            round_id: 3,
            decided_at_ms: 1_700_000_000_000,
            virt: NodeId::parse("v1").unwrap(),
            from: NodeId::parse("p1").unwrap(),
            to: NodeId::parse("p2").unwrap(),
            from_score: Some(ScoreSnapshot {
                score: 0.4,
                components: Components { cpu_headroom: Some(0.2), ..Default::default() },
                infeasible: None,
            }),
            to_score: Some(ScoreSnapshot {
                score: 0.9,
                components: Components::default(),
                infeasible: Some("x".into()),
            }),
            gain: 0.5,
            reason: "because".into(),
            kind: DecisionKind::Predictive,
            cost: Some(CostEstimate { transfer_seconds: 1.0, overhead_seconds: 2.0, benefit: 3.0, cost: 4.0 }),
            expected_overload_at_ms: Some(1_700_000_600_000),
            reverses: Some(3),
        }
    }

    #[test]
    fn records_round_trip() {
        let d = decision();
        assert_eq!(decode_decision(7, &encode_decision(&d)).unwrap(), d);
        let mut m = Migration::propose("m7".into(), 7, "v1".into(), "p1".into(), "p2".into(), 5);
        m.origin = Some(Origin { reconfiguration: "r1".into(), index: 2 });
        m.reverses = Some(4);
        assert_eq!(decode_migration(7, &encode_migration(&m)).unwrap(), m);
        m.outcome = Some(Outcome {
            kind: DecisionKind::Risk,
            cutover_at_ms: 10,
            window_ms: 20,
            measured_at_ms: 31,
            before: Side { source_peak: Some(0.95), latency_ms: Some(4.0), ..Default::default() },
            after: Side { target_utilisation: Some(0.5), throughput_rps: Some(9.0), ..Default::default() },
            source_peak_without_move: Some(1.1),
            overload_prevented: true,
            service_worse: true,
            predicted_relief: Some(0.3),
            realised_relief: None,
            verdict: Verdict::Hurt,
            summary: "latency rose 20 %".into(),
        });
        assert_eq!(decode_migration(7, &encode_migration(&m)).unwrap(), m);
    }

    #[test]
    fn newer_and_damaged_records_are_refused_with_the_reason() {
        let mut r = DecisionRecord::decode(encode_decision(&decision()).as_slice()).unwrap();
        r.record_version = 9;
        let e = decode_decision(7, &r.encode_to_vec()).unwrap_err().to_string();
        assert!(e.contains("newer swarmd"), "{e}");
        r.record_version = 1;
        r.kind = 42;
        let e = decode_decision(7, &r.encode_to_vec()).unwrap_err().to_string();
        assert!(e.contains("unknown decision kind 42"), "{e}");
        let e = decode_migration(1, br#"{"v":2}"#).unwrap_err().to_string();
        assert!(e.contains("migration"), "{e}");
        // A first-release migration (no "v") reads as version 1.
        let old = br#"{"id":"m1","decision_sequence":1,"virt":"v","from":"a","to":"b","phase":"Proposed","epoch":0,"owner":null,"healthy_since_ms":null,"history":[{"phase":"Proposed","at_ms":0,"cause":"c"}],"seen_requests":[]}"#;
        assert_eq!(decode_migration(1, old).unwrap().phase, Phase::Proposed);
    }
}
