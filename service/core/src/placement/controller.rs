//! One controller round: a pure function from a [`ClusterView`] and the time
//! to a list of proposed moves. No IO; the caller persists, publishes and —
//! at automation level `apply` — carries them out.
//!
//! A round has two phases:
//! 1. **Relief.** Draining nodes are emptied. A node is *at risk* when its
//!    CPU forecast upper bound crosses `overload_threshold` at a step a move
//!    can still influence (from the second step on: during the first, a
//!    migration loads both ends). For each node at risk, worst first, the
//!    round moves off the smallest virtual node whose departure alone brings
//!    the forecast back under the threshold (else the one that lowers it
//!    most), to the feasible target where the move's net benefit (relief
//!    included) is largest, while the move pays and the node
//!    stays at risk. A move made while the node is fine *now* is
//!    [`ProposalKind::Predictive`] and records when the overload was expected.
//! 2. **Micro-migrations.** Every other virtual node moves to the target
//!    with the largest net benefit (a near target whose score is a little
//!    lower beats a remote one whose extra score does not pay for the longer
//!    move; see [`target_penalty`]) when the affinity gain beats
//!    `gain_threshold` (hysteresis) and the cost function says it pays;
//!    best net benefit first, with lazy
//!    re-evaluation so two moves never fill the same free capacity.
//!
//! Anti-flapping: a virtual node decided within `cooldown_ms` is left alone
//! (draining overrides), one with a migration in flight is never touched, a
//! round makes at most `max_decisions_per_round` moves, and a physical node
//! takes part in at most `max_in_flight_per_node` migrations at a time.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use super::affinity::{Limits, Score, Weights, score};
use super::cost::{CostEstimate, CostModel};
use super::risk::RiskConfig;
use super::search::{Penalty, TargetIndex};
use super::tuning::TuningConfig;
use super::view::{ClusterView, Distance};
use crate::domain::{NodeId, PhysicalState};

/// What the controller may do on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Automation {
    /// Publish decisions, each with a proposed migration that an
    /// orchestrator carries out through the migration protocol (shadow,
    /// verify, cut over); the placement changes at the cutover.
    Recommend,
    /// Record the moves as the new placements at once, with no migration
    /// protocol (for clusters where the placement record is the actuation).
    Apply,
}

/// Tuning of the controller. The config file's `[controller]` section
/// deserializes straight into it, so a field added here is a config key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// A micro-migration needs the target's affinity to beat the current
    /// node's by more than this (hysteresis against flapping). [0, 1];
    /// 1 turns micro-migrations off.
    pub gain_threshold: f64,
    /// At most this many decisions per round.
    pub max_decisions_per_round: usize,
    /// A virtual node gets no new decision for this long after one, ms
    /// (config and reports: `cooldown = "30m"`).
    #[serde(rename = "cooldown", with = "crate::duration::millis")]
    pub cooldown_ms: i64,
    /// A move may not push a target's CPU utilisation, now or at its
    /// forecast upper bound within the horizon, above this. (0, 1].
    pub max_cpu_utilization: f64,
    /// A node whose forecast upper bound passes this is at risk. (0, 1].
    pub overload_threshold: f64,
    /// Migrations a physical node takes part in at once (either end).
    pub max_in_flight_per_node: u32,
    /// Forecast steps the controller looks ahead.
    pub horizon_steps: usize,
    /// Treat a node over the threshold *now* as at risk too (the load now
    /// is the best single guess of the next step), besides its forecast.
    pub act_on_current_overload: bool,
    /// Correlation assumed between forecast errors of co-located virtual
    /// nodes when their upper bounds are combined (see
    /// [`super::view::ViewInputs::spread_correlation`]).
    pub spread_correlation: f64,
    /// Component weights.
    pub weights: Weights,
    /// The cost function.
    pub cost: CostModel,
    /// Recommend or apply.
    pub automation: Automation,
    /// The risk-aware rule (`[controller.risk]`), run in rounds where the
    /// rules above propose nothing.
    pub risk: RiskConfig,
    /// Whether the risk-aware rule's settings tune themselves on the
    /// cluster's recent history (`self_tuning`, see [`super::tuning`]).
    pub self_tuning: bool,
    /// The self-tuner's guards and bounds (`[controller.tuning]`).
    pub tuning: TuningConfig,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            gain_threshold: 0.1,
            max_decisions_per_round: 20,
            cooldown_ms: 30 * 60 * 1000,
            max_cpu_utilization: 0.8,
            overload_threshold: 0.9,
            max_in_flight_per_node: 2,
            horizon_steps: 6,
            act_on_current_overload: true,
            spread_correlation: 0.3,
            weights: Weights::default(),
            cost: CostModel::default(),
            automation: Automation::Recommend,
            risk: RiskConfig::default(),
            self_tuning: true,
            tuning: TuningConfig::default(),
        }
    }
}

impl ControllerConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.gain_threshold) {
            return Err(format!("gain_threshold must be in [0, 1], got {}", self.gain_threshold));
        }
        for (n, v) in
            [("max_cpu_utilization", self.max_cpu_utilization), ("overload_threshold", self.overload_threshold)]
        {
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!("{n} must be in (0, 1], got {v}"));
            }
        }
        if self.cooldown_ms < 0 {
            return Err("cooldown must not be negative".into());
        }
        if self.max_in_flight_per_node == 0 {
            return Err("max_in_flight_per_node must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.spread_correlation) {
            return Err(format!("spread_correlation must be in [0, 1], got {}", self.spread_correlation));
        }
        if self.horizon_steps > 288 {
            return Err(format!("horizon_steps must be at most 288, got {}", self.horizon_steps));
        }
        self.cost.validate()?;
        self.risk.validate().map_err(|e| format!("risk.{e}"))?;
        self.tuning.validate().map_err(|e| format!("tuning.{e}"))?;
        self.weights.validate()
    }

    /// Feasibility limits.
    pub fn limits(&self) -> Limits {
        Limits { max_cpu_utilization: self.max_cpu_utilization }
    }
}

/// Why a move was proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalKind {
    /// Affinity gain above the threshold, and it pays.
    MicroMigration,
    /// The current node is draining.
    Evacuation,
    /// The node is fine now but its forecast crosses the overload threshold.
    Predictive,
    /// The node is over the threshold now and its forecast stays there.
    Overload,
    /// The virtual nodes on the node have overloaded it together in the
    /// recent history, and the move lowers how often (the risk-aware rule,
    /// [`super::risk`]).
    Risk,
    /// Back where it came from: its last move hurt its service
    /// ([`super::move_back`]).
    MoveBack,
}

/// A proposed move.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Virtual node index in the view.
    pub virt: usize,
    /// Current physical node index.
    pub from: usize,
    /// Target physical node index.
    pub to: usize,
    /// Score where it runs.
    pub from_score: Score,
    /// Score on the target.
    pub to_score: Score,
    /// Why.
    pub kind: ProposalKind,
    /// The cost function's numbers.
    pub cost: CostEstimate,
    /// For relief moves: steps ahead (1 = next) the overload was expected.
    pub expected_overload_step: Option<usize>,
    /// For relief moves: the source's forecast peak utilisation before.
    pub source_peak: Option<f64>,
    /// For humans.
    pub reason: String,
}

/// A utilisation no measurement can produce: a node at a million times its
/// capacity is a bad sample (or a bug), and a decision on it would print
/// "inf%" (the percentage overflows before the value does).
const ABSURD_UTIL: f64 = 1e6;

/// Whether a utilisation is a number a decision may be made on.
fn plausible_util(u: f64) -> bool {
    u.is_finite() && u.abs() < ABSURD_UTIL
}

impl Proposal {
    /// Affinity gain.
    pub fn gain(&self) -> f64 {
        self.to_score.score - self.from_score.score
    }

    /// Whether every number it would be decided on is finite (and every
    /// utilisation plausible).
    pub fn is_finite(&self) -> bool {
        let c = &self.cost;
        let (f, t) = (&self.from_score, &self.to_score);
        [
            self.gain(),
            c.transfer_seconds,
            c.overhead_seconds,
            c.benefit,
            c.cost,
            f.projected_cpu_util,
            t.projected_cpu_util,
        ]
        .iter()
        .all(|x| x.is_finite())
            && [self.source_peak, f.forecast_peak.map(|p| p.0), t.forecast_peak.map(|p| p.0)]
                .iter()
                .all(|x| x.is_none_or(f64::is_finite))
    }
}

/// Outcome of a round.
#[derive(Debug, Clone, Default)]
pub struct RoundOutcome {
    /// Accepted proposals, in the order they were taken.
    pub proposals: Vec<Proposal>,
    /// Virtual nodes considered (placed, not pinned).
    pub evaluated: usize,
    /// Skipped because a recent decision put them in cooldown.
    pub skipped_cooldown: usize,
    /// Would have moved but the round's budget was spent.
    pub skipped_budget: usize,
    /// Proposals refused because a number in them was not finite (NaN or
    /// infinite): a bug or an absurd input, never a decision.
    pub refused_non_finite: usize,
    /// Physical nodes at risk of overload at the start of the round.
    pub at_risk: usize,
    /// (virtual, physical) pairs scored.
    pub pairs_scored: u64,
}

/// The time a round runs at and what it remembers of earlier rounds.
#[derive(Debug, Clone, Copy)]
pub struct RoundInput<'a> {
    /// Now, ms.
    pub now_ms: i64,
    /// Length of one forecast step, ms.
    pub step_ms: i64,
    /// Time of each virtual node's latest decision (for the cooldown).
    pub last_decided: &'a HashMap<NodeId, i64>,
}

/// A node's overload risk: first step (0-based) over the threshold, and the peak.
#[derive(Debug, Clone, Copy)]
struct Risk {
    first: usize,
    peak: f64,
}

/// The first forecast step a move can still change: during step 0 a
/// migration loads both ends.
const SETTLE: usize = 1;

/// A point the round judges overload at: the load now, or a forecast step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Point {
    Now,
    Step(usize),
}

/// The points a node's risk is judged at: forecast steps a move can still
/// influence, plus the load now when `act_on_current_overload` is set (or
/// when there is no forecast at all).
fn points(view: &ClusterView, cfg: &ControllerConfig) -> Vec<Point> {
    let mut out = Vec::new();
    if view.horizon == 0 || cfg.act_on_current_overload {
        out.push(Point::Now);
    }
    if view.horizon > 0 {
        out.extend((SETTLE.min(view.horizon - 1)..view.horizon).map(Point::Step));
    }
    out
}

/// Utilisation of `pi` at `pt`, with virtual node `v` gone from it.
fn util_at(view: &ClusterView, pi: usize, pt: Point, gone: Option<&super::view::VirtView>) -> f64 {
    let p = &view.phys[pi];
    match pt {
        Point::Now => (p.load.cpu_cores - gone.map_or(0.0, |v| v.demand.cpu_cores)).max(0.0) / p.capacity.cpu_cores,
        Point::Step(h) => {
            let (m, s) = gone.map_or((0.0, 0.0), |v| v.fc_at(h));
            p.fc_upper_at(h, if gone.is_some() { -1.0 } else { 0.0 }, m, s) / p.capacity.cpu_cores
        }
    }
}

fn risk(view: &ClusterView, pi: usize, cfg: &ControllerConfig) -> Option<Risk> {
    let thr = cfg.overload_threshold;
    let mut out: Option<Risk> = None;
    for pt in points(view, cfg) {
        let u = util_at(view, pi, pt, None);
        if u > thr {
            let first = match pt {
                Point::Now => 0,
                Point::Step(h) => h + 1,
            };
            match &mut out {
                None => out = Some(Risk { first, peak: u }),
                Some(r) => r.peak = r.peak.max(u),
            }
        }
    }
    out
}

/// Steps a migration of `seconds` keeps loading its source (at least 1).
pub fn migration_steps(seconds: f64, step_ms: i64) -> usize {
    let step_s = (step_ms as f64 / 1000.0).max(1e-9);
    ((seconds / step_s).ceil() as usize).max(1)
}

/// Effect on source `pi` of virtual node `vi` leaving after `mig` steps:
/// (peak utilisation after, overload relief in utilisation-steps). The load
/// now counts as if it persisted into the step after the move.
fn relief(view: &ClusterView, pi: usize, vi: usize, mig: usize, cfg: &ControllerConfig) -> (f64, f64) {
    let v = &view.virt[vi];
    let thr = cfg.overload_threshold;
    let (mut peak, mut total) = (0.0f64, 0.0);
    for pt in points(view, cfg) {
        let before = util_at(view, pi, pt, None);
        let moved = match pt {
            Point::Now => true,
            Point::Step(h) => h >= mig,
        };
        let after = if moved { util_at(view, pi, pt, Some(v)) } else { before };
        peak = peak.max(after);
        total += (before - thr).max(0.0) - (after - thr).max(0.0);
    }
    (peak, total)
}

/// A move priced by the cost function.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Priced {
    /// The source's peak utilisation after the move (its current peak when
    /// relief was not asked for).
    pub after: f64,
    /// Overload removed from the source, utilisation-steps.
    pub relief: f64,
    /// The estimate.
    pub cost: CostEstimate,
}

/// Prices moving virtual node `vi` from `from` to `to` for an affinity
/// `gain`: the benefit over the controller horizon, plus (`with_relief`)
/// the overload it removes from the source once the move has finished. The
/// one place both phases of a round and [`super::assess`] price a move.
#[allow(clippy::too_many_arguments)]
pub(crate) fn price(
    view: &ClusterView,
    vi: usize,
    from: usize,
    to: usize,
    gain: f64,
    with_relief: bool,
    input: &RoundInput<'_>,
    cfg: &ControllerConfig,
) -> Priced {
    price_at(view, vi, from, view.node_distance(from, to), gain, with_relief, input, cfg)
}

/// [`price`] for a target at distance `dist` from `from` (all a move's
/// price depends on, besides the gain).
#[allow(clippy::too_many_arguments)]
fn price_at(
    view: &ClusterView,
    vi: usize,
    from: usize,
    dist: Distance,
    gain: f64,
    with_relief: bool,
    input: &RoundInput<'_>,
    cfg: &ControllerConfig,
) -> Priced {
    let v = &view.virt[vi];
    let step_s = input.step_ms as f64 / 1000.0;
    let horizon_s = cfg.horizon_steps.max(1) as f64 * step_s;
    let (after, rel) = if with_relief {
        let mig = migration_steps(cfg.cost.move_seconds(v.state_size_bytes, dist), input.step_ms);
        relief(view, from, vi, mig, cfg)
    } else {
        (view.phys[from].cpu_util(), 0.0)
    };
    Priced { after, relief: rel, cost: cfg.cost.estimate(v.state_size_bytes, dist, gain, horizon_s, rel, step_s) }
}

/// What moving `vi` off `from` costs beyond the affinity gain, per distance
/// class of the target, in affinity units: a move's net benefit is `horizon
/// × (target score − penalty − current score)`. So the target that maximises
/// score less penalty is the move with the largest net benefit, and the
/// pruned search finds it exactly (see [`super::search`]). With `relief`,
/// the overload a move removes is part of the benefit (a slower, farther
/// move removes less of it), and a class whose moves would remove none is
/// ruled out, as the round's relief phase requires.
pub(crate) fn target_penalty(
    view: &ClusterView,
    vi: usize,
    from: usize,
    relief: bool,
    input: &RoundInput<'_>,
    cfg: &ControllerConfig,
) -> Penalty {
    let horizon_s = cfg.horizon_steps.max(1) as f64 * input.step_ms as f64 / 1000.0;
    Penalty::by_distance(|d| {
        let p = price_at(view, vi, from, d, 0.0, relief, input, cfg);
        if relief && p.relief <= 0.0 { f64::INFINITY } else { -p.cost.net() / horizon_s }
    })
}

/// When virtual node `vi`'s cooldown ends, ms; `None` when it is not cooling.
pub(crate) fn cooling_until(
    view: &ClusterView,
    vi: usize,
    input: &RoundInput<'_>,
    cfg: &ControllerConfig,
) -> Option<i64> {
    let v = &view.virt[vi];
    input.last_decided.get(&v.id).map(|t| t + cfg.cooldown_ms).filter(|&until| input.now_ms < until)
}

/// Whether physical node `pi` may take part in one more migration.
pub(crate) fn node_free(view: &ClusterView, pi: usize, cfg: &ControllerConfig) -> bool {
    view.phys[pi].in_flight < cfg.max_in_flight_per_node
}

/// Whether physical node `pi` is at risk of overload (see the module doc).
pub(crate) fn at_risk(view: &ClusterView, pi: usize, cfg: &ControllerConfig) -> bool {
    risk(view, pi, cfg).is_some()
}

/// How a round finds targets: both give identical results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// Branch and bound over [`TargetIndex`].
    Pruned,
    /// Score every pair (the reference the pruned search is tested against).
    Exhaustive,
}

struct Round<'a> {
    search: Search,
    /// Moves taken so far, and per node the move that last changed it.
    moves: u64,
    touched: Vec<u64>,
    view: ClusterView,
    cfg: &'a ControllerConfig,
    input: RoundInput<'a>,
    index: TargetIndex,
    on_node: Vec<Vec<usize>>,
    out: RoundOutcome,
}

impl Round<'_> {
    /// The candidate's proposal if it is still exactly what a fresh
    /// evaluation would return: its source and target are unchanged since,
    /// and no node whose load fell since beats the target. (Every other
    /// node's score can only have fallen.)
    fn still_valid(&self, c: &Candidate) -> bool {
        let p = &c.prop;
        if self.touched[p.from] > c.moves_seen || self.touched[p.to] > c.moves_seen {
            return false;
        }
        let (w, limits) = (&self.cfg.weights, self.cfg.limits());
        let has_data = !self.view.virt[c.virt].data.is_empty();
        let key_at = |pi: usize, score: f64| score - c.penalty.at(self.view.node_distance(p.from, pi));
        let key = key_at(p.to, p.to_score.score);
        let least = c.penalty.least();
        !self.index.dirty_since(c.dirty_seen).iter().any(|&pi| {
            // The node's fresh bound settles most of them without scoring.
            if self.index.fresh_bound(pi, has_data) - least < key {
                return false;
            }
            let s = score(&self.view, c.virt, pi, w, &limits);
            let k = key_at(pi, s.score);
            s.infeasible.is_none() && (k > key || (k == key && pi < p.to))
        })
    }

    fn candidate(&self, vi: usize) -> Option<Candidate> {
        self.micro(vi).map(|(priority, prop, penalty)| Candidate {
            priority,
            penalty,
            virt: vi,
            prop: Box::new(prop),
            moves_seen: self.moves,
            dirty_seen: self.index.dirty_count(),
        })
    }

    fn cooling(&self, vi: usize) -> bool {
        cooling_until(&self.view, vi, &self.input, self.cfg).is_some()
    }

    /// `vi`'s best target by score less `penalty`, with a score above `floor`.
    fn best(&self, vi: usize, floor: f64, penalty: &Penalty) -> Option<(usize, Score)> {
        let (w, limits) = (&self.cfg.weights, self.cfg.limits());
        match self.search {
            Search::Pruned => self.index.best(&self.view, vi, w, &limits, floor, penalty),
            Search::Exhaustive => {
                let n = self.view.phys.len() as u64;
                self.index.scored.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                super::search::best_exhaustive(&self.view, vi, w, &limits, floor, penalty)
            }
        }
    }

    fn node_free(&self, pi: usize) -> bool {
        node_free(&self.view, pi, self.cfg)
    }

    fn take(&mut self, prop: Proposal) {
        // A decision is never made on numbers that are not numbers: an
        // absurd sample that slipped past validation must not become a
        // migration whose reason reads "inf%" and "benefit NaN".
        let loads_finite = [prop.from, prop.to].iter().all(|&p| plausible_util(self.view.phys[p].cpu_util()));
        if !prop.is_finite() || !loads_finite {
            self.out.refused_non_finite += 1;
            return;
        }
        let (vi, from, to) = (prop.virt, prop.from, prop.to);
        self.view.apply_move(vi, to);
        self.index.mark_dirty(&self.view, &self.cfg.weights, from);
        self.moves += 1;
        self.touched[from] = self.moves;
        self.touched[to] = self.moves;
        self.on_node[from].retain(|&x| x != vi);
        self.on_node[to].push(vi);
        self.out.proposals.push(prop);
    }

    fn budget_left(&self) -> bool {
        self.out.proposals.len() < self.cfg.max_decisions_per_round
    }

    /// Phase 1 for one source node. Returns false once the budget is spent.
    fn relieve(&mut self, pi: usize) -> bool {
        let thr = self.cfg.overload_threshold;
        let draining = self.view.phys[pi].state == PhysicalState::Draining;
        let w = self.cfg.weights;
        let limits = self.cfg.limits();
        loop {
            let r = risk(&self.view, pi, self.cfg);
            if !draining && r.is_none() {
                return true;
            }
            if !self.node_free(pi) {
                return true;
            }
            struct Cand {
                vi: usize,
                to: usize,
                to_score: Score,
                after: f64,
                relief: f64,
                cost: CostEstimate,
                size: f64,
                from_score: Score,
            }
            let mut best: Option<Cand> = None;
            let mut candidates = self.on_node[pi].clone();
            if draining {
                // Biggest first, while there is the most room.
                candidates.sort_by(|&a, &b| {
                    self.view.virt[b].peak_demand().total_cmp(&self.view.virt[a].peak_demand()).then(a.cmp(&b))
                });
            }
            for vi in candidates {
                let v = &self.view.virt[vi];
                if v.migrating || (!draining && (v.pinned.is_some() || self.cooling(vi))) {
                    continue;
                }
                // The move with the largest net benefit (relief included),
                // not merely the best-scoring target.
                let penalty = target_penalty(&self.view, vi, pi, !draining, &self.input, self.cfg);
                let Some((to, to_score)) = self.best(vi, f64::NEG_INFINITY, &penalty) else {
                    continue;
                };
                if !self.node_free(to) {
                    continue;
                }
                let from_score = score(&self.view, vi, pi, &w, &limits);
                let gain = to_score.score - from_score.score;
                let Priced { after, relief: rel, cost } =
                    price(&self.view, vi, pi, to, gain, true, &self.input, self.cfg);
                if !draining && (rel <= 0.0 || cost.net() <= self.cfg.cost.min_net_benefit) {
                    continue;
                }
                let c = Cand { vi, to, to_score, after, relief: rel, cost, size: v.peak_demand(), from_score };
                if draining {
                    best = Some(c);
                    break;
                }
                let fixes = |c: &Cand| c.after <= thr;
                let better = match &best {
                    None => true,
                    Some(b) => match (fixes(&c), fixes(b)) {
                        (true, false) => true,
                        (false, true) => false,
                        (true, true) => c.size < b.size,
                        (false, false) => c.relief > b.relief,
                    },
                };
                if better {
                    best = Some(c);
                }
            }
            let Some(c) = best else { return true };
            if !self.budget_left() {
                self.out.skipped_budget += 1;
                return false;
            }
            let p = &self.view.phys[pi];
            let now_util = p.cpu_util();
            let to_id = self.view.phys[c.to].id.clone();
            let (kind, reason) = if draining {
                (
                    ProposalKind::Evacuation,
                    format!(
                        "{} is draining; {} would be at {:.0}% CPU (affinity {:.2}); move takes {:.0} s",
                        p.id,
                        to_id,
                        c.to_score.projected_cpu_util * 100.0,
                        c.to_score.score,
                        c.cost.duration_seconds()
                    ),
                )
            } else {
                let r = r.expect("at risk");
                let predictive = now_util <= thr;
                let when = r.first as i64 * self.input.step_ms / 60_000;
                // `first` 0 is the load now (a node over the threshold
                // already): "in 0 min" would read as a forecast.
                let outlook = if self.view.horizon == 0 {
                    "no forecast".to_string()
                } else if r.first == 0 {
                    format!("over the threshold now, peak {:.0}% within the horizon", r.peak * 100.0)
                } else {
                    format!("forecast upper bound {:.0}% in {when} min", r.peak * 100.0)
                };
                let reason = format!(
                    "{} {} {:.0}% CPU now, {outlook} (threshold {:.0}%); moving {} ({:.2} cores at peak) to {} (forecast peak {:.0}%) brings it to {:.0}%; benefit {:.0} > cost {:.0} affinity-s (transfer {:.1} s + overhead {:.0} s)",
                    p.id,
                    if predictive { "is at" } else { "is overloaded at" },
                    now_util * 100.0,
                    thr * 100.0,
                    self.view.virt[c.vi].id,
                    c.size,
                    to_id,
                    c.to_score.forecast_peak.map(|x| x.0).unwrap_or(c.to_score.projected_cpu_util) * 100.0,
                    c.after * 100.0,
                    c.cost.benefit,
                    c.cost.cost,
                    c.cost.transfer_seconds,
                    c.cost.overhead_seconds,
                );
                (if predictive { ProposalKind::Predictive } else { ProposalKind::Overload }, reason)
            };
            let r = r.map(|r| (r.first, r.peak));
            self.take(Proposal {
                virt: c.vi,
                from: pi,
                to: c.to,
                from_score: c.from_score,
                to_score: c.to_score,
                kind,
                cost: c.cost,
                expected_overload_step: r.map(|x| x.0),
                source_peak: r.map(|x| x.1),
                reason,
            });
        }
    }

    /// Phase 2 evaluation of one virtual node.
    fn micro(&self, vi: usize) -> Option<(f64, Proposal, Penalty)> {
        let v = &self.view.virt[vi];
        let from = v.placement?;
        let w = &self.cfg.weights;
        let limits = self.cfg.limits();
        let from_score = score(&self.view, vi, from, w, &limits);
        let penalty = target_penalty(&self.view, vi, from, false, &self.input, self.cfg);
        let (to, to_score) = self.best(vi, from_score.score + self.cfg.gain_threshold, &penalty)?;
        let gain = to_score.score - from_score.score;
        let cost = price(&self.view, vi, from, to, gain, false, &self.input, self.cfg).cost;
        if cost.net() <= self.cfg.cost.min_net_benefit {
            return None;
        }
        let prop = Proposal {
            virt: vi,
            from,
            to,
            from_score,
            to_score,
            kind: ProposalKind::MicroMigration,
            cost,
            expected_overload_step: None,
            source_peak: None,
            // Written when the move is taken: most candidates never are.
            reason: String::new(),
        };
        Some((cost.net(), prop, penalty))
    }

    /// The sentence of a micro-migration, from the state it was evaluated in
    /// (which is the state now: it is written just before the move is taken).
    fn micro_reason(&self, prop: &Proposal) -> String {
        let p = &self.view.phys[prop.from];
        format!(
            "{} at {:.0}% CPU (affinity {:.2}); {} would be at {:.0}% CPU (affinity {:.2}); gain {:.2} > threshold {:.2}; benefit {:.0} > cost {:.0} affinity-s ({}, transfer {:.1} s + overhead {:.0} s)",
            p.id,
            p.cpu_util() * 100.0,
            prop.from_score.score,
            self.view.phys[prop.to].id,
            prop.to_score.projected_cpu_util * 100.0,
            prop.to_score.score,
            prop.gain(),
            self.cfg.gain_threshold,
            prop.cost.benefit,
            prop.cost.cost,
            self.view.node_distance(prop.from, prop.to).name(),
            prop.cost.transfer_seconds,
            prop.cost.overhead_seconds,
        )
    }
}

/// A micro-migration waiting in the round's queue, with the proposal as
/// evaluated after `moves_seen` moves and `dirty_seen` dirty marks.
struct Candidate {
    priority: f64,
    /// What its targets cost beyond their score (see [`target_penalty`]).
    penalty: Penalty,
    virt: usize,
    prop: Box<Proposal>,
    moves_seen: u64,
    dirty_seen: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> Ordering {
        // Highest priority first; ties broken by index for determinism.
        self.priority.total_cmp(&o.priority).then_with(|| o.virt.cmp(&self.virt))
    }
}

/// Runs one round over `view` (which it does not modify).
pub fn run_round(view: &ClusterView, input: RoundInput<'_>, cfg: &ControllerConfig) -> RoundOutcome {
    run_round_with(view, input, cfg, Search::Pruned)
}

/// [`run_round`] with a chosen search.
pub fn run_round_with(
    view: &ClusterView,
    input: RoundInput<'_>,
    cfg: &ControllerConfig,
    search: Search,
) -> RoundOutcome {
    let index = TargetIndex::build(view, &cfg.weights);
    let mut on_node = vec![Vec::new(); view.phys.len()];
    for (vi, v) in view.virt.iter().enumerate() {
        if let Some(p) = v.placement {
            on_node[p].push(vi);
        }
    }
    let mut r = Round {
        search,
        moves: 0,
        touched: vec![0; view.phys.len()],
        view: view.clone(),
        cfg,
        input,
        index,
        on_node,
        out: RoundOutcome::default(),
    };
    // Phase 1: draining nodes, then nodes at risk, worst first.
    let mut sources: Vec<(f64, usize)> = Vec::new();
    for pi in 0..view.phys.len() {
        if view.phys[pi].state == PhysicalState::Draining {
            sources.push((f64::INFINITY, pi));
        } else if let Some(k) = risk(view, pi, cfg) {
            sources.push((k.peak, pi));
            r.out.at_risk += 1;
        }
    }
    sources.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut budget = true;
    for &(_, pi) in &sources {
        if !r.relieve(pi) {
            budget = false;
            break;
        }
    }
    // Phase 2: micro-migrations of everything else.
    let eligible: Vec<usize> = (0..view.virt.len())
        .filter(|&vi| {
            let v = &r.view.virt[vi];
            v.placement.is_some() && v.pinned.is_none() && !v.migrating
        })
        .collect();
    r.out.evaluated = eligible.len();
    let eligible: Vec<usize> = eligible
        .into_iter()
        .filter(|&vi| {
            let c = r.cooling(vi);
            r.out.skipped_cooldown += c as usize;
            !c
        })
        .collect();
    if budget && cfg.gain_threshold < 1.0 {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
        let chunk = eligible.len().div_ceil(threads).max(1);
        let firsts: Vec<Candidate> = std::thread::scope(|s| {
            let handles: Vec<_> = eligible
                .chunks(chunk)
                .map(|part| {
                    let r = &r;
                    s.spawn(move || part.iter().filter_map(|&vi| r.candidate(vi)).collect::<Vec<_>>())
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("round worker panicked")).collect()
        });
        let mut heap: BinaryHeap<Candidate> = firsts.into();
        while let Some(c) = heap.pop() {
            // Moved earlier in this round (`apply_move` marks it migrating).
            if r.view.virt[c.virt].migrating {
                continue;
            }
            // Re-evaluate against the loads left by the moves already taken
            // (cheaply, when nothing it depends on changed).
            let (priority, prop) = if r.still_valid(&c) {
                (c.priority, *c.prop)
            } else {
                let Some(fresh) = r.candidate(c.virt) else { continue };
                if let Some(next) = heap.peek()
                    && fresh.priority < c.priority
                    && fresh.priority < next.priority
                {
                    heap.push(fresh);
                    continue;
                }
                (fresh.priority, *fresh.prop)
            };
            let _ = priority;
            if !r.node_free(prop.from) || !r.node_free(prop.to) {
                continue;
            }
            if !r.budget_left() {
                r.out.skipped_budget += 1 + heap.len();
                break;
            }
            let mut prop = prop;
            prop.reason = r.micro_reason(&prop);
            r.take(prop);
        }
    }
    r.out.pairs_scored = r.index.scored.load(std::sync::atomic::Ordering::Relaxed);
    r.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Topology;
    use crate::placement::affinity::ObservedUsage;
    use crate::placement::synthetic::{SyntheticParams, synthetic_view};
    use crate::placement::testing::{id, topology};
    use crate::placement::view::{CpuForecast, ViewInputs};

    fn round(view: &ClusterView, now: i64, last: &HashMap<NodeId, i64>, cfg: &ControllerConfig) -> RoundOutcome {
        run_round(view, RoundInput { now_ms: now, step_ms: 300_000, last_decided: last }, cfg)
    }

    /// Unlabelled physical nodes `(id, cores)` and placed virtual nodes.
    fn topo(phys: &[(&str, f64)], virt: &[(&str, f64, &str)]) -> Topology {
        let phys: Vec<(&str, f64, &str, &str)> = phys.iter().map(|&(p, c)| (p, c, "", "")).collect();
        topology(&phys, virt)
    }

    #[test]
    fn overloaded_node_sheds_load_without_overfilling_the_target() {
        let t = topo(
            &[("hot", 10.0), ("cold", 10.0)],
            &[("a", 3.0, "hot"), ("b", 3.0, "hot"), ("c", 3.0, "hot"), ("d", 0.5, "cold")],
        );
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let out = round(&view, 0, &HashMap::new(), &ControllerConfig::default());
        assert!(!out.proposals.is_empty());
        // After the moves, no node above the 90% limit and loads are balanced-ish.
        let mut v = view.clone();
        for p in &out.proposals {
            assert_eq!(view.phys[p.to].id.as_str(), "cold");
            assert!(p.gain() > 0.1);
            v.apply_move(p.virt, p.to);
        }
        for p in &v.phys {
            assert!(p.load.cpu_cores <= 9.0 + 1e-9, "{} overfilled: {}", p.id, p.load.cpu_cores);
        }
        // Once balanced, a second round proposes nothing (hysteresis).
        let again = round(&v, 0, &HashMap::new(), &ControllerConfig::default());
        assert!(again.proposals.is_empty(), "{:?}", again.proposals.iter().map(|p| &p.reason).collect::<Vec<_>>());
    }

    #[test]
    fn numbers_that_are_not_numbers_never_become_decisions() {
        let t = topo(&[("hot", 16.0), ("cold", 16.0)], &[("a", 2.0, "hot"), ("b", 2.0, "hot"), ("c", 2.0, "hot")]);
        let mut usage = ObservedUsage::default();
        let huge = crate::placement::view::PartialResources { cpu_cores: Some(1.7e308), ..Default::default() };
        usage.virtual_nodes.insert("a".into(), huge);
        usage.physical.insert("hot".into(), huge);
        let view = ClusterView::build(&t, &usage);
        let out = round(&view, 0, &HashMap::new(), &ControllerConfig::default());
        for p in &out.proposals {
            assert!(p.is_finite(), "{}", p.reason);
            assert!(!p.reason.contains("inf") && !p.reason.contains("NaN"), "{}", p.reason);
        }
        assert!(out.refused_non_finite > 0, "the move off the absurd node was refused, and counted");
    }

    #[test]
    fn cooldown_budget_and_draining() {
        let big = topo(
            &[("hot", 20.0), ("cold", 20.0)],
            &[
                ("a", 3.0, "hot"),
                ("b", 3.0, "hot"),
                ("c", 3.0, "hot"),
                ("d", 3.0, "hot"),
                ("e", 3.0, "hot"),
                ("f", 3.0, "hot"),
            ],
        );
        let view = ClusterView::build(&big, &ObservedUsage::default());
        let cfg = ControllerConfig { max_decisions_per_round: 1, ..Default::default() };
        let out = round(&view, 0, &HashMap::new(), &cfg);
        assert_eq!(out.proposals.len(), 1);
        assert!(out.skipped_budget >= 1, "the others still want to move");
        let t = topo(&[("hot", 10.0), ("cold", 10.0)], &[("a", 3.0, "hot"), ("b", 3.0, "hot"), ("c", 3.0, "hot")]);
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let cooling: HashMap<_, _> = [(id("a"), 0), (id("b"), 0), (id("c"), 0)].into();
        let out = round(&view, 1000, &cooling, &ControllerConfig::default());
        assert!(out.proposals.is_empty());
        assert_eq!(out.skipped_cooldown, 3);
        let mut t2 = t.clone();
        t2.physical.get_mut("hot").unwrap().state = PhysicalState::Draining;
        let view = ClusterView::build(&t2, &ObservedUsage::default());
        let roomy = ControllerConfig { max_cpu_utilization: 0.9, max_in_flight_per_node: 5, ..Default::default() };
        let out = round(&view, 1000, &cooling, &roomy);
        // Draining overrides the cooldown; only capacity limits what moves (3 x 3 cores fit in 9).
        assert_eq!(out.proposals.len(), 3);
        assert!(out.proposals.iter().all(|p| p.kind == ProposalKind::Evacuation));
        // The per-node concurrency limit (default 2) holds even for evacuations.
        let out = round(&view, 1000, &cooling, &ControllerConfig { max_cpu_utilization: 0.9, ..Default::default() });
        assert_eq!(out.proposals.len(), 2);
    }

    fn with_forecasts(t: &Topology, horizon: usize, f: &[(&str, Vec<f64>, Vec<f64>)]) -> ClusterView {
        let mut inp = ViewInputs { horizon, ..Default::default() };
        for (v, m, u) in f {
            inp.forecasts.insert(v.to_string(), CpuForecast { mean: m.clone(), upper: u.clone() });
        }
        ClusterView::build_with(t, &inp)
    }

    #[test]
    fn forecast_overload_moves_load_off_before_it_happens() {
        // "hot" is at 6/10 cores now, fine; b is forecast to climb to 6 cores at step 3.
        let t = topo(&[("hot", 10.0), ("cold", 10.0)], &[("a", 1.0, "hot"), ("b", 3.0, "hot"), ("c", 2.0, "hot")]);
        let cfg = ControllerConfig { gain_threshold: 1.0, ..Default::default() };
        let rising = (3.0, vec![3.0, 4.0, 6.0, 6.0], vec![3.2, 4.3, 6.5, 6.5]);
        let view = with_forecasts(&t, 4, &[("b", rising.1.clone(), rising.2.clone())]);
        let out = round(&view, 0, &HashMap::new(), &cfg);
        assert_eq!(out.at_risk, 1);
        assert_eq!(out.proposals.len(), 1, "{:?}", out.proposals.iter().map(|p| &p.reason).collect::<Vec<_>>());
        let p = &out.proposals[0];
        assert_eq!(p.kind, ProposalKind::Predictive);
        assert_eq!(p.expected_overload_step, Some(3), "9.5 cores expected at step 3");
        // Moving "a" (1 core) leaves 8.5 > 9? no: 1 + 2 + 6.5 = 9.5 - 1 = 8.5 <= 9: the smallest fix wins.
        assert_eq!(view.virt[p.virt].id.as_str(), "a");
        assert!(p.reason.contains("forecast upper bound 95%"), "{}", p.reason);
        assert!(p.cost.benefit > p.cost.cost);
        // The same node with a forecast that stays flat: nothing to do.
        let calm = with_forecasts(&t, 4, &[("b", vec![3.0; 4], vec![3.2; 4])]);
        assert!(round(&calm, 0, &HashMap::new(), &cfg).proposals.is_empty());
        // Over the threshold now but forecast to fall back: trusting the
        // forecast alone, no move either.
        let t2 = topo(&[("hot", 10.0), ("cold", 10.0)], &[("a", 1.0, "hot"), ("b", 7.0, "hot"), ("c", 2.0, "hot")]);
        let falling = with_forecasts(&t2, 4, &[("b", vec![4.0; 4], vec![4.5; 4])]);
        assert_eq!(falling.phys[falling.phys_index["hot"]].cpu_util(), 1.0);
        let trust_forecast = ControllerConfig { act_on_current_overload: false, ..cfg };
        assert!(round(&falling, 0, &HashMap::new(), &trust_forecast).proposals.is_empty());
        // By default the load now counts too: the node is relieved, as an overload.
        let out = round(&falling, 0, &HashMap::new(), &cfg);
        assert_eq!(out.proposals.len(), 1);
        assert_eq!(out.proposals[0].kind, ProposalKind::Overload);
        assert_eq!(out.proposals[0].expected_overload_step, Some(0));
    }

    #[test]
    fn cost_and_concurrency_limits() {
        let mut t = topo(&[("hot", 10.0), ("cold", 10.0)], &[("a", 3.0, "hot"), ("b", 3.0, "hot"), ("c", 3.0, "hot")]);
        // 1 TiB over a remote link takes hours: the gain does not pay for it.
        for v in t.virtual_nodes.values_mut() {
            v.state_size_bytes = 1 << 40;
        }
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let out = round(&view, 0, &HashMap::new(), &ControllerConfig::default());
        assert!(out.proposals.is_empty(), "{:?}", out.proposals.iter().map(|p| &p.reason).collect::<Vec<_>>());
        // Small state, but at most one migration per node at a time.
        for v in t.virtual_nodes.values_mut() {
            v.state_size_bytes = 1 << 20;
        }
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let cfg = ControllerConfig { max_in_flight_per_node: 1, ..Default::default() };
        let out = round(&view, 0, &HashMap::new(), &cfg);
        assert_eq!(out.proposals.len(), 1);
        // 1 MiB over a remote (unlabelled) link: 1 MiB / 125 MB/s + 20 ms.
        assert!((out.proposals[0].cost.transfer_seconds - (1048576.0 / 1.25e8 + 0.02)).abs() < 1e-9);
    }

    #[test]
    fn the_move_that_pays_most_wins_over_the_best_scoring_target() {
        // "hot" is overloaded; moving "a" (64 GiB of state) fixes it. "far"
        // (another zone) is emptier and scores higher; "near" (same rack)
        // scores a little lower but its transfer is ten times faster.
        let mut t = topology(
            &[("hot", 10.0, "z1", "r1"), ("near", 10.0, "z1", "r1"), ("far", 10.0, "z2", "r2")],
            &[("a", 1.0, "hot"), ("b", 8.5, "hot"), ("c", 1.0, "near")],
        );
        t.virtual_nodes.get_mut(&id("a")).unwrap().state_size_bytes = 64 << 30;
        let view = ClusterView::build_with(&t, &ViewInputs::default());
        let cfg = ControllerConfig { gain_threshold: 1.0, ..Default::default() };
        let last = HashMap::new();
        let input = RoundInput { now_ms: 0, step_ms: 300_000, last_decided: &last };
        let a = view.virt.iter().position(|v| v.id.as_str() == "a").unwrap();
        let (hot, near, far) = (view.phys_index["hot"], view.phys_index["near"], view.phys_index["far"]);
        let limits = cfg.limits();
        let sc = |pi| score(&view, a, pi, &cfg.weights, &limits).score;
        assert!(sc(far) > sc(near), "far must score higher for this test to mean anything");
        let net = |pi| {
            let gain = sc(pi) - sc(hot);
            price(&view, a, hot, pi, gain, true, &input, &cfg).cost.net()
        };
        assert!(net(near) > net(far), "near {} far {}", net(near), net(far));
        let out = run_round(&view, input, &cfg);
        assert_eq!(out.proposals.len(), 1, "{:?}", out.proposals.iter().map(|p| &p.reason).collect::<Vec<_>>());
        assert_eq!((out.proposals[0].virt, out.proposals[0].to), (a, near), "{}", out.proposals[0].reason);
        assert!((out.proposals[0].cost.net() - net(near)).abs() < 1e-6);
        // Where the far node's lead in score outweighs its cost, it wins.
        let mut cheap = cfg;
        cheap.cost.migration_penalty = 0.0;
        assert_eq!(run_round(&view, input, &cheap).proposals[0].to, far);
    }

    #[test]
    fn pruned_round_equals_exhaustive_round_at_10k_by_1k() {
        let view =
            synthetic_view(&SyntheticParams { virt: 10_000, phys: 1_000, zones: 4, seed: 7, ..Default::default() });
        let cfg = ControllerConfig { max_decisions_per_round: 200, ..Default::default() };
        let last = HashMap::new();
        let input = RoundInput { now_ms: 0, step_ms: 300_000, last_decided: &last };
        let a = run_round_with(&view, input, &cfg, Search::Pruned);
        let b = run_round_with(&view, input, &cfg, Search::Exhaustive);
        let key = |o: &RoundOutcome| o.proposals.iter().map(|p| (p.virt, p.from, p.to, p.kind)).collect::<Vec<_>>();
        assert!(a.proposals.len() > 20, "the instance must exercise the round: {}", a.proposals.len());
        assert_eq!(key(&a), key(&b));
        assert!(a.proposals.iter().any(|p| p.kind == ProposalKind::Evacuation));
        assert!(a.proposals.iter().any(|p| p.kind == ProposalKind::MicroMigration));
        assert!(a.pairs_scored * 10 < b.pairs_scored, "pruning scored {} pairs of {}", a.pairs_scored, b.pairs_scored);
    }
}
