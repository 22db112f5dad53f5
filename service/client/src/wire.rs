//! Wire enums both sides print or convert: migration phases, decision
//! kinds and affinity components. One home, so the server's answers and the
//! CLI's tables name things the same way.

use swarm_core::decision::DecisionKind;
use swarm_core::migration::machine::Phase;
use swarm_proto::v1 as pb;

/// A decision kind to the wire.
pub fn decision_kind(k: DecisionKind) -> pb::DecisionKind {
    match k {
        DecisionKind::MicroMigration => pb::DecisionKind::MicroMigration,
        DecisionKind::Evacuation => pb::DecisionKind::Evacuation,
        DecisionKind::Predictive => pb::DecisionKind::Predictive,
        DecisionKind::Overload => pb::DecisionKind::Overload,
        DecisionKind::Reconfiguration => pb::DecisionKind::Reconfiguration,
        DecisionKind::Risk => pb::DecisionKind::Risk,
        DecisionKind::MoveBack => pb::DecisionKind::MoveBack,
    }
}

/// A wire decision kind's short name (`micro-migration`, `predictive`, ...),
/// the domain's name for it.
pub fn decision_kind_name(k: pb::DecisionKind) -> &'static str {
    DecisionKind::ALL.into_iter().find(|&d| decision_kind(d) == k).map_or("unspecified", DecisionKind::name)
}

/// A migration phase to the wire.
pub fn phase(p: Phase) -> pb::MigrationPhase {
    use Phase::*;
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
pub fn phase_from_wire(p: i32) -> Option<Phase> {
    use Phase::*;
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
