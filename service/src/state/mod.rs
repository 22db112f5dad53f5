//! The service's shared state and the operations on it, independent of gRPC.
//!
//! [`Swarm`] is a cheap-clone handle (as in mini-redis): the gRPC services,
//! the round timer and the demo all hold one. It owns the IO around the pure
//! placement code: it reads the topology and usage, calls
//! [`swarm_core::placement`], and persists what comes out.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use swarm_models::Artifact;
use tokio::sync::{Mutex, watch};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::decisions::DecisionLog;
use crate::forecast::{self, Aggregate, ForecastError};
use crate::series::frames::SeriesHandle;
use crate::series::{EntityKind, Metric, OpenReport, SeriesConfig, SeriesStore};
use crate::store::embedded::EmbeddedStore;
use crate::store::{Batch, MetaStore, TopologyChange};
use crate::validate::{self, FieldError};
use swarm_core::decision::Decision;
use swarm_core::domain::{NodeId, PhysicalNode, PhysicalState, Topology, VirtualNode};
use swarm_core::history::PerfTable;
use swarm_core::migration::book::Book;
use swarm_core::migration::machine::Migration;
use swarm_core::placement::affinity::{self, ClusterView, ObservedUsage, PartialResources};
use swarm_core::placement::controller::{self, Automation, ControllerConfig, Proposal};
use swarm_core::placement::view::{CpuForecast, ViewInputs};
use swarm_core::placement::{move_back, risk};
use swarm_core::reconfig::record::{GroupPolicy, Reconfiguration};

mod calibration;
mod load_history;
mod metrics_source;
mod migrations;
mod outcomes;
mod reconfig;
mod self_tuning;
pub use self_tuning::PolicySnapshot;

pub use reconfig::{ConfigChange, PlanSummary, ReconfigProgress};

pub use migrations::{REPORTABLE, health as validate_health, unknown_migration};

/// Errors of service operations; the gRPC layer maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field is invalid.
    #[error(transparent)]
    InvalidArgument(#[from] FieldError),
    /// An id does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Asked for data that is no longer retained.
    #[error("{0}")]
    OutOfRange(String),
    /// Storage is not available.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected storage failure.
    #[error("{0}")]
    Internal(String),
}

/// Errors opening the state.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Metadata store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Series store.
    #[error(transparent)]
    Series(#[from] crate::series::SeriesError),
    /// The forecasting model.
    #[error(transparent)]
    Model(#[from] swarm_models::ArtifactError),
    /// The Prometheus backend's settings.
    #[error(transparent)]
    MetricsBackend(#[from] crate::prometheus::PromError),
    /// The metadata store is gone but samples are there.
    #[error(
        "{meta} is missing but {series} holds samples: the topology, placements and decisions they belong to are gone. Restore meta.redb from a backup, or move the whole data directory aside to start empty"
    )]
    MetadataMissing {
        /// The missing store.
        meta: String,
        /// The series directory.
        series: String,
    },
    /// Stored migrations break an invariant.
    #[error(transparent)]
    Migrations(#[from] swarm_core::migration::book::TwoLive),
}

/// What one metadata write changes: topology and migration records, in one
/// transaction.
struct Write<R> {
    changes: Vec<TopologyChange>,
    migrations: Vec<Migration>,
    result: R,
    groups: Vec<(String, Option<GroupPolicy>)>,
    reconfigs: Vec<Reconfiguration>,
}

impl<R> Write<R> {
    fn new(changes: Vec<TopologyChange>, migrations: Vec<Migration>, result: R) -> Self {
        Write { changes, migrations, result, groups: Vec::new(), reconfigs: Vec::new() }
    }
}

/// The metadata held in memory: a copy of what the store holds, replaced
/// only inside [`Swarm::write`] and [`Swarm::commit_decisions`], after the
/// store has accepted the change. One lock for all of it, so a reader sees
/// topology, migrations, group rules and plans of the same moment.
struct Meta {
    topology: Arc<Topology>,
    /// Every migration.
    book: Book,
    /// Group spreading policies.
    groups: std::collections::BTreeMap<String, GroupPolicy>,
    /// Applied reconfiguration plans.
    reconfigs: std::collections::BTreeMap<String, Reconfiguration>,
    /// Bumped by every metadata write: a plan is applied only to the
    /// cluster it was made for.
    version: u64,
}

/// The locks, each for its own reason:
/// - `meta` (std `RwLock`): the metadata; held for moments, never across an
///   await;
/// - `mutate` (tokio `Mutex`): serialises metadata writes so the store's
///   order is memory's order; held across the store commit, an await;
/// - `round`, `reconfig_step` (tokio `Mutex`): one controller round, one
///   reconfiguration step at a time (two would decide on the same state);
/// - `history`, `plans` (std `Mutex`): the performance history the rounds
///   fold observations into, and dry-run plans (memory only) — neither is
///   written through `write`, so neither shares its lock.
struct Inner {
    cfg: Config,
    clock: SharedClock,
    store: Arc<dyn MetaStore>,
    meta: RwLock<Meta>,
    mutate: Mutex<()>,
    round: Mutex<()>,
    reconfig_step: Mutex<()>,
    history: std::sync::Mutex<PerfTable>,
    plans: std::sync::Mutex<HashMap<String, reconfig::StoredPlan>>,
    /// The embedded store, or the read cache of `prometheus`.
    series: SeriesStore,
    /// The Prometheus-compatible backend, when configured.
    prometheus: Option<crate::prometheus::Prometheus>,
    decisions: DecisionLog,
    model: Arc<Artifact>,
    shutdown: watch::Sender<bool>,
    /// swarmd's own metrics (`/metrics`).
    telemetry: crate::telemetry::Telemetry,
    /// Ingest limits and back-pressure.
    gate: crate::limits::Gate,
    /// When the risk-aware rule last counted as run in a real round, ms
    /// (`i64::MIN`: never; see [`risk::RiskConfig::ran`]): it moves (or
    /// runs) once per its interval, and a restart only makes it look one
    /// round early.
    risk_last_ms: std::sync::atomic::AtomicI64,
    /// The cost calibration, with the metadata version it was computed at.
    calibration: std::sync::Mutex<Option<(u64, swarm_core::placement::calibration::Calibration)>>,
    /// The self-tuner's choice of the risk-aware rule's settings.
    policy: std::sync::Mutex<self_tuning::PolicyState>,
}

/// Runs blocking work (store, series, planners) off the runtime's threads;
/// a panic in it is an internal error, not a crash of the server.
/// Wall time of a round's stages, in order: what `/metrics`
/// (`swarm_round_stage_seconds`) and the debug log report, so an operator
/// sees which stage grows with the fleet.
struct Stages {
    at: Instant,
    done: Vec<(&'static str, f64)>,
}

impl Stages {
    fn start() -> Stages {
        Stages { at: Instant::now(), done: Vec::new() }
    }

    /// Ends `stage` now (the next one starts); a stage marked again adds
    /// to its time.
    fn mark(&mut self, stage: &'static str) {
        let now = Instant::now();
        let secs = (now - self.at).as_secs_f64();
        match self.done.iter_mut().find(|d| d.0 == stage) {
            Some(d) => d.1 += secs,
            None => self.done.push((stage, secs)),
        }
        self.at = now;
    }
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (stage, s)) in self.done.iter().enumerate() {
            write!(f, "{}{stage}={:.1}ms", if i == 0 { "" } else { " " }, s * 1000.0)?;
        }
        Ok(())
    }
}

/// Runs `f` on every virtual node's CPU series (read in place, with a
/// scratch buffer), on every core: its peak series where `f` makes
/// something of it (peaks are what overloads), else its usage series, each
/// with the aggregate its samples take on a grid. The one home of that rule
/// in swarmd; a usage series is not even read when the peaks answered.
fn virtual_cpu<'a, T: Send + Sync>(
    frames: &'a crate::series::Frames,
    f: impl Fn(&SeriesHandle<'a>, Aggregate, &mut Vec<(i64, f64)>) -> Option<T> + Sync,
) -> Result<HashMap<Arc<str>, T>, polars::error::PolarsError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out: HashMap<Arc<str>, T> = HashMap::new();
    for metric in [Metric::CpuPeak, Metric::CpuUsage] {
        let agg = Aggregate::of(metric);
        let got = frames.map_series(
            EntityKind::Virtual,
            metric,
            threads,
            |e| out.contains_key(e),
            |_, series, buf| f(series, agg, buf),
        )?;
        out.extend(got);
    }
    Ok(out)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        if e.is_cancelled() {
            // Only a runtime that is shutting down cancels blocking tasks.
            ApiError::Unavailable("swarmd is shutting down; retry against the running server".into())
        } else {
            ApiError::Internal(format!("a blocking task failed: {e}"))
        }
    })
}

/// [`blocking`] for a series read: a Polars failure is internal.
async fn series_call<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, polars::error::PolarsError> + Send + 'static,
) -> Result<T, ApiError> {
    blocking(f).await?.map_err(|e| ApiError::Internal(e.to_string()))
}

/// What a round lends the risk-aware rule between its other stages.
struct RoundParts {
    view: ClusterView,
    last: HashMap<NodeId, i64>,
    cfg: ControllerConfig,
}

/// What one controller round decided.
#[derive(Debug, Clone)]
pub struct RoundReport {
    /// The round's id (a dry run gets the id the next real round would have).
    pub round_id: u64,
    /// Its decisions (persisted and published unless a dry run).
    pub decisions: Vec<Decision>,
    /// Virtual nodes considered.
    pub evaluated: usize,
    /// Skipped because of a cooldown.
    pub skipped_cooldown: usize,
    /// Cut by the per-round budget.
    pub skipped_budget: usize,
    /// Wall time, ms.
    pub duration_ms: f64,
    /// Nothing was persisted.
    pub dry_run: bool,
}

/// An affinity matrix: rows of virtual nodes against columns of physical nodes.
#[derive(Debug, Clone)]
pub struct AffinityMatrix {
    /// The columns.
    pub physical: Vec<NodeId>,
    /// The rows.
    pub rows: Vec<AffinityRow>,
    /// The weights that made the scores.
    pub weights: swarm_core::placement::affinity::Weights,
    /// When, ms.
    pub computed_at_ms: i64,
}

/// One virtual node's affinity for each column.
#[derive(Debug, Clone)]
pub struct AffinityRow {
    /// The virtual node.
    pub virt: NodeId,
    /// Where it runs (authoritative, not a migration's reserved target).
    pub current: Option<NodeId>,
    /// One score per column.
    pub scores: Vec<swarm_core::placement::affinity::Score>,
    /// With assessment: the controller's verdict per column (else empty).
    pub moves: Vec<swarm_core::placement::assess::Assessment>,
    /// With assessment: where a round would move it.
    pub would_move_to: Option<NodeId>,
}

/// Cheap-clone handle to the service state.
#[derive(Clone)]
pub struct Swarm {
    inner: Arc<Inner>,
}

/// What start-up recovered, for the log.
#[derive(Debug, Clone, Copy)]
pub struct StartReport {
    /// Series recovery.
    pub series: OpenReport,
    /// Physical nodes loaded.
    pub physical_nodes: usize,
    /// Virtual nodes loaded.
    pub virtual_nodes: usize,
    /// Newest decision sequence.
    pub last_decision: u64,
    /// Migrations still in progress (they resume).
    pub live_migrations: usize,
}

/// A data directory whose `meta.redb` is gone while its series files hold
/// samples lost its topology: starting would create an empty store beside
/// orphaned samples without a word. (A new data directory has neither.)
fn refuse_orphaned_samples(dir: &Path) -> Result<(), OpenError> {
    let (meta, series) = (meta_path(dir), series_dir(dir));
    if meta.exists() {
        return Ok(());
    }
    let holds_samples = std::fs::read_dir(&series).into_iter().flatten().flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        // A segment is more than its 8-byte header once it holds a record.
        (name.starts_with("wal-") || name.starts_with("snapshot-")) && e.metadata().is_ok_and(|m| m.len() > 8)
    });
    if holds_samples {
        return Err(OpenError::MetadataMissing {
            meta: meta.display().to_string(),
            series: series.display().to_string(),
        });
    }
    Ok(())
}

/// Loads the configured model artifact, or the bundled default.
fn load_model(path: Option<&Path>) -> Result<Artifact, swarm_models::ArtifactError> {
    match path {
        Some(p) => Artifact::load(p),
        None => Artifact::from_json(swarm_models::DEFAULT_ARTIFACT, "bundled models/default.json"),
    }
}

impl Swarm {
    /// [`blocking`] for a metadata store call, timed in `/metrics` by `op`:
    /// a store failure is UNAVAILABLE.
    async fn store_call<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let r = blocking(f).await?.map_err(|e| ApiError::Unavailable(e.to_string()));
        self.inner.telemetry.store_call(op, started.elapsed().as_secs_f64());
        r
    }

    /// Opens (or creates) the state under `cfg.data_dir`, metadata in the
    /// embedded store there.
    pub fn open(cfg: Config, clock: SharedClock) -> Result<(Swarm, StartReport), OpenError> {
        let dir = cfg.data_dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|source| OpenError::DataDir { path: dir.display().to_string(), source })?;
        refuse_orphaned_samples(&dir)?;
        let (store, loaded) = EmbeddedStore::open_loaded(&meta_path(&dir))?;
        Swarm::open_on(cfg, clock, Arc::new(store), loaded)
    }

    /// Opens the state on a metadata store already read (`loaded`): the
    /// embedded one, or etcd for an elected leader.
    pub fn open_on(
        cfg: Config,
        clock: SharedClock,
        store: Arc<dyn MetaStore>,
        mut loaded: crate::store::Loaded,
    ) -> Result<(Swarm, StartReport), OpenError> {
        let model = Arc::new(load_model(cfg.model.as_deref())?);
        let dir = cfg.data_dir.clone();
        let decisions = DecisionLog::open(store.clone(), &loaded, clock.now_ms(), cfg.controller.cooldown_ms)?;
        let book = Book::new(std::mem::take(&mut loaded.migrations))?;
        let retention_ms = cfg.retention.as_millis() as i64;
        let (series, series_report, prometheus) = match cfg.metrics.backend {
            crate::prometheus::Backend::Embedded => {
                let series_cfg = SeriesConfig { retention_ms, fsync: cfg.fsync, ..Default::default() };
                let (series, report) = SeriesStore::open(&series_dir(&dir), series_cfg, clock.clone())?;
                (series, report, None)
            }
            crate::prometheus::Backend::Prometheus => {
                let cache = SeriesStore::cache(retention_ms, clock.clone());
                let step = model.training.interval_ms.max(1);
                let prom = crate::prometheus::Prometheus::start(&cfg.metrics, cache.clone(), step)?;
                (cache, OpenReport::default(), Some(prom))
            }
        };
        let report = StartReport {
            series: series_report,
            physical_nodes: loaded.topology.physical.len(),
            virtual_nodes: loaded.topology.virtual_nodes.len(),
            last_decision: loaded.last_decision_seq,
            live_migrations: book.live().count(),
        };
        let (shutdown, _) = watch::channel(false);
        let gate = crate::limits::Gate::new(cfg.limits);
        let inner = Inner {
            cfg,
            clock,
            store,
            meta: RwLock::new(Meta {
                topology: Arc::new(loaded.topology),
                book,
                groups: loaded.group_policies.into_iter().collect(),
                reconfigs: loaded.reconfigurations.into_iter().map(|r| (r.id.clone(), r)).collect(),
                version: 0,
            }),
            mutate: Mutex::new(()),
            round: Mutex::new(()),
            reconfig_step: Mutex::new(()),
            history: std::sync::Mutex::new(PerfTable {
                pairs: loaded.performance.iter().map(|(v, p, perf)| ((v.clone(), p.clone()), *perf)).collect(),
            }),
            plans: std::sync::Mutex::new(HashMap::new()),
            series,
            prometheus,
            decisions,
            model,
            shutdown,
            telemetry: crate::telemetry::Telemetry::new(),
            gate,
            risk_last_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
            calibration: std::sync::Mutex::new(None),
            policy: std::sync::Mutex::new(Default::default()),
        };
        Ok((Swarm { inner: Arc::new(inner) }, report))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// Now, per the injected clock.
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// A consistent snapshot of the topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.meta().topology.clone()
    }

    /// The metadata, for a moment (never hold it across an await).
    fn meta(&self) -> std::sync::RwLockReadGuard<'_, Meta> {
        self.inner.meta.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The metadata for installing a committed change.
    fn meta_mut(&self) -> std::sync::RwLockWriteGuard<'_, Meta> {
        self.inner.meta.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The series store.
    pub fn series(&self) -> &SeriesStore {
        &self.inner.series
    }

    /// The forecasting model loaded at start.
    pub fn model(&self) -> &Artifact {
        &self.inner.model
    }

    /// Length of one forecast step: the model's sampling interval.
    pub fn step_ms(&self) -> i64 {
        self.inner.model.training.interval_ms.max(1)
    }

    /// The decision log.
    pub fn decisions(&self) -> &DecisionLog {
        &self.inner.decisions
    }

    /// Up to `limit` decisions from sequence `from` on, read from the store.
    pub async fn list_decisions(&self, from: u64, limit: usize) -> Result<Vec<Decision>, ApiError> {
        let log = self.inner.decisions.clone();
        self.store_call("read decisions", move || log.list(from, limit)).await
    }

    /// Resolves when shutdown has begun.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Starts shutdown: long-lived streams end so the server can drain.
    pub fn begin_shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    /// Flushes and stops the series writer. Call after the server stopped.
    pub async fn close(&self) {
        self.inner.series.close().await;
    }

    /// Applies a topology mutation computed from the current topology:
    /// validated, persisted atomically, then made visible.
    async fn mutate<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Topology) -> Result<(Vec<TopologyChange>, R), ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        self.write(move |m| f(&m.topology).map(|(changes, result)| Write::new(changes, Vec::new(), result))).await
    }

    /// Applies a change to the metadata computed from all of it (under one
    /// lock, so store order equals memory order): persisted in one
    /// transaction, then made visible. Every metadata write goes through here.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Meta) -> Result<Write<R>, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let _guard = self.inner.mutate.lock().await;
        let w = f(&self.meta())?;
        if w.changes.is_empty() && w.migrations.is_empty() && w.groups.is_empty() && w.reconfigs.is_empty() {
            return Ok(w.result);
        }
        let store = self.inner.store.clone();
        let Write { changes, migrations, result, groups, reconfigs } = w;
        let (changes, migrations, groups, reconfigs) = self
            .store_call("commit", move || {
                let batch = Batch {
                    topology: &changes,
                    migrations: &migrations,
                    group_policies: &groups,
                    reconfigurations: &reconfigs,
                };
                store.commit(&batch).map(|()| (changes, migrations, groups, reconfigs))
            })
            .await?;
        let mut m = self.meta_mut();
        m.version += 1;
        for (name, p) in groups {
            match p {
                Some(p) => m.groups.insert(name, p),
                None => m.groups.remove(&name),
            };
        }
        for rec in reconfigs {
            m.reconfigs.insert(rec.id.clone(), rec);
        }
        if !changes.is_empty() {
            let mut next = (*m.topology).clone();
            for c in changes {
                match c {
                    TopologyChange::PutPhysical(n) => {
                        next.physical.insert(n.id.clone(), n);
                    }
                    TopologyChange::PutVirtual(n) => {
                        next.virtual_nodes.insert(n.id.clone(), n);
                    }
                    TopologyChange::DeleteVirtual(id) => {
                        next.virtual_nodes.remove(&id);
                    }
                }
            }
            m.topology = Arc::new(next);
        }
        for mig in migrations {
            m.book.insert(mig);
        }
        Ok(result)
    }

    /// Adds or replaces physical nodes; returns (created, updated). Live
    /// migrations towards a node that stops being active are aborted (a
    /// draining node receives no new virtual nodes).
    pub async fn upsert_physical(&self, nodes: Vec<PhysicalNode>) -> Result<(u32, u32), ApiError> {
        let (now, policy) = (self.now_ms(), self.inner.cfg.migration);
        self.write(move |m| {
            let (t, book) = (&*m.topology, &m.book);
            let created = nodes.iter().filter(|n| !t.physical.contains_key(&n.id)).count() as u32;
            let updated = nodes.len() as u32 - created;
            let mut after = t.clone();
            for n in &nodes {
                after.physical.insert(n.id.clone(), n.clone());
            }
            let migrations = migrations::abort_towards(book, &after, now, &policy);
            let changes = nodes.into_iter().map(TopologyChange::PutPhysical).collect();
            Ok(Write::new(changes, migrations, (created, updated)))
        })
        .await
    }

    /// Marks a physical node removed; refused while it hosts virtual nodes.
    pub async fn remove_physical(&self, id: NodeId) -> Result<(), ApiError> {
        let (now, policy) = (self.now_ms(), self.inner.cfg.migration);
        self.write(move |m| {
            let (t, book) = (&*m.topology, &m.book);
            let Some(n) = t.physical.get(&id) else {
                return Err(ApiError::NotFound(format!("unknown physical node {id}")));
            };
            let placed: Vec<String> = t.placed_on(id.as_str()).take(5).map(|v| v.id.to_string()).collect();
            if !placed.is_empty() {
                let total = t.placed_on(id.as_str()).count();
                return Err(ApiError::FailedPrecondition(format!(
                    "physical node {id} still runs {total} virtual node(s) (e.g. {}); drain it first",
                    placed.join(", ")
                )));
            }
            let mut n = n.clone();
            n.state = PhysicalState::Removed;
            let mut after = t.clone();
            after.physical.insert(n.id.clone(), n.clone());
            let migrations = migrations::abort_towards(book, &after, now, &policy);
            Ok(Write::new(vec![TopologyChange::PutPhysical(n)], migrations, ()))
        })
        .await
    }

    /// Adds or replaces virtual nodes; returns (created, updated).
    /// Their placements are kept (an upsert never moves anything); pinned
    /// nodes must exist.
    pub async fn upsert_virtual(&self, nodes: Vec<VirtualNode>) -> Result<(u32, u32), ApiError> {
        self.mutate(move |t| {
            let nodes = validate::virtual_nodes_in(nodes, t)?;
            let created = nodes.iter().filter(|n| !t.virtual_nodes.contains_key(&n.id)).count() as u32;
            let updated = nodes.len() as u32 - created;
            Ok((nodes.into_iter().map(TopologyChange::PutVirtual).collect(), (created, updated)))
        })
        .await
    }

    /// Removes a virtual node (refused while an orchestrator is moving it).
    pub async fn remove_virtual(&self, id: NodeId) -> Result<(), ApiError> {
        let (now, policy) = (self.now_ms(), self.inner.cfg.migration);
        self.write(move |m| {
            let (t, book) = (&*m.topology, &m.book);
            if !t.virtual_nodes.contains_key(&id) {
                return Err(ApiError::NotFound(format!("unknown virtual node {id}")));
            }
            let migrations = migrations::release(book, id.as_str(), "the virtual node was removed", now, &policy)?;
            Ok(Write::new(vec![TopologyChange::DeleteVirtual(id)], migrations.into_iter().collect(), ()))
        })
        .await
    }

    /// Records placements; returns how many changed. A virtual node being
    /// moved by an accepted migration is refused (its placement changes at
    /// the cutover); a proposed migration of it is superseded.
    pub async fn set_placements(&self, ps: Vec<(NodeId, Option<NodeId>)>) -> Result<u32, ApiError> {
        let (now, policy) = (self.now_ms(), self.inner.cfg.migration);
        self.write(move |m| {
            let (t, book) = (&*m.topology, &m.book);
            validate::placements_in(&ps, t)?;
            let mut changes = Vec::new();
            let mut migrations = Vec::new();
            let mut seen = HashSet::new();
            for (i, (v, p)) in ps.into_iter().enumerate() {
                if !seen.insert(v.clone()) {
                    return Err(FieldError::new(
                        format!("placements[{i}].virtual_node_id"),
                        format!("{v} appears twice in the request"),
                    )
                    .into());
                }
                let mut node = t.virtual_nodes[&v].clone();
                if node.placement != p {
                    let why = "the placement was set by SetPlacements";
                    migrations.extend(migrations::release(book, v.as_str(), why, now, &policy).map_err(
                        |e| match e {
                            ApiError::FailedPrecondition(m) => {
                                ApiError::FailedPrecondition(format!("placements[{i}]: {m}"))
                            }
                            e => e,
                        },
                    )?);
                    node.placement = p;
                    changes.push(TopologyChange::PutVirtual(node));
                }
            }
            let n = changes.len() as u32;
            Ok(Write::new(changes, migrations, n))
        })
        .await
    }

    /// Mean usage over the configured window, per entity.
    pub async fn observed_usage(&self) -> Result<ObservedUsage, ApiError> {
        let series = self.inner.series.clone();
        let from = self.now_ms() - self.inner.cfg.usage_window.as_millis() as i64;
        series_call(move || {
            series.read(|f| -> Result<ObservedUsage, polars::error::PolarsError> {
                let mut usage = ObservedUsage::default();
                for kind in EntityKind::ALL {
                    let target = match kind {
                        EntityKind::Physical => &mut usage.physical,
                        EntityKind::Virtual => &mut usage.virtual_nodes,
                    };
                    let mut put =
                        |m: Metric, set: fn(&mut PartialResources, f64)| -> Result<(), polars::error::PolarsError> {
                            for (e, v) in f.window_mean(kind, m, from)? {
                                set(target.entry(e).or_default(), v);
                            }
                            Ok(())
                        };
                    put(Metric::CpuUsage, |r, v| r.cpu_cores = Some(v))?;
                    put(Metric::MemoryBytes, |r, v| r.memory_bytes = Some(v))?;
                    put(Metric::NetworkRx, |r, v| r.network_bps = Some(r.network_bps.unwrap_or(0.0) + v))?;
                    put(Metric::NetworkTx, |r, v| r.network_bps = Some(r.network_bps.unwrap_or(0.0) + v))?;
                }
                Ok(usage)
            })
        })
        .await
    }

    /// Steps the controller forecasts: its horizon when the model covers
    /// every step up to it, else 0 (forecasting off, said once at start-up).
    pub fn forecast_horizon(&self) -> usize {
        let h = self.inner.cfg.controller.horizon_steps;
        if (1..=h).all(|k| self.inner.model.horizons.contains(&k)) { h } else { 0 }
    }

    /// CPU forecasts (cores, `horizon` steps) of every virtual node whose
    /// history the model can use: from its peak series where reported (peaks
    /// are what overload), else its usage series.
    async fn cpu_forecasts(&self, horizon: usize) -> Result<HashMap<String, CpuForecast>, ApiError> {
        if horizon == 0 {
            return Ok(HashMap::new());
        }
        let series = self.inner.series.clone();
        let model = self.inner.model.clone();
        let now = self.now_ms();
        series_call(move || {
            series.read(|f| -> Result<HashMap<String, CpuForecast>, polars::error::PolarsError> {
                virtual_cpu(f, |s, agg, buf| {
                    let f = forecast::forecast_series(&model, s, now, horizon, agg, buf).ok()?.points;
                    Some(CpuForecast {
                        mean: f.iter().map(|p| p.mean).collect(),
                        upper: f.iter().map(|p| p.upper).collect(),
                    })
                })
                .map(|m| m.into_iter().map(|(id, f)| (id.to_string(), f)).collect())
            })
        })
        .await
    }

    /// The risk-aware rule's proposals (when it is due, see
    /// [`Swarm::risk_due`]), judged on every virtual node's CPU in cores
    /// over its window on the model's grid ending now (so that the nodes'
    /// steps line up, which is what co-occurrence needs), read in place
    /// ([`load_history::FrameHistory`]). Hands back what it was lent.
    async fn risk_proposals(&self, round: RoundParts, now: i64) -> Result<(RoundParts, Vec<Proposal>), ApiError> {
        let step = self.step_ms();
        let n = round.cfg.risk.history_steps(step);
        let series = self.inner.series.clone();
        series_call(move || {
            series.read(|f| {
                let history = load_history::FrameHistory::new(f, &round.view, step, n, now)?;
                let input = controller::RoundInput { now_ms: now, step_ms: step, last_decided: &round.last };
                let proposals = risk::proposals(&round.view, &history, input, &round.cfg);
                Ok((round, proposals))
            })
        })
        .await
    }

    /// Whether the risk-aware rule is on and due this round.
    fn risk_due(&self, now: i64) -> bool {
        let rc = self.risk_settings();
        rc.enabled && rc.due(now, self.risk_last())
    }

    /// When the risk-aware rule last counted as run (see [`risk::RiskConfig::ran`]).
    fn risk_last(&self) -> Option<i64> {
        let last = self.inner.risk_last_ms.load(std::sync::atomic::Ordering::Relaxed);
        (last != i64::MIN).then_some(last)
    }

    /// Records a round in which the risk-aware rule was due and proposed
    /// `moves` (0 when the urgent rules' moves took the round).
    fn risk_ran(&self, rc: &risk::RiskConfig, now: i64, moves: usize) {
        let last = rc.ran(now, self.risk_last(), moves).unwrap_or(i64::MIN);
        self.inner.risk_last_ms.store(last, std::sync::atomic::Ordering::Relaxed);
    }

    /// Data read per virtual node over the usage window: (location, bytes/s).
    async fn data_access(&self) -> Result<HashMap<String, Vec<(String, f64)>>, ApiError> {
        let series = self.inner.series.clone();
        let from = self.now_ms() - self.inner.cfg.usage_window.as_millis() as i64;
        series_call(move || series.read(|f| f.window_mean_located(EntityKind::Virtual, Metric::DataAccess, from))).await
    }

    /// Folds the window's latency and throughput of every virtual node into
    /// the performance history of the node it runs on, and persists it.
    async fn observe_performance(&self) -> Result<(), ApiError> {
        self.refresh_metrics(false).await?;
        let series = self.inner.series.clone();
        let from = self.now_ms() - self.inner.cfg.usage_window.as_millis() as i64;
        let (lat, tput) = series_call(move || {
            series.read(|f| -> Result<_, polars::error::PolarsError> {
                Ok((
                    f.window_mean(EntityKind::Virtual, Metric::LatencyMs, from)?,
                    f.window_mean(EntityKind::Virtual, Metric::ThroughputRps, from)?,
                ))
            })
        })
        .await?;
        if lat.is_empty() && tput.is_empty() {
            return Ok(());
        }
        let topo = self.topology();
        let now = self.now_ms();
        let records: Vec<_> = {
            let mut h = self.inner.history.lock().expect("history lock");
            topo.virtual_nodes
                .values()
                .filter_map(|v| {
                    let p = v.placement.as_ref()?;
                    let (l, t) = (lat.get(v.id.as_str()).copied(), tput.get(v.id.as_str()).copied());
                    if l.is_none() && t.is_none() {
                        return None;
                    }
                    Some((v.id.to_string(), p.to_string(), h.observe(v.id.as_str(), p.as_str(), l, t, now)))
                })
                .collect()
        };
        let store = self.inner.store.clone();
        self.store_call("put performance", move || store.put_performance(&records)).await
    }

    /// The current cluster as the placement math sees it: observed usage,
    /// CPU forecasts, performance history and data locations.
    pub async fn cluster_view(&self) -> Result<ClusterView, ApiError> {
        self.cluster_view_timed(&mut Stages::start()).await
    }

    /// [`Swarm::cluster_view`], timing its stages into `stages`.
    async fn cluster_view_timed(&self, stages: &mut Stages) -> Result<ClusterView, ApiError> {
        self.refresh_metrics(false).await?;
        let topo = self.topology();
        let horizon = self.forecast_horizon();
        let history = self.inner.history.lock().expect("history lock").normalized();
        let usage = self.observed_usage().await?;
        stages.mark("usage");
        let forecasts = self.cpu_forecasts(horizon).await?;
        stages.mark("forecasts");
        let data_access = self.data_access().await?;
        stages.mark("data_access");
        let inputs = ViewInputs {
            usage,
            horizon,
            forecasts,
            history,
            data_access,
            in_flight: self.meta().book.in_flight(horizon),
            spread_correlation: self.inner.cfg.controller.spread_correlation,
        };
        let view = blocking(move || ClusterView::build_with(&topo, &inputs)).await?;
        stages.mark("view");
        Ok(view)
    }

    /// Points of one series in `[from_ms, to_ms)`, at most `limit`, and
    /// whether the limit cut them; read off the runtime's threads. The one
    /// read path of `QuerySeries`, forecasts and the dashboard.
    #[allow(clippy::too_many_arguments)]
    pub async fn query_series(
        &self,
        kind: EntityKind,
        metric: Metric,
        entity: &str,
        location: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<(Vec<(i64, f64)>, bool), ApiError> {
        self.refresh_metrics(false).await?;
        let series = self.inner.series.clone();
        let (entity, location) = (entity.to_owned(), location.to_owned());
        series_call(move || series.read(|f| f.query(kind, metric, &entity, &location, from_ms, to_ms, limit))).await
    }

    /// Points of one series since `from_ms` (at most 100,000).
    pub async fn recent_points(
        &self,
        kind: EntityKind,
        metric: Metric,
        entity: &str,
        from_ms: i64,
    ) -> Result<Vec<(i64, f64)>, ApiError> {
        Ok(self.query_series(kind, metric, entity, "", from_ms, i64::MAX, 100_000).await?.0)
    }

    /// Forecast of one series with the loaded model.
    pub async fn forecast(
        &self,
        kind: EntityKind,
        entity: String,
        metric: Metric,
        horizon: usize,
    ) -> Result<forecast::Explained, ApiError> {
        let model = self.inner.model.clone();
        let max = model.horizons.iter().copied().max().unwrap_or(0);
        let horizon = if horizon == 0 { max } else { horizon };
        if horizon == 0 || horizon > max {
            return Err(FieldError::new(
                "horizon_steps",
                format!("must be 1..={max} (the model's horizons, {} s each), got {horizon}", self.step_ms() / 1000),
            )
            .into());
        }
        let topo = self.topology();
        if !validate::known(&topo, kind, &entity) {
            return Err(ApiError::NotFound(format!("entity_id: unknown {} node {entity:?}", kind.name())));
        }
        if metric == Metric::DataAccess {
            return Err(FieldError::new("metric", "data access is per location and is not forecast").into());
        }
        let now = self.now_ms();
        let from = forecast::history_start_ms(&model, now);
        let points = self.query_series(kind, metric, &entity, "", from, i64::MAX, 1_000_000).await?.0;
        let agg = Aggregate::of(metric);
        forecast::forecast(&model, &points, now, horizon, agg).map_err(|e| match e {
            ForecastError::NotEnoughHistory { .. } | ForecastError::Stale { .. } => {
                ApiError::FailedPrecondition(format!("cannot forecast this series: {e}"))
            }
        })
    }

    /// When each virtual node was last decided or finished moving: the
    /// clock its cooldown runs from. Cooldowns run from a migration's end as
    /// well as from its decision, so a move that took long (or a
    /// reconfiguration's) is not undone at once.
    fn cooldown_clock(&self) -> HashMap<NodeId, i64> {
        let ended = self.meta().book.last_ended();
        let mut last = self.inner.decisions.last_decided();
        for (v, at) in ended {
            if let Ok(id) = NodeId::parse(&v) {
                let e = last.entry(id).or_insert(at);
                *e = (*e).max(at);
            }
        }
        last
    }

    /// Affinity matrix for the given rows and columns (empty: all, capped).
    /// With `assess`, each cell also says what the controller's rules and
    /// cost function make of moving there ([`swarm_core::placement::assess`]).
    pub async fn affinity(
        &self,
        rows: Vec<String>,
        cols: Vec<String>,
        assess: bool,
    ) -> Result<AffinityMatrix, ApiError> {
        const CAP: usize = 1000;
        for (what, n) in [("virtual_node_ids", rows.len()), ("physical_node_ids", cols.len())] {
            if n > CAP {
                return Err(FieldError::new(what, format!("has {n} ids; the limit is {CAP}")).into());
            }
        }
        let view = self.cluster_view().await?;
        let topo = self.topology();
        let vindex: HashMap<&str, usize> = view.virt.iter().enumerate().map(|(i, v)| (v.id.as_str(), i)).collect();
        let row_idx: Vec<usize> = if rows.is_empty() {
            (0..view.virt.len().min(CAP)).collect()
        } else {
            rows.iter()
                .enumerate()
                .map(|(i, r)| {
                    vindex
                        .get(r.as_str())
                        .copied()
                        .ok_or_else(|| ApiError::NotFound(format!("virtual_node_ids[{i}]: unknown virtual node {r:?}")))
                })
                .collect::<Result<_, _>>()?
        };
        let col_idx: Vec<usize> = if cols.is_empty() {
            (0..view.phys.len().min(CAP)).collect()
        } else {
            cols.iter()
                .enumerate()
                .map(|(i, c)| {
                    NodeId::parse(c).ok().and_then(|id| view.phys_index.get(&id).copied()).ok_or_else(|| {
                        ApiError::NotFound(format!("physical_node_ids[{i}]: unknown physical node {c:?}"))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let cfg = self.controller_config();
        let (w, limits) = (&cfg.weights, cfg.limits());
        let last = if assess { self.cooldown_clock() } else { HashMap::new() };
        let input = controller::RoundInput { now_ms: self.now_ms(), step_ms: self.step_ms(), last_decided: &last };
        let out_rows = row_idx
            .iter()
            .map(|&vi| {
                let v = &view.virt[vi];
                // The authoritative placement (a migrating node's view
                // placement is its reserved target).
                let current = topo.virtual_nodes.get(&v.id).and_then(|n| n.placement.as_ref());
                let mut row = AffinityRow {
                    virt: v.id.clone(),
                    current: current.cloned(),
                    scores: col_idx.iter().map(|&pi| affinity::score(&view, vi, pi, w, &limits)).collect(),
                    moves: Vec::new(),
                    would_move_to: None,
                };
                if assess {
                    let (all, choice) = swarm_core::placement::assess::assess(&view, vi, &input, &cfg);
                    row.moves = col_idx.iter().map(|&pi| all[pi].clone()).collect();
                    row.would_move_to = choice.map(|pi| view.phys[pi].id.clone());
                }
                row
            })
            .collect();
        Ok(AffinityMatrix {
            physical: col_idx.iter().map(|&i| view.phys[i].id.clone()).collect(),
            rows: out_rows,
            weights: *w,
            computed_at_ms: self.now_ms(),
        })
    }

    /// The affinity heatmap: the `top` virtual nodes by potential gain
    /// against the physical nodes (grouped past `max_columns`), with the
    /// authoritative placements and live migrations marked.
    pub async fn heatmap(
        &self,
        top: usize,
        max_columns: usize,
    ) -> Result<swarm_core::placement::heatmap::Heatmap, ApiError> {
        use swarm_core::placement::heatmap;
        let view = self.cluster_view().await?;
        let topo = self.topology();
        let placement = topo
            .virtual_nodes
            .values()
            .filter_map(|v| v.placement.as_ref().map(|p| (v.id.to_string(), p.to_string())))
            .collect();
        let migrations = {
            self.meta()
                .book
                .live()
                .map(|m| (m.virt.clone(), (m.to.clone(), m.phase.name().to_owned(), m.id.clone())))
                .collect()
        };
        let inp = heatmap::Inputs { top, max_columns, placement, migrations };
        let w = self.inner.cfg.controller.weights;
        let limits = self.inner.cfg.controller.limits();
        blocking(move || heatmap::build(&view, &w, &limits, &inp)).await
    }

    /// Runs one controller round (persisting and publishing unless `dry_run`).
    pub async fn run_round(&self, dry_run: bool) -> Result<RoundReport, ApiError> {
        let _guard = self.inner.round.lock().await;
        let started = Instant::now();
        let mut stages = Stages::start();
        if let Err(e) = self.refresh_metrics(true).await {
            self.inner.telemetry.round_skipped("metrics_backend");
            tracing::warn!(error = %e, dry_run, "round skipped: the metrics backend could not be read");
            return Err(ApiError::Unavailable(format!(
                "round skipped: {e}; rounds run again once the backend answers"
            )));
        }
        stages.mark("metrics_backend");
        if !dry_run {
            self.observe_performance().await?;
        }
        stages.mark("performance");
        let view = self.cluster_view_timed(&mut stages).await?;
        let now = self.now_ms();
        if !dry_run {
            self.spawn_self_tuning_if_due(now);
        }
        let log = self.inner.decisions.clone();
        let cfg = self.controller_config();
        let round_id = log.next_round_id();
        let step_ms = self.step_ms();
        let last = self.cooldown_clock();
        let risk_due = self.risk_due(now);
        let move_back = self.move_back_candidates(now);
        let (round, mut outcome) = blocking(move || {
            let input = controller::RoundInput { now_ms: now, step_ms, last_decided: &last };
            let outcome = controller::run_round(&view, input, &cfg);
            (RoundParts { view, last, cfg }, outcome)
        })
        .await?;
        stages.mark("decide");
        // The risk-aware rule moves in rounds the rules above left alone:
        // theirs are the urgent moves. So its history, every virtual node's
        // week, is read only for such a round.
        let risk_runs = risk_due && outcome.proposals.is_empty();
        let round = if risk_runs {
            let (round, proposals) = self.risk_proposals(round, now).await?;
            outcome.proposals = proposals;
            round
        } else {
            round
        };
        if risk_due && !dry_run {
            self.risk_ran(&round.cfg.risk, now, if risk_runs { outcome.proposals.len() } else { 0 });
        }
        stages.mark("risk");
        let RoundParts { view, last, cfg } = round;
        let (outcome, decisions) = blocking(move || {
            let input = controller::RoundInput { now_ms: now, step_ms, last_decided: &last };
            let mut outcome = outcome;
            let mut ds: Vec<Decision> =
                outcome.proposals.iter().map(|p| Decision::from_proposal(p, &view, round_id, now, step_ms)).collect();
            // Moves that hurt go back, after the round's own moves and within its budget.
            for attempt in move_back::proposals(&view, &outcome.proposals, &move_back, input, &cfg) {
                match attempt {
                    move_back::Attempt::Proposed { proposal, reverses } => {
                        let mut d = Decision::from_proposal(&proposal, &view, round_id, now, step_ms);
                        d.reverses = Some(reverses);
                        ds.push(d);
                        outcome.proposals.push(*proposal);
                    }
                    move_back::Attempt::Held { virt, reason } => {
                        tracing::info!(virt = %virt, reason = %reason, "move back held this round")
                    }
                }
            }
            (outcome, ds)
        })
        .await?;
        stages.mark("decide");
        let decisions = if dry_run {
            decisions
        } else {
            // Decisions and their proposed migrations are written together.
            let propose = (self.inner.cfg.controller.automation == Automation::Recommend).then(Vec::new);
            self.commit_decisions(round_id, decisions, propose).await?
        };
        if !dry_run && self.inner.cfg.controller.automation == Automation::Apply && !decisions.is_empty() {
            let moves = decisions.iter().map(|d| (d.virt.clone(), Some(d.to.clone()))).collect();
            self.set_placements(moves).await?;
        }
        stages.mark("commit");
        // The round's working set is freed by now: give its pages back.
        blocking(crate::memory::release_freed).await?;
        stages.mark("release");
        self.inner.telemetry.round_stages(&stages.done);
        tracing::debug!(round = round_id, dry_run, stages = %stages, "round stage times");
        if !dry_run {
            self.inner.telemetry.round(started.elapsed().as_secs_f64());
        }
        if outcome.refused_non_finite > 0 {
            tracing::warn!(
                round = round_id,
                refused = outcome.refused_non_finite,
                "moves refused because a number in them (a utilisation, gain or cost) was not finite or not plausible: check the samples of the nodes involved"
            );
        }
        let resp = RoundReport {
            round_id,
            decisions,
            evaluated: outcome.evaluated,
            skipped_cooldown: outcome.skipped_cooldown,
            skipped_budget: outcome.skipped_budget,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            dry_run,
        };
        tracing::info!(
            round = round_id,
            dry_run,
            decisions = resp.decisions.len(),
            evaluated = resp.evaluated,
            ms = format!("{:.1}", resp.duration_ms),
            "controller round"
        );
        Ok(resp)
    }

    /// Commits decisions (with their proposed migrations when `propose` is
    /// given) under the write lock, so an orchestrator that sees a decision
    /// can accept its migration.
    async fn commit_decisions(
        &self,
        round_id: u64,
        decisions: Vec<Decision>,
        propose: Option<Vec<Option<swarm_core::reconfig::record::Origin>>>,
    ) -> Result<Vec<Decision>, ApiError> {
        let log = self.inner.decisions.clone();
        let _guard = self.inner.mutate.lock().await;
        // At most one live migration per virtual node: a decision computed
        // before another migration of its virtual node was committed (a
        // round racing a reconfiguration step) is dropped here, under the lock.
        let (decisions, propose) = match propose {
            None => (decisions, None),
            Some(origins) => {
                let meta = self.meta();
                let book = &meta.book;
                let mut seen = HashSet::new();
                let (d, o): (Vec<_>, Vec<_>) = decisions
                    .into_iter()
                    .zip(origins.into_iter().chain(std::iter::repeat(None)))
                    .filter(|(d, _)| book.live_of(d.virt.as_str()).is_none() && seen.insert(d.virt.clone()))
                    .unzip();
                (d, Some(o))
            }
        };
        // The migrations join the book before their decisions are published
        // (see `DecisionLog::commit_round`).
        let swarm = self.clone();
        let decisions = self
            .store_call("append decisions", move || {
                log.commit_round(round_id, decisions, propose, |migrations| {
                    if migrations.is_empty() {
                        return;
                    }
                    let mut m = swarm.meta_mut();
                    for mig in migrations {
                        m.book.insert(mig);
                    }
                    m.version += 1;
                })
            })
            .await?;
        for d in &decisions {
            self.inner.telemetry.decision(d.kind.name());
        }
        Ok(decisions)
    }

    /// The ingest gate (limits and back-pressure).
    pub fn gate(&self) -> &crate::limits::Gate {
        &self.inner.gate
    }

    /// swarmd's own metrics.
    pub fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.inner.telemetry
    }

    /// The Prometheus text of swarmd's metrics, with levels read now.
    pub async fn metrics_text(&self) -> String {
        let migrations = {
            let counts = self.meta().book.count_by_phase();
            swarm_core::migration::machine::Phase::ALL
                .iter()
                .map(|p| (p.name(), counts.get(p).copied().unwrap_or(0) as i64))
                .collect()
        };
        let topo = self.topology();
        let dir = self.inner.cfg.data_dir.clone();
        let series = self.inner.series.clone();
        let (metadata_bytes, series_bytes, (series_rows, series_memory_bytes)) = blocking(move || {
            let meta = std::fs::metadata(meta_path(&dir)).map(|m| m.len()).unwrap_or(0);
            let ser = crate::telemetry::dir_bytes(&series_dir(&dir));
            (meta, ser, series.read(|f| (f.row_count(), f.stored_bytes())))
        })
        .await
        .unwrap_or_default();
        let levels = crate::telemetry::Levels {
            migrations,
            physical: topo.physical.values().filter(|p| p.state != PhysicalState::Removed).count() as i64,
            virtual_nodes: topo.virtual_nodes.len() as i64,
            metadata_bytes: metadata_bytes as i64,
            series_bytes: series_bytes as i64,
            series_rows: series_rows as i64,
            series_memory_bytes: series_memory_bytes as i64,
            pending_samples: self.inner.gate.pending() as i64,
            outcomes: self.outcome_levels(),
            cost_figures: self.calibration().named().map(|(n, e)| (n, e.configured, e.learned, e.samples)).to_vec(),
            policy: self.risk_policy().levels(),
            backend_up: self.inner.prometheus.as_ref().and_then(|p| match &*p.health().borrow() {
                crate::prometheus::Health::Unknown => None,
                crate::prometheus::Health::Up => Some(true),
                crate::prometheus::Health::Down(_) => Some(false),
            }),
        };
        self.inner.telemetry.render(&levels)
    }

    /// Runs rounds on the configured interval until shutdown.
    pub async fn run_round_timer(self) {
        let mut shutdown = self.shutdown_signal();
        let mut tick = tokio::time::interval(self.inner.cfg.round_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick fires at once; wait a full interval
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.run_round(false).await {
                        tracing::error!(error = %e, "scheduled round failed");
                    }
                }
                _ = stopped(&mut shutdown) => return,
            }
        }
    }
}

/// Resolves once `rx` says shutdown has begun (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, inside.
    let _ = rx.wait_for(|s| *s).await;
}

/// Where series files live under the data directory.
pub fn series_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("series")
}

/// The metadata store's file under the data directory.
pub fn meta_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("meta.redb")
}
