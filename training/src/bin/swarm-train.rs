//! `swarm-train`: fit forecasting models on traces and backtest them.
//!
//! `main` parses flags, dispatches, and maps errors to exit codes
//! (2: bad input, 1: other failures).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use swarm_datasets::import::FormatChoice;
use swarm_models::artifact::{Artifact, UpperQuantile};
use swarm_training::backtest::{self, Protocol, Report};
use swarm_training::data::{self, Loaded};
use swarm_training::fit::{self, FitOptions, Learner, MaseWeights, UpperHead};
use swarm_training::gbt::GbtParams;

/// Fit and evaluate Swarm's forecasting models.
#[derive(Parser, Debug)]
#[command(
    name = "swarm-train",
    version,
    about,
    after_help = "Examples:\n  swarm-train fit --dataset ../shared/datasets/azure-vm-cpu-2017/vm_cpu_readings.csv --metric avg_cpu --horizons 1-12 --out model.json\n  swarm-train evaluate --dataset trace.csv --metric avg_cpu --report report.json\n  swarm-train evaluate --dataset other.csv --metric avg_cpu --model model.json --report report.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone)]
struct DataArgs {
    /// The trace file.
    #[arg(long)]
    dataset: PathBuf,
    /// Its format: auto, azure-v1, alibaba, long-csv or parquet.
    #[arg(long, default_value = "auto")]
    format: FormatChoice,
    /// The metric to forecast (the source's name, e.g. avg_cpu).
    #[arg(long)]
    metric: String,
    /// Use only the first N series of the file.
    #[arg(long)]
    entities: Option<usize>,
    /// The learner: trees (absolute-loss gradient boosting) or linear (median regression).
    #[arg(long, value_enum, default_value_t = LearnerArg::Trees)]
    learner: LearnerArg,
    /// Also fit an upper-quantile model (pinball loss, 50 trees) at this
    /// quantile, e.g. 0.95; it becomes the served upper bound.
    #[arg(long, value_parser = parse_upper_quantile)]
    upper_quantile: Option<f64>,
}

fn parse_upper_quantile(s: &str) -> Result<f64, String> {
    let q = s.parse::<f64>().map_err(|_| format!("{s:?} is not a number; give a quantile such as 0.95"))?;
    UpperQuantile::check(q)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LearnerArg {
    /// Absolute-loss gradient-boosted trees.
    Trees,
    /// Median (absolute-loss) linear regression.
    Linear,
}

impl LearnerArg {
    fn learner(self) -> Learner {
        match self {
            LearnerArg::Trees => Learner::Trees(GbtParams::default()),
            LearnerArg::Linear => Learner::Linear { iterations: 8 },
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fit a model on all but the last 2 days of every series, evaluate it on
    /// those 2 days, and write the artifact with its evaluation inside.
    Fit {
        #[command(flatten)]
        data: DataArgs,
        /// Horizons in steps: a list (1,3,6,12) or a range (1-12).
        #[arg(long, default_value = "1-12")]
        horizons: Horizons,
        /// The artifact to write.
        #[arg(long)]
        out: PathBuf,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
    },
    /// Backtest a model (fitted here on the data before the test window, or
    /// given with --model) against the baselines.
    Evaluate {
        #[command(flatten)]
        data: DataArgs,
        /// Evaluate this artifact as is instead of fitting one.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Horizons when fitting here.
        #[arg(long, default_value = "1-12")]
        horizons: Horizons,
        /// Report file: JSON; a Markdown copy is written beside it (.md).
        #[arg(long)]
        report: PathBuf,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
    },
}

/// Horizons in steps, parsed from a list (1,3,6,12) or range (1-12).
#[derive(Debug, Clone)]
struct Horizons(Vec<usize>);

impl std::str::FromStr for Horizons {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_horizons(s).map(Horizons)
    }
}

fn parse_horizons(s: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("{s:?} is not a horizon list (e.g. 1,3,6,12) or range (e.g. 1-12)");
    let mut out = Vec::new();
    for part in s.split(',') {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            if a == 0 || b < a {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            let h: usize = part.trim().parse().map_err(|_| bad())?;
            if h == 0 {
                return Err("horizons start at 1".into());
            }
            out.push(h);
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() || *out.last().unwrap() > 288 {
        return Err(format!("{s:?}: between 1 and 288 horizons of at most 288 steps"));
    }
    Ok(out)
}

fn main() -> ExitCode {
    // First: a copy of this program started to read one Parquet file
    // answers and exits; otherwise Parquet files are read in such a copy
    // before this process touches them (Polars can abort on corrupt ones).
    swarm_datasets::isolate::serve_or_enable();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SWARM_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarm-train: {e:#}");
            let input = e.downcast_ref::<data::DataError>().is_some()
                || e.downcast_ref::<swarm_models::ArtifactError>().is_some();
            ExitCode::from(if input { 2 } else { 1 })
        }
    }
}

fn spinner(quiet: bool, msg: &str) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new_spinner();
    b.set_message(msg.to_owned());
    b.enable_steady_tick(std::time::Duration::from_millis(120));
    b
}

fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    args[0] = "swarm-train".into();
    args.join(" ")
}

fn load(d: &DataArgs, quiet: bool) -> Result<Loaded> {
    let bar = spinner(quiet, &format!("reading {}", d.dataset.display()));
    let loaded = data::load(&d.dataset, d.format.0, &d.metric, d.entities)?;
    bar.finish_and_clear();
    if loaded.bad_rows > 0 {
        eprintln!("note: {} rows of {} could not be parsed and were skipped", loaded.bad_rows, loaded.path);
    }
    let intervals: std::collections::BTreeSet<i64> = loaded.series.iter().map(|s| s.interval_ms).collect();
    if intervals.len() > 1 {
        bail!("series have different sampling intervals ({intervals:?} ms); train one model per interval");
    }
    Ok(loaded)
}

fn fit_before_window(
    loaded: &Loaded,
    learner: Learner,
    upper_quantile: Option<f64>,
    horizons: &[usize],
    protocol: &Protocol,
    quiet: bool,
) -> Result<Artifact> {
    let options = FitOptions {
        horizons: horizons.to_vec(),
        learner,
        upper: upper_quantile.map(UpperHead::new),
        // Weigh by the MASE the backtest will judge by.
        mase_weights: MaseWeights::Points(protocol.season),
        ..FitOptions::default()
    };
    let ends = backtest::train_ends(&loaded.series, protocol);
    let bar = spinner(quiet, &format!("fitting {} horizons on {} series", horizons.len(), loaded.series.len()));
    let started = Instant::now();
    let fitted = fit::fit(&loaded.series, &ends, &options).context("fitting failed")?;
    bar.finish_and_clear();
    if !quiet {
        eprintln!(
            "fitted {} horizons on {} rows each in {:.2}s",
            horizons.len(),
            fitted.rows,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(fit::to_artifact(
        fitted,
        &options,
        &loaded.series,
        &ends,
        fit::Provenance {
            produced_by: command_line(),
            metric: loaded.metric.clone(),
            dataset: loaded.path.clone(),
            format: loaded.format.name().into(),
        },
    ))
}

fn print_summary(report: &Report, title: &str) {
    println!("{}", report.markdown(title));
}

fn write_report(report: &Report, path: &Path, title: &str) -> Result<()> {
    let json = serde_json::to_string_pretty(report)? + "\n";
    std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    let md = path.with_extension("md");
    std::fs::write(&md, report.markdown(title)).with_context(|| format!("cannot write {}", md.display()))?;
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let protocol = Protocol::default();
    match cli.command {
        Command::Fit { data, horizons, out, quiet } => {
            let loaded = load(&data, quiet)?;
            let mut artifact =
                fit_before_window(&loaded, data.learner.learner(), data.upper_quantile, &horizons.0, &protocol, quiet)?;
            let report = backtest::evaluate(&loaded.series, &artifact, &protocol);
            artifact.evaluation = Some(serde_json::to_value(&report)?);
            artifact.save(&out).with_context(|| format!("cannot write {}", out.display()))?;
            print_summary(&report, &format!("{} on {} (test window: last 2 days)", data.metric, loaded.path));
            println!("wrote {}", out.display());
        }
        Command::Evaluate { data, model, horizons, report: report_path, quiet } => {
            let loaded = load(&data, quiet)?;
            let artifact = match &model {
                Some(p) => {
                    let a = Artifact::load(p)?;
                    if a.training.interval_ms != loaded.series[0].interval_ms {
                        bail!(
                            "the model was trained on {} ms samples but {} has {} ms samples",
                            a.training.interval_ms,
                            loaded.path,
                            loaded.series[0].interval_ms
                        );
                    }
                    a
                }
                None => fit_before_window(
                    &loaded,
                    data.learner.learner(),
                    data.upper_quantile,
                    &horizons.0,
                    &protocol,
                    quiet,
                )?,
            };
            let bar = spinner(quiet, "backtesting");
            let report = backtest::evaluate(&loaded.series, &artifact, &protocol);
            bar.finish_and_clear();
            let title = format!("{} on {}", data.metric, loaded.path);
            write_report(&report, &report_path, &title)?;
            print_summary(&report, &title);
            println!("wrote {} and {}", report_path.display(), report_path.with_extension("md").display());
        }
    }
    Ok(())
}
