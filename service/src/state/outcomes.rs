//! The IO around outcome measurement: which completed migrations are due,
//! the samples of their windows, and persisting what the pure
//! [`swarm_core::outcome::assess`] made of them with the migration record.
//!
//! Why with the migration: the outcome belongs to the move, the move and
//! its decision share the sequence, and the migration record is already
//! replaced in one transaction by every backend (embedded and etcd), so no
//! new table is needed and a restart sees exactly what was measured.

use std::collections::HashMap;

use super::{ApiError, Swarm, Write};
use crate::series::{EntityKind, Metric};
use crate::telemetry::{KindLevels, OutcomeLevels};
use swarm_core::decision::DecisionKind;
use swarm_core::migration::machine::{Migration, Phase};
use swarm_core::outcome::{self, Move, Observed, Verdict};

/// Outcomes measured per tick at most (each reads five series).
const PER_TICK: usize = 32;
/// Most samples read per series and window pair.
const MAX_POINTS: usize = 20_000;

impl Swarm {
    /// The windows' length: `[outcomes] window`, or the controller's horizon.
    pub fn outcome_window_ms(&self) -> i64 {
        let cfg = &self.inner.cfg;
        cfg.outcomes.window.map_or_else(
            || cfg.controller.horizon_steps.max(1) as i64 * self.step_ms(),
            |w| w.as_millis().min(i64::MAX as u128) as i64,
        )
    }

    /// Measures the outcome of every completed migration whose window has
    /// passed (at most [`PER_TICK`] per call) and persists it; returns how
    /// many were measured.
    pub async fn measure_outcomes(&self) -> Result<usize, ApiError> {
        let now = self.now_ms();
        let window = self.outcome_window_ms();
        // Samples of the last step may arrive up to a step late.
        let grace = self.step_ms().min(window);
        let due: Vec<Migration> = self.read_book(|b| {
            b.awaiting_outcome()
                .filter(|m| m.cutover_at_ms().is_some_and(|c| outcome::due(c, window, grace, now)))
                .take(PER_TICK)
                .cloned()
                .collect()
        });
        if due.is_empty() {
            return Ok(0);
        }
        let kinds = self.decision_kinds(&due).await?;
        let topo = self.topology();
        let criteria = self.inner.cfg.outcomes.criteria(self.inner.cfg.controller.overload_threshold);
        let mut measured = Vec::with_capacity(due.len());
        for m in due {
            let cutover = m.cutover_at_ms().expect("filtered on a cutover");
            let (from, to) = (cutover - window, cutover + window);
            let read = |kind, metric, id: String| async move {
                self.query_series(kind, metric, &id, "", from, to, MAX_POINTS).await.map(|r| r.0)
            };
            let source_cpu = read(EntityKind::Physical, Metric::CpuUsage, m.from.clone()).await?;
            let target_cpu = read(EntityKind::Physical, Metric::CpuUsage, m.to.clone()).await?;
            let virt_cpu = read(EntityKind::Virtual, Metric::CpuUsage, m.virt.clone()).await?;
            let latency = read(EntityKind::Virtual, Metric::LatencyMs, m.virt.clone()).await?;
            let throughput = read(EntityKind::Virtual, Metric::ThroughputRps, m.virt.clone()).await?;
            // A node removed since has no capacity to compare with: its
            // utilisation is unknown rather than invented.
            let cores = |id: &str| topo.physical.get(id).map(|p| p.capacity.cpu_cores);
            let (src_cores, tgt_cores) = (cores(&m.from), cores(&m.to));
            let none: &[(i64, f64)] = &[];
            let observed = Observed {
                source_cpu: if src_cores.is_some() { &source_cpu } else { none },
                target_cpu: if tgt_cores.is_some() { &target_cpu } else { none },
                virt_cpu: &virt_cpu,
                latency_ms: &latency,
                throughput_rps: &throughput,
                source_cores: src_cores.unwrap_or(1.0),
                target_cores: tgt_cores.unwrap_or(1.0),
            };
            let kind = kinds.get(&m.decision_sequence).copied().unwrap_or(DecisionKind::MicroMigration);
            let o =
                outcome::assess(&observed, &criteria, Move { kind, cutover_at_ms: cutover, window_ms: window }, now);
            tracing::info!(migration = %m.id, virt = %m.virt, verdict = o.verdict.name(), summary = %o.summary,
                "decision outcome measured");
            measured.push((m.decision_sequence, o));
        }
        self.write(move |meta| {
            let migrations: Vec<Migration> = measured
                .into_iter()
                .filter_map(|(seq, o)| {
                    // Still completed and unmeasured: nothing raced it.
                    let current = meta.book.get(seq).filter(|m| m.phase == Phase::Completed && m.outcome.is_none())?;
                    let mut m = current.clone();
                    m.outcome = Some(o);
                    Some(m)
                })
                .collect();
            let n = migrations.len();
            Ok(Write::new(Vec::new(), migrations, n))
        })
        .await
    }

    /// Hurt moves to propose back this round (none with `[outcomes]
    /// move_back = false`).
    pub(super) fn move_back_candidates(&self, now_ms: i64) -> Vec<swarm_core::placement::move_back::Wanted> {
        let cfg = &self.inner.cfg.outcomes;
        if !cfg.move_back {
            return Vec::new();
        }
        let meta = self.meta();
        swarm_core::placement::move_back::candidates(&meta.book, &meta.topology, now_ms, cfg.move_back_quiet_ms)
    }

    /// The kinds of the decisions `due` carry out (read from the log).
    async fn decision_kinds(&self, due: &[Migration]) -> Result<HashMap<u64, DecisionKind>, ApiError> {
        // One migration per decision: each sequence is read once.
        let mut out = HashMap::new();
        for m in due {
            let seq = m.decision_sequence;
            if let Some(d) = self.list_decisions(seq, 1).await?.into_iter().find(|d| d.sequence == seq) {
                out.insert(seq, d.kind);
            }
        }
        Ok(out)
    }

    /// Outcome counts and reliefs for `/metrics`.
    pub fn outcome_levels(&self) -> OutcomeLevels {
        self.read_book(|b| {
            let mut counts: HashMap<(DecisionKind, Verdict), i64> = HashMap::new();
            let mut relief: HashMap<DecisionKind, (f64, f64, i64)> = HashMap::new();
            let mut pending = 0;
            for m in b.all().filter(|m| m.phase == Phase::Completed) {
                let Some(o) = &m.outcome else {
                    pending += 1;
                    continue;
                };
                *counts.entry((o.kind, o.verdict)).or_default() += 1;
                if let (Some(p), Some(r)) = (o.predicted_relief, o.realised_relief) {
                    let e = relief.entry(o.kind).or_default();
                    *e = (e.0 + p, e.1 + r, e.2 + 1);
                }
            }
            let helped = |k: DecisionKind| {
                let of = |v| counts.get(&(k, v)).copied().unwrap_or(0);
                let all: i64 = Verdict::ALL.into_iter().map(of).sum();
                of(Verdict::Helped) as f64 / all.max(1) as f64
            };
            let per_kind = DecisionKind::ALL
                .into_iter()
                .filter(|k| counts.keys().any(|(c, _)| c == k))
                .map(|k| KindLevels {
                    kind: k.name(),
                    relief: relief.get(&k).map(|&(p, r, n)| (p / n as f64, r / n as f64)),
                    helped: helped(k),
                })
                .collect();
            let mut counts: Vec<_> = counts.into_iter().map(|((k, v), n)| (k.name(), v.name(), n)).collect();
            counts.sort_unstable();
            OutcomeLevels { counts, pending, per_kind }
        })
    }
}
