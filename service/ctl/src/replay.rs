//! `swarmctl replay`: the IO around [`swarm_replay`] — read the trace and
//! the scenario, show progress, write the scenario and the reports.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use swarm_datasets::import::{self as importer};
use swarm_datasets::regular;

use super::CtlError;
use swarm_replay::engine::{self, Params, Policy};
use swarm_replay::forecasts::{self, ModelChoice};
use swarm_replay::foresight;
use swarm_replay::frontier::{self, Grid};
use swarm_replay::report::{Report, ScenarioSummary};
use swarm_replay::scenario::{self, Rule, Scenario};

/// `replay` arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  swarmctl replay --trace ../shared/datasets/azure-vm-cpu-2017/vm_cpu_readings.csv --report replay.md\n  swarmctl replay --trace trace.csv --scenario ../shared/reference/replay-scenario-dev-max_cpu.json --output json"
)]
pub struct ReplayArgs {
    /// The trace (e.g. ../shared/datasets/azure-vm-cpu-2017/vm_cpu_readings.csv).
    #[arg(long)]
    pub trace: PathBuf,
    /// Trace format: auto, azure-v1, alibaba, long-csv or parquet.
    #[arg(long, default_value = "auto")]
    pub format: importer::FormatChoice,
    /// Metric replayed: the 5-minute peak (`max_cpu`) is what overloads a host.
    #[arg(long, default_value = "max_cpu")]
    pub metric: String,
    /// Policies, comma-separated: none, reactive, proactive, risk; the
    /// bounds oracle, oracle-1, oracle-2 and hindsight (the best static
    /// placement with the whole trace in view); and reactive-frontier (the
    /// reactive rules swept over 3,960 settings on both cores; every policy
    /// is then placed against the best of them).
    #[arg(long, default_value = "none,reactive,proactive,oracle")]
    pub policy: String,
    /// Hosts of the generated scenario.
    #[arg(long, default_value_t = 6)]
    pub hosts: usize,
    /// Cores per host of the generated scenario.
    #[arg(long, default_value_t = 16.0)]
    pub host_cores: f64,
    /// Requested cores a host may take per physical core in the generated
    /// packing (2.8 with 6 hosts puts the 100 Azure VMs at about 55 % mean load).
    #[arg(long, default_value_t = 2.8)]
    pub overcommit: f64,
    /// Seed of the generated scenario.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Replay this scenario file instead of generating one.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Write the scenario replayed as JSON.
    #[arg(long)]
    pub scenario_out: Option<PathBuf>,
    /// Replay with the VMs' names shuffled among them (a permutation seeded
    /// with this): each VM keeps its size, host and load. A policy whose
    /// result changes lets names decide ties; the scenario written by
    /// --scenario-out keeps the names as given.
    #[arg(long, value_name = "SEED")]
    pub shuffle_names: Option<u64>,
    /// Steps the risk rule's first run waits, shifting its cadence (fewer
    /// than its interval's steps, 3 by default): a result that moves shows
    /// how much of it the timing decided (paced by moves, the default, it
    /// should not move).
    #[arg(long, value_name = "STEPS", default_value_t = 0)]
    pub risk_phase: usize,
    /// The reactive settings swept for reactive-frontier, e.g.
    /// `threshold=0.8,0.9;target=0.5,0.7;budget=1,5;cooldown=12,288`; keys
    /// left out keep the default grid (threshold 0.60–1.10 and target
    /// 0.40–0.75 by 0.05, budget 1–5, cooldown 3–576 steps).
    #[arg(long)]
    pub frontier_grid: Option<Grid>,
    /// Write the report; `.json`, `.md` or (with reactive-frontier) `.svg`,
    /// the plot of overloads against migrations, by extension (repeatable).
    /// A Markdown report with a frontier also writes its plot beside it.
    #[arg(long)]
    pub report: Vec<PathBuf>,
    /// Forecasting model of the proactive policy: cross-fit, bundled, or an artifact path.
    #[arg(long, default_value = "cross-fit")]
    pub model: ModelChoice,
    /// Steps the controller looks ahead.
    #[arg(long, default_value_t = 6)]
    pub horizon: usize,
    /// Swarm's micro-migration hysteresis, 0..1 (1 turns micro-migrations off) [default: the controller's].
    #[arg(long)]
    pub gain_threshold: Option<f64>,
    /// Swarm's limit on a target's utilisation, now and forecast, 0..1 [default: the controller's].
    #[arg(long)]
    pub max_cpu_utilization: Option<f64>,
    /// Swarm acts on a host whose forecast upper bound passes this, 0..1 [default: the overload threshold, 0.9].
    #[arg(long)]
    pub risk_threshold: Option<f64>,
    /// Settings of the risk-aware rule, as swarmd's `[controller.risk]`
    /// table reads them, inline: e.g. `window = "3d", confidence_z = 1.5`
    /// (to replay settings before setting them in swarmd) [default: swarmd's].
    #[arg(long, value_name = "TOML")]
    pub risk: Option<String>,
    /// Whether the risk policy tunes its own settings as the replay
    /// advances, on the trace's past only, as swarmd does on its history
    /// (`[controller] self_tuning`) [default: swarmd's, true].
    #[arg(long)]
    pub self_tuning: Option<bool>,
    /// The self-tuner's guards and bounds, as swarmd's `[controller.tuning]`
    /// table reads them, inline: e.g. `choose = "5d", max_window = "3d"`
    /// [default: swarmd's].
    #[arg(long, value_name = "TOML")]
    pub tuning: Option<String>,
    /// Correlation assumed between co-located VMs' forecast errors, 0..1 [default: the replay's].
    #[arg(long)]
    pub spread_correlation: Option<f64>,
    /// With `--model cross-fit`: also train a model of this upper quantile
    /// of each step (pinball-loss trees) into each fold's artifact, and use
    /// it as each VM's forecast upper bound instead of the median model's
    /// constant-width interval (an artifact given with --model uses its own
    /// upper-quantile model, if it has one).
    #[arg(long)]
    pub upper_quantile: Option<f64>,
    /// Swarm's per-VM cooldown, minutes [default: the replay's, 60].
    #[arg(long)]
    pub cooldown_minutes: Option<f64>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

fn bar(quiet: bool, len: u64, msg: String) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} steps ({eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.set_message(msg);
    b
}

fn spinner(quiet: bool, msg: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new_spinner();
    b.set_message(msg.to_owned());
    b.enable_steady_tick(std::time::Duration::from_millis(120));
    b
}

/// A `[controller.<name>]` table given inline on the command line
/// (`--<name> 'key = value, …'`), read by the config file's own types.
fn inline_table<T: serde::de::DeserializeOwned>(name: &str, body: &str) -> Result<T, CtlError> {
    #[derive(serde::Deserialize)]
    struct Inline<T> {
        table: T,
    }
    toml::from_str::<Inline<T>>(&format!("table = {{ {body} }}"))
        .map(|i| i.table)
        .map_err(|e| CtlError::Input(format!("--{name} {body:?}: {}", e.message())))
}

/// Runs the replay and writes what was asked; returns the report.
pub fn replay(a: ReplayArgs) -> Result<Report, CtlError> {
    let input = |m: String| CtlError::Input(m);
    let selection = Policy::parse_list(&a.policy).map_err(|e| input(format!("--policy: {e}")))?;
    let policies = selection.policies;
    if a.horizon == 0 || a.horizon > 12 {
        return Err(input(format!("--horizon must be 1..=12 steps, got {}", a.horizon)));
    }
    for r in &a.report {
        match r.extension().and_then(|e| e.to_str()) {
            Some("json") | Some("md") => {}
            Some("svg") if selection.frontier => {}
            Some("svg") => {
                return Err(input(format!(
                    "--report {}: an SVG plot needs the frontier: add reactive-frontier to --policy",
                    r.display()
                )));
            }
            _ => return Err(input(format!("--report {}: the name must end in .json, .md or .svg", r.display()))),
        }
    }
    if a.frontier_grid.is_some() && !selection.frontier {
        return Err(input("--frontier-grid: add reactive-frontier to --policy to sweep it".into()));
    }
    let sp = spinner(a.quiet, "reading the trace");
    let imported = importer::import(&a.trace, a.format.0)?;
    let (series, _) = regular::regularize(&imported.frame, &a.metric, swarm_training::data::MAX_FILL)
        .map_err(|e| input(format!("{}: {e}", a.trace.display())))?;
    sp.finish_and_clear();
    if series.is_empty() {
        return Err(input(format!("{} has no series of metric {:?}", a.trace.display(), a.metric)));
    }
    let (scenario, source) = match &a.scenario {
        Some(p) => (Scenario::load(p).map_err(|e| input(e.to_string()))?, format!("file {}", p.display())),
        None => {
            if a.hosts == 0
                || a.host_cores.is_nan()
                || a.host_cores <= 0.0
                || a.overcommit.is_nan()
                || a.overcommit <= 0.0
            {
                return Err(input("--hosts, --host-cores and --overcommit must be > 0".into()));
            }
            let ids: Vec<String> = series.iter().map(|s| s.entity.clone()).collect();
            let r = Rule { hosts: a.hosts, host_cores: a.host_cores, overcommit: a.overcommit, seed: a.seed };
            (scenario::generate(&ids, &r).map_err(|e| input(e.to_string()))?, "generated by the seeded rule".into())
        }
    };
    if let Some(p) = &a.scenario_out {
        scenario.save(p)?;
    }
    let aligned = forecasts::align(&series, &scenario).map_err(|e| input(e.to_string()))?;
    let demand = aligned.demand(&scenario);
    let mut params = Params::default();
    params.controller.horizon_steps = a.horizon;
    if let Some(g) = a.gain_threshold {
        params.controller.gain_threshold = g;
    }
    if let Some(r) = a.risk_threshold {
        params.controller.overload_threshold = r;
    }
    if let Some(r) = a.spread_correlation {
        params.controller.spread_correlation = r;
    }
    if let Some(m) = a.cooldown_minutes {
        if !(m >= 0.0 && m.is_finite()) {
            return Err(input(format!("--cooldown-minutes must be >= 0, got {m}")));
        }
        params.controller.cooldown_ms = (m * 60_000.0) as i64;
    }
    if let Some(q) = a.upper_quantile {
        swarm_models::artifact::UpperQuantile::check(q).map_err(|e| input(format!("--upper-quantile: {e}")))?;
        if a.model != ModelChoice::CrossFit {
            return Err(input("--upper-quantile needs --model cross-fit (it trains the quantile models)".into()));
        }
    }
    if let Some(u) = a.max_cpu_utilization {
        params.controller.max_cpu_utilization = u;
    }
    if let Some(r) = &a.risk {
        params.controller.risk = inline_table("risk", r)?;
    }
    if let Some(t) = &a.tuning {
        params.controller.tuning = inline_table("tuning", t)?;
    }
    if let Some(on) = a.self_tuning {
        params.controller.self_tuning = on;
    }
    let interval_steps = params.controller.risk.interval_steps(demand.step_ms);
    if a.risk_phase >= interval_steps {
        return Err(input(format!(
            "--risk-phase must be fewer steps than the rule's interval ({interval_steps}), got {}",
            a.risk_phase
        )));
    }
    params.risk_phase = a.risk_phase;
    params.controller.validate().map_err(|e| input(format!("controller settings: {e}")))?;
    let trace = a.trace.display().to_string();
    let (fc, model) = if policies.contains(&Policy::Proactive) {
        let sp = spinner(a.quiet, "preparing forecasts");
        let models = forecasts::models(&a.model, &aligned, a.horizon, a.upper_quantile, &a.metric, &trace).map_err(
            |e| match e {
                forecasts::InputError::Training(m) => CtlError::Input(m),
                e => input(e.to_string()),
            },
        )?;
        let fc = forecasts::forecasts(&models, &aligned, &scenario, a.horizon);
        sp.finish_and_clear();
        let desc = models
            .iter()
            .map(|a| format!("{} VMs: {} [{}]", a.vms.len(), a.model.produced_by, a.model.metric))
            .collect::<Vec<_>>()
            .join("; ");
        (Some(fc), desc)
    } else {
        (None, "none (no proactive policy)".into())
    };
    // Renamed once the trace is aligned and forecast by position, so each
    // VM keeps its load under its new name.
    let (scenario, source) = match a.shuffle_names {
        Some(seed) => (scenario.with_names_shuffled(seed), format!("{source}; VM names shuffled (seed {seed})")),
        None => (scenario, source),
    };
    let steps = demand.steps();
    let run = |p: Policy| {
        let b = bar(a.quiet, steps as u64, p.name().to_owned());
        let r = engine::simulate(&scenario, &demand, p, &params, fc.as_ref(), &mut |done| {
            if done % 64 == 0 || done == steps {
                b.set_position(done as u64)
            }
        });
        b.finish_and_clear();
        r
    };
    let mut results = Vec::new();
    let mut reactive = None;
    for &p in &policies {
        let (r, trajectory) = run(p);
        if p == Policy::Reactive {
            reactive = Some(trajectory);
        }
        results.push((p, r));
    }
    let physical: f64 = scenario.hosts.iter().map(|h| h.cores).sum();
    let requested: f64 = scenario.vms.iter().map(|v| v.cores).sum();
    let total_demand: f64 = demand.cores.iter().flatten().sum();
    let summary = ScenarioSummary {
        trace,
        metric: a.metric.clone(),
        hosts: scenario.hosts.len(),
        physical_cores: physical,
        vms: scenario.vms.len(),
        requested_cores: requested,
        overcommit: requested / physical,
        seed: scenario.seed,
        rule: scenario.rule.clone(),
        source,
        steps,
        step_minutes: demand.step_ms as f64 / 60_000.0,
        mean_host_load: total_demand / (physical * steps.max(1) as f64),
        overload_threshold: params.overload,
        memory_per_core_bytes: params.memory_per_core,
        model,
    };
    let command = std::iter::once("swarmctl".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ");
    // The forecasts' warnings are judged on the overloads the reactive
    // baseline leaves: those are what proactive has to see coming.
    let foresight = fc.as_ref().and_then(|f| {
        let trajectory = reactive.unwrap_or_else(|| run(Policy::Reactive).1);
        let sp = spinner(a.quiet, "judging the forecasts' warnings");
        let r = foresight::foresight(&scenario, &demand, &params, f, &trajectory, Policy::Reactive.name());
        sp.finish_and_clear();
        r
    });
    let mut report = Report::new(summary, results, foresight, params.controller, params.reactive, command);
    if selection.frontier {
        let grid = a.frontier_grid.clone().unwrap_or_default();
        let n = grid.settings().len();
        let b = bar(a.quiet, n as u64, "frontier".to_owned());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let f = frontier::sweep(&scenario, &demand, &params, &grid, threads, &|done| b.set_position(done as u64));
        b.finish_and_clear();
        report = report.with_frontier(f);
    }
    for r in &a.report {
        let text = match r.extension().and_then(|e| e.to_str()) {
            Some("json") => report.to_json(),
            Some("svg") => report.frontier_svg().expect("checked: the frontier was swept"),
            _ => match report.frontier_svg() {
                Some(svg) => {
                    let plot = r.with_extension("svg");
                    std::fs::write(&plot, svg)?;
                    let name = plot.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    format!("{}\n![Overloads against migrations]({name})\n", report.to_markdown())
                }
                None => report.to_markdown(),
            },
        };
        std::fs::write(r, text)?;
    }
    Ok(report)
}
