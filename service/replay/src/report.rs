//! The replay report: policies side by side, as JSON and as Markdown.

use std::collections::BTreeMap;

use serde::Serialize;

use super::engine::{Policy, PolicyResult};
use super::foresight::Foresight;
use swarm_core::placement::controller::ControllerConfig;
use swarm_core::placement::descheduler::LowNodeUtilization;

/// What was replayed.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioSummary {
    /// Trace file.
    pub trace: String,
    /// Metric replayed.
    pub metric: String,
    /// Hosts.
    pub hosts: usize,
    /// Total physical cores.
    pub physical_cores: f64,
    /// VMs.
    pub vms: usize,
    /// Total requested cores.
    pub requested_cores: f64,
    /// Requested over physical cores.
    pub overcommit: f64,
    /// Seed of the packing rule, when the scenario came from it.
    pub seed: Option<u64>,
    /// How the scenario was made.
    pub rule: String,
    /// Where it came from (generated or a file).
    pub source: String,
    /// Steps replayed.
    pub steps: usize,
    /// Minutes per step.
    pub step_minutes: f64,
    /// Mean utilisation of all hosts together (independent of placement).
    pub mean_host_load: f64,
    /// Overload threshold.
    pub overload_threshold: f64,
    /// State moved per requested core, bytes.
    pub memory_per_core_bytes: f64,
    /// The forecasting model(s) of the proactive policy.
    pub model: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was replayed.
    pub scenario: ScenarioSummary,
    /// Results by policy name.
    pub policies: BTreeMap<String, PolicyResult>,
    /// (reactive − proactive) / (reactive − oracle) in overload intervals,
    /// when all three ran and oracle beat reactive.
    pub gap_captured: Option<f64>,
    /// How early the model's forecasts and the load now warned of the
    /// overloads (when the proactive policy ran).
    pub foresight: Option<Foresight>,
    /// Swarm's controller settings (proactive and oracle).
    pub controller: ControllerConfig,
    /// The reactive baseline's settings.
    pub reactive: LowNodeUtilization,
    /// The command that made it.
    pub command: String,
}

impl Report {
    /// Assembles a report and computes the gap captured.
    pub fn new(
        scenario: ScenarioSummary,
        results: Vec<(Policy, PolicyResult)>,
        foresight: Option<Foresight>,
        controller: ControllerConfig,
        reactive: LowNodeUtilization,
        command: String,
    ) -> Report {
        let get = |p: Policy| results.iter().find(|(q, _)| *q == p).map(|(_, r)| r.overload_intervals as f64);
        let gap_captured = match (get(Policy::Reactive), get(Policy::Proactive), get(Policy::Oracle)) {
            (Some(r), Some(p), Some(o)) if r > o => Some((r - p) / (r - o)),
            _ => None,
        };
        Report {
            scenario,
            policies: results.into_iter().map(|(p, r)| (p.name().to_owned(), r)).collect(),
            gap_captured,
            foresight,
            controller,
            reactive,
            command,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serialisable") + "\n"
    }

    /// Markdown: the setup, then a table with one column per policy.
    pub fn to_markdown(&self) -> String {
        let s = &self.scenario;
        let mut out = format!(
            "# Replay: {} ({})\n\n{} VMs on {} hosts ({} physical cores, {} requested: {:.2}x overcommit), {} steps of {} min, mean host load {:.1} %, overload = utilisation > {:.0} %.\n\nScenario: {} — {}\n\nProactive model: {}\n\nCommand: `{}`\n\n",
            s.trace,
            s.metric,
            s.vms,
            s.hosts,
            s.physical_cores,
            s.requested_cores,
            s.overcommit,
            s.steps,
            s.step_minutes,
            s.mean_host_load * 100.0,
            s.overload_threshold * 100.0,
            s.source,
            s.rule,
            s.model,
            self.command
        );
        let order = ["none", "reactive", "proactive", "oracle"];
        let cols: Vec<(&str, &PolicyResult)> =
            order.iter().filter_map(|n| self.policies.get(*n).map(|r| (*n, r))).collect();
        out += "| | ";
        out += &cols.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" | ");
        out += " |\n|---|";
        out += &"---:|".repeat(cols.len());
        out += "\n";
        let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map(f).unwrap_or_else(|| "–".into());
        let pct = move |x: Option<f64>| opt(x, &|x| format!("{:.0} %", x * 100.0));
        type Row<'a> = (&'a str, Box<dyn Fn(&PolicyResult) -> String + 'a>);
        let rows: Vec<Row> = vec![
            ("overload host-intervals", Box::new(|r| r.overload_intervals.to_string())),
            ("overload minutes", Box::new(|r| format!("{:.0}", r.overload_minutes))),
            ("migrations", Box::new(|r| r.migrations.to_string())),
            ("GiB moved", Box::new(|r| format!("{:.0}", r.bytes_moved / 1073741824.0))),
            ("predictive migrations", Box::new(|r| r.predictive_migrations.to_string())),
            ("overloads prevented ahead", Box::new(|r| r.prevented_overloads.to_string())),
            ("median lead time (min)", Box::new(move |r| opt(r.lead_time_minutes_median, &|x| format!("{x:.0}")))),
            ("prevented ≥ 10 min ahead", Box::new(move |r| pct(r.lead_time_share_ge_10min))),
        ];
        for (name, f) in rows {
            out += &format!("| {name} | {} |\n", cols.iter().map(|(_, r)| f(r)).collect::<Vec<_>>().join(" | "));
        }
        if let Some(g) = self.gap_captured {
            out += &format!(
                "\nProactive captures {:.0} % of the gap between reactive and oracle ((reactive − proactive) / (reactive − oracle) in overload intervals).\n",
                g * 100.0
            );
        }
        if let Some(f) = &self.foresight {
            out += &format!(
                "\n## Foresight\n\nHow early each signal warned of the {} overloaded host-intervals the {} policy left (steps {} on, where every VM has a forecast; VMs where that policy had them). A warning counts when it comes {}..={} steps ahead: a move needs at least that long to take load off its source. *Coverage* is the most a controller acting on the signal could prevent; *precision* is the share of alarms followed by an overload.\n\n| signal | alarms | precision | overloads warned of | coverage |\n|---|---:|---:|---:|---:|\n",
                f.overloads, f.along, f.from_step, f.lead_steps, f.horizon_steps
            );
            for (name, label) in super::foresight::SIGNALS {
                if let Some(q) = f.signals.get(name) {
                    out += &format!(
                        "| {label} | {} | {} | {} | {} |\n",
                        q.alarms,
                        pct(q.precision),
                        q.covered,
                        pct(q.coverage)
                    );
                }
            }
        }
        out
    }
}
