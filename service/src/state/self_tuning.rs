//! The IO around self-tuning: read a sample of the cluster's recent history
//! from the stored series, hand it to the pure
//! [`swarm_core::placement::tuning::tune`], and keep what it chose for the
//! rounds, `/metrics` and `Placement.GetPolicy`.
//!
//! Nothing is stored of its own: the series it tunes on are persisted, so a
//! restarted swarmd starts from the configured settings and tunes again on
//! the same history at its first round (like the cost calibration). The
//! changes since start-up are kept in memory, the last 32.

use std::collections::VecDeque;

use super::{ApiError, Swarm, blocking, load_history, series_call};
use swarm_core::domain::{PhysicalState, Topology};
use swarm_core::placement::affinity::ClusterView;
use swarm_core::placement::risk::{LoadHistory, RiskConfig};
use swarm_core::placement::tuning::{self, Tunables, Tuning, Verdict};
use swarm_core::placement::view::ViewInputs;

/// Changes kept for `GetPolicy`.
const CHANGES_KEPT: usize = 32;

/// What the self-tuner has chosen, and the runs that chose it.
#[derive(Debug, Default)]
pub(super) struct PolicyState {
    /// The settings adopted; `None`: the configured ones.
    current: Option<Tunables>,
    /// When the tuner last ran with enough history, ms.
    last_run_ms: Option<i64>,
    /// The latest run (any verdict).
    last: Option<Tuning>,
    /// Runs that changed the settings, oldest first.
    changes: VecDeque<Tuning>,
    /// Runs by verdict, for `/metrics`.
    runs: [u64; Verdict::ALL.len()],
    /// A run is under way (one at a time).
    running: bool,
}

/// The policy as `GetPolicy` and `/metrics` show it.
#[derive(Debug, Clone)]
pub struct PolicySnapshot {
    /// Whether the risk-aware rule runs in rounds.
    pub risk_enabled: bool,
    /// Whether the settings tune themselves.
    pub self_tuning: bool,
    /// What rounds use now.
    pub current: Tunables,
    /// What the configuration says.
    pub configured: Tunables,
    /// The tuner's bounds.
    pub bounds: (Tunables, Tunables),
    /// The most often the settings change, ms.
    pub period_ms: i64,
    /// The latest run.
    pub last_run: Option<Tuning>,
    /// Runs that changed the settings.
    pub changes: Vec<Tuning>,
    /// Runs by verdict.
    pub runs: Vec<(&'static str, u64)>,
    /// When it last ran on enough history, ms.
    pub last_run_ms: Option<i64>,
}

impl PolicySnapshot {
    /// The figures `/metrics` shows.
    pub fn levels(&self) -> crate::telemetry::PolicyLevels {
        let (c, f) = (&self.current, &self.configured);
        crate::telemetry::PolicyLevels {
            settings: vec![
                ("window_seconds", c.window_ms as f64 / 1000.0, f.window_ms as f64 / 1000.0),
                ("confidence_z", c.confidence_z, f.confidence_z),
                ("interval_seconds", c.interval_ms as f64 / 1000.0, f.interval_ms as f64 / 1000.0),
                ("focus", c.focus, f.focus),
            ],
            runs: self.runs.clone(),
            last_run_s: self.last_run_ms.map(|t| t as f64 / 1000.0),
        }
    }
}

fn verdict_index(v: Verdict) -> usize {
    Verdict::ALL.iter().position(|&x| x == v).expect("every verdict is in ALL")
}

impl Swarm {
    /// The risk-aware rule's settings rounds use: the configured ones with
    /// the self-tuner's choice in place.
    pub(super) fn risk_settings(&self) -> RiskConfig {
        self.risk_settings_with(&self.policy_state())
    }

    fn policy_state(&self) -> std::sync::MutexGuard<'_, PolicyState> {
        self.inner.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the self-tuner in the background when it is on, due
    /// (`[controller.tuning] period` since its last run with enough
    /// history) and not already running; a real round calls it. Why in the
    /// background: a run replays days of history over every candidate
    /// (seconds on a 64-node sample, BENCHMARKS.md), and rounds must not
    /// wait for it; they use the settings in force until it adopts others.
    /// A run on too little history leaves it due.
    pub(super) fn spawn_self_tuning_if_due(&self, now: i64) {
        let c = &self.inner.cfg.controller;
        {
            let mut st = self.policy_state();
            if !(c.self_tuning && c.risk.enabled && c.tuning.due(now, st.last_run_ms)) || st.running {
                return;
            }
            st.running = true;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.self_tune(now).await {
                tracing::warn!(error = %e, "self-tuning failed; it runs again at the next round");
            }
            me.policy_state().running = false;
        });
    }

    /// One run of the self-tuner at `now`.
    async fn self_tune(&self, now: i64) -> Result<(), ApiError> {
        let cfg = self.controller_config();
        let step = self.step_ms();
        let view = tuning_view(&self.topology(), cfg.tuning.max_hosts);
        let steps = cfg.tuning.reads_steps(step);
        let series = self.inner.series.clone();
        let (view, loads) = series_call(move || {
            series.read(|f| {
                let history = load_history::FrameHistory::new(f, &view, step, steps, now)?;
                let n = history.steps();
                let mut loads: Vec<Option<Vec<f64>>> = (0..view.virt.len())
                    .map(|vi| {
                        let mut row = vec![0.0; n];
                        history.read(vi, &mut row).then_some(row)
                    })
                    .collect();
                // The read covers the longest window the candidates may
                // need, whatever is stored: the steps before the first point
                // of any node are no history, and the tuner must see how
                // much there really is ("enough data first").
                let first = loads.iter().flatten().filter_map(|r| r.iter().position(|x| x.is_finite())).min();
                let first = first.unwrap_or(n);
                for row in loads.iter_mut().flatten() {
                    row.drain(..first);
                }
                Ok((view, loads))
            })
        })
        .await?;
        let run = blocking(move || {
            let rows: Vec<Option<&[f64]>> = loads.iter().map(|l| l.as_deref()).collect();
            tuning::tune(&view, &rows, now, step, &cfg)
        })
        .await?;
        tracing::info!(
            verdict = run.verdict.name(),
            before = %run.before,
            after = %run.after,
            candidates = run.rows.len(),
            hosts = run.hosts,
            reason = %run.reason,
            "self-tuning of the risk-aware rule"
        );
        let mut st = self.policy_state();
        st.runs[verdict_index(run.verdict)] += 1;
        if run.verdict != Verdict::TooLittleHistory {
            st.last_run_ms = Some(now);
        }
        if run.changed() {
            // New settings: the rule is due at the next round, whatever the
            // old interval said.
            self.inner.risk_last_ms.store(i64::MIN, std::sync::atomic::Ordering::Relaxed);
            st.current = Some(run.after);
            st.changes.push_back(run.clone());
            while st.changes.len() > CHANGES_KEPT {
                st.changes.pop_front();
            }
        }
        st.last = Some(run);
        Ok(())
    }

    /// The risk-aware rule's settings and the self-tuner's runs.
    pub fn risk_policy(&self) -> PolicySnapshot {
        let c = &self.inner.cfg.controller;
        let t = &c.tuning;
        let st = self.policy_state();
        PolicySnapshot {
            risk_enabled: c.risk.enabled,
            self_tuning: c.self_tuning,
            current: Tunables::of(&self.risk_settings_with(&st)),
            configured: Tunables::of(&c.risk),
            bounds: t.bounds(),
            period_ms: t.period_ms,
            last_run: st.last.clone(),
            changes: st.changes.iter().cloned().collect(),
            runs: Verdict::ALL.iter().map(|v| v.name()).zip(st.runs).collect(),
            last_run_ms: st.last_run_ms,
        }
    }

    /// `current` is only ever set by a tuning run, and runs only happen
    /// with `self_tuning` on.
    fn risk_settings_with(&self, st: &PolicyState) -> RiskConfig {
        let configured = self.inner.cfg.controller.risk;
        st.current.map_or(configured, |t| t.apply(&configured))
    }
}

/// The cluster the tuner rehearses: the active physical nodes of a stable
/// sample of at most `max_hosts`, and the virtual nodes placed on them.
fn tuning_view(topo: &Topology, max_hosts: usize) -> ClusterView {
    let active = topo.physical.values().filter(|p| p.state == PhysicalState::Active);
    let keep = tuning::sample_hosts(active.map(|p| p.id.as_str()), max_hosts);
    let mut sub = Topology::default();
    for (id, p) in topo.physical.iter().filter(|(id, _)| keep.contains(id.as_str())) {
        sub.physical.insert(id.clone(), p.clone());
    }
    for (id, v) in topo.virtual_nodes.iter() {
        if v.placement.as_ref().is_some_and(|p| keep.contains(p.as_str())) {
            sub.virtual_nodes.insert(id.clone(), v.clone());
        }
    }
    ClusterView::build_with(&sub, &ViewInputs::default())
}
