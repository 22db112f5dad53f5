//! Risk-aware rebalancing: move virtual nodes so that the *sets* sharing a
//! physical node rarely overload together, judged on the joint history of
//! their load rather than on a point forecast.
//!
//! Why: on real traces most overloads are single-interval spikes whose
//! timing the history barely predicts (a point forecast, or even a perfect
//! one-step-ahead view, gains little), while the *distribution* of each
//! virtual node's load and which ones spike together are partly stable. So
//! this policy does not try to see a spike coming; it lowers how often the
//! nodes now on a host would have spiked together.
//!
//! The rule, for a physical node with the set S of virtual nodes on it:
//! - `risk(S)` = the share of the steps of the last `window` at which the
//!   nodes of S *together* would have passed `threshold` × capacity. Summing
//!   their loads step by step keeps co-occurrence: two nodes that spike at
//!   different times add no risk. Every step of the window weighs the same:
//!   the rule judges the joint distribution of the week, not one hour of it,
//!   so a move that helps at one time of day and hurts at another is seen
//!   for what it is.
//! - A move of v from S to T is expected to save, over the next window if
//!   the last one repeats, the overloaded host-steps it would have removed
//!   from the last one net of those it would have added. It is taken when
//!   that beats `migration_price` (the objective: overload intervals plus a
//!   price per migration), best net saving first, at most `max_moves` per
//!   round. Of moves saving as much, the one leaving both hosts the most
//!   headroom at their busiest steps wins ([`TAIL_QUANTILE`]), so that a
//!   node's name never decides.
//! - The history must be clear about it: the steps it would have relieved
//!   against the steps it would have overloaded must pass a sign test at
//!   `confidence_z`. Choosing the best of hundreds of candidate moves picks
//!   noise unless the evidence is required to be strong; without the test
//!   the rule chases it (measured on the shared trace: hundreds of
//!   migrations for no fewer overloads than the reactive baseline).
//!
//! The settings are in units an operator can reason about (days, an
//! exchange rate between overloads and migrations, a confidence), not
//! thresholds fitted to a trace. Pure: history comes in, proposals come out.

use serde::{Deserialize, Serialize};

use super::affinity::score;
use super::controller::{ControllerConfig, Proposal, ProposalKind, RoundInput};
use super::descheduler::may_move;
use super::view::ClusterView;
use crate::domain::PhysicalState;
use crate::duration::{DAY_MS, HOUR_MS};
use std::collections::HashMap;

/// Settings of the risk-aware rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// Whether swarmd runs the rule in its rounds (the replay's `risk`
    /// policy runs it regardless).
    pub enabled: bool,
    /// Utilisation above which an interval counts as overloaded. (0, 2].
    pub threshold: f64,
    /// How much history a move is judged on, ms (the latest steps;
    /// config: `window = "7d"`).
    #[serde(rename = "window", with = "crate::duration::millis")]
    pub window_ms: i64,
    /// Nothing is proposed on less history than this, ms (`min_history`;
    /// default 15 min, one run of the rule). The sign test, not a warm-up,
    /// decides when the evidence is enough: at z = 2 a move needs at least
    /// four steps it would have relieved and none it would have overloaded.
    /// A day's warm-up (the default until 2026-12-08) threw the first day
    /// away on a fleet that starts overloaded: on one generated scenario a
    /// host was over at 287 of its first 288 steps, which tuned reactive
    /// ends in minutes (BENCHMARKS.md, "Acting from the first hour").
    #[serde(rename = "min_history", with = "crate::duration::millis")]
    pub min_history_ms: i64,
    /// Overloaded intervals one migration is worth: a move is made only
    /// when it is expected to save more than this.
    pub migration_price: f64,
    /// How sure the history must be: the steps a move would have relieved,
    /// net of those it would have overloaded, must pass this many standard
    /// deviations of a sign test (2: about 98 % one-sided).
    pub confidence_z: f64,
    /// Moves per round.
    pub max_moves: usize,
    /// The rule moves (or, paced by runs, runs) at most this often, ms
    /// (`interval`; default 15 min, every third round at the usual
    /// 5-minute period). Its evidence is a
    /// window of days and changes little from one run to the next, but its
    /// chances to act do: with one move a run, an hourly rule makes a move
    /// the evidence already supports up to an hour late, while the set it
    /// would split keeps overloading its host. Measured against hourly on
    /// the reference scenario and eight generated ones (BENCHMARKS.md,
    /// "Self-tuning against the tuned-reactive frontier").
    #[serde(rename = "interval", with = "crate::duration::millis")]
    pub interval_ms: i64,
    /// What `interval` spaces out: the rule's moves (default: it looks
    /// every round, and once it has moved it waits the interval), or its
    /// runs (one look per interval, on the clock). See [`Pacing`].
    pub pacing: Pacing,
    /// Sources tried per move: the nodes with the most overloaded steps in
    /// the window. With `max_targets` it bounds a round's work (sources ×
    /// their members × targets × window steps) on a large fleet.
    pub max_sources: usize,
    /// Targets tried per move: the least loaded active nodes now.
    pub max_targets: usize,
    /// A moved virtual node is not moved again for this long, ms
    /// (`cooldown`). Longer than the controller's: a move made for a
    /// week's evidence is not undone by the next hour's.
    #[serde(rename = "cooldown", with = "crate::duration::millis")]
    pub cooldown_ms: i64,
    /// Extra weight of the window's steps at the time of day of the next
    /// `focus_span` (0: every step weighs the same). Why: which virtual
    /// nodes spike together follows the day's rhythm, so the same hours on
    /// earlier days say more about the next hours than the rest of the
    /// week does; a weight of 3 counts those steps four times.
    pub focus: f64,
    /// The span of time of day `focus` favours, ms (`focus_span`).
    #[serde(rename = "focus_span", with = "crate::duration::millis")]
    pub focus_span_ms: i64,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            enabled: true,
            threshold: 0.9,
            window_ms: 7 * DAY_MS,
            min_history_ms: 15 * 60_000,
            migration_price: 1.0,
            confidence_z: 2.0,
            max_moves: 1,
            interval_ms: 15 * 60_000,
            pacing: Pacing::Moves,
            max_sources: 16,
            max_targets: 16,
            cooldown_ms: DAY_MS,
            focus: 0.0,
            focus_span_ms: 3 * HOUR_MS,
        }
    }
}

/// What the rule's `interval` spaces out (`pacing = "moves"` or `"runs"`).
///
/// Why moves by default: with one look per interval on the clock, *when*
/// the rule looks decides what it does. Its first moves are made on a few
/// steps of evidence, the sign test passes at one look and not at the one a
/// step later, and the fleet goes down another path: on the reference
/// scenario, delaying the clock by two steps (`swarmctl replay
/// --risk-phase 2`) turned 97 overloads for 11 migrations into 150 for 16.
/// Looking every round and waiting only after a move lets the evidence set
/// the time: the same replay gives the same moves at every phase
/// (BENCHMARKS.md, "Pacing the moves, not the looks"). The cost is a look
/// every round while nothing passes (the rule is cheap next to a round's
/// forecasts; a tuning run, which rehearses it, takes about two and a half
/// times as long: 10.1 s against 4.2 s in `cargo bench -p swarm-core
/// --bench tuning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// One run per interval, on the clock.
    Runs,
    /// A run every round until one moves, then the interval.
    Moves,
}

/// Why a [`RiskConfig`] is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RiskConfigError {
    /// A setting outside its range.
    #[error("{field} must be {range}, got {value}")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// Its allowed range.
        range: &'static str,
        /// What was given.
        value: f64,
    },
}

impl RiskConfig {
    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), RiskConfigError> {
        let bad = |field, range, value: f64| Err(RiskConfigError::OutOfRange { field, range, value });
        if !(self.threshold > 0.0 && self.threshold <= 2.0) {
            return bad("threshold", "in (0, 2]", self.threshold);
        }
        if self.window_ms <= 0 || self.window_ms > 28 * DAY_MS {
            return bad("window", "in (0, 28 days]", self.window_ms as f64);
        }
        if self.min_history_ms < 0 || self.min_history_ms > self.window_ms {
            return bad("min_history", "in [0, window]", self.min_history_ms as f64);
        }
        if !(self.migration_price >= 0.0 && self.migration_price.is_finite()) {
            return bad("migration_price", ">= 0 and finite", self.migration_price);
        }
        if !(self.confidence_z >= 0.0 && self.confidence_z.is_finite()) {
            return bad("confidence_z", ">= 0 and finite", self.confidence_z);
        }
        if self.cooldown_ms < 0 {
            return bad("cooldown", ">= 0", self.cooldown_ms as f64);
        }
        if !(self.focus >= 0.0 && self.focus.is_finite()) {
            return bad("focus", ">= 0 and finite", self.focus);
        }
        if self.focus_span_ms <= 0 || self.focus_span_ms > DAY_MS {
            return bad("focus_span", "in (0, 1 day]", self.focus_span_ms as f64);
        }
        if self.interval_ms <= 0 {
            return bad("interval", "> 0", self.interval_ms as f64);
        }
        if self.max_sources == 0 || self.max_targets == 0 {
            return bad("max_sources and max_targets", ">= 1", self.max_sources.min(self.max_targets) as f64);
        }
        Ok(())
    }

    /// Whether the rule is due at `now_ms`, having last run at `last_ms`.
    pub fn due(&self, now_ms: i64, last_ms: Option<i64>) -> bool {
        last_ms.is_none_or(|l| now_ms - l >= self.interval_ms)
    }

    /// When the rule counts as having last run after a run at `now_ms`
    /// that made `moves` moves, having last counted at `last_ms`.
    pub fn ran(&self, now_ms: i64, last_ms: Option<i64>, moves: usize) -> Option<i64> {
        match self.pacing {
            Pacing::Runs => Some(now_ms),
            Pacing::Moves if moves > 0 => Some(now_ms),
            Pacing::Moves => last_ms,
        }
    }

    /// History steps the rule reads at steps of `step_ms`: its window.
    pub fn history_steps(&self, step_ms: i64) -> usize {
        steps(self.window_ms, step_ms)
    }

    /// Steps of `step_ms` between two runs of the rule (at least one).
    pub fn interval_steps(&self, step_ms: i64) -> usize {
        steps(self.interval_ms, step_ms)
    }
}

/// Host-steps of summed load a round keeps from its first pass (32 MB);
/// above it only the hosts a move is weighed on are summed again.
const KEEP_SUMS_MAX: usize = 4 << 20;

/// Points below which the first pass reads on the calling thread: a small
/// fleet's week (100 nodes: 200,000 points, well under a millisecond) costs
/// less than starting threads, and the rule is rehearsed for every step of
/// days by every candidate of a tuning run, each already on its own core.
const PARALLEL_READS_MIN: usize = 1 << 22;

/// Whole steps of `step_ms` in `ms`, at least one.
pub(crate) fn steps(ms: i64, step_ms: i64) -> usize {
    (ms / step_ms.max(1)).max(1) as usize
}

/// A history point as the rule reads it: a missing (NaN) or negative point
/// counts as no load.
pub(crate) fn load_at(x: f64) -> f64 {
    if x.is_finite() { x.max(0.0) } else { 0.0 }
}

/// A proposed move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiskMove {
    /// Virtual node (view index).
    pub virt: usize,
    /// Source (view index).
    pub from: usize,
    /// Target (view index).
    pub to: usize,
    /// Source's risk before and after.
    pub source_risk: (f64, f64),
    /// Target's risk before and after.
    pub target_risk: (f64, f64),
    /// Overloaded host-intervals it is expected to save over the next
    /// window: those it would have saved over the last one, net.
    pub expected_saving: f64,
    /// The busier of the two hosts after the move at its
    /// [`TAIL_QUANTILE`] step of the window, as a share of its limit: what
    /// decides between moves of equal saving ([`RiskMove::beaten_by`]).
    pub tail_after: f64,
    /// Steps of history it was judged on.
    pub steps: usize,
}

/// The quantile of a host's load over the window that breaks ties between
/// moves of equal saving: its 99th percentile, about its twentieth busiest
/// step of a week.
///
/// Why a tie-break at all: savings are counts of steps, a move the sign
/// test lets through at z = 2 typically saves four to eight, and several
/// candidates often save exactly as many. Before this, the first weighed
/// won, so a node's *name* (the view's order) decided between them, and
/// replays of the same fleet under other names ended far apart (on the
/// reference scenario 118 to 140 overloads for the same settings under six
/// shuffles of the names, `swarmctl replay --shuffle-names`). Of equal
/// evidence, the move that leaves both hosts the most room below the limit
/// at their busiest steps is the one least likely to put either over on a
/// spike the window did not see. The top quantile is not the maximum: the
/// busiest step is a single spike, which is noise (measured: ranking by it
/// is worse than by name); the 95th percentile helped too, less than the
/// 99th (BENCHMARKS.md, "Breaking ties by headroom").
pub const TAIL_QUANTILE: f64 = 0.99;

impl RiskMove {
    /// Whether a candidate of `saving` and `tail_after` is to be taken
    /// over `self`: it saves more, or as much and leaves more headroom.
    pub fn beaten_by(&self, saving: f64, tail_after: f64) -> bool {
        saving > self.expected_saving || (saving == self.expected_saving && tail_after < self.tail_after)
    }
}

/// The `q` quantile of `xs`, interpolating linearly between the order
/// statistics around it; reorders `xs`. NaN for an empty slice.
fn quantile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (xs.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let (_, &mut at_lo, above) = xs.select_nth_unstable_by(lo, f64::total_cmp);
    match above.iter().copied().min_by(f64::total_cmp) {
        Some(at_hi) => at_lo + (pos - lo as f64) * (at_hi - at_lo),
        None => at_lo,
    }
}

/// A host's load over the window with one node's row taken off (`sign`
/// −1) or added (+1), at [`TAIL_QUANTILE`], as a share of `limit`;
/// `scratch` is as long as `sum`.
fn tail_share(sum: &[f64], x: &[f64], sign: f64, limit: f64, scratch: &mut [f64]) -> f64 {
    for ((o, s), x) in scratch.iter_mut().zip(sum).zip(x) {
        *o = s + sign * x;
    }
    quantile(scratch, TAIL_QUANTILE) / limit
}

/// Where the rule reads the virtual nodes' load: histories in memory
/// ([`Histories`]: the replay, tests) or swarmd's stored series read in
/// place. The rule reads every node's window once, folding it into its
/// host's sums, and keeps only the rows of the nodes it weighs moving: at
/// 100,000 nodes a week of every node's steps held at once is 1.6 GB, and
/// producing it was most of a round.
pub trait LoadHistory: Sync {
    /// Steps a node's history holds (the same for every node that has one),
    /// oldest first and ending at the latest step; 0 when no node has any.
    fn steps(&self) -> usize;
    /// Writes virtual node `vi`'s (view index) CPU use in cores at the last
    /// `out.len()` (at most [`LoadHistory::steps`]) steps into `out`, a
    /// missing point as NaN; false, leaving `out` as it was, when none of it
    /// is known.
    fn read(&self, vi: usize, out: &mut [f64]) -> bool;

    /// Adds virtual node `vi`'s load at the last `sum.len()` steps, as the
    /// rule reads it ([`load_at`]: a missing point as 0), into `sum`
    /// (`scratch` is at least as long, for an implementation that must
    /// copy); false, leaving `sum` as it was, when none of it is known.
    /// Summing a host's members is most of a round's reading; a history
    /// held in memory adds in place instead of copying each row first.
    fn add_into(&self, vi: usize, sum: &mut [f64], scratch: &mut [f64]) -> bool {
        let scratch = &mut scratch[..sum.len()];
        if !self.read(vi, scratch) {
            return false;
        }
        for (s, x) in sum.iter_mut().zip(scratch.iter()) {
            *s += load_at(*x);
        }
        true
    }
}

/// Histories held in memory, in view order: `rows[vi]` is virtual node
/// `vi`'s or `None`. One shorter than the longest counts as none (it does
/// not reach the latest step).
#[derive(Debug, Clone, Copy)]
pub struct Histories<'a> {
    rows: &'a [Option<&'a [f64]>],
    len: usize,
}

impl<'a> Histories<'a> {
    /// Wraps `rows` (the longest sets [`LoadHistory::steps`]).
    pub fn new(rows: &'a [Option<&'a [f64]>]) -> Self {
        Histories { rows, len: rows.iter().flatten().map(|h| h.len()).max().unwrap_or(0) }
    }
}

impl LoadHistory for Histories<'_> {
    fn steps(&self) -> usize {
        self.len
    }

    fn read(&self, vi: usize, out: &mut [f64]) -> bool {
        match self.rows.get(vi).copied().flatten() {
            Some(h) if h.len() == self.len && out.len() <= h.len() => {
                out.copy_from_slice(&h[h.len() - out.len()..]);
                true
            }
            _ => false,
        }
    }

    fn add_into(&self, vi: usize, sum: &mut [f64], _scratch: &mut [f64]) -> bool {
        match self.rows.get(vi).copied().flatten() {
            Some(h) if h.len() == self.len && sum.len() <= h.len() => {
                let tail = &h[h.len() - sum.len()..];
                for (s, x) in sum.iter_mut().zip(tail) {
                    *s += load_at(*x);
                }
                true
            }
            _ => false,
        }
    }
}

/// One round of the rule on `history` (see [`LoadHistory`]; a missing
/// point reads as 0, a node without history as its demand now throughout).
/// The latest `window` is read, and on less than `min_history` nothing is
/// proposed.
pub fn propose(
    view: &ClusterView,
    history: &dyn LoadHistory,
    input: RoundInput<'_>,
    cfg: &RiskConfig,
) -> Vec<RiskMove> {
    let len = history.steps();
    if len == 0 || len < steps(cfg.min_history_ms, input.step_ms) {
        return Vec::new();
    }
    let k = len.min(cfg.history_steps(input.step_ms));
    // A node without history counts as its demand now at every step.
    let flat = |vi: usize| load_at(view.virt[vi].demand.cpu_cores);
    let row = |vi: usize, out: &mut [f64]| {
        if history.read(vi, out) {
            for x in out.iter_mut() {
                *x = load_at(*x);
            }
        } else {
            out.fill(flat(vi));
        }
    };
    let n = view.phys.len();
    let limit: Vec<f64> = view.phys.iter().map(|p| cfg.threshold * p.capacity.cpu_cores).collect();
    let mut fleet = Placed::new(view);
    // A host's summed load at each step of the window (its members added in
    // view order, so the sums do not depend on how the work is split).
    let host_sum = |members: &[usize], sum: &mut [f64], scratch: &mut [f64]| {
        sum.fill(0.0);
        for &vi in members {
            if !history.add_into(vi, sum, scratch) {
                let x = flat(vi);
                sum.iter_mut().for_each(|s| *s += x);
            }
        }
    };
    let over = |sum: &[f64], lim: f64| sum.iter().filter(|&&s| s > lim).count();
    // Every host's overloaded steps: the one pass over the whole history,
    // on every core.
    // A small fleet's sums are kept from that pass for the hosts a move is
    // weighed on; a large one's (10,000 hosts' weeks are 160 MB) are read
    // again for those few.
    let keep_all = n.saturating_mul(k) <= KEEP_SUMS_MAX;
    let threads = if view.virt.len().saturating_mul(k) < PARALLEL_READS_MIN {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |t| t.get()).min(8)
    };
    let per = n.div_ceil(threads).max(1);
    let first_pass: Vec<(usize, Option<Vec<f64>>)> = std::thread::scope(|scope| {
        let parts: Vec<_> = (0..n)
            .step_by(per)
            .map(|lo| {
                let (host_sum, over, limit, on) = (&host_sum, &over, &limit, &fleet.on);
                scope.spawn(move || {
                    let (mut sum, mut scratch) = (vec![0.0; k], vec![0.0; k]);
                    (lo..(lo + per).min(n))
                        .map(|p| {
                            host_sum(&on[p], &mut sum, &mut scratch);
                            (over(&sum, limit[p]), keep_all.then(|| sum.clone()))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|h| h.join().expect("risk reader panicked")).collect()
    });
    // The sums and rows a move is weighed on, kept once read.
    let mut over_count: Vec<usize> = first_pass.iter().map(|(c, _)| *c).collect();
    let mut sums: HashMap<usize, Vec<f64>> =
        first_pass.into_iter().enumerate().filter_map(|(p, (_, sum))| Some((p, sum?))).collect();
    let mut rows: HashMap<usize, Vec<f64>> = HashMap::new();
    let mut scratch = vec![0.0; k];
    let mut tail_scratch = vec![0.0; k];
    // 0 at the steps the node being weighed would relieve, else 1.
    let mut keep = vec![1.0; k];
    let share = |count: usize| count as f64 / k as f64;
    // Every step weighs 1 without a focus: the sums are then counts, exact
    // whatever their order.
    let focused = step_weights(cfg, k, input.now_ms, input.step_ms);
    // The least a move must save to pass the sign test when every step
    // weighs 1: its variance (steps changed) is at least its saving, so
    // saving >= z * sqrt(saving), i.e. saving >= z². A node relieving fewer
    // steps is ruled out before any target is weighed (exact; most of the
    // members a round looks at relieve two or three).
    let least = if focused.is_none() { cfg.confidence_z * cfg.confidence_z } else { 0.0 };
    let weights = focused.unwrap_or_else(|| vec![1.0; k]);
    let mut out = Vec::new();
    while out.len() < cfg.max_moves {
        let mut best: Option<RiskMove> = None;
        let sources = pick_sources(&over_count, cfg.max_sources);
        let targets = pick_targets(view, &fleet.load_now, cfg.max_targets);
        let Placed { on, load_now, moved } = &fleet;
        for &p in sources.iter().map(|(_, s)| s).chain(&targets) {
            sums.entry(p).or_insert_with(|| {
                let mut sum = vec![0.0; k];
                host_sum(&on[p], &mut sum, &mut scratch);
                sum
            });
        }
        for &(_, s) in &sources {
            for &vi in &on[s] {
                rows.entry(vi).or_insert_with(|| {
                    let mut r = vec![0.0; k];
                    row(vi, &mut r);
                    r
                });
            }
        }
        for &(over_s, s) in &sources {
            let sum_s = &sums[&s];
            let over_at = Overloaded::of(sum_s, limit[s]);
            for &vi in &on[s] {
                let v = &view.virt[vi];
                if moved[vi] || !may_move(v, &input, cfg.cooldown_ms) {
                    continue;
                }
                let x_row = &rows[&vi];
                // No target can make the move pay more than its relief.
                let bound = over_at.bound(x_row, &weights);
                if bound <= cfg.migration_price || bound < least || best.is_some_and(|b| bound < b.expected_saving) {
                    continue;
                }
                let relief = over_at.relief(x_row, &mut keep);
                // The source's tail without the node, once a target needs it.
                let mut source_tail: Option<f64> = None;
                for &d in &targets {
                    // Never onto a node that would be over the threshold now.
                    if d == s || load_now[d] + v.demand.cpu_cores > limit[d] {
                        continue;
                    }
                    let sum_d = &sums[&d];
                    let Weighed { gained, lost, variance, over_d, after_s, after_d } =
                        relief.onto(x_row, (sum_d, limit[d], over_count[d]), &weights, &keep);
                    let saving = gained - lost;
                    if saving <= cfg.migration_price
                        || best.is_some_and(|b| saving < b.expected_saving)
                        || saving < cfg.confidence_z * variance.sqrt()
                    {
                        continue;
                    }
                    let src =
                        *source_tail.get_or_insert_with(|| tail_share(sum_s, x_row, -1.0, limit[s], &mut tail_scratch));
                    let tail_after = src.max(tail_share(sum_d, x_row, 1.0, limit[d], &mut tail_scratch));
                    if best.is_some_and(|b| !b.beaten_by(saving, tail_after)) {
                        continue;
                    }
                    best = Some(RiskMove {
                        virt: vi,
                        from: s,
                        to: d,
                        source_risk: (share(over_s), share(after_s)),
                        target_risk: (share(over_d), share(after_d)),
                        expected_saving: saving,
                        tail_after,
                        steps: k,
                    });
                }
                relief.reset(&mut keep);
            }
        }
        let Some(m) = best else { break };
        let x_row = &rows[&m.virt];
        let sum = sums.get_mut(&m.from).expect("a move's source was weighed");
        sum.iter_mut().zip(x_row).for_each(|(s, x)| *s -= x);
        over_count[m.from] = over(sum, limit[m.from]);
        let sum = sums.get_mut(&m.to).expect("a move's target was weighed");
        sum.iter_mut().zip(x_row).for_each(|(s, x)| *s += x);
        over_count[m.to] = over(sum, limit[m.to]);
        fleet.apply(view, &m);
        out.push(m);
    }
    out
}

/// Where a round's virtual nodes are as its moves are taken: each host's
/// members (in view order until a move), its CPU load now, and which nodes
/// moved (a node moves once a round).
struct Placed {
    on: Vec<Vec<usize>>,
    load_now: Vec<f64>,
    moved: Vec<bool>,
}

impl Placed {
    fn new(view: &ClusterView) -> Placed {
        let mut on: Vec<Vec<usize>> = vec![Vec::new(); view.phys.len()];
        for (vi, v) in view.virt.iter().enumerate() {
            if let Some(p) = v.placement {
                on[p].push(vi);
            }
        }
        let load_now = view.phys.iter().map(|p| p.load.cpu_cores).collect();
        Placed { on, load_now, moved: vec![false; view.virt.len()] }
    }

    fn apply(&mut self, view: &ClusterView, m: &RiskMove) {
        self.load_now[m.from] -= view.virt[m.virt].demand.cpu_cores;
        self.load_now[m.to] += view.virt[m.virt].demand.cpu_cores;
        self.on[m.from].retain(|&x| x != m.virt);
        self.on[m.to].push(m.virt);
        self.moved[m.virt] = true;
    }
}

/// The hosts a round moves from: those with overloaded steps in the window,
/// most first (ties by index), at most `max`, as (overloaded steps, host).
fn pick_sources(over_count: &[usize], max: usize) -> Vec<(usize, usize)> {
    let mut sources: Vec<(usize, usize)> =
        over_count.iter().enumerate().map(|(s, &c)| (c, s)).filter(|&(c, _)| c > 0).collect();
    sources.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    sources.truncate(max);
    sources
}

/// The hosts a round moves to: the active ones least utilised now (ties by
/// index), at most `max`.
fn pick_targets(view: &ClusterView, load_now: &[f64], max: usize) -> Vec<usize> {
    let mut targets: Vec<usize> =
        (0..view.phys.len()).filter(|&d| view.phys[d].state == PhysicalState::Active).collect();
    targets.sort_by(|&a, &b| {
        let u = |p: usize| load_now[p] / view.phys[p].capacity.cpu_cores.max(f64::MIN_POSITIVE);
        u(a).total_cmp(&u(b)).then(a.cmp(&b))
    });
    targets.truncate(max);
    targets
}

/// The weight of each of the window's `k` steps (the last at `now_ms`),
/// mean 1, or `None` when every step weighs the same (`focus` 0): steps
/// at the time of day of the next `focus_span` weigh `1 + focus` times
/// the others.
fn step_weights(cfg: &RiskConfig, k: usize, now_ms: i64, step_ms: i64) -> Option<Vec<f64>> {
    if cfg.focus <= 0.0 {
        return None;
    }
    let now_tod = now_ms.rem_euclid(DAY_MS);
    let w: Vec<f64> = (0..k)
        .map(|i| {
            let t = now_ms - (k - 1 - i) as i64 * step_ms;
            let ahead = (t.rem_euclid(DAY_MS) - now_tod).rem_euclid(DAY_MS);
            if ahead > 0 && ahead <= cfg.focus_span_ms { 1.0 + cfg.focus } else { 1.0 }
        })
        .collect();
    let mean = w.iter().sum::<f64>() / k.max(1) as f64;
    Some(w.into_iter().map(|x| x / mean).collect())
}

/// What a move of one virtual node would have done over the window.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Weighed {
    /// Host-steps it would have relieved (on either host), weighted.
    gained: f64,
    /// Host-steps it would have overloaded, weighted.
    lost: f64,
    /// The sign test's variance of `gained - lost`: the sum of the
    /// squared weights of the steps that changed (their count unweighted).
    variance: f64,
    /// The target's overloaded steps before, and each host's after.
    over_d: usize,
    after_s: usize,
    after_d: usize,
}

/// The steps of the window at which a source was over its limit,
/// ascending.
///
/// Why the weighing is split this way: it is the rule's inner loop (a
/// round weighs every member of its sources against every target over the
/// whole window, and a tuning run does that for thousands of rehearsed
/// rounds). Loads are never negative ([`load_at`]), so a move can only
/// relieve its source, and only at the steps the source was over, which
/// are few; and it can only overload its target. So what a member would
/// relieve is found once, on those few steps, and bounds what any target
/// can make the move pay (most members are ruled out there); a target
/// then needs one pass for the steps it would newly overload, a pass
/// without branches that the compiler turns into vector code.
struct Overloaded {
    /// The steps, ascending.
    at: Vec<usize>,
    /// The source's summed load at each of them.
    sum: Vec<f64>,
    /// The source's limit (threshold × its cores).
    limit: f64,
}

/// What taking one node off its source would relieve.
struct Relief {
    /// The steps, ascending.
    steps: Vec<usize>,
    /// The source's overloaded steps before.
    over_s: usize,
}

impl Overloaded {
    fn of(sum: &[f64], limit: f64) -> Overloaded {
        let at: Vec<usize> = (0..sum.len()).filter(|&i| sum[i] > limit).collect();
        Overloaded { sum: at.iter().map(|&i| sum[i]).collect(), at, limit }
    }

    /// The most taking off the node whose load is `x` could gain, whatever
    /// the target: the weight of the steps it would relieve, summed in step
    /// order (as [`Relief::onto`] sums the gains, so the bound holds to the
    /// last bit).
    fn bound(&self, x: &[f64], weights: &[f64]) -> f64 {
        self.relieved(x).fold(0.0, |b, i| b + weights[i])
    }

    /// The steps taking off the node whose load is `x` would relieve.
    fn relieved<'a>(&'a self, x: &'a [f64]) -> impl Iterator<Item = usize> + 'a {
        self.at.iter().zip(&self.sum).filter(move |&(&i, &s)| s - x[i] <= self.limit).map(|(&i, _)| i)
    }

    /// What taking off the node whose load is `x` would relieve; zeroes
    /// those steps of `keep` (all ones before; [`Relief::reset`] restores
    /// it).
    fn relief(&self, x: &[f64], keep: &mut [f64]) -> Relief {
        let steps: Vec<usize> = self.relieved(x).collect();
        for &i in &steps {
            keep[i] = 0.0;
        }
        Relief { steps, over_s: self.at.len() }
    }
}

impl Relief {
    /// Restores `keep` to all ones.
    fn reset(&self, keep: &mut [f64]) {
        for &i in &self.steps {
            keep[i] = 1.0;
        }
    }

    /// Weighs the move onto a target (its summed load, its limit, its
    /// overloaded steps before), each step by its weight: a step gains when
    /// the source is relieved and the target not newly overloaded, loses
    /// the other way round. The gains are summed in step order, the losses
    /// in four interleaved lanes; with every weight 1 both are exact counts.
    fn onto(&self, x: &[f64], (sum_d, lim_d, over_d): (&[f64], f64, usize), weights: &[f64], keep: &[f64]) -> Weighed {
        let newly = |d: f64, x: f64| f64::from(u8::from(d <= lim_d && d + x > lim_d));
        // Relieved steps the target would not newly overload.
        let (mut gained, mut var_gained) = (0.0, 0.0);
        let mut both = 0usize;
        for &i in &self.steps {
            if newly(sum_d[i], x[i]) > 0.0 {
                both += 1;
            } else {
                let w = weights[i];
                gained += w;
                var_gained += w * w;
            }
        }
        // Steps newly overloaded on the target that the source would not
        // have relieved, in four lanes (independent sums the compiler can
        // interleave).
        let (mut lost, mut var_lost, mut count) = ([0.0f64; 4], [0.0f64; 4], [0.0f64; 4]);
        let n = x.len().min(sum_d.len()).min(keep.len()).min(weights.len());
        let (x, sum_d, keep, weights) = (&x[..n], &sum_d[..n], &keep[..n], &weights[..n]);
        let mut add = |j: usize, (x, d, k, w): (f64, f64, f64, f64)| {
            let c = k * newly(d, x);
            count[j] += c;
            lost[j] += c * w;
            var_lost[j] += c * w * w;
        };
        let whole = n / 4 * 4;
        for (((x, d), k), w) in
            x.chunks_exact(4).zip(sum_d.chunks_exact(4)).zip(keep.chunks_exact(4)).zip(weights.chunks_exact(4))
        {
            for j in 0..4 {
                add(j, (x[j], d[j], k[j], w[j]));
            }
        }
        for i in whole..n {
            add(0, (x[i], sum_d[i], keep[i], weights[i]));
        }
        let total = |l: [f64; 4]| (l[0] + l[1]) + (l[2] + l[3]);
        let (lost, var_lost) = (total(lost), total(var_lost));
        // Newly overloaded steps, relieved or not.
        let newly_over = both + total(count) as usize;
        Weighed {
            gained,
            lost,
            variance: var_gained + var_lost,
            over_d,
            after_s: self.over_s - self.steps.len(),
            after_d: over_d + newly_over,
        }
    }
}

/// The rule's moves as proposals, scored and priced like the controller's
/// so that swarmd records them as decisions of their own kind
/// ([`ProposalKind::Risk`]); the benefit is the expected saving at the
/// cost model's price of an overloaded step.
pub fn proposals(
    view: &ClusterView,
    history: &dyn LoadHistory,
    input: RoundInput<'_>,
    cfg: &ControllerConfig,
) -> Vec<Proposal> {
    let r = &cfg.risk;
    let step_s = input.step_ms as f64 / 1000.0;
    let limits = cfg.limits();
    propose(view, history, input, r)
        .into_iter()
        .map(|m| {
            let v = &view.virt[m.virt];
            let cost = cfg.cost.estimate(
                v.state_size_bytes,
                view.node_distance(m.from, m.to),
                0.0,
                0.0,
                m.expected_saving,
                step_s,
            );
            let pct = |share: f64| share * 100.0;
            let window_h = m.steps as f64 * step_s / 3600.0;
            let reason = format!(
                "the virtual nodes on {from} together passed {thr:.0}% at {sb:.1}% of the last {window_h:.0} h's steps; \
                 without {virt} {from} would have been over at {sa:.1}%, and {to} with it at {ta:.1}% (without it {tb:.1}%): \
                 {saving:.0} fewer overloaded intervals if the window repeats (sign test at z {z}) > price {price}, \
                 leaving the busier of the two at {tail:.0}% of its limit at its {q:.0}th-percentile step; \
                 move takes {secs:.0} s",
                from = view.phys[m.from].id,
                to = view.phys[m.to].id,
                virt = v.id,
                thr = r.threshold * 100.0,
                sb = pct(m.source_risk.0),
                sa = pct(m.source_risk.1),
                ta = pct(m.target_risk.1),
                tb = pct(m.target_risk.0),
                saving = m.expected_saving,
                z = r.confidence_z,
                price = r.migration_price,
                tail = pct(m.tail_after),
                q = TAIL_QUANTILE * 100.0,
                secs = cost.duration_seconds(),
            );
            Proposal {
                virt: m.virt,
                from: m.from,
                to: m.to,
                from_score: score(view, m.virt, m.from, &cfg.weights, &limits),
                to_score: score(view, m.virt, m.to, &cfg.weights, &limits),
                kind: ProposalKind::Risk,
                cost,
                expected_overload_step: None,
                source_peak: None,
                reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NodeId;
    use crate::placement::testing::topology;
    use crate::placement::view::ViewInputs;
    use std::collections::HashMap;

    const STEP: i64 = 300_000;

    /// A move weighed as a plain step-by-step tally over the whole window:
    /// what [`Overloaded::relief`] and [`Relief::onto`] must equal.
    fn weigh_by_step(
        x: &[f64],
        (s_sum, lim_s): (&[f64], f64),
        (d_sum, lim_d): (&[f64], f64),
        ws: Option<&[f64]>,
    ) -> Weighed {
        let mut w = Weighed { gained: 0.0, lost: 0.0, variance: 0.0, over_d: 0, after_s: 0, after_d: 0 };
        for i in 0..x.len() {
            let wt = ws.map_or(1.0, |ws| ws[i]);
            let (s, d) = (s_sum[i], d_sum[i]);
            let before = u8::from(s > lim_s) + u8::from(d > lim_d);
            let after = u8::from(s - x[i] > lim_s) + u8::from(d + x[i] > lim_d);
            w.over_d += usize::from(d > lim_d);
            w.after_s += usize::from(s - x[i] > lim_s);
            w.after_d += usize::from(d + x[i] > lim_d);
            if before > after {
                let n = f64::from(before - after);
                w.gained += wt * n;
                w.variance += wt * wt * n;
            } else if after > before {
                let n = f64::from(after - before);
                w.lost += wt * n;
                w.variance += wt * wt * n;
            }
        }
        w
    }

    proptest::proptest! {
        /// Weighing a move by its relief and then its target equals the
        /// step-by-step tally: exactly unweighted, to rounding weighted.
        #[test]
        fn weighing_equals_the_step_by_step_tally(
            steps in proptest::collection::vec((0.0f64..3.0, 0.0f64..12.0, 0.0f64..12.0, 0.1f64..4.0), 1..300),
            weighted in proptest::bool::ANY,
        ) {
            let x: Vec<f64> = steps.iter().map(|s| s.0).collect();
            let src: Vec<f64> = steps.iter().map(|s| s.1).collect();
            let dst: Vec<f64> = steps.iter().map(|s| s.2).collect();
            let ws: Vec<f64> = steps.iter().map(|s| s.3).collect();
            let ones = vec![1.0; x.len()];
            let (w, ws) = if weighted { (ws.as_slice(), Some(ws.as_slice())) } else { (ones.as_slice(), None) };
            let over_d = dst.iter().filter(|&&d| d > 8.0).count();
            let mut keep = vec![1.0; x.len()];
            let over_s = Overloaded::of(&src, 9.0);
            let relief = over_s.relief(&x, &mut keep);
            let a = relief.onto(&x, (&dst, 8.0, over_d), w, &keep);
            relief.reset(&mut keep);
            proptest::prop_assert!(keep.iter().all(|&k| k == 1.0));
            let b = weigh_by_step(&x, (&src, 9.0), (&dst, 8.0), ws);
            proptest::prop_assert_eq!((a.over_d, a.after_s, a.after_d), (b.over_d, b.after_s, b.after_d));
            proptest::prop_assert!(over_s.bound(&x, w) >= a.gained);
            if weighted {
                for (p, q) in [(a.gained, b.gained), (a.lost, b.lost), (a.variance, b.variance)] {
                    proptest::prop_assert!((p - q).abs() <= 1e-9 * q.abs().max(1.0), "{p} vs {q}");
                }
            } else {
                proptest::prop_assert_eq!(
                    (a.gained.to_bits(), a.lost.to_bits(), a.variance.to_bits()),
                    (b.gained.to_bits(), b.lost.to_bits(), b.variance.to_bits())
                );
            }
        }
    }

    #[test]
    fn the_window_is_the_latest_week_of_steps() {
        let cfg = RiskConfig::default();
        assert_eq!(cfg.history_steps(STEP), 7 * 288);
        assert!(RiskConfig { min_history_ms: cfg.window_ms + 1, ..cfg }.validate().is_err());
    }

    /// Histories in view order from `(id, series)`.
    fn histories<'a, K>(view: &ClusterView, series: &'a HashMap<K, Vec<f64>>) -> Vec<Option<&'a [f64]>>
    where
        K: std::borrow::Borrow<str> + std::hash::Hash + Eq,
    {
        view.virt.iter().map(|v| series.get(v.id.as_str()).map(|s| s.as_slice())).collect()
    }

    /// Two days of 1 core with a spike to `peak` every tenth step from `offset`.
    fn spiky(peak: f64, offset: usize) -> Vec<f64> {
        (0..2 * 288).map(|i| if i % 10 == offset { peak } else { 1.0 }).collect()
    }

    /// Two hosts of 10 cores (overloaded above 9): a and b on h0 spike
    /// together, c on h1 spikes at other times.
    #[test]
    fn nodes_that_spike_together_are_separated_and_nothing_moves_without_gain() {
        let t = topology(
            &[("h0", 10.0, "", ""), ("h1", 10.0, "", "")],
            &[("a", 4.0, "h0"), ("b", 4.0, "h0"), ("c", 4.0, "h1")],
        );
        let view = ClusterView::build_with(&t, &ViewInputs::default());
        let last: HashMap<NodeId, i64> = HashMap::new();
        let input = RoundInput { now_ms: 2 * 288 * STEP, step_ms: STEP, last_decided: &last };
        let cfg = RiskConfig::default();
        // Spikes of 4 cores: a + b = 8 never pass 9, so there is no risk and no move.
        let calm: HashMap<&str, Vec<f64>> = [("a", spiky(4.0, 0)), ("b", spiky(4.0, 0)), ("c", spiky(4.0, 5))].into();
        assert!(propose(&view, &Histories::new(&histories(&view, &calm)), input, &cfg).is_empty());
        // Spikes of 5: h0 is over one step in ten; a or b goes to h1, where
        // its spikes never meet c's.
        let series: HashMap<&str, Vec<f64>> = [("a", spiky(5.0, 0)), ("b", spiky(5.0, 0)), ("c", spiky(5.0, 5))].into();
        let history = histories(&view, &series);
        let moves = propose(&view, &Histories::new(&history), input, &cfg);
        assert_eq!(moves.len(), 1, "{moves:?}");
        let m = moves[0];
        assert_eq!((view.phys[m.from].id.as_str(), view.phys[m.to].id.as_str()), ("h0", "h1"));
        assert!(["a", "b"].contains(&view.virt[m.virt].id.as_str()));
        assert!((m.source_risk.0 - 0.1).abs() < 0.02 && m.source_risk.1 == 0.0 && m.target_risk == (0.0, 0.0), "{m:?}");
        // The two days' 576 steps held about 58 overloads, all relieved.
        assert!((m.expected_saving - 576.0 * m.source_risk.0).abs() < 1e-9, "{m:?}");
        // If c spiked with them, moving one over would only shift the risk: nothing moves.
        let together: HashMap<&str, Vec<f64>> =
            [("a", spiky(5.0, 0)), ("b", spiky(5.0, 0)), ("c", spiky(5.0, 0))].into();
        assert!(propose(&view, &Histories::new(&histories(&view, &together)), input, &cfg).is_empty());
        // A price above the saving stops it, and so does the cooldown.
        let dear = RiskConfig { migration_price: m.expected_saving + 1.0, ..cfg };
        assert!(propose(&view, &Histories::new(&history), input, &dear).is_empty());
        let cooled: HashMap<NodeId, i64> = view.virt.iter().map(|v| (v.id.clone(), input.now_ms - 1)).collect();
        assert!(
            propose(&view, &Histories::new(&history), RoundInput { last_decided: &cooled, ..input }, &cfg).is_empty()
        );
        // 100 steps (8 h) hold ten overloads the move would have relieved
        // and none it would have caused: clear enough for the sign test,
        // and nothing is proposed on less than `min_history`.
        let short: Vec<Option<&[f64]>> = history.iter().map(|h| h.map(|s| &s[..100])).collect();
        let early = propose(&view, &Histories::new(&short), input, &cfg);
        assert_eq!((early.len(), early[0].expected_saving, early[0].steps), (1, 10.0, 100), "{early:?}");
        let wait_a_day = RiskConfig { min_history_ms: DAY_MS, ..cfg };
        assert!(propose(&view, &Histories::new(&short), input, &wait_a_day).is_empty());
        // Three steps (one run of the rule) can never pass the sign test at
        // z = 2 (3 / √3 < 2), whatever they hold.
        let three: Vec<Option<&[f64]>> = history.iter().map(|h| h.map(|s| &s[..3])).collect();
        assert!(propose(&view, &Histories::new(&three), input, &cfg).is_empty());
    }

    /// Of two moves saving as much, the one leaving more headroom at the
    /// busiest steps wins, whichever is weighed first: h1 is the less
    /// loaded now (so it is tried first, and used to win), but its node c
    /// is busy a fifth of the time; h2's d is steady. Either takes a
    /// without an overload, so both save all of h0's; h2 is left at 7 of
    /// its limit of 9 at its 99th-percentile step, h1 at 8.
    #[test]
    fn of_equal_savings_the_move_leaving_more_headroom_wins() {
        let t = topology(
            &[("h0", 10.0, "", ""), ("h1", 10.0, "", ""), ("h2", 10.0, "", "")],
            &[("a", 4.0, "h0"), ("b", 4.0, "h0"), ("c", 4.0, "h1"), ("d", 4.0, "h2")],
        );
        let view = ClusterView::build_with(&t, &ViewInputs::default());
        let last: HashMap<NodeId, i64> = HashMap::new();
        let input = RoundInput { now_ms: 2 * 288 * STEP, step_ms: STEP, last_decided: &last };
        let busy_fifth: Vec<f64> = (0..2 * 288).map(|i| if i % 10 == 3 || i % 10 == 4 { 7.0 } else { 1.0 }).collect();
        let series: HashMap<&str, Vec<f64>> =
            [("a", spiky(5.0, 0)), ("b", spiky(5.0, 0)), ("c", busy_fifth), ("d", vec![2.0; 2 * 288])].into();
        let history = histories(&view, &series);
        let moves = propose(&view, &Histories::new(&history), input, &RiskConfig::default());
        assert_eq!(moves.len(), 1, "{moves:?}");
        let m = moves[0];
        assert_eq!(view.phys[m.to].id.as_str(), "h2", "{m:?}");
        assert!((m.tail_after - 7.0 / 9.0).abs() < 1e-12, "{m:?}");
        // h1 alone (h2 cordoned off by a node far over the limit now) saves
        // as much: the tie was real.
        let mut only_h1 = series.clone();
        only_h1.insert("d", vec![9.5; 2 * 288]);
        let m1 = propose(&view, &Histories::new(&histories(&view, &only_h1)), input, &RiskConfig::default())[0];
        assert_eq!((view.phys[m1.to].id.as_str(), m1.expected_saving), ("h1", m.expected_saving), "{m1:?}");
        assert!((m1.tail_after - 8.0 / 9.0).abs() < 1e-12, "{m1:?}");
    }

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        assert_eq!(quantile(&mut [3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&mut [4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert_eq!(quantile(&mut [5.0, 1.0], 1.0), 5.0);
        assert_eq!(quantile(&mut [5.0, 1.0], 0.0), 1.0);
        let mut xs: Vec<f64> = (0..=100).rev().map(f64::from).collect();
        assert!((quantile(&mut xs, TAIL_QUANTILE) - 99.0).abs() < 1e-12);
        assert!(quantile(&mut [], 0.5).is_nan());
    }

    /// The rule as first written: every node's row and every host's sums
    /// computed up front, one thread. [`propose`] reads lazily, on every
    /// core, and keeps only what it weighs; it must decide the same.
    fn eager(view: &ClusterView, rows: &[Option<&[f64]>], input: RoundInput<'_>, cfg: &RiskConfig) -> Vec<RiskMove> {
        let len = rows.iter().flatten().map(|h| h.len()).max().unwrap_or(0);
        if len == 0 || len < steps(cfg.min_history_ms, input.step_ms) {
            return Vec::new();
        }
        let k = len.min(cfg.history_steps(input.step_ms));
        let at: Vec<Vec<f64>> = (0..view.virt.len())
            .map(|vi| match rows[vi] {
                Some(h) if h.len() == len => h[len - k..].iter().map(|&x| load_at(x)).collect(),
                _ => vec![view.virt[vi].demand.cpu_cores; k],
            })
            .collect();
        let n = view.phys.len();
        let limit: Vec<f64> = view.phys.iter().map(|p| cfg.threshold * p.capacity.cpu_cores).collect();
        let mut sums = vec![vec![0.0f64; k]; n];
        for (vi, v) in view.virt.iter().enumerate() {
            let Some(p) = v.placement else { continue };
            for (s, x) in sums[p].iter_mut().zip(&at[vi]) {
                *s += x;
            }
        }
        let over = |sum: &[f64], lim: f64| sum.iter().filter(|&&s| s > lim).count();
        let mut fleet = Placed::new(view);
        let mut out = Vec::new();
        while out.len() < cfg.max_moves {
            let mut best: Option<RiskMove> = None;
            let counts: Vec<usize> = (0..n).map(|s| over(&sums[s], limit[s])).collect();
            let sources = pick_sources(&counts, cfg.max_sources);
            let targets = pick_targets(view, &fleet.load_now, cfg.max_targets);
            let Placed { on, load_now, moved } = &fleet;
            for &(over_s, s) in &sources {
                for &vi in &on[s] {
                    let v = &view.virt[vi];
                    if moved[vi] || !may_move(v, &input, cfg.cooldown_ms) {
                        continue;
                    }
                    for &d in &targets {
                        if d == s || load_now[d] + v.demand.cpu_cores > limit[d] {
                            continue;
                        }
                        let w = weigh_by_step(&at[vi], (&sums[s], limit[s]), (&sums[d], limit[d]), None);
                        let saving = w.gained - w.lost;
                        if saving <= cfg.migration_price || saving < cfg.confidence_z * w.variance.sqrt() {
                            continue;
                        }
                        let mut scratch = vec![0.0; k];
                        let tail_after = tail_share(&sums[s], &at[vi], -1.0, limit[s], &mut scratch).max(tail_share(
                            &sums[d],
                            &at[vi],
                            1.0,
                            limit[d],
                            &mut scratch,
                        ));
                        if best.is_some_and(|b| !b.beaten_by(saving, tail_after)) {
                            continue;
                        }
                        let share = |c: usize| c as f64 / k as f64;
                        best = Some(RiskMove {
                            virt: vi,
                            from: s,
                            to: d,
                            source_risk: (share(over_s), share(w.after_s)),
                            target_risk: (share(w.over_d), share(w.after_d)),
                            expected_saving: saving,
                            tail_after,
                            steps: k,
                        });
                    }
                }
            }
            let Some(m) = best else { break };
            for r in 0..k {
                sums[m.from][r] -= at[m.virt][r];
                sums[m.to][r] += at[m.virt][r];
            }
            fleet.apply(view, &m);
            out.push(m);
        }
        out
    }

    /// Hosts of `hosts` cores and nodes (host, cores, kind, seed) named by
    /// `name(i)`, and their histories keyed by name: kind 0 has none, 1 a
    /// short one, the rest 300 steps with NaN and negative points.
    fn random_fleet(
        hosts: &[f64],
        nodes: &[(usize, f64, u8, u64)],
        name: impl Fn(usize) -> String,
    ) -> (ClusterView, HashMap<String, Vec<f64>>) {
        let phys: Vec<(String, f64)> = hosts.iter().enumerate().map(|(i, &c)| (format!("h{i}"), c)).collect();
        let virt: Vec<(String, f64, String)> =
            nodes.iter().enumerate().map(|(i, &(h, c, _, _))| (name(i), c, phys[h % phys.len()].0.clone())).collect();
        let p: Vec<(&str, f64, &str, &str)> = phys.iter().map(|(id, c)| (id.as_str(), *c, "", "")).collect();
        let v: Vec<(&str, f64, &str)> = virt.iter().map(|(id, c, h)| (id.as_str(), *c, h.as_str())).collect();
        let view = ClusterView::build_with(&topology(&p, &v), &ViewInputs::default());
        let len = 300;
        let series = nodes
            .iter()
            .enumerate()
            .filter(|&(_, &(_, _, kind, _))| kind != 0)
            .map(|(i, &(_, c, kind, seed))| {
                let n = if kind == 1 { len - 7 } else { len };
                let row = (0..n as u64)
                    .map(|t| {
                        let r =
                            (seed ^ t.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 40;
                        match r % 97 {
                            0 => f64::NAN,
                            1 => -1.0,
                            x => c * (0.2 + x as f64 / 40.0),
                        }
                    })
                    .collect();
                (name(i), row)
            })
            .collect();
        (view, series)
    }

    /// The moves of one round on a fleet from [`random_fleet`], each as
    /// (the node's index in `nodes`, from, to).
    fn round_on(
        hosts: &[f64],
        nodes: &[(usize, f64, u8, u64)],
        name: impl Fn(usize) -> String,
        cfg: &RiskConfig,
    ) -> Vec<(usize, String, String)> {
        let (view, series) = random_fleet(hosts, nodes, &name);
        let rows = histories(&view, &series);
        let last: HashMap<NodeId, i64> = HashMap::new();
        let input = RoundInput { now_ms: 300 * STEP, step_ms: STEP, last_decided: &last };
        let index: HashMap<String, usize> = (0..nodes.len()).map(|i| (name(i), i)).collect();
        propose(&view, &Histories::new(&rows), input, cfg)
            .iter()
            .map(|m| {
                let id = |p: usize| view.phys[p].id.to_string();
                (index[view.virt[m.virt].id.as_str()], id(m.from), id(m.to))
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Random fleets (hosts of 4–16 cores, nodes placed anywhere, some
        /// without history, some with a short one, NaN and negative points):
        /// the lazy rule's moves are exactly the eager rule's.
        #[test]
        fn reading_lazily_decides_as_reading_everything(
            hosts in proptest::collection::vec(4.0f64..16.0, 2..7),
            nodes in proptest::collection::vec((0usize..7, 0.5f64..4.0, 0u8..8, proptest::prelude::any::<u64>()), 1..24),
            max_moves in 1usize..4,
            max_sources in 1usize..4,
            max_targets in 1usize..4,
        ) {
            let (view, series) = random_fleet(&hosts, &nodes, |i| format!("v{i:02}"));
            let rows = histories(&view, &series);
            let last: HashMap<NodeId, i64> = HashMap::new();
            let input = RoundInput { now_ms: 300 * STEP, step_ms: STEP, last_decided: &last };
            let cfg = RiskConfig { max_moves, max_sources, max_targets, min_history_ms: 0, confidence_z: 1.0, ..Default::default() };
            let lazy = propose(&view, &Histories::new(&rows), input, &cfg);
            proptest::prop_assert_eq!(lazy, eager(&view, &rows, input, &cfg));
        }

        /// The same fleets under names in the opposite order (so the view,
        /// and the order candidates are weighed in, is reversed): the same
        /// nodes move, to the same hosts. Before the headroom tie-break the
        /// first of equal savings won, so names decided.
        #[test]
        fn a_nodes_name_does_not_decide(
            hosts in proptest::collection::vec(4.0f64..16.0, 2..7),
            nodes in proptest::collection::vec((0usize..7, 0.5f64..4.0, 0u8..8, proptest::prelude::any::<u64>()), 1..24),
            max_moves in 1usize..4,
        ) {
            let cfg = RiskConfig { max_moves, min_history_ms: 0, confidence_z: 1.0, ..Default::default() };
            let n = nodes.len();
            proptest::prop_assert_eq!(
                round_on(&hosts, &nodes, |i| format!("v{i:02}"), &cfg),
                round_on(&hosts, &nodes, |i| format!("v{:02}", n - 1 - i), &cfg)
            );
        }
    }

    /// With a focus, the window's steps at the time of day of the next
    /// `focus_span` weigh `1 + focus` times the others, the mean weight
    /// stays 1 (so savings stay in host-steps), and without one there are
    /// no weights at all (the unweighted rule, exactly).
    #[test]
    fn the_focus_weighs_the_hours_ahead_on_earlier_days() {
        let cfg = RiskConfig { focus: 3.0, ..Default::default() };
        let k = 2 * 288;
        // Now is 06:00; the focus is (06:00, 09:00] on both days.
        let now = 10 * DAY_MS + 6 * HOUR_MS;
        let w = step_weights(&cfg, k, now, STEP).unwrap();
        assert!((w.iter().sum::<f64>() / k as f64 - 1.0).abs() < 1e-12);
        let (hi, lo) = (w.iter().cloned().fold(f64::MIN, f64::max), w.iter().cloned().fold(f64::MAX, f64::min));
        assert!((hi / lo - 4.0).abs() < 1e-12);
        assert_eq!(w.iter().filter(|&&x| x == hi).count(), 2 * 36);
        // The step at 06:05 yesterday (one day less 55 minutes back) is in it; 06:00 (now's time) is not.
        let at = |back: usize| w[k - 1 - back];
        assert_eq!(at(288 - 1), hi);
        assert_eq!(at(288), lo);
        assert!(step_weights(&RiskConfig::default(), k, now, STEP).is_none());
        assert!(RiskConfig { focus: -1.0, ..Default::default() }.validate().is_err());
        assert!(RiskConfig { focus_span_ms: 0, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn paced_by_moves_the_rule_looks_again_until_it_moves() {
        let by_moves = RiskConfig::default();
        assert_eq!(by_moves.pacing, Pacing::Moves);
        let quarter = by_moves.interval_ms;
        // A look that moved nothing leaves the clock where it was: due again.
        assert_eq!(by_moves.ran(STEP, None, 0), None);
        assert!(by_moves.due(2 * STEP, by_moves.ran(STEP, None, 0)));
        assert_eq!(by_moves.ran(2 * STEP, Some(0), 0), Some(0));
        // A look that moved starts the wait.
        let last = by_moves.ran(STEP, None, 1);
        assert_eq!(last, Some(STEP));
        assert!(!by_moves.due(STEP + quarter - 1, last));
        assert!(by_moves.due(STEP + quarter, last));
        // Paced by runs, every look starts it.
        let by_runs = RiskConfig { pacing: Pacing::Runs, ..by_moves };
        assert_eq!(by_runs.ran(STEP, None, 0), Some(STEP));
        assert!(!by_runs.due(2 * STEP, by_runs.ran(STEP, None, 0)));
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(RiskConfig::default().validate().is_ok());
        let e = RiskConfig { threshold: 0.0, ..Default::default() }.validate().unwrap_err();
        assert_eq!(e.to_string(), "threshold must be in (0, 2], got 0");
        assert!(RiskConfig { window_ms: 0, ..Default::default() }.validate().is_err());
        assert!(RiskConfig { migration_price: f64::NAN, ..Default::default() }.validate().is_err());
    }
}
