//! The IO around the migration state machine: every event is applied to a
//! copy of the migration, the copy (and, at the cutover, the new placement)
//! is persisted in one transaction, and only then does it become visible and
//! is the instruction returned. So an orchestrator is never told to act on a
//! transition that a crash could forget.

use super::{ApiError, Swarm, Write, stopped};
use crate::store::TopologyChange;
use crate::validate::FieldError;
use swarm_core::domain::{NodeId, PhysicalState, Topology};
use swarm_core::migration::book::Book;
use swarm_core::migration::machine::{Applied, Event, Health, Migration, Phase, Policy, Refusal, epoch_term};

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        ApiError::FailedPrecondition(r.to_string())
    }
}

/// A refusal as the orchestrator should hear it from a replica leading
/// `term`: an epoch handed out under a newer term means a newer leader
/// exists and this replica is deposed, which is UNAVAILABLE (report to the
/// current leader), not a wrong request.
fn refused(r: Refusal, term: u64) -> ApiError {
    match r {
        Refusal::UnknownEpoch { got, .. } if epoch_term(got) > term => ApiError::Unavailable(format!(
            "epoch {got} was handed out by the leader of term {}, newer than this replica's term {term}: \
             this replica no longer leads; report to the current leader",
            epoch_term(got)
        )),
        r => r.into(),
    }
}

/// Parses a migration id, or says it is unknown.
fn seq_of(id: &str, book: &Book) -> Result<u64, ApiError> {
    book.by_id(id).map(|m| m.decision_sequence).ok_or_else(|| unknown_migration(id))
}

/// NOT_FOUND for a migration id the book does not hold.
pub fn unknown_migration(id: &str) -> ApiError {
    ApiError::NotFound(format!("unknown migration {id:?}"))
}

/// Validates an orchestrator id (same rules as node ids).
fn orchestrator(id: &str) -> Result<String, ApiError> {
    NodeId::parse(id).map(|n| n.to_string()).map_err(|r| FieldError::new("orchestrator_id", r).into())
}

/// Validates a reported health: finite, non-negative, error rate at most 1.
pub fn health(h: &Health) -> Result<Health, FieldError> {
    for (name, v) in
        [("latency_ms", h.latency_ms), ("original_latency_ms", h.original_latency_ms), ("lag_ms", h.lag_ms)]
    {
        if !v.is_finite() || v < 0.0 {
            return Err(FieldError::new(format!("health.{name}"), format!("must be finite and >= 0, got {v}")));
        }
    }
    if !(0.0..=1.0).contains(&h.error_rate) {
        return Err(FieldError::new("health.error_rate", format!("must be in [0, 1], got {}", h.error_rate)));
    }
    Ok(*h)
}

/// The phases an orchestrator may report.
pub const REPORTABLE: [Phase; 5] =
    [Phase::ShadowStarting, Phase::Shadowing, Phase::CuttingOver, Phase::Completed, Phase::RolledBack];

/// Ends the live migration of `virt` because something else is about to
/// change its placement: a proposed one is superseded (rolled back, nothing
/// was started); an accepted one belongs to an orchestrator and refuses.
pub(super) fn release(
    book: &Book,
    virt: &str,
    why: &str,
    now_ms: i64,
    policy: &Policy,
) -> Result<Option<Migration>, ApiError> {
    let Some(m) = book.live_of(virt) else { return Ok(None) };
    if m.reserves_target() {
        return Err(ApiError::FailedPrecondition(format!(
            "virtual node {virt} is being moved by migration {} ({}, held by {}); \
             abort it first (swarmctl migrations abort {}) or let it finish",
            m.id,
            m.phase.name(),
            m.owner.as_deref().unwrap_or("?"),
            m.id
        )));
    }
    let mut m = m.clone();
    m.apply(Event::Abort { reason: format!("superseded: {why}") }, now_ms, policy)?;
    Ok(Some(m))
}

/// Aborts every live migration towards a physical node that no longer
/// accepts virtual nodes (draining or removed).
pub(super) fn abort_towards(book: &Book, topo_after: &Topology, now_ms: i64, policy: &Policy) -> Vec<Migration> {
    book.live()
        .filter(|m| topo_after.physical.get(m.to.as_str()).is_none_or(|p| p.state != PhysicalState::Active))
        .filter(|m| !m.phase.is_undoing())
        .map(|m| {
            let mut m = m.clone();
            let state = topo_after.physical.get(m.to.as_str()).map_or("gone", |p| p.state.name());
            let _ = m.apply(Event::Abort { reason: format!("target {} is {state}", m.to) }, now_ms, policy);
            m
        })
        .collect()
}

impl Swarm {
    fn policy(&self) -> Policy {
        self.inner.cfg.migration
    }

    /// Applies `event` (built from the current migration) to migration `seq`:
    /// persisted first, with the placement change when it commits.
    async fn transition<R: Send + 'static>(
        &self,
        seq: impl FnOnce(&Book) -> Result<u64, ApiError> + Send + 'static,
        event: impl FnOnce(&Migration, &Topology, &Book) -> Result<Event, ApiError> + Send + 'static,
        result: impl FnOnce(&Migration, &Applied) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let now = self.now_ms();
        let policy = self.policy();
        let term = self.inner.store.term();
        self.write(move |meta| {
            let (topo, book) = (&*meta.topology, &meta.book);
            let seq = seq(book)?;
            let current =
                book.get(seq).ok_or_else(|| ApiError::NotFound(format!("no migration for decision {seq}")))?;
            let ev = event(current, topo, book)?;
            let mut m = current.clone();
            let applied = m.apply(ev, now, &policy).map_err(|r| refused(r, term))?;
            let mut changes = Vec::new();
            if applied.committed {
                let mut v = topo.virtual_nodes.get(m.virt.as_str()).cloned().ok_or_else(|| {
                    ApiError::Internal(format!("migration {} commits unknown virtual node {}", m.id, m.virt))
                })?;
                v.placement = Some(NodeId::parse(&m.to).map_err(ApiError::Internal)?);
                changes.push(TopologyChange::PutVirtual(v));
            }
            let r = result(&m, &applied);
            let migrations = if m != *current { vec![m] } else { Vec::new() };
            Ok(Write::new(changes, migrations, r))
        })
        .await
    }

    /// An orchestrator takes the migration of decision `seq` (or takes it
    /// over from another instance, with a new epoch). The first acceptance
    /// reserves the target's room and fails when there is none.
    pub async fn accept_migration(&self, seq: u64, orchestrator_id: &str) -> Result<Migration, ApiError> {
        let who = orchestrator(orchestrator_id)?;
        let overcommit = self.inner.cfg.migration.cpu_overcommit;
        let term = self.inner.store.term();
        self.transition(
            move |book| {
                book.get(seq).map(|_| seq).ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "decision {seq} has no migration (unknown, or decided with automation=apply)"
                    ))
                })
            },
            move |m, topo, book| {
                if m.phase == Phase::Proposed {
                    book.room_for(topo, m, overcommit).map_err(|why| {
                        ApiError::FailedPrecondition(format!("cannot accept {}: {why}; reject it instead", m.id))
                    })?;
                }
                Ok(Event::Accept { orchestrator: who, term })
            },
            |m, _| m.clone(),
        )
        .await
    }

    /// An orchestrator declines the migration of decision `seq`. Repeating a
    /// rejection is fine.
    pub async fn reject_migration(&self, seq: u64, orchestrator_id: &str, reason: String) -> Result<(), ApiError> {
        let who = orchestrator(orchestrator_id)?;
        if reason.len() > 4096 {
            return Err(FieldError::new("reason", format!("is {} bytes; the limit is 4096", reason.len())).into());
        }
        let r = self
            .transition(
                move |book| {
                    book.get(seq)
                        .map(|_| seq)
                        .ok_or_else(|| ApiError::NotFound(format!("decision {seq} has no migration")))
                },
                move |_, _, _| Ok(Event::Reject { orchestrator: who, reason }),
                |_, _| (),
            )
            .await;
        match r {
            Err(ApiError::FailedPrecondition(_)) if self.migration_phase(seq) == Some(Phase::Rejected) => Ok(()),
            r => r,
        }
    }

    fn migration_phase(&self, seq: u64) -> Option<Phase> {
        self.meta().book.get(seq).map(|m| m.phase)
    }

    /// The orchestrator holding epoch `epoch` reports reaching `phase`.
    pub async fn report_progress(
        &self,
        id: &str,
        epoch: u64,
        phase: Phase,
        health: Option<Health>,
        request_id: String,
    ) -> Result<Migration, ApiError> {
        if !REPORTABLE.contains(&phase) {
            let names: Vec<&str> = REPORTABLE.iter().map(|p| p.name()).collect();
            return Err(FieldError::new(
                "phase",
                format!("{} cannot be reported; report one of {}", phase.name(), names.join(", ")),
            )
            .into());
        }
        let health = health.as_ref().map(self::health).transpose()?;
        if request_id.len() > 256 {
            return Err(FieldError::new("request_id", "is longer than 256 bytes").into());
        }
        let id = id.to_owned();
        self.transition(
            move |book| seq_of(&id, book),
            move |_, _, _| Ok(Event::Report { epoch, phase, health, request_id }),
            |m, _| m.clone(),
        )
        .await
    }

    /// An operator aborts a live migration; the old instance keeps serving.
    pub async fn abort_migration(&self, id: &str, reason: String) -> Result<Migration, ApiError> {
        let id = id.to_owned();
        let reason = if reason.trim().is_empty() { "no reason given".to_owned() } else { reason };
        self.transition(move |book| seq_of(&id, book), move |_, _, _| Ok(Event::Abort { reason }), |m, _| m.clone())
            .await
    }

    /// Reads the migration book under its lock.
    pub fn read_book<T>(&self, f: impl FnOnce(&Book) -> T) -> T {
        f(&self.meta().book)
    }

    /// Applies timeouts to every live migration (persisting those that
    /// changed); returns how many changed.
    pub async fn tick_migrations(&self) -> Result<usize, ApiError> {
        let now = self.now_ms();
        let policy = self.policy();
        self.write(move |meta| {
            let book = &meta.book;
            let migrations: Vec<Migration> = book
                .live()
                .filter_map(|m| {
                    let mut next = m.clone();
                    next.apply(Event::Tick, now, &policy).ok().filter(|a| a.transitions > 0).map(|_| next)
                })
                .collect();
            let n = migrations.len();
            for m in &migrations {
                tracing::warn!(migration = %m.id, virt = %m.virt, phase = m.phase.name(),
                    cause = %m.history.last().map(|t| t.cause.as_str()).unwrap_or(""), "migration timed out");
            }
            Ok(Write::new(Vec::new(), migrations, n))
        })
        .await
    }

    /// On the configured tick until shutdown: checks migration timeouts,
    /// advances applied reconfiguration plans and measures the outcomes of
    /// completed moves whose window has passed.
    pub async fn run_migration_timer(self) {
        let mut shutdown = self.shutdown_signal();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(self.inner.cfg.migration.tick_ms as u64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.tick_migrations().await {
                        tracing::error!(error = %e, "migration timeout check failed");
                    }
                    if let Err(e) = self.run_reconfigurations().await {
                        tracing::error!(error = %e, "reconfiguration step failed");
                    }
                    // A backend outage only delays outcomes: they stay due.
                    if let Err(e) = self.measure_outcomes().await {
                        tracing::warn!(error = %e, "measuring decision outcomes failed; retrying next tick");
                    }
                }
                _ = stopped(&mut shutdown) => return,
            }
        }
    }
}
