//! One migration's lifecycle as a pure state machine (the TiKV-PD operator
//! pattern: an explicit table of allowed transitions, each step with its own
//! timeout and a report that it finished).
//!
//! ```text
//! proposed ─accept→ accepted ─report→ shadow-starting ─report→ shadowing ─healthy for the window→ verified
//!    │                  │                   │                      │                                   │
//!    ├─reject→ rejected  └──── timeout / abort / unhealthy shadow → timed-out | aborted | shadow-unhealthy
//!    │                                                                    │  (instruction: roll back)
//!    └─timeout/abort (nothing started) → timed-out | aborted ─→ rolled-back ←─ orchestrator reports it
//! verified ─report→ cutting-over ─report→ completed (the commit: the placement changes here, once)
//! ```
//!
//! Fencing: every acceptance (including a takeover by a new orchestrator
//! instance) bumps the epoch; a report carrying an older epoch changes
//! nothing and is refused. With replicated controllers the leader's term is
//! part of the epoch ([`next_epoch`]): an epoch handed out under a newer
//! term is above every epoch of the terms before it, and a replica can tell
//! from an epoch alone that a newer leader issued it ([`epoch_term`]).
//!
//! Reports are idempotent: a repeated request id, a repeat of the current
//! phase or a late report of an earlier phase returns the current
//! instruction without a transition.

use serde::{Deserialize, Serialize};

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Decided; no orchestrator has accepted it yet.
    Proposed,
    /// An orchestrator took it; capacity on the target is reserved.
    Accepted,
    /// The new instance is being started.
    ShadowStarting,
    /// The new instance receives mirrored traffic; its health is watched.
    Shadowing,
    /// The shadow stayed healthy for the verification window.
    Verified,
    /// Traffic is being switched to the new instance.
    CuttingOver,
    /// The new instance serves; the placement changed. Terminal.
    Completed,
    /// The orchestrator declined it. Terminal.
    Rejected,
    /// A phase took too long; rolling back.
    TimedOut,
    /// The shadow broke the tolerances; rolling back.
    ShadowUnhealthy,
    /// The old instance serves, the new one is gone. Terminal.
    RolledBack,
    /// An operator stopped it; rolling back.
    Aborted,
}

use Phase::*;

impl Phase {
    /// Every phase, in the order of the protocol.
    pub const ALL: [Phase; 12] = [
        Proposed,
        Accepted,
        ShadowStarting,
        Shadowing,
        Verified,
        CuttingOver,
        Completed,
        Rejected,
        TimedOut,
        ShadowUnhealthy,
        RolledBack,
        Aborted,
    ];
}

/// Every allowed transition. Anything else is refused.
pub const TRANSITIONS: &[(Phase, Phase)] = &[
    (Proposed, Accepted),
    (Proposed, Rejected),
    (Proposed, TimedOut),
    (Proposed, Aborted),
    (Accepted, ShadowStarting),
    (Accepted, TimedOut),
    (Accepted, Aborted),
    (ShadowStarting, Shadowing),
    (ShadowStarting, ShadowUnhealthy),
    (ShadowStarting, TimedOut),
    (ShadowStarting, Aborted),
    (Shadowing, Verified),
    (Shadowing, ShadowUnhealthy),
    (Shadowing, TimedOut),
    (Shadowing, Aborted),
    (Verified, CuttingOver),
    (Verified, TimedOut),
    (Verified, Aborted),
    (CuttingOver, Completed),
    (CuttingOver, TimedOut),
    (CuttingOver, Aborted),
    (TimedOut, RolledBack),
    (ShadowUnhealthy, RolledBack),
    (Aborted, RolledBack),
];

impl Phase {
    /// Lower-case name with dashes.
    pub fn name(self) -> &'static str {
        match self {
            Proposed => "proposed",
            Accepted => "accepted",
            ShadowStarting => "shadow-starting",
            Shadowing => "shadowing",
            Verified => "verified",
            CuttingOver => "cutting-over",
            Completed => "completed",
            Rejected => "rejected",
            TimedOut => "timed-out",
            ShadowUnhealthy => "shadow-unhealthy",
            RolledBack => "rolled-back",
            Aborted => "aborted",
        }
    }

    /// No transition leaves it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Completed | Rejected | RolledBack)
    }

    /// Being undone: the orchestrator is told to roll back.
    pub fn is_undoing(self) -> bool {
        matches!(self, TimedOut | ShadowUnhealthy | Aborted)
    }

    /// Order along the happy path (for recognising late reports).
    fn rank(self) -> u8 {
        match self {
            Proposed => 0,
            Accepted => 1,
            ShadowStarting => 2,
            Shadowing => 3,
            Verified => 4,
            CuttingOver => 5,
            _ => 6,
        }
    }

    /// Whether `self → to` is in [`TRANSITIONS`].
    pub fn can_go(self, to: Phase) -> bool {
        TRANSITIONS.contains(&(self, to))
    }
}

/// What the orchestrator should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Instruction {
    /// Nothing yet (not accepted).
    Wait,
    /// Start the new instance and mirror traffic to it.
    StartShadow,
    /// Keep mirroring and reporting health.
    KeepShadowing,
    /// Switch traffic to the new instance.
    CutOver,
    /// Stop the new instance; the old one keeps serving.
    RollBack,
    /// Nothing left to do.
    Done,
}

/// The health of a shadow as the orchestrator measured it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Shadow latency, ms.
    pub latency_ms: f64,
    /// Original instance's latency over the same requests, ms.
    pub original_latency_ms: f64,
    /// Share of mirrored requests that failed, 0..1.
    pub error_rate: f64,
    /// How far the shadow's state lags the original, ms.
    pub lag_ms: f64,
}

/// Limits and timeouts of the migration protocol. The config file's
/// `[migration]` section deserializes straight into it (durations written
/// like `"5m"`), so a field added here is a config key at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Shadow latency may be at most this multiple of the original's.
    pub max_latency_ratio: f64,
    /// Highest tolerated error rate.
    pub max_error_rate: f64,
    /// Highest tolerated lag, ms.
    #[serde(rename = "max_lag", with = "crate::duration::millis_f64")]
    pub max_lag_ms: f64,
    /// The shadow must stay within tolerances this long, ms.
    #[serde(rename = "verify_window", with = "crate::duration::millis")]
    pub verify_window_ms: i64,
    /// Longest wait for an acceptance, ms.
    #[serde(rename = "accept_timeout", with = "crate::duration::millis")]
    pub accept_timeout_ms: i64,
    /// Longest time in each active phase (accepted, shadow-starting,
    /// verified, cutting-over), ms.
    #[serde(rename = "phase_timeout", with = "crate::duration::millis")]
    pub phase_timeout_ms: i64,
    /// Longest shadowing without verification, ms.
    #[serde(rename = "shadow_timeout", with = "crate::duration::millis")]
    pub shadow_timeout_ms: i64,
    /// Requested CPU on a node may reach this multiple of its cores when a
    /// migration reserves room there (memory is never overcommitted).
    pub cpu_overcommit: f64,
    /// How often the caller checks timeouts, ms: the precision of every
    /// timeout above (the machine itself only sees the ticks it is given).
    #[serde(rename = "tick", with = "crate::duration::millis")]
    pub tick_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_latency_ratio: 1.5,
            max_error_rate: 0.01,
            max_lag_ms: 5_000.0,
            verify_window_ms: 60_000,
            accept_timeout_ms: 10 * 60_000,
            phase_timeout_ms: 5 * 60_000,
            shadow_timeout_ms: 30 * 60_000,
            cpu_overcommit: 1.0,
            tick_ms: 1_000,
        }
    }
}

impl Policy {
    /// Checks ranges (the config loader calls this; so may any caller that
    /// builds a policy by hand).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.max_latency_ratio.is_finite() && self.max_latency_ratio >= 1.0) {
            return Err("migration.max_latency_ratio must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return Err("migration.max_error_rate must be in 0..=1".into());
        }
        if !(self.max_lag_ms.is_finite() && self.max_lag_ms >= 0.0) {
            return Err("migration.max_lag must not be negative".into());
        }
        if [self.accept_timeout_ms, self.phase_timeout_ms, self.shadow_timeout_ms].iter().any(|&t| t < 100) {
            return Err("migration timeouts must be at least 100ms".into());
        }
        if self.verify_window_ms >= self.shadow_timeout_ms {
            return Err(
                "migration.verify_window must be shorter than migration.shadow_timeout (else no shadow can be verified)"
                    .into(),
            );
        }
        if !(self.cpu_overcommit.is_finite() && self.cpu_overcommit >= 1.0) {
            return Err("migration.cpu_overcommit must be at least 1".into());
        }
        if !(10..=60_000).contains(&self.tick_ms) {
            return Err("migration.tick must be in 10ms..=60s".into());
        }
        Ok(())
    }

    /// Why `h` breaks the tolerances, if it does.
    pub fn unhealthy(&self, h: &Health) -> Option<String> {
        let finite = [h.latency_ms, h.original_latency_ms, h.error_rate, h.lag_ms].iter().all(|x| x.is_finite());
        if !finite {
            return Some("health report has a non-finite value".into());
        }
        if h.error_rate > self.max_error_rate {
            return Some(format!("error rate {:.3} > {:.3}", h.error_rate, self.max_error_rate));
        }
        if h.lag_ms > self.max_lag_ms {
            return Some(format!("lag {:.0} ms > {:.0} ms", h.lag_ms, self.max_lag_ms));
        }
        if h.original_latency_ms > 0.0 && h.latency_ms > self.max_latency_ratio * h.original_latency_ms {
            return Some(format!(
                "latency {:.1} ms > {:.1} x original {:.1} ms",
                h.latency_ms, self.max_latency_ratio, h.original_latency_ms
            ));
        }
        None
    }

    fn timeout(&self, p: Phase) -> Option<i64> {
        match p {
            Proposed => Some(self.accept_timeout_ms),
            // An undoing phase waits this long for the orchestrator to
            // confirm its roll-back, then ends on its own (see `tick`).
            Accepted | ShadowStarting | Verified | CuttingOver | TimedOut | ShadowUnhealthy | Aborted => {
                Some(self.phase_timeout_ms)
            }
            Shadowing => Some(self.shadow_timeout_ms),
            Completed | Rejected | RolledBack => None,
        }
    }
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Phase entered.
    pub phase: Phase,
    /// When, ms.
    pub at_ms: i64,
    /// Why.
    pub cause: String,
}

/// What happened to a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// An orchestrator takes it (or takes it over).
    Accept {
        /// Who.
        orchestrator: String,
        /// The term of the controller handing out the epoch (0 without
        /// leader election).
        term: u64,
    },
    /// The orchestrator declines it.
    Reject {
        /// Who.
        orchestrator: String,
        /// Why.
        reason: String,
    },
    /// The orchestrator reports reaching `phase`.
    Report {
        /// Its epoch.
        epoch: u64,
        /// Phase reached: shadow-starting, shadowing, cutting-over, completed or rolled-back.
        phase: Phase,
        /// Shadow health, while shadowing.
        health: Option<Health>,
        /// Its idempotency key.
        request_id: String,
    },
    /// Time passes (timeouts, verification).
    Tick,
    /// An operator stops it.
    Abort {
        /// Why.
        reason: String,
    },
}

/// Why an event changed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The report carries an epoch older than the current one.
    #[error("epoch {got} is stale; the migration is at epoch {current} (another orchestrator took it over)")]
    StaleEpoch {
        /// Epoch given.
        got: u64,
        /// Current epoch.
        current: u64,
    },
    /// The report carries an epoch never handed out.
    #[error("epoch {got} was never issued; the migration is at epoch {current}")]
    UnknownEpoch {
        /// Epoch given.
        got: u64,
        /// Current epoch.
        current: u64,
    },
    /// The migration has ended.
    #[error("the migration has ended ({})", .0.name())]
    Ended(Phase),
    /// The phase reported cannot follow the current one.
    #[error("cannot go from {} to {}", .from.name(), .to.name())]
    NotAllowed {
        /// Current phase.
        from: Phase,
        /// Phase asked for.
        to: Phase,
    },
    /// Reject by someone else than the owner, or of an accepted migration.
    #[error("only a proposed migration can be rejected")]
    NotRejectable,
}

/// A migration's durable state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// Id.
    pub id: String,
    /// The decision it carries out.
    pub decision_sequence: u64,
    /// Virtual node.
    pub virt: String,
    /// Source.
    pub from: String,
    /// Target.
    pub to: String,
    /// Current phase.
    pub phase: Phase,
    /// Fencing epoch (0 until accepted).
    pub epoch: u64,
    /// Orchestrator holding the current epoch.
    pub owner: Option<String>,
    /// Since when the shadow has been continuously healthy.
    pub healthy_since_ms: Option<i64>,
    /// Every transition, oldest first.
    pub history: Vec<Transition>,
    /// Recent request ids (idempotency), newest last.
    pub seen_requests: Vec<String>,
    /// The applied reconfiguration plan it carries a move of, if any.
    #[serde(default)]
    pub origin: Option<crate::reconfig::record::Origin>,
    /// For a move back: the decision whose move it reverses.
    #[serde(default)]
    pub reverses: Option<u64>,
    /// What the move achieved, once measured after it completed.
    #[serde(skip)]
    pub outcome: Option<crate::outcome::Outcome>,
}

/// Bits of an epoch below its leader term: the acceptances one term can
/// hand out for one migration (a million; each is an orchestrator taking
/// the migration over).
pub const EPOCH_TERM_SHIFT: u32 = 20;

/// The epoch after `current`, handed out by a controller leading `term`
/// (0 without leader election, where epochs simply count up): above
/// `current`, and above every epoch any earlier term can have handed out,
/// so an orchestrator holding an old leader's epoch is fenced by the new
/// leader's first takeover.
pub fn next_epoch(current: u64, term: u64) -> u64 {
    (current + 1).max((term << EPOCH_TERM_SHIFT) | 1)
}

/// The leader term that handed out `epoch` (0 for epochs of a controller
/// without leader election).
pub fn epoch_term(epoch: u64) -> u64 {
    epoch >> EPOCH_TERM_SHIFT
}

/// Request ids remembered per migration.
const SEEN: usize = 64;

/// The result of an event that was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The instruction for the orchestrator.
    pub instruction: Instruction,
    /// Transitions made by this event (to persist before acting).
    pub transitions: usize,
    /// This event committed the placement change (entered `completed`).
    pub committed: bool,
}

impl Migration {
    /// A new proposed migration.
    pub fn propose(id: String, decision_sequence: u64, virt: String, from: String, to: String, now_ms: i64) -> Self {
        Migration {
            id,
            decision_sequence,
            virt,
            from,
            to,
            phase: Proposed,
            epoch: 0,
            owner: None,
            healthy_since_ms: None,
            history: vec![Transition { phase: Proposed, at_ms: now_ms, cause: "decided by the controller".into() }],
            seen_requests: Vec::new(),
            origin: None,
            reverses: None,
            outcome: None,
        }
    }

    /// When the placement changed: the time it completed (`None` before).
    pub fn cutover_at_ms(&self) -> Option<i64> {
        self.history.iter().find(|t| t.phase == Phase::Completed).map(|t| t.at_ms)
    }

    /// When the current phase began.
    pub fn phase_since_ms(&self) -> i64 {
        self.history.last().map_or(0, |t| t.at_ms)
    }

    /// Live: not terminal.
    pub fn is_live(&self) -> bool {
        !self.phase.is_terminal()
    }

    /// Capacity on the target is held from acceptance until the end.
    pub fn reserves_target(&self) -> bool {
        self.is_live() && self.phase != Proposed
    }

    /// What the orchestrator should do in the current phase.
    pub fn instruction(&self) -> Instruction {
        match self.phase {
            Proposed => Instruction::Wait,
            Accepted | ShadowStarting => Instruction::StartShadow,
            Shadowing => Instruction::KeepShadowing,
            Verified | CuttingOver => Instruction::CutOver,
            TimedOut | ShadowUnhealthy | Aborted => Instruction::RollBack,
            Completed | Rejected | RolledBack => Instruction::Done,
        }
    }

    /// The one way a phase changes: checked against [`TRANSITIONS`] in every
    /// build profile (not a debug assertion), so a bug in the rules below
    /// becomes a refused event instead of a silently illegal state.
    fn go(&mut self, to: Phase, now_ms: i64, cause: String) -> Result<(), Refusal> {
        if !self.phase.can_go(to) {
            return Err(Refusal::NotAllowed { from: self.phase, to });
        }
        // Time never runs backwards in the history, even if a caller's clock does.
        let at_ms = now_ms.max(self.phase_since_ms());
        self.phase = to;
        self.history.push(Transition { phase: to, at_ms, cause });
        if to != Shadowing {
            self.healthy_since_ms = None;
        }
        Ok(())
    }

    fn settle(&mut self, now_ms: i64) -> Result<(), Refusal> {
        // Undoing a migration nobody accepted needs no orchestrator.
        if self.phase.is_undoing() && self.owner.is_none() {
            self.go(RolledBack, now_ms, "nothing was started".into())?;
        }
        Ok(())
    }

    /// Applies `ev` at `now_ms`. All or nothing: a refused event leaves the
    /// migration exactly as it was, even when it was refused half-way
    /// through a multi-step change.
    pub fn apply(&mut self, ev: Event, now_ms: i64, policy: &Policy) -> Result<Applied, Refusal> {
        let mut next = self.clone();
        let applied = next.apply_in_place(ev, now_ms, policy)?;
        *self = next;
        Ok(applied)
    }

    fn apply_in_place(&mut self, ev: Event, now_ms: i64, policy: &Policy) -> Result<Applied, Refusal> {
        let before = self.history.len();
        let was_completed = self.phase == Completed;
        match ev {
            Event::Accept { orchestrator, term } => {
                if self.phase.is_terminal() {
                    return Err(Refusal::Ended(self.phase));
                }
                if self.phase.is_undoing() && self.owner.is_none() {
                    return Err(Refusal::NotAllowed { from: self.phase, to: Accepted });
                }
                if self.owner.as_deref() == Some(orchestrator.as_str()) {
                    // A retried acceptance: same epoch, same answer.
                } else {
                    self.epoch = next_epoch(self.epoch, term);
                    let first = self.owner.is_none();
                    self.owner = Some(orchestrator.clone());
                    if first {
                        self.go(Accepted, now_ms, format!("accepted by {orchestrator} (epoch {})", self.epoch))?;
                    } else {
                        // A takeover keeps the phase; the history says who holds it now.
                        let phase = self.phase;
                        self.history.push(Transition {
                            phase,
                            at_ms: now_ms.max(self.phase_since_ms()),
                            cause: format!("taken over by {orchestrator} (epoch {})", self.epoch),
                        });
                    }
                }
            }
            Event::Reject { orchestrator, reason } => {
                if self.phase != Proposed {
                    return Err(if self.phase.is_terminal() {
                        Refusal::Ended(self.phase)
                    } else {
                        Refusal::NotRejectable
                    });
                }
                self.go(Rejected, now_ms, format!("rejected by {orchestrator}: {reason}"))?;
            }
            Event::Abort { reason } => {
                if self.phase.is_terminal() {
                    return Err(Refusal::Ended(self.phase));
                }
                if !self.phase.is_undoing() {
                    self.go(Aborted, now_ms, format!("aborted by an operator: {reason}"))?;
                }
                self.settle(now_ms)?;
            }
            Event::Tick => self.tick(now_ms, policy)?,
            Event::Report { epoch, phase, health, request_id } => {
                if epoch < self.epoch {
                    return Err(Refusal::StaleEpoch { got: epoch, current: self.epoch });
                }
                if epoch > self.epoch {
                    return Err(Refusal::UnknownEpoch { got: epoch, current: self.epoch });
                }
                if self.seen_requests.contains(&request_id) {
                    return Ok(Applied { instruction: self.instruction(), transitions: 0, committed: false });
                }
                if self.phase.is_terminal() {
                    return Err(Refusal::Ended(self.phase));
                }
                self.report(phase, health, now_ms, policy)?;
                if !request_id.is_empty() {
                    self.seen_requests.push(request_id);
                    if self.seen_requests.len() > SEEN {
                        self.seen_requests.remove(0);
                    }
                }
            }
        }
        Ok(Applied {
            instruction: self.instruction(),
            transitions: self.history.len() - before,
            committed: !was_completed && self.phase == Completed,
        })
    }

    fn report(&mut self, phase: Phase, health: Option<Health>, now_ms: i64, policy: &Policy) -> Result<(), Refusal> {
        let cur = self.phase;
        // A repeat, or a late report of an earlier step: nothing to do.
        if phase == cur || (!cur.is_undoing() && phase.rank() < cur.rank() && !phase.is_terminal()) {
            if cur == Shadowing && phase == Shadowing {
                self.observe(health, now_ms, policy)?;
            }
            return Ok(());
        }
        if cur.is_undoing() {
            return if phase == RolledBack {
                self.go(RolledBack, now_ms, "the orchestrator rolled back".into())
            } else {
                // The orchestrator has not seen the roll-back order yet.
                Ok(())
            };
        }
        match (cur, phase) {
            (Accepted, ShadowStarting) => self.go(ShadowStarting, now_ms, "starting the new instance".into()),
            (Accepted | ShadowStarting, Shadowing) => {
                if cur == Accepted {
                    self.go(ShadowStarting, now_ms, "starting the new instance (implied)".into())?;
                }
                self.go(Shadowing, now_ms, "the new instance serves mirrored traffic".into())?;
                self.observe(health, now_ms, policy)
            }
            (Verified, CuttingOver) => self.go(CuttingOver, now_ms, "switching traffic".into()),
            (CuttingOver, Completed) => {
                self.go(Completed, now_ms, "the new instance serves; placement committed".into())
            }
            (_, RolledBack) if matches!(cur, Accepted | ShadowStarting | Shadowing | Verified) => {
                // The orchestrator gave up on its own: record why, then the roll-back.
                self.go(Aborted, now_ms, "the orchestrator gave up".into())?;
                self.go(RolledBack, now_ms, "the orchestrator rolled back".into())
            }
            _ => Err(Refusal::NotAllowed { from: cur, to: phase }),
        }
    }

    fn observe(&mut self, health: Option<Health>, now_ms: i64, policy: &Policy) -> Result<(), Refusal> {
        let Some(h) = health else { return Ok(()) };
        if let Some(why) = policy.unhealthy(&h) {
            return self.go(ShadowUnhealthy, now_ms, format!("shadow unhealthy: {why}"));
        }
        let since = *self.healthy_since_ms.get_or_insert(now_ms);
        if now_ms - since >= policy.verify_window_ms {
            self.go(Verified, now_ms, format!("healthy for {} s", (now_ms - since) / 1000))?;
        }
        Ok(())
    }

    fn tick(&mut self, now_ms: i64, policy: &Policy) -> Result<(), Refusal> {
        if let Some(limit) = policy.timeout(self.phase)
            && now_ms - self.phase_since_ms() > limit
        {
            let phase = self.phase;
            if phase.is_undoing() {
                // The orchestrator told to roll back never confirmed it (it
                // is gone, or lost the migration): end it here, so its
                // reservation on the target is released and nothing waits
                // on it for ever. A late report of the roll-back is then
                // refused as ended.
                self.go(
                    RolledBack,
                    now_ms,
                    format!(
                        "no roll-back report within {} s of {}: assumed rolled back (the old instance kept serving throughout); the target's reservation is released",
                        limit / 1000,
                        phase.name()
                    ),
                )?;
            } else {
                self.go(TimedOut, now_ms, format!("{} took longer than {} s", phase.name(), limit / 1000))?;
            }
        }
        self.settle(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn m() -> Migration {
        Migration::propose("m1".into(), 7, "v".into(), "a".into(), "b".into(), 0)
    }

    fn report(epoch: u64, phase: Phase, health: Option<Health>, req: &str) -> Event {
        Event::Report { epoch, phase, health, request_id: req.into() }
    }

    const OK: Health = Health { latency_ms: 10.0, original_latency_ms: 9.0, error_rate: 0.0, lag_ms: 10.0 };

    #[test]
    fn happy_path_commits_once() {
        let p = Policy::default();
        let mut x = m();
        let a = x.apply(Event::Accept { orchestrator: "o1".into(), term: 0 }, 1_000, &p).unwrap();
        assert_eq!((a.instruction, x.epoch), (Instruction::StartShadow, 1));
        x.apply(report(1, ShadowStarting, None, "r1"), 2_000, &p).unwrap();
        let s = x.apply(report(1, Shadowing, Some(OK), "r2"), 3_000, &p).unwrap();
        assert_eq!(s.instruction, Instruction::KeepShadowing);
        // Healthy for the window: verified, cut over.
        let v = x.apply(report(1, Shadowing, Some(OK), "r3"), 3_000 + p.verify_window_ms, &p).unwrap();
        assert_eq!((x.phase, v.instruction), (Verified, Instruction::CutOver));
        x.apply(report(1, CuttingOver, None, "r4"), 70_000, &p).unwrap();
        let c = x.apply(report(1, Completed, None, "r5"), 71_000, &p).unwrap();
        assert!(c.committed);
        assert_eq!(c.instruction, Instruction::Done);
        // A retried report changes nothing and does not commit again.
        let again = x.apply(report(1, Completed, None, "r5"), 72_000, &p).unwrap();
        assert!(!again.committed && again.transitions == 0);
        let phases: Vec<Phase> = x.history.iter().map(|t| t.phase).collect();
        assert_eq!(phases, vec![Proposed, Accepted, ShadowStarting, Shadowing, Verified, CuttingOver, Completed]);
    }

    #[test]
    fn unhealthy_shadow_timeouts_takeover_and_abort() {
        let p = Policy::default();
        let mut x = m();
        x.apply(Event::Accept { orchestrator: "o1".into(), term: 0 }, 0, &p).unwrap();
        x.apply(report(1, Shadowing, Some(OK), "a"), 1_000, &p).unwrap();
        let bad = Health { error_rate: 0.2, ..OK };
        let r = x.apply(report(1, Shadowing, Some(bad), "b"), 2_000, &p).unwrap();
        assert_eq!((x.phase, r.instruction), (ShadowUnhealthy, Instruction::RollBack));
        assert!(x.history.last().unwrap().cause.contains("error rate 0.200"));
        x.apply(report(1, RolledBack, None, "c"), 3_000, &p).unwrap();
        assert_eq!(x.phase, RolledBack);

        // A new orchestrator takes over; the old one's late reports are refused.
        let mut y = m();
        y.apply(Event::Accept { orchestrator: "o1".into(), term: 0 }, 0, &p).unwrap();
        y.apply(Event::Accept { orchestrator: "o2".into(), term: 0 }, 10, &p).unwrap();
        assert_eq!(y.epoch, 2);
        let e = y.apply(report(1, ShadowStarting, None, "z"), 20, &p).unwrap_err();
        assert_eq!(e, Refusal::StaleEpoch { got: 1, current: 2 });
        assert_eq!(y.phase, Accepted);
        // Timeouts roll back; an unaccepted one needs no orchestrator.
        y.apply(Event::Tick, 10 + p.phase_timeout_ms + 1, &p).unwrap();
        assert_eq!((y.phase, y.instruction()), (TimedOut, Instruction::RollBack));
        let mut z = m();
        z.apply(Event::Tick, p.accept_timeout_ms + 1, &p).unwrap();
        assert_eq!(z.phase, RolledBack);
        let mut w = m();
        w.apply(Event::Abort { reason: "maintenance".into() }, 5, &p).unwrap();
        assert_eq!(w.phase, RolledBack);
        assert!(w.apply(Event::Accept { orchestrator: "o".into(), term: 0 }, 6, &p).is_err());
    }

    #[test]
    fn epochs_carry_the_leader_term_and_a_newer_term_fences_every_older_epoch() {
        let p = Policy::default();
        let mut x = m();
        x.apply(Event::Accept { orchestrator: "o1".into(), term: 7 }, 0, &p).unwrap();
        assert_eq!(epoch_term(x.epoch), 7);
        // Takeovers within one term count up inside it.
        x.apply(Event::Accept { orchestrator: "o2".into(), term: 7 }, 1, &p).unwrap();
        let in_term_7 = x.epoch;
        assert_eq!(in_term_7, (7 << EPOCH_TERM_SHIFT) | 2);
        // The same orchestrator re-accepting under a new leader keeps its epoch.
        x.apply(Event::Accept { orchestrator: "o2".into(), term: 9 }, 2, &p).unwrap();
        assert_eq!(x.epoch, in_term_7);
        // A takeover under the new leader is above anything term 7 handed out.
        x.apply(Event::Accept { orchestrator: "o3".into(), term: 9 }, 3, &p).unwrap();
        assert_eq!(epoch_term(x.epoch), 9);
        assert!(x.epoch > (8 << EPOCH_TERM_SHIFT));
        let e = x.apply(report(in_term_7, ShadowStarting, None, "late"), 4, &p).unwrap_err();
        assert!(matches!(e, Refusal::StaleEpoch { .. }), "{e:?}");
        // An old leader (term 7) sees the new term's epoch as never issued.
        let mut old = m();
        old.apply(Event::Accept { orchestrator: "o1".into(), term: 7 }, 0, &p).unwrap();
        let e = old.apply(report(x.epoch, ShadowStarting, None, "r"), 5, &p).unwrap_err();
        assert!(matches!(e, Refusal::UnknownEpoch { got, .. } if epoch_term(got) == 9), "{e:?}");
        // Without leader election (term 0) epochs are 1, 2, 3, ...
        assert_eq!((next_epoch(0, 0), next_epoch(1, 0)), (1, 2));
    }

    #[test]
    fn an_abandoned_roll_back_ends_on_its_own_after_the_phase_timeout() {
        let p = Policy::default();
        for undo in [Event::Abort { reason: "ops".into() }, Event::Tick] {
            let mut x = m();
            x.apply(Event::Accept { orchestrator: "o1".into(), term: 0 }, 0, &p).unwrap();
            x.apply(report(1, Shadowing, Some(OK), "a"), 10, &p).unwrap();
            // Aborted by an operator, or timed out: the orchestrator is told to roll back.
            let at = if matches!(undo, Event::Tick) { 10 + p.shadow_timeout_ms + 1 } else { 20 };
            x.apply(undo, at, &p).unwrap();
            assert!(x.phase.is_undoing() && x.reserves_target(), "{:?}", x.phase);
            // The orchestrator is gone: nothing happens until the phase timeout...
            x.apply(Event::Tick, at + p.phase_timeout_ms, &p).unwrap();
            assert!(x.phase.is_undoing());
            // ...then it ends, and holds nothing on the target.
            x.apply(Event::Tick, at + p.phase_timeout_ms + 1, &p).unwrap();
            assert_eq!(x.phase, RolledBack);
            assert!(!x.reserves_target());
            assert!(x.history.last().unwrap().cause.contains("assumed rolled back"));
            // Aborting again changes nothing and says why; so does a late report.
            assert_eq!(
                x.apply(Event::Abort { reason: "again".into() }, at + p.phase_timeout_ms + 2, &p),
                Err(Refusal::Ended(RolledBack))
            );
            assert_eq!(
                x.apply(report(1, RolledBack, None, "late"), at + p.phase_timeout_ms + 3, &p),
                Err(Refusal::Ended(RolledBack))
            );
        }
    }

    #[test]
    fn a_change_outside_the_table_is_refused_in_every_profile() {
        let mut x = m();
        x.phase = Completed;
        let before = x.clone();
        let e = x.go(Accepted, 5, "illegal".into()).unwrap_err();
        assert_eq!(e, Refusal::NotAllowed { from: Completed, to: Accepted });
        assert_eq!(x, before, "a refused change records nothing");
        // Every pair outside the table is refused, every pair in it allowed.
        for from in Phase::ALL {
            for to in Phase::ALL {
                let mut y = m();
                y.phase = from;
                assert_eq!(y.go(to, 1, String::new()).is_ok(), TRANSITIONS.contains(&(from, to)), "{from:?} -> {to:?}");
            }
        }
    }

    /// A step of a random run: the event kind, with reports mostly at the
    /// current epoch (so runs get far), sometimes one off (stale or unknown).
    #[derive(Debug, Clone)]
    enum Step {
        Accept(&'static str),
        Reject,
        Report { epoch_off: i8, phase: Phase, health: Option<Health>, req: u8 },
        Tick,
        Abort,
    }

    fn arb_step() -> impl Strategy<Value = (Step, i64)> {
        let phase = prop_oneof![
            2 => Just(ShadowStarting),
            6 => Just(Shadowing),
            2 => Just(CuttingOver),
            2 => Just(Completed),
            1 => Just(Verified),
            1 => Just(RolledBack),
        ];
        let health = prop::option::weighted(
            0.9,
            (5.0..15.5f64, 0.0..0.0105f64, 0.0..5200.0f64).prop_map(|(l, e, g)| Health {
                latency_ms: l,
                original_latency_ms: 10.0,
                error_rate: e,
                lag_ms: g,
            }),
        );
        let epoch_off = prop_oneof![8 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)];
        let step = prop_oneof![
            3 => prop::sample::select(vec!["o1", "o1", "o2"]).prop_map(Step::Accept),
            1 => Just(Step::Reject),
            30 => (epoch_off, phase, health, 0u8..20).prop_map(|(epoch_off, phase, health, req)| Step::Report { epoch_off, phase, health, req }),
            3 => Just(Step::Tick),
            1 => Just(Step::Abort),
        ];
        (step, prop_oneof![9 => 0i64..40_000, 1 => 0i64..900_000])
    }

    fn event(step: Step, x: &Migration) -> Event {
        match step {
            Step::Accept(o) => Event::Accept { orchestrator: o.into(), term: 0 },
            Step::Reject => Event::Reject { orchestrator: "o1".into(), reason: "busy".into() },
            Step::Report { epoch_off, phase, health, req } => Event::Report {
                epoch: (x.epoch as i64 + epoch_off as i64).max(0) as u64,
                phase,
                health,
                request_id: format!("r{req}"),
            },
            Step::Tick => Event::Tick,
            Step::Abort => Event::Abort { reason: "op".into() },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// Random events, duplicates, reorderings, timeouts, aborts and
        /// restarts (a serde round trip) never break the invariants.
        #[test]
        fn invariants_hold(steps in prop::collection::vec(arb_step(), 1..80), restart_at in 0usize..80) {
            let p = Policy::default();
            let mut x = m();
            let mut now = 0i64;
            let mut commits = 0;
            let mut last_epoch = 0;
            for (i, (step, dt)) in steps.into_iter().enumerate() {
                let ev = event(step, &x);
                if i == restart_at {
                    let json = serde_json::to_string(&x).unwrap();
                    x = serde_json::from_str(&json).unwrap();
                }
                now += dt;
                let before = x.clone();
                let stale = matches!(&ev, Event::Report { epoch, .. } if *epoch != x.epoch);
                match x.apply(ev, now, &p) {
                    Ok(a) => {
                        commits += a.committed as u32;
                        prop_assert!(!stale);
                    }
                    // A refused event changes nothing.
                    Err(_) => prop_assert_eq!(&x, &before),
                }
                // Terminal phases never change; epochs never go back.
                if before.phase.is_terminal() {
                    prop_assert_eq!(x.phase, before.phase);
                }
                prop_assert!(x.epoch >= last_epoch);
                last_epoch = x.epoch;
            }
            // Every recorded step is allowed (takeover notes repeat the phase), in time order.
            for w in x.history.windows(2) {
                prop_assert!(w[0].phase == w[1].phase || w[0].phase.can_go(w[1].phase), "{:?} -> {:?}", w[0].phase, w[1].phase);
                prop_assert!(w[0].at_ms <= w[1].at_ms);
            }
            // The placement changes exactly when the migration completed, once.
            prop_assert_eq!(commits, (x.phase == Completed) as u32);
            prop_assert_eq!(x.history.iter().filter(|t| t.phase == Completed).count() as u32, commits);
            // Completed only after verification.
            if x.phase == Completed {
                prop_assert!(x.history.iter().any(|t| t.phase == Verified));
            }
        }
    }
}
