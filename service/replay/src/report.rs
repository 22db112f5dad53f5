//! The replay report: policies side by side, as JSON and as Markdown.

use std::collections::BTreeMap;

use serde::Serialize;

use super::engine::{Policy, PolicyResult};
use super::foresight::Foresight;
use super::frontier::{Frontier, FrontierPoint, Grid};
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
    /// The tuned-reactive frontier (with `--policy …,reactive-frontier`):
    /// the non-dominated points of the reactive rules swept over
    /// [`Report::frontier_grid`], fewest migrations first.
    pub reactive_frontier: Option<Vec<FrontierPoint>>,
    /// The settings swept for the frontier.
    pub frontier_grid: Option<SweepSummary>,
    /// Every replayed policy against the frontier at its own migrations.
    pub against_frontier: BTreeMap<String, AgainstFrontier>,
    /// Swarm's controller settings (proactive and oracle).
    pub controller: ControllerConfig,
    /// The reactive baseline's settings.
    pub reactive: LowNodeUtilization,
    /// The command that made it.
    pub command: String,
}

/// What the frontier sweep replayed.
#[derive(Debug, Clone, Serialize)]
pub struct SweepSummary {
    /// Settings replayed.
    pub settings: usize,
    /// The grid.
    #[serde(flatten)]
    pub grid: Grid,
}

/// A policy's point against the tuned-reactive frontier.
#[derive(Debug, Clone, Serialize)]
pub struct AgainstFrontier {
    /// The policy's migrations, m.
    pub migrations: u64,
    /// The policy's overload intervals.
    pub overload_intervals: u64,
    /// F(m): the fewest overloads a reactive setting reached with at most m
    /// migrations (none when every setting moved more).
    pub frontier_overload_intervals: Option<u64>,
    /// 1 − overloads / F(m): the share fewer overloads than tuning reactive
    /// reaches at the same budget (negative: tuning does better).
    pub fewer_than_frontier: Option<f64>,
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
            reactive_frontier: None,
            frontier_grid: None,
            against_frontier: BTreeMap::new(),
            controller,
            reactive,
            command,
        }
    }

    /// Adds the tuned-reactive frontier and places every policy against it.
    pub fn with_frontier(mut self, f: Frontier) -> Report {
        // Never moving is a setting every operator has: below the fewest
        // migrations any swept setting made, F(m) is `none`'s count (when
        // replayed), not undefined.
        let never = self.policies.get(Policy::None.name()).map(|r| r.overload_intervals);
        self.against_frontier = self
            .policies
            .iter()
            .map(|(name, r)| {
                let best = f.best_within(r.migrations).map(|p| p.overload_intervals).or(never);
                let against = AgainstFrontier {
                    migrations: r.migrations,
                    overload_intervals: r.overload_intervals,
                    frontier_overload_intervals: best,
                    fewer_than_frontier: best.filter(|&b| b > 0).map(|b| 1.0 - r.overload_intervals as f64 / b as f64),
                };
                (name.clone(), against)
            })
            .collect();
        self.frontier_grid = Some(SweepSummary { settings: f.settings, grid: f.grid });
        self.reactive_frontier = Some(f.points);
        self
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
        let cols: Vec<(&str, &PolicyResult)> =
            Policy::ALL.iter().filter_map(|p| self.policies.get(p.name()).map(|r| (p.name(), r))).collect();
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
            (
                "overloads each migration avoided, the others in place (sum)",
                Box::new(|r| r.marginal_overloads_avoided.to_string()),
            ),
            (
                "… per migration",
                Box::new(move |r| opt(r.marginal_overloads_avoided_per_migration, &|x| format!("{x:.1}"))),
            ),
            ("predictive migrations", Box::new(|r| r.predictive_migrations.to_string())),
            ("overloads prevented ahead", Box::new(|r| r.prevented_overloads.to_string())),
            ("median lead time (min)", Box::new(move |r| opt(r.lead_time_minutes_median, &|x| format!("{x:.0}")))),
            ("prevented ≥ 10 min ahead", Box::new(move |r| pct(r.lead_time_share_ge_10min))),
        ];
        for (name, f) in rows {
            out += &format!("| {name} | {} |\n", cols.iter().map(|(_, r)| f(r)).collect::<Vec<_>>().join(" | "));
        }
        let bounds: Vec<&str> = cols.iter().map(|(n, _)| *n).filter(|n| n.starts_with("oracle")).collect();
        if !bounds.is_empty() {
            out += &format!(
                "\n{} see{} the true future (oracle-1: 1 step ahead, oracle-2: 2, oracle: the controller's horizon): bounds, not achievable by any policy.\n",
                bounds.join(", "),
                if bounds.len() == 1 { "s" } else { "" }
            );
        }
        if cols.iter().any(|(n, _)| *n == Policy::Hindsight.name()) {
            out += "
hindsight is the best static placement a local search found with the whole trace in view, placed before the first step and never moved: a bound, not achievable by any policy (it is scored on the steps it was chosen on).
";
        }
        if let Some(g) = self.gap_captured {
            out += &format!(
                "\nProactive captures {:.0} % of the gap between reactive and oracle ((reactive − proactive) / (reactive − oracle) in overload intervals).\n",
                g * 100.0
            );
        }
        if let (Some(points), Some(sweep)) = (&self.reactive_frontier, &self.frontier_grid) {
            out += &self.frontier_markdown(points, sweep);
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

impl Report {
    fn frontier_markdown(&self, points: &[FrontierPoint], sweep: &SweepSummary) -> String {
        let g = &sweep.grid;
        let list = |v: Vec<String>| v.join(", ");
        let mut out = format!(
            "\n## Against the tuned-reactive frontier\n\nThe reactive rules replayed with {} settings (threshold {}; target {}; budget {}; cooldown {} steps). F(m) is the fewest overloads any of them reached with at most m migrations.\n\n| policy | migrations (m) | overload host-intervals | F(m) | fewer than F(m) |\n|---|---:|---:|---:|---:|\n",
            sweep.settings,
            list(g.threshold.iter().map(|x| format!("{x:.2}")).collect()),
            list(g.target.iter().map(|x| format!("{x:.2}")).collect()),
            list(g.budget.iter().map(|x| x.to_string()).collect()),
            list(g.cooldown_steps.iter().map(|x| x.to_string()).collect()),
        );
        for name in Policy::ALL.map(Policy::name) {
            if let Some(a) = self.against_frontier.get(name) {
                out += &format!(
                    "| {name} | {} | {} | {} | {} |\n",
                    a.migrations,
                    a.overload_intervals,
                    a.frontier_overload_intervals.map_or("–".into(), |x| x.to_string()),
                    a.fewer_than_frontier.map_or("–".into(), |x| format!("{:.0} %", x * 100.0)),
                );
            }
        }
        out += "\nThe frontier's points:\n\n| overload host-intervals | migrations | threshold | target | budget | cooldown (steps) |\n|---:|---:|---:|---:|---:|---:|\n";
        for p in points {
            let s = &p.params;
            out += &format!(
                "| {} | {} | {:.2} | {:.2} | {} | {} |\n",
                p.overload_intervals, p.migrations, s.threshold, s.target, s.budget, s.cooldown_steps
            );
        }
        out
    }

    /// An SVG plot of overload intervals against migrations: the frontier
    /// as a staircase of its points, every policy as a labelled marker.
    /// `None` without a frontier.
    pub fn frontier_svg(&self) -> Option<String> {
        let points = self.reactive_frontier.as_ref()?;
        let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 20.0, 40.0, 50.0);
        let policies: Vec<(&str, &PolicyResult)> =
            Policy::ALL.iter().filter_map(|p| self.policies.get(p.name()).map(|r| (p.name(), r))).collect();
        let max_m = points.iter().map(|p| p.migrations).chain(policies.iter().map(|(_, r)| r.migrations)).max();
        let max_o =
            points.iter().map(|p| p.overload_intervals).chain(policies.iter().map(|(_, r)| r.overload_intervals)).max();
        let (max_m, max_o) = (nice(max_m.unwrap_or(1) as f64), nice(max_o.unwrap_or(1) as f64));
        let x = |m: f64| left + m / max_m * (w - left - right);
        let y = |o: f64| h - bottom - o / max_o * (h - top - bottom);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">Overloads against migrations: policies and the tuned-reactive frontier</text>\n",
            w / 2.0
        );
        for i in 0..=5 {
            let (mv, ov) = (max_m * i as f64 / 5.0, max_o * i as f64 / 5.0);
            svg += &format!(
                "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"#eee\"/><text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4}</text>\n",
                x(mv),
                top,
                h - bottom,
                h - bottom + 16.0,
                mv.round()
            );
            svg += &format!(
                "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{2:.1}\" y2=\"{1:.1}\" stroke=\"#eee\"/><text x=\"{3:.1}\" y=\"{4:.1}\" text-anchor=\"end\">{5}</text>\n",
                left,
                y(ov),
                w - right,
                left - 6.0,
                y(ov) + 4.0,
                ov.round()
            );
        }
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">migrations</text>\n<text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">overload host-intervals</text>\n",
            (left + w - right) / 2.0,
            h - 12.0,
            (top + h - bottom) / 2.0
        );
        // F(m) is a staircase: flat until the next point's migrations.
        let mut path = String::new();
        for (i, p) in points.iter().enumerate() {
            let (px, py) = (x(p.migrations as f64), y(p.overload_intervals as f64));
            if i == 0 {
                path += &format!("M{px:.1},{py:.1}");
            } else {
                path += &format!(" H{px:.1} V{py:.1}");
            }
        }
        if let Some(last) = points.last() {
            path += &format!(" H{:.1}", x(max_m).max(x(last.migrations as f64)));
        }
        svg += &format!("<path d=\"{path}\" fill=\"none\" stroke=\"#888\" stroke-width=\"1.5\"/>\n");
        for p in points {
            svg += &format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#888\"><title>reactive threshold {:.2} target {:.2} budget {} cooldown {}: {} overloads, {} migrations</title></circle>\n",
                x(p.migrations as f64),
                y(p.overload_intervals as f64),
                p.params.threshold,
                p.params.target,
                p.params.budget,
                p.params.cooldown_steps,
                p.overload_intervals,
                p.migrations
            );
        }
        let colours = ["#555", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"];
        for (i, (name, r)) in policies.iter().enumerate() {
            let (px, py) = (x(r.migrations as f64), y(r.overload_intervals as f64));
            let c = colours[i % colours.len()];
            svg += &format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"{c}\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"{c}\">{name} ({}, {})</text>\n",
                px - 4.0,
                py - 4.0,
                px + 7.0,
                py - 6.0,
                r.migrations,
                r.overload_intervals
            );
        }
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#888\">grey: tuned-reactive frontier F(m)</text>\n</svg>\n",
            w - right,
            top + 12.0
        );
        Some(svg)
    }
}

/// The smallest of 1, 2, 5 × 10^k at or above `x` (axis ends).
fn nice(x: f64) -> f64 {
    let x = x.max(1.0);
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|&v| v >= x).unwrap_or(10.0 * p)
}
