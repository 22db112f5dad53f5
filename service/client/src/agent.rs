//! The reference orchestrator: a real `swarm.v1` client that carries
//! migrations out on a simulated cluster. `swarmctl agent` runs it; so does
//! `swarmd --demo`; the end-to-end tests drive it with fault injection.
//!
//! It takes every live migration it finds at start (a restarted agent takes
//! over the previous instance's work with a new epoch), then follows
//! `WatchDecisions`. Each migration is driven by one task: accept (or reject
//! when the target has no room), start the shadow, report its health until
//! Swarm orders the cutover or a roll-back, and report the outcome. Reports
//! are retried with the same request id after a lost request or while the
//! server is down, so they are applied once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Conn;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use swarm_proto::v1 as pb;
use tokio::sync::Semaphore;
use tonic::Code;

/// Faults to inject, each a probability per migration or per report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// A report is lost on the way (sent again later with the same request id).
    pub drop_reports: f64,
    /// A report is sent twice.
    pub duplicate_reports: f64,
    /// The shadow never comes up (Swarm times the migration out).
    pub stall_shadow: f64,
    /// The shadow reports an error rate over any sane tolerance.
    pub unhealthy_shadow: f64,
    /// The agent declines the migration.
    pub reject: f64,
    /// The process dies (exit 137, no clean-up) after this many reports.
    pub crash_after_reports: Option<u64>,
}

/// How the agent behaves.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Its orchestrator id (a new id takes over live migrations with a new epoch).
    pub orchestrator_id: String,
    /// Most migrations driven at once.
    pub concurrency: usize,
    /// Time to start a shadow instance.
    pub shadow_start: Duration,
    /// Time between health reports while shadowing.
    pub report_every: Duration,
    /// Time the cutover takes.
    pub cutover: Duration,
    /// Simulated state transfer, bytes/s: after the shadow starts, the
    /// agent waits `state_size_bytes / rate` before its first shadowing
    /// report, as a real copy would (`None`: no wait).
    pub transfer_rate: Option<f64>,
    /// Faults to inject.
    pub faults: Faults,
    /// Seed of the fault dice.
    pub seed: u64,
    /// Stop once nothing has been in progress for this long.
    pub exit_when_idle: Option<Duration>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            orchestrator_id: format!("agent-{}", std::process::id()),
            concurrency: 64,
            shadow_start: Duration::from_millis(500),
            report_every: Duration::from_millis(500),
            cutover: Duration::from_millis(200),
            transfer_rate: None,
            faults: Faults::default(),
            seed: 1,
            exit_when_idle: None,
        }
    }
}

/// What the agent did, printed as JSON when it stops.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Migrations it drove to `completed`.
    pub completed: u64,
    /// Migrations that ended rolled back while it held them.
    pub rolled_back: u64,
    /// Migrations it rejected (no room, or injected).
    pub rejected: u64,
    /// Migrations another orchestrator took from it (its reports were refused).
    pub lost: u64,
    /// Migrations that ended elsewhere before it could act (already finished).
    pub ended_elsewhere: u64,
    /// Reports sent (duplicates included).
    pub reports: u64,
    /// Reports dropped by fault injection.
    pub dropped: u64,
    /// Virtual nodes that, in its simulated cluster, run on a number of
    /// nodes other than one when it stops (must be 0).
    pub instances_inconsistent: u64,
}

/// Why the agent stopped early.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The server could not be reached.
    #[error("cannot reach swarmd at {endpoint}: {reason}")]
    Connect {
        /// Endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A call failed in a way retrying cannot fix.
    #[error("{0}")]
    Rpc(#[from] tonic::Status),
}

struct Shared {
    cfg: AgentConfig,
    /// Random per run and part of every request id: a restarted agent
    /// under the same orchestrator id must not send ids its previous run
    /// used, or Swarm takes its new reports for repeats of old ones.
    run: u64,
    channel: Conn,
    summary: Mutex<Summary>,
    in_progress: Mutex<HashSet<u64>>,
    /// The simulated cluster: where each virtual node has instances.
    instances: Mutex<HashMap<String, BTreeSet<String>>>,
    reports: AtomicU64,
    last_activity: Mutex<Instant>,
}

/// How driving one migration ended.
enum End {
    Completed,
    RolledBack,
    Lost,
    Elsewhere,
}

/// Runs the agent against `channel` until `shutdown` resolves (or it has
/// been idle for `exit_when_idle`); returns what it did.
pub async fn run(
    channel: Conn,
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Summary, AgentError> {
    let sh = Arc::new(Shared {
        cfg,
        run: rand::random(),
        channel: channel.clone(),
        summary: Mutex::new(Summary::default()),
        in_progress: Mutex::new(HashSet::new()),
        instances: Mutex::new(HashMap::new()),
        reports: AtomicU64::new(0),
        last_activity: Mutex::new(Instant::now()),
    });
    let sem = Arc::new(Semaphore::new(sh.cfg.concurrency.max(1)));
    let mut placement = pb::topology_client::TopologyClient::new(channel.clone());
    let nodes = placement.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await?.into_inner().nodes;
    {
        let mut inst = sh.instances.lock().expect("instances");
        for v in nodes.into_iter().filter(|v| !v.placement.is_empty()) {
            inst.insert(v.id, BTreeSet::from([v.placement]));
        }
    }
    let mut decisions = pb::placement_client::PlacementClient::new(channel.clone());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_seq = 0u64;
    'outer: loop {
        // Note the newest decision, adopt every live migration, then follow
        // decisions after the noted one: nothing falls in between.
        let last = match decisions.list_decisions(pb::ListDecisionsRequest { from_sequence: u64::MAX, limit: 1 }).await
        {
            Ok(r) => r.into_inner().last_sequence,
            Err(s) if retryable(&s) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    _ = &mut shutdown => break,
                }
            }
            Err(s) => return Err(s.into()),
        };
        let mut mig = pb::migrations_client::MigrationsClient::new(channel.clone());
        match mig
            .list_migrations(pb::ListMigrationsRequest { live_only: true, limit: 10_000, ..Default::default() })
            .await
        {
            Ok(r) => {
                for m in r.into_inner().migrations {
                    spawn_driver(&sh, &sem, m.decision_sequence);
                }
            }
            Err(s) if retryable(&s) => continue,
            Err(s) => return Err(s.into()),
        }
        let from = next_seq.max(last + 1);
        let mut stream = match decisions.watch_decisions(pb::WatchDecisionsRequest { from_sequence: from }).await {
            Ok(s) => s.into_inner(),
            Err(s) if retryable(&s) => continue,
            Err(s) => return Err(s.into()),
        };
        let mut idle_check = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                msg = stream.message() => match msg {
                    Ok(Some(d)) => {
                        next_seq = d.sequence + 1;
                        spawn_driver(&sh, &sem, d.sequence);
                    }
                    // The server went away or is draining: reconnect and re-adopt.
                    Ok(None) | Err(_) => {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(200)) => continue 'outer,
                            _ = &mut shutdown => break 'outer,
                        }
                    }
                },
                _ = idle_check.tick() => {
                    if let Some(idle) = sh.cfg.exit_when_idle {
                        let busy = !sh.in_progress.lock().expect("in progress").is_empty();
                        if !busy && sh.last_activity.lock().expect("activity").elapsed() >= idle {
                            break 'outer;
                        }
                    }
                }
                _ = &mut shutdown => break 'outer,
            }
        }
    }
    let mut summary = sh.summary.lock().expect("summary").clone();
    summary.reports = sh.reports.load(Ordering::Relaxed);
    let inst = sh.instances.lock().expect("instances");
    summary.instances_inconsistent = inst.values().filter(|s| s.len() != 1).count() as u64;
    Ok(summary)
}

fn retryable(s: &tonic::Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded)
}

fn spawn_driver(sh: &Arc<Shared>, sem: &Arc<Semaphore>, seq: u64) {
    if !sh.in_progress.lock().expect("in progress").insert(seq) {
        return;
    }
    *sh.last_activity.lock().expect("activity") = Instant::now();
    let (sh, sem) = (sh.clone(), sem.clone());
    tokio::spawn(async move {
        let _permit = sem.acquire_owned().await.expect("semaphore never closes");
        let outcome = Driver::new(&sh, seq).drive().await;
        {
            let mut s = sh.summary.lock().expect("summary");
            match outcome {
                Ok(Some(End::Completed)) => s.completed += 1,
                Ok(Some(End::RolledBack)) => s.rolled_back += 1,
                Ok(Some(End::Lost)) => s.lost += 1,
                Ok(Some(End::Elsewhere)) => s.ended_elsewhere += 1,
                Ok(None) => {}
                Err(e) => tracing::warn!(decision = seq, error = %e, "migration driver stopped"),
            }
        }
        *sh.last_activity.lock().expect("activity") = Instant::now();
        sh.in_progress.lock().expect("in progress").remove(&seq);
    });
}

struct Driver<'a> {
    sh: &'a Shared,
    seq: u64,
    rng: StdRng,
    client: pb::migrations_client::MigrationsClient<Conn>,
    id: String,
    epoch: u64,
    virt: String,
    from: String,
    to: String,
    reports: u32,
}

impl<'a> Driver<'a> {
    fn new(sh: &'a Shared, seq: u64) -> Self {
        Driver {
            sh,
            seq,
            rng: StdRng::seed_from_u64(sh.cfg.seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            client: pb::migrations_client::MigrationsClient::new(sh.channel.clone()),
            id: String::new(),
            epoch: 0,
            virt: String::new(),
            from: String::new(),
            to: String::new(),
            reports: 0,
        }
    }

    /// Retries a call while the server is unreachable.
    async fn retry<T, F, Fut>(&mut self, mut call: F) -> Result<T, tonic::Status>
    where
        F: FnMut(pb::migrations_client::MigrationsClient<Conn>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut backoff = Duration::from_millis(50);
        loop {
            match call(self.client.clone()).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable(&s) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(s) => return Err(s),
            }
        }
    }

    /// The migration as the server has it now.
    async fn fetch(&mut self, id: String) -> Result<pb::Migration, tonic::Status> {
        let r = self
            .retry(|mut c| {
                let id = id.clone();
                async move { c.get_migration(pb::GetMigrationRequest { id }).await }
            })
            .await?;
        Ok(r.migration.unwrap_or_default())
    }

    /// How long copying this virtual node's state takes at `rate` bytes/s
    /// (its size as the topology says now).
    async fn transfer_time(&self, rate: f64) -> Result<Duration, tonic::Status> {
        let mut t = pb::topology_client::TopologyClient::new(self.sh.channel.clone());
        let req = pb::ListVirtualNodesRequest { physical_node_id: self.from.clone() };
        let nodes = t.list_virtual_nodes(req).await?.into_inner().nodes;
        let bytes = nodes.iter().find(|v| v.id == self.virt).map_or(0, |v| v.state_size_bytes);
        Ok(Duration::from_secs_f64(bytes as f64 / rate))
    }

    async fn drive(mut self) -> Result<Option<End>, tonic::Status> {
        let f = self.sh.cfg.faults;
        let who = self.sh.cfg.orchestrator_id.clone();
        let seq = self.seq;
        let current = match self.fetch(format!("m{seq}")).await {
            Ok(m) => m,
            // Decided with automation=apply: nothing to carry out.
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(s),
        };
        if current.phase == pb::MigrationPhase::Proposed as i32 && self.rng.random_bool(f.reject.clamp(0.0, 1.0)) {
            return self.reject("declined by fault injection".into()).await;
        }
        let run = self.sh.run;
        let accepted = self
            .retry(|mut c| {
                let who = who.clone();
                async move {
                    c.accept_migration(pb::AcceptMigrationRequest {
                        decision_sequence: seq,
                        orchestrator_id: who,
                        request_id: format!("accept-{run:x}-{seq}"),
                    })
                    .await
                }
            })
            .await;
        let accepted = match accepted {
            Ok(a) => a,
            // No room on the target (the server says "cannot accept ...: why").
            Err(s) if s.code() == Code::FailedPrecondition && s.message().starts_with("cannot accept") => {
                return self.reject(s.message().to_owned()).await;
            }
            Err(s) if s.code() == Code::FailedPrecondition => return Ok(Some(End::Elsewhere)),
            Err(s) => return Err(s),
        };
        let m = accepted.migration.unwrap_or_default();
        (self.id, self.epoch, self.virt, self.from, self.to) =
            (m.id, accepted.epoch, m.virtual_node_id, m.from_node_id, m.to_node_id);
        let stall = self.rng.random_bool(f.stall_shadow.clamp(0.0, 1.0));
        let unhealthy = self.rng.random_bool(f.unhealthy_shadow.clamp(0.0, 1.0));
        let mut instruction = pb::Instruction::try_from(accepted.instruction).unwrap_or_default();
        let mut started = m.phase >= pb::MigrationPhase::Shadowing as i32;
        let mut cutting = m.phase == pb::MigrationPhase::CuttingOver as i32;
        loop {
            let next = match instruction {
                pb::Instruction::StartShadow if stall => {
                    // The shadow hangs: keep asking until Swarm gives up on it.
                    tokio::time::sleep(self.sh.cfg.report_every).await;
                    Ok(self.fetch(self.id.clone()).await?.instruction)
                }
                pb::Instruction::StartShadow if !started => {
                    tokio::time::sleep(self.sh.cfg.shadow_start).await;
                    self.instances(|s, m| {
                        s.insert(m.to.clone());
                    });
                    started = true;
                    let r = self.report(pb::MigrationPhase::ShadowStarting, None).await;
                    if r.is_ok()
                        && let Some(rate) = self.sh.cfg.transfer_rate
                    {
                        tokio::time::sleep(self.transfer_time(rate).await?).await;
                    }
                    r
                }
                pb::Instruction::StartShadow | pb::Instruction::KeepShadowing => {
                    if instruction == pb::Instruction::KeepShadowing {
                        tokio::time::sleep(self.sh.cfg.report_every).await;
                    }
                    let h = self.health(unhealthy);
                    self.report(pb::MigrationPhase::Shadowing, Some(h)).await
                }
                pb::Instruction::CutOver if !cutting => {
                    cutting = true;
                    self.report(pb::MigrationPhase::CuttingOver, None).await
                }
                pb::Instruction::CutOver => {
                    tokio::time::sleep(self.sh.cfg.cutover).await;
                    self.instances(|s, m| {
                        s.insert(m.to.clone());
                        s.remove(&m.from);
                    });
                    self.report(pb::MigrationPhase::Completed, None).await
                }
                pb::Instruction::RollBack => {
                    self.instances(|s, m| {
                        if m.to != m.from {
                            s.remove(&m.to);
                        }
                        s.insert(m.from.clone());
                    });
                    self.report(pb::MigrationPhase::RolledBack, None).await
                }
                pb::Instruction::Done => {
                    let phase = self.fetch(self.id.clone()).await?.phase;
                    return Ok(Some(if phase == pb::MigrationPhase::Completed as i32 {
                        End::Completed
                    } else {
                        End::RolledBack
                    }));
                }
                pb::Instruction::Unspecified => {
                    tokio::time::sleep(self.sh.cfg.report_every).await;
                    Ok(instruction as i32)
                }
            };
            match next {
                Ok(i) => instruction = pb::Instruction::try_from(i).unwrap_or_default(),
                // Fenced off: another orchestrator holds a newer epoch, or it ended.
                Err(s) if s.code() == Code::FailedPrecondition && s.message().contains("stale") => {
                    tracing::info!(migration = %self.id, "{}", s.message());
                    return Ok(Some(End::Lost));
                }
                Err(s) if s.code() == Code::FailedPrecondition && s.message().contains("has ended") => {
                    return Ok(Some(End::Elsewhere));
                }
                Err(s) => return Err(s),
            }
        }
    }

    async fn reject(&mut self, reason: String) -> Result<Option<End>, tonic::Status> {
        let (seq, who) = (self.seq, self.sh.cfg.orchestrator_id.clone());
        let r = self
            .retry(|mut c| {
                let (who, reason) = (who.clone(), reason.clone());
                async move {
                    c.reject_migration(pb::RejectMigrationRequest {
                        decision_sequence: seq,
                        orchestrator_id: who,
                        reason,
                    })
                    .await
                }
            })
            .await;
        match r {
            Ok(_) => {
                self.sh.summary.lock().expect("summary").rejected += 1;
                Ok(None)
            }
            Err(s) if s.code() == Code::FailedPrecondition => Ok(Some(End::Elsewhere)),
            Err(s) => Err(s),
        }
    }

    fn instances(&self, f: impl FnOnce(&mut BTreeSet<String>, &Self)) {
        let mut inst = self.sh.instances.lock().expect("instances");
        f(inst.entry(self.virt.clone()).or_default(), self);
    }

    fn health(&mut self, unhealthy: bool) -> pb::ShadowHealth {
        let original = 10.0;
        pb::ShadowHealth {
            latency_ms: original * self.rng.random_range(0.9..1.2),
            original_latency_ms: original,
            error_rate: if unhealthy { 0.2 } else { self.rng.random_range(0.0..0.001) },
            lag_ms: self.rng.random_range(0.0..500.0),
        }
    }

    /// Sends a report (dropped, duplicated or followed by a crash as the
    /// faults say); retried with the same request id until it is answered.
    async fn report(
        &mut self,
        phase: pb::MigrationPhase,
        health: Option<pb::ShadowHealth>,
    ) -> Result<i32, tonic::Status> {
        let f = self.sh.cfg.faults;
        self.reports += 1;
        let req = pb::ReportProgressRequest {
            migration_id: self.id.clone(),
            epoch: self.epoch,
            phase: phase as i32,
            health,
            request_id: format!("{}-{:x}-{}-{}", self.sh.cfg.orchestrator_id, self.sh.run, self.id, self.reports),
        };
        while self.rng.random_bool(f.drop_reports.clamp(0.0, 0.95)) {
            self.sh.summary.lock().expect("summary").dropped += 1;
            tokio::time::sleep(self.sh.cfg.report_every).await;
        }
        let sends = if self.rng.random_bool(f.duplicate_reports.clamp(0.0, 1.0)) { 2 } else { 1 };
        let mut answer = None;
        for _ in 0..sends {
            let r = self
                .retry(|mut c| {
                    let req = req.clone();
                    async move { c.report_progress(req).await }
                })
                .await;
            let n = self.sh.reports.fetch_add(1, Ordering::Relaxed) + 1;
            if f.crash_after_reports.is_some_and(|limit| n >= limit) {
                // Die like a killed process: no clean-up, no goodbye.
                std::process::exit(137);
            }
            answer.get_or_insert(r.map(|r| r.instruction));
        }
        answer.expect("sent at least once")
    }
}
