//! `swarmctl policy`: the risk-aware rule's settings now, the operator's
//! bounds, and the self-tuner's runs — when and why the settings changed,
//! and the table of candidates that chose them (`Placement.GetPolicy`).

use serde::Serialize;
use swarm_proto::v1 as pb;

use super::output::{self, Output, note};
use super::{Conn, CtlError};

/// The settings as a person reads them.
#[derive(Debug, Clone, Serialize)]
struct SettingsView {
    window_hours: f64,
    confidence_z: f64,
    interval_minutes: f64,
    focus: f64,
}

impl From<Option<&pb::RiskTunables>> for SettingsView {
    fn from(t: Option<&pb::RiskTunables>) -> Self {
        let t = t.cloned().unwrap_or_default();
        SettingsView {
            window_hours: t.window_seconds / 3600.0,
            confidence_z: t.confidence_z,
            interval_minutes: t.interval_seconds / 60.0,
            focus: t.focus,
        }
    }
}

impl std::fmt::Display for SettingsView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "window {} h, confidence_z {}, interval {} min",
            self.window_hours, self.confidence_z, self.interval_minutes
        )
    }
}

/// One candidate of a run.
#[derive(Debug, Clone, Serialize)]
struct RowView {
    settings: SettingsView,
    choose_overloads: u64,
    choose_migrations: u64,
    choose_objective: f64,
    confirm_overloads: u64,
    confirm_migrations: u64,
    confirm_objective: f64,
}

/// A self-tuning run.
#[derive(Debug, Clone, Serialize)]
struct RunView {
    at: String,
    at_ms: i64,
    verdict: String,
    reason: String,
    before: SettingsView,
    after: SettingsView,
    choose_steps: u32,
    confirm_steps: u32,
    physical_nodes: u32,
    virtual_nodes: u32,
    migration_price: f64,
    rows: Vec<RowView>,
}

impl From<&pb::TuningRun> for RunView {
    fn from(r: &pb::TuningRun) -> Self {
        RunView {
            at: output::utc(r.at_ms),
            at_ms: r.at_ms,
            verdict: r.verdict.clone(),
            reason: r.reason.clone(),
            before: r.before.as_ref().into(),
            after: r.after.as_ref().into(),
            choose_steps: r.choose_steps,
            confirm_steps: r.confirm_steps,
            physical_nodes: r.physical_nodes,
            virtual_nodes: r.virtual_nodes,
            migration_price: r.migration_price,
            rows: r
                .rows
                .iter()
                .map(|x| RowView {
                    settings: x.settings.as_ref().into(),
                    choose_overloads: x.choose_overloads,
                    choose_migrations: x.choose_migrations,
                    choose_objective: x.choose_objective,
                    confirm_overloads: x.confirm_overloads,
                    confirm_migrations: x.confirm_migrations,
                    confirm_objective: x.confirm_objective,
                })
                .collect(),
        }
    }
}

/// `swarmctl policy`.
#[derive(Debug, Clone, Serialize)]
struct PolicyView {
    risk_enabled: bool,
    self_tuning: bool,
    current: SettingsView,
    configured: SettingsView,
    lower_bounds: SettingsView,
    upper_bounds: SettingsView,
    period_hours: f64,
    last_run: Option<RunView>,
    changes: Vec<RunView>,
}

/// Asks swarmd and prints the answer.
pub async fn run(ch: Conn, out: Output) -> Result<(), CtlError> {
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let r = c.get_policy(pb::GetPolicyRequest {}).await?.into_inner();
    let v = PolicyView {
        risk_enabled: r.risk_enabled,
        self_tuning: r.self_tuning,
        current: r.current.as_ref().into(),
        configured: r.configured.as_ref().into(),
        lower_bounds: r.lower_bounds.as_ref().into(),
        upper_bounds: r.upper_bounds.as_ref().into(),
        period_hours: r.period_seconds / 3600.0,
        last_run: r.last_run.as_ref().map(RunView::from),
        changes: r.changes.iter().map(RunView::from).collect(),
    };
    if out == Output::Json {
        return output::json(&serde_json::to_value(&v).map_err(std::io::Error::other)?);
    }
    let on = |b: bool| if b { "on" } else { "off" };
    note(out, format_args!("risk-aware rule: {}; self-tuning: {}", on(v.risk_enabled), on(v.self_tuning)))?;
    note(out, format_args!("current:    {}", v.current))?;
    note(out, format_args!("configured: {}", v.configured))?;
    note(
        out,
        format_args!(
            "bounds:     {} .. {}; changes at most every {} h",
            v.lower_bounds, v.upper_bounds, v.period_hours
        ),
    )?;
    for c in &v.changes {
        note(out, format_args!("changed {} to {}: {}", c.at, c.after, c.reason))?;
    }
    let Some(run) = &v.last_run else {
        return note(out, format_args!("the self-tuner has not run yet"));
    };
    note(
        out,
        format_args!(
            "last run {}: {} — {}\n{} physical / {} virtual nodes replayed; {} choose and {} confirm steps; objective = overloads + {} × migrations",
            run.at,
            run.verdict,
            run.reason,
            run.physical_nodes,
            run.virtual_nodes,
            run.choose_steps,
            run.confirm_steps,
            run.migration_price
        ),
    )?;
    let rows: Vec<Vec<String>> = run
        .rows
        .iter()
        .map(|x| {
            vec![
                x.settings.window_hours.to_string(),
                x.settings.confidence_z.to_string(),
                x.settings.interval_minutes.to_string(),
                x.settings.focus.to_string(),
                x.choose_overloads.to_string(),
                x.choose_migrations.to_string(),
                format!("{:.1}", x.choose_objective),
                x.confirm_overloads.to_string(),
                x.confirm_migrations.to_string(),
                format!("{:.1}", x.confirm_objective),
            ]
        })
        .collect();
    output::table(
        out,
        &[
            "WINDOW_H",
            "Z",
            "INTERVAL_MIN",
            "FOCUS",
            "CHOOSE_OVERLOADS",
            "CHOOSE_MIGRATIONS",
            "CHOOSE_OBJECTIVE",
            "CONFIRM_OVERLOADS",
            "CONFIRM_MIGRATIONS",
            "CONFIRM_OBJECTIVE",
        ],
        &rows,
    )
}
