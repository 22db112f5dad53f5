//! `swarmctl forecast NODE`: the server model's forecast of one series with
//! its interval, against recent history and the threshold that matters —
//! a table and a terminal chart for people, JSON or CSV for scripts.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use swarm_client::Conn;
use swarm_proto::v1 as pb;

use super::chart::Chart;
use super::output::{self, Output};
use super::{CtlError, Style};

/// How far ahead: a number of model steps, or a span of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Horizon {
    /// Steps of the model's interval.
    Steps(u32),
    /// A span, rounded up to whole steps.
    Span(Duration),
}

/// Parses `6` (steps) or `1h`, `30m` (a span).
pub fn parse_horizon(s: &str) -> Result<Horizon, String> {
    if let Ok(n) = s.trim().parse::<u32>() {
        return if n == 0 { Err("the horizon must be at least 1 step".into()) } else { Ok(Horizon::Steps(n)) };
    }
    let d = swarm_core::duration::parse(s)?;
    if d.is_zero() {
        return Err("the horizon must be longer than 0".into());
    }
    Ok(Horizon::Span(d))
}

/// A forecast metric, as the CLI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForecastMetric {
    /// Peak CPU in each interval, cores (what overloads a node).
    CpuPeak,
    /// Mean CPU in use, cores.
    Cpu,
    /// Memory in use, bytes.
    Memory,
    /// Network received, bytes/s.
    NetworkRx,
    /// Network transmitted, bytes/s.
    NetworkTx,
    /// Request latency, ms.
    Latency,
    /// Requests per second.
    Throughput,
}

impl ForecastMetric {
    fn wire(self) -> pb::Metric {
        match self {
            ForecastMetric::CpuPeak => pb::Metric::CpuPeak,
            ForecastMetric::Cpu => pb::Metric::CpuUsage,
            ForecastMetric::Memory => pb::Metric::MemoryBytes,
            ForecastMetric::NetworkRx => pb::Metric::NetworkRxBytesPerSec,
            ForecastMetric::NetworkTx => pb::Metric::NetworkTxBytesPerSec,
            ForecastMetric::Latency => pb::Metric::LatencyMs,
            ForecastMetric::Throughput => pb::Metric::ThroughputRps,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ForecastMetric::CpuPeak => "cpu-peak",
            ForecastMetric::Cpu => "cpu",
            ForecastMetric::Memory => "memory",
            ForecastMetric::NetworkRx => "network-rx",
            ForecastMetric::NetworkTx => "network-tx",
            ForecastMetric::Latency => "latency",
            ForecastMetric::Throughput => "throughput",
        }
    }
}

/// `forecast` arguments.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarmctl forecast v000                       # virtual node: cpu-peak, the model's longest horizon
  swarmctl forecast p3 --metric cpu --horizon 1h --history 6h
  swarmctl forecast v000 --horizon 6 --output csv > v000.csv
  swarmctl forecast v000 --output json | jq '.points[].upper'")]
pub struct ForecastArgs {
    /// The node (virtual or physical: found by id).
    pub node: String,
    /// Metric [default: cpu-peak for a virtual node, cpu for a physical one].
    #[arg(long, value_enum)]
    pub metric: Option<ForecastMetric>,
    /// How far ahead: a span (30m, 1h) or a number of model steps [default: the model's longest].
    #[arg(long, value_parser = parse_horizon)]
    pub horizon: Option<Horizon>,
    /// Recent history to show beside the forecast (0s: none).
    #[arg(long, default_value = "2h", value_parser = swarm_core::duration::parse)]
    pub history: Duration,
    /// Table only, no chart.
    #[arg(long)]
    pub no_chart: bool,
}

/// Runs the command.
pub async fn run(ch: Conn, out: Output, style: Style, a: ForecastArgs) -> Result<(), CtlError> {
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    let physical = topo
        .list_physical_nodes(pb::ListPhysicalNodesRequest { include_removed: true })
        .await?
        .into_inner()
        .nodes
        .iter()
        .any(|n| n.id == a.node);
    let kind = if physical { pb::EntityKind::Physical } else { pb::EntityKind::Virtual };
    let steps = match a.horizon {
        Some(Horizon::Steps(n)) => n,
        _ => 0,
    };
    let history_ms = i64::try_from(a.history.as_millis()).unwrap_or(i64::MAX);
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let request = |metric: ForecastMetric| pb::GetForecastRequest {
        entity_kind: kind as i32,
        entity_id: a.node.clone(),
        metric: metric.wire() as i32,
        horizon_steps: steps,
        history_ms,
    };
    // A virtual node's default is its peak series (peaks overload); where
    // only usage is reported, the controller forecasts usage, and so do we
    // (as the dashboard does), saying so.
    let mut metric = a.metric.unwrap_or(if physical { ForecastMetric::Cpu } else { ForecastMetric::CpuPeak });
    let mut answer = c.get_forecast(request(metric)).await;
    if a.metric.is_none()
        && metric == ForecastMetric::CpuPeak
        && matches!(&answer, Err(s) if s.code() == tonic::Code::FailedPrecondition && s.message().contains("has 0 usable"))
    {
        eprintln!("{} has no cpu_peak series; forecasting cpu (usage) instead", a.node);
        metric = ForecastMetric::Cpu;
        answer = c.get_forecast(request(metric)).await;
    }
    let mut r = answer
        .map_err(|s| match s.code() {
            tonic::Code::NotFound => CtlError::Rpc(tonic::Status::not_found(format!(
                "no virtual or physical node {:?}; list them with `swarmctl nodes list` and `swarmctl nodes list --virtual`",
                a.node
            ))),
            _ => CtlError::Rpc(s),
        })?
        .into_inner();
    if let Some(Horizon::Span(d)) = a.horizon {
        let step = r.step_ms.max(1) as u128;
        let want = d.as_millis().div_ceil(step) as usize;
        if want > r.points.len() {
            return Err(CtlError::Input(format!(
                "--horizon {} is beyond the model's longest horizon, {} ({} steps of {}); ask for at most that",
                humantime::format_duration(d),
                humantime::format_duration(Duration::from_millis(r.points.len() as u64 * step as u64)),
                r.points.len(),
                humantime::format_duration(Duration::from_millis(step as u64)),
            )));
        }
        r.points.truncate(want);
    }
    let v = ForecastView {
        node: a.node.clone(),
        kind: if physical { "physical" } else { "virtual" },
        metric: metric.name(),
        model: r.model.clone(),
        interval_coverage: r.interval_coverage,
        step_ms: r.step_ms,
        threshold: (r.threshold > 0.0).then_some(r.threshold),
        threshold_label: r.threshold_label.clone(),
        own_period: (r.period_steps > 0).then_some(OwnPeriod { steps: r.period_steps, strength: r.period_strength }),
        history: r.history.iter().map(|p| Observed { timestamp_ms: p.timestamp_ms, value: p.value }).collect(),
        points: r
            .points
            .iter()
            .map(|p| Point { timestamp_ms: p.timestamp_ms, mean: p.mean, lower: p.lower, upper: p.upper })
            .collect(),
    };
    match out {
        Output::Json => output::json(&serde_json::to_value(&v).map_err(std::io::Error::other)?),
        Output::Csv => {
            // One table for both: observed rows have a value, forecast rows a mean and interval.
            let observed = v.history.iter().map(|p| {
                vec![
                    p.timestamp_ms.to_string(),
                    "observed".into(),
                    p.value.to_string(),
                    "".into(),
                    "".into(),
                    "".into(),
                ]
            });
            let forecast = v.points.iter().map(|p| {
                vec![
                    p.timestamp_ms.to_string(),
                    "forecast".into(),
                    "".into(),
                    p.lower.to_string(),
                    p.mean.to_string(),
                    p.upper.to_string(),
                ]
            });
            let rows: Vec<Vec<String>> = observed.chain(forecast).collect();
            output::table(out, &["timestamp_ms", "kind", "value", "lower", "mean", "upper"], &rows)
        }
        Output::Table => {
            let now = v.points.first().map_or(0, |p| p.timestamp_ms - v.step_ms);
            let mut w = std::io::stdout().lock();
            writeln!(
                w,
                "{} ({}) {}: {:.0} % interval, {} steps of {}; model: {}",
                v.node,
                v.kind,
                v.metric,
                v.interval_coverage * 100.0,
                v.points.len(),
                humantime::format_duration(Duration::from_millis(v.step_ms.max(0) as u64)),
                v.model
            )?;
            if let Some(p) = &v.own_period {
                writeln!(
                    w,
                    "own period: {} steps ({}), off by {:.2}× what the last value is",
                    p.steps,
                    humantime::format_duration(Duration::from_millis(p.steps as u64 * v.step_ms.max(0) as u64)),
                    p.strength
                )?;
            }
            drop(w);
            let rows: Vec<Vec<String>> = v
                .points
                .iter()
                .map(|p| {
                    let over = v.threshold.is_some_and(|t| p.upper > t);
                    vec![
                        super::chart::span(p.timestamp_ms - now),
                        output::utc(p.timestamp_ms),
                        format!("{:.3}", p.lower),
                        format!("{:.3}", p.mean),
                        format!("{:.3}", p.upper),
                        if over { format!("upper > {}", v.threshold_label) } else { String::new() },
                    ]
                })
                .collect();
            output::table(out, &["AHEAD", "AT", "LOWER", "MEAN", "UPPER", ""], &rows)?;
            if !a.no_chart {
                let chart = Chart {
                    history: v.history.iter().map(|p| (p.timestamp_ms, p.value)).collect(),
                    forecast: v.points.iter().map(|p| (p.timestamp_ms, p.lower, p.mean, p.upper)).collect(),
                    threshold: v.threshold.map(|t| (t, v.threshold_label.clone())),
                    now_ms: now,
                };
                let mut w = std::io::stdout().lock();
                writeln!(w)?;
                write!(w, "{}", chart.render(style.width.saturating_sub(10).clamp(20, 100), 12, style.color))?;
            }
            Ok(())
        }
    }
}

/// An observed sample.
#[derive(Serialize)]
struct Observed {
    timestamp_ms: i64,
    value: f64,
}

/// A forecast step.
#[derive(Serialize)]
struct Point {
    timestamp_ms: i64,
    mean: f64,
    lower: f64,
    upper: f64,
}

/// `forecast NODE`: what JSON prints and the table and chart are drawn from.
#[derive(Serialize)]
struct ForecastView {
    node: String,
    kind: &'static str,
    metric: &'static str,
    model: String,
    interval_coverage: f64,
    step_ms: i64,
    /// `None`: the server sent no threshold.
    threshold: Option<f64>,
    threshold_label: String,
    /// `None`: the model has no own-period features.
    own_period: Option<OwnPeriod>,
    history: Vec<Observed>,
    points: Vec<Point>,
}

/// The series' own period as the model found it (the server's
/// `period_steps`, `period_strength`).
#[derive(Serialize)]
struct OwnPeriod {
    steps: u32,
    strength: f64,
}
