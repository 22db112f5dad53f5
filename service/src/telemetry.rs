//! swarmd's own health as Prometheus metrics (`GET /metrics` on the HTTP
//! port, OpenMetrics text). Counters are bumped where things happen; levels
//! (migrations by phase, nodes, store size) are read from the state at
//! scrape time, so they cannot drift from it.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `swarm_ingest_samples_total` | counter | `source` (grpc, otlp), `result` (accepted, rejected) |
//! | `swarm_ingest_overload_total` | counter | `source`, `reason`: ingest calls a limit refused or ended — `streams` (max_ingest_streams), `connection` (max_ingest_streams_per_connection), `pending` (max_pending_samples), `rate` (max_stream_samples_per_sec): RESOURCE_EXHAUSTED; `idle` (stream_idle_timeout): DEADLINE_EXCEEDED |
//! | `swarm_ingest_pending_samples` | gauge | samples received and not yet durable |
//! | `swarm_rounds_total` | counter | |
//! | `swarm_round_duration_seconds` | histogram | |
//! | `swarm_round_stage_seconds` | gauge | `stage` (metrics_backend, performance, usage, forecasts, data_access, view, risk: the risk-aware rule reading its history and weighing moves, only when it can act, decide, commit, release): time the last round, dry runs included, spent in each stage |
//! | `swarm_decisions_total` | counter | `kind` |
//! | `swarm_migrations` | gauge | `phase` |
//! | `swarm_nodes` | gauge | `kind` (physical, virtual) |
//! | `swarm_store_bytes` | gauge | `store` (metadata and series: on disk; series_memory: the stored samples in memory, buffers not counted) |
//! | `swarm_series_rows` | gauge | |
//! | `swarm_auth_denied_total` | counter | `code` (unauthenticated, permission_denied) |
//! | `swarm_rounds_skipped_total` | counter | `reason` (`metrics_backend`: the Prometheus backend could not be read) |
//! | `swarm_metrics_backend_refreshes_total` | counter | `result` (ok, error): reads of the Prometheus backend |
//! | `swarm_metadata_store_seconds` | histogram | `op` (commit, append decisions, read decisions, put performance): metadata store calls, embedded or etcd |
//! | `swarm_leader_term` | gauge | with `[store] backend = "etcd"`: the term this replica leads in (0 on the embedded store) |
//! | `swarm_leader_wait_seconds` | gauge | how long this replica stood by before it was elected |
//! | `swarm_leader_elections` | gauge | leader elections the deployment (etcd key prefix) has had, this leader's included: failovers are one fewer |
//! | `swarm_leader_lease_renewals_total` | counter | renewals of the leader lease etcd acknowledged |
//! | `swarm_decision_outcomes` | gauge | `kind`, `verdict` (helped, neutral, hurt): completed moves whose outcome is measured (README "Decision outcomes") |
//! | `swarm_decision_outcomes_pending` | gauge | completed moves whose window after the cutover has not passed |
//! | `swarm_decision_outcome_relief` | gauge | `kind`, `of` (predicted, realised): mean utilisation taken off the source, fraction of its capacity |
//! | `swarm_decision_outcome_helped_ratio` | gauge | `kind`: share of measured moves that helped |
//! | `swarm_cost_figure` | gauge | `figure` (transfer_rate_same_rack/same_zone/remote in bytes/s, startup_seconds, shutdown_seconds), `source` (configured, learned): the cost function's figures (README "Cost calibration") |
//! | `swarm_cost_figure_samples` | gauge | `figure`: completed migrations it was learned from |
//! | `swarm_risk_setting` | gauge | `setting` (window_seconds, confidence_z, interval_seconds), `source` (current: what rounds use, configured): the risk-aware rule's settings (README "Self-tuning") |
//! | `swarm_self_tuning_runs` | gauge | `verdict` (too_little_history, current_is_best, within_noise, not_confirmed, adopted): self-tuning runs since start-up |
//! | `swarm_self_tuning_last_run_timestamp_seconds` | gauge | when the self-tuner last ran on enough history (absent before) |
//! | `swarm_metrics_backend_up` | gauge | `backend` (prometheus): 1 when the last read or write of the Prometheus backend succeeded, 0 when it failed (absent with the embedded store) |

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The registry and its metrics. Cheap to update from any thread.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    ingest: Family<Labels, Counter>,
    overload: Family<Labels, Counter>,
    rounds: Counter,
    round_seconds: Histogram,
    round_stage: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    decisions: Family<Labels, Counter>,
    migrations: Family<Labels, Gauge>,
    nodes: Family<Labels, Gauge>,
    store_bytes: Family<Labels, Gauge>,
    series_rows: Gauge,
    pending: Gauge,
    auth_denied: Family<Labels, Counter>,
    rounds_skipped: Family<Labels, Counter>,
    backend_refreshes: Family<Labels, Counter>,
    backend_up: Family<Labels, Gauge>,
    leader_term: Gauge,
    elections: Gauge,
    failover_seconds: prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    lease_renewals: Counter,
    store_seconds: Family<Labels, Histogram>,
    outcomes: Family<Labels, Gauge>,
    outcomes_pending: Gauge,
    relief: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    helped: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    cost_figure: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    cost_samples: Family<Labels, Gauge>,
    risk_setting: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    tuning_runs: Family<Labels, Gauge>,
    tuning_last: Gauge<f64, std::sync::atomic::AtomicU64>,
}

/// Levels read from the state at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Levels {
    /// Migrations by phase name (every phase, zeros included).
    pub migrations: Vec<(&'static str, i64)>,
    /// Physical nodes (not removed).
    pub physical: i64,
    /// Virtual nodes.
    pub virtual_nodes: i64,
    /// Bytes of the metadata store on disk.
    pub metadata_bytes: i64,
    /// Bytes of the series files (WAL and snapshots) on disk.
    pub series_bytes: i64,
    /// Bytes of memory the stored samples take (buffers not counted).
    pub series_memory_bytes: i64,
    /// Rows held in the series frames.
    pub series_rows: i64,
    /// Samples received and not yet durable.
    pub pending_samples: i64,
    /// The Prometheus backend's health (`None`: embedded store, or not read yet).
    pub backend_up: Option<bool>,
    /// Decision outcomes, from the migration book.
    pub outcomes: OutcomeLevels,
    /// The cost function's figures: (name, configured, learned, samples).
    pub cost_figures: Vec<(&'static str, f64, Option<f64>, usize)>,
    /// The risk-aware rule's settings and the self-tuner's runs.
    pub policy: PolicyLevels,
}

/// The risk-aware rule's settings for `/metrics`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PolicyLevels {
    /// (setting, current, configured).
    pub settings: Vec<(&'static str, f64, f64)>,
    /// Self-tuning runs by verdict.
    pub runs: Vec<(&'static str, u64)>,
    /// When it last ran on enough history, s.
    pub last_run_s: Option<f64>,
}

/// Outcome figures for `/metrics`, read from the book at scrape time.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OutcomeLevels {
    /// Measured outcomes by (decision kind, verdict).
    pub counts: Vec<(&'static str, &'static str, i64)>,
    /// Completed migrations whose window has not passed.
    pub pending: i64,
    /// Per decision kind with measured outcomes.
    pub per_kind: Vec<KindLevels>,
}

/// One decision kind's outcome figures.
#[derive(Debug, Clone, PartialEq)]
pub struct KindLevels {
    /// The kind's name.
    pub kind: &'static str,
    /// Mean predicted and realised relief, over outcomes with both.
    pub relief: Option<(f64, f64)>,
    /// Share of its measured outcomes that helped.
    pub helped: f64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// Registers every metric.
    pub fn new() -> Telemetry {
        let mut registry = Registry::with_prefix("swarm");
        let ingest = Family::<Labels, Counter>::default();
        registry.register("ingest_samples", "Samples received, by intake and result", ingest.clone());
        let overload = Family::<Labels, Counter>::default();
        registry.register(
            "ingest_overload",
            "Ingest batches answered RESOURCE_EXHAUSTED (back-pressure)",
            overload.clone(),
        );
        let rounds = Counter::default();
        registry.register("rounds", "Controller rounds run (not dry runs)", rounds.clone());
        let round_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register("round_duration_seconds", "Duration of controller rounds", round_seconds.clone());
        let round_stage = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "round_stage_seconds",
            "Seconds the last round (dry runs included) spent in each stage",
            round_stage.clone(),
        );
        let decisions = Family::<Labels, Counter>::default();
        registry.register("decisions", "Decisions persisted, by kind", decisions.clone());
        let migrations = Family::<Labels, Gauge>::default();
        registry.register("migrations", "Migrations by phase", migrations.clone());
        let nodes = Family::<Labels, Gauge>::default();
        registry.register("nodes", "Registered nodes (physical: not removed)", nodes.clone());
        let store_bytes = Family::<Labels, Gauge>::default();
        registry.register("store_bytes", "Bytes on disk, by store", store_bytes.clone());
        let series_rows = Gauge::default();
        registry.register("series_rows", "Samples held in the series frames", series_rows.clone());
        let pending = Gauge::default();
        registry.register("ingest_pending_samples", "Samples received and not yet durable", pending.clone());
        let auth_denied = Family::<Labels, Counter>::default();
        registry.register("auth_denied", "Calls refused by authentication", auth_denied.clone());
        let rounds_skipped = Family::<Labels, Counter>::default();
        registry.register("rounds_skipped", "Rounds not run, by reason", rounds_skipped.clone());
        let backend_refreshes = Family::<Labels, Counter>::default();
        registry.register(
            "metrics_backend_refreshes",
            "Reads of the Prometheus metrics backend, by result",
            backend_refreshes.clone(),
        );
        // A family, so it has no line at all until there is a backend.
        let backend_up = Family::<Labels, Gauge>::default();
        registry.register(
            "metrics_backend_up",
            "1 if the last read or write of the metrics backend succeeded",
            backend_up.clone(),
        );
        let leader_term = Gauge::default();
        registry.register(
            "leader_term",
            "The etcd term (leader key revision) this replica leads in; absent on the embedded store",
            leader_term.clone(),
        );
        let failover_seconds = prometheus_client::metrics::gauge::Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "leader_wait_seconds",
            "How long this replica stood by before it was elected",
            failover_seconds.clone(),
        );
        let elections = Gauge::default();
        registry.register(
            "leader_elections",
            "Leader elections this deployment (etcd key prefix) has had, this leader's included: failovers are one fewer",
            elections.clone(),
        );
        let lease_renewals = Counter::default();
        registry.register(
            "leader_lease_renewals",
            "Renewals of the leader lease etcd acknowledged",
            lease_renewals.clone(),
        );
        let store_seconds = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "metadata_store_seconds",
            "Duration of metadata store calls (embedded or etcd), by operation",
            store_seconds.clone(),
        );
        let outcomes = Family::<Labels, Gauge>::default();
        registry.register(
            "decision_outcomes",
            "Completed moves with a measured outcome, by kind and verdict",
            outcomes.clone(),
        );
        let outcomes_pending = Gauge::default();
        registry.register(
            "decision_outcomes_pending",
            "Completed moves whose window after the cutover has not passed",
            outcomes_pending.clone(),
        );
        let relief = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "decision_outcome_relief",
            "Mean utilisation taken off the source by a move, predicted and realised, by kind",
            relief.clone(),
        );
        let helped = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "decision_outcome_helped_ratio",
            "Share of measured moves that helped, by kind",
            helped.clone(),
        );
        let cost_figure = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "cost_figure",
            "The cost function's figures (transfer rates bytes/s, start-up and shut-down s), configured and learned",
            cost_figure.clone(),
        );
        let cost_samples = Family::<Labels, Gauge>::default();
        registry.register(
            "cost_figure_samples",
            "Completed migrations a cost figure was learned from",
            cost_samples.clone(),
        );
        let risk_setting = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "risk_setting",
            "The risk-aware rule's settings: current (what rounds use) and configured",
            risk_setting.clone(),
        );
        let tuning_runs = Family::<Labels, Gauge>::default();
        registry.register("self_tuning_runs", "Self-tuning runs since start-up, by verdict", tuning_runs.clone());
        let tuning_last = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "self_tuning_last_run_timestamp_seconds",
            "When the self-tuner last ran on enough history",
            tuning_last.clone(),
        );
        Telemetry {
            registry,
            risk_setting,
            tuning_runs,
            tuning_last,
            ingest,
            overload,
            rounds,
            round_seconds,
            round_stage,
            decisions,
            migrations,
            nodes,
            store_bytes,
            series_rows,
            pending,
            auth_denied,
            rounds_skipped,
            backend_refreshes,
            backend_up,
            leader_term,
            elections,
            failover_seconds,
            lease_renewals,
            store_seconds,
            outcomes,
            outcomes_pending,
            relief,
            helped,
            cost_figure,
            cost_samples,
        }
    }

    /// This replica leads in `term`, after standing by for `waited`
    /// seconds; the deployment has had `elections` elections.
    pub fn leader(&self, term: i64, waited: f64, elections: u64) {
        self.leader_term.set(term);
        self.elections.set(elections.min(i64::MAX as u64) as i64);
        self.failover_seconds.set(waited);
    }

    /// The lease renewals acknowledged so far (a running total).
    pub fn lease_renewals(&self, total: u64) {
        let now = self.lease_renewals.get();
        if total > now {
            self.lease_renewals.inc_by(total - now);
        }
    }

    /// A metadata store call and how long it took.
    pub fn store_call(&self, op: &'static str, seconds: f64) {
        self.store_seconds.get_or_create(&vec![("op", op.into())]).observe(seconds);
    }

    /// A round that did not run, and why.
    pub fn round_skipped(&self, reason: &'static str) {
        self.rounds_skipped.get_or_create(&vec![("reason", reason.into())]).inc();
    }

    /// A read of the metrics backend.
    pub fn metrics_refresh(&self, ok: bool) {
        self.backend_refreshes.get_or_create(&vec![("result", if ok { "ok" } else { "error" }.into())]).inc();
    }

    /// Samples taken and refused by one intake.
    pub fn ingest(&self, source: &'static str, accepted: u64, rejected: u64) {
        if accepted > 0 {
            self.ingest.get_or_create(&vec![("source", source.into()), ("result", "accepted".into())]).inc_by(accepted);
        }
        if rejected > 0 {
            self.ingest.get_or_create(&vec![("source", source.into()), ("result", "rejected".into())]).inc_by(rejected);
        }
    }

    /// A call refused or ended by a limit, and which (`streams`, `connection`, `pending`, `rate`, `idle`).
    pub fn overload(&self, source: &'static str, reason: &'static str) {
        self.overload.get_or_create(&vec![("source", source.into()), ("reason", reason.into())]).inc();
    }

    /// A round that ran.
    pub fn round(&self, seconds: f64) {
        self.rounds.inc();
        self.round_seconds.observe(seconds);
    }

    /// The stage times of the round that just ended (dry run or not).
    pub fn round_stages(&self, stages: &[(&'static str, f64)]) {
        for &(stage, seconds) in stages {
            self.round_stage.get_or_create(&vec![("stage", stage.into())]).set(seconds);
        }
    }

    /// A persisted decision.
    pub fn decision(&self, kind: &str) {
        self.decisions.get_or_create(&vec![("kind", kind.to_owned())]).inc();
    }

    /// A call refused by authentication.
    pub fn auth_denied(&self, code: &'static str) {
        self.auth_denied.get_or_create(&vec![("code", code.into())]).inc();
    }

    /// The OpenMetrics text of everything, with `levels` as read now.
    pub fn render(&self, levels: &Levels) -> String {
        for (phase, n) in &levels.migrations {
            self.migrations.get_or_create(&vec![("phase", (*phase).to_owned())]).set(*n);
        }
        self.nodes.get_or_create(&vec![("kind", "physical".into())]).set(levels.physical);
        self.nodes.get_or_create(&vec![("kind", "virtual".into())]).set(levels.virtual_nodes);
        self.store_bytes.get_or_create(&vec![("store", "metadata".into())]).set(levels.metadata_bytes);
        self.store_bytes.get_or_create(&vec![("store", "series".into())]).set(levels.series_bytes);
        self.store_bytes.get_or_create(&vec![("store", "series_memory".into())]).set(levels.series_memory_bytes);
        self.series_rows.set(levels.series_rows);
        self.pending.set(levels.pending_samples);
        if let Some(up) = levels.backend_up {
            self.backend_up.get_or_create(&vec![("backend", "prometheus".into())]).set(up as i64);
        }
        let o = &levels.outcomes;
        for (kind, verdict, n) in &o.counts {
            self.outcomes
                .get_or_create(&vec![("kind", (*kind).to_owned()), ("verdict", (*verdict).to_owned())])
                .set(*n);
        }
        self.outcomes_pending.set(o.pending);
        for k in &o.per_kind {
            if let Some((predicted, realised)) = k.relief {
                self.relief
                    .get_or_create(&vec![("kind", k.kind.to_owned()), ("of", "predicted".into())])
                    .set(predicted);
                self.relief.get_or_create(&vec![("kind", k.kind.to_owned()), ("of", "realised".into())]).set(realised);
            }
            self.helped.get_or_create(&vec![("kind", k.kind.to_owned())]).set(k.helped);
        }
        for &(name, configured, learned, samples) in &levels.cost_figures {
            self.cost_figure
                .get_or_create(&vec![("figure", name.to_owned()), ("source", "configured".into())])
                .set(configured);
            if let Some(l) = learned {
                self.cost_figure.get_or_create(&vec![("figure", name.to_owned()), ("source", "learned".into())]).set(l);
            }
            self.cost_samples.get_or_create(&vec![("figure", name.to_owned())]).set(samples as i64);
        }
        let p = &levels.policy;
        for &(name, current, configured) in &p.settings {
            self.risk_setting
                .get_or_create(&vec![("setting", name.to_owned()), ("source", "current".into())])
                .set(current);
            self.risk_setting
                .get_or_create(&vec![("setting", name.to_owned()), ("source", "configured".into())])
                .set(configured);
        }
        for &(verdict, n) in &p.runs {
            self.tuning_runs.get_or_create(&vec![("verdict", verdict.to_owned())]).set(n as i64);
        }
        if let Some(at) = p.last_run_s {
            self.tuning_last.set(at);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Bytes of the files under `dir`, recursively (0 when it does not exist).
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_levels() {
        let t = Telemetry::new();
        t.ingest("grpc", 10, 2);
        t.ingest("otlp", 3, 0);
        t.round(0.004);
        t.decision("predictive");
        t.decision("predictive");
        let text = t.render(&Levels {
            migrations: vec![("shadowing", 2), ("completed", 5)],
            physical: 3,
            virtual_nodes: 12,
            metadata_bytes: 4096,
            series_bytes: 100,
            series_memory_bytes: 64,
            series_rows: 77,
            pending_samples: 5,
            backend_up: Some(false),
            outcomes: OutcomeLevels {
                counts: vec![("predictive", "helped", 3), ("predictive", "hurt", 1)],
                pending: 2,
                per_kind: vec![KindLevels { kind: "predictive", relief: Some((0.25, 0.125)), helped: 0.75 }],
            },
            cost_figures: vec![("transfer_rate_same_rack", 1.25e9, Some(5e8), 7), ("startup_seconds", 10.0, None, 0)],
            policy: PolicyLevels {
                settings: vec![("confidence_z", 1.0, 2.0)],
                runs: vec![("adopted", 1), ("not_confirmed", 3)],
                last_run_s: Some(1.5e9),
            },
        });
        for line in [
            "swarm_decision_outcomes{kind=\"predictive\",verdict=\"helped\"} 3",
            "swarm_decision_outcomes_pending 2",
            "swarm_cost_figure{figure=\"transfer_rate_same_rack\",source=\"learned\"} 500000000.0",
            "swarm_cost_figure_samples{figure=\"transfer_rate_same_rack\"} 7",
            "swarm_cost_figure{figure=\"startup_seconds\",source=\"configured\"} 10.0",
            "swarm_decision_outcome_relief{kind=\"predictive\",of=\"realised\"} 0.125",
            "swarm_decision_outcome_helped_ratio{kind=\"predictive\"} 0.75",
            "swarm_ingest_samples_total{source=\"grpc\",result=\"accepted\"} 10",
            "swarm_ingest_samples_total{source=\"grpc\",result=\"rejected\"} 2",
            "swarm_ingest_samples_total{source=\"otlp\",result=\"accepted\"} 3",
            "swarm_rounds_total 1",
            "swarm_round_duration_seconds_count 1",
            "swarm_decisions_total{kind=\"predictive\"} 2",
            "swarm_migrations{phase=\"shadowing\"} 2",
            "swarm_nodes{kind=\"virtual\"} 12",
            "swarm_store_bytes{store=\"metadata\"} 4096",
            "swarm_store_bytes{store=\"series_memory\"} 64",
            "swarm_series_rows 77",
            "swarm_ingest_pending_samples 5",
            "swarm_metrics_backend_up{backend=\"prometheus\"} 0",
            "swarm_risk_setting{setting=\"confidence_z\",source=\"current\"} 1.0",
            "swarm_risk_setting{setting=\"confidence_z\",source=\"configured\"} 2.0",
            "swarm_self_tuning_runs{verdict=\"not_confirmed\"} 3",
            "swarm_self_tuning_last_run_timestamp_seconds 1500000000.0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
