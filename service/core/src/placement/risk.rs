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
//! - `risk(S)` = the share of reference steps at which the nodes of S
//!   *together* would have passed `threshold` × capacity (so co-occurrence
//!   is kept: two nodes that spike at different times add no risk). The
//!   reference steps are half the coming time of day (the next
//!   `lookahead`) on each of the previous `days` days, and half the last
//!   day, equally weighted within each half: the daily pattern and the
//!   recent level both count.
//! - A move of v from S to T is expected to save
//!   `hold × (risk(S) + risk(T) − risk(S − v) − risk(T + v))` overloaded
//!   intervals over the `hold` it is meant to stand (at least the cooldown,
//!   so it cannot be undone sooner), and it is taken when that beats
//!   `migration_price` (the objective: overload intervals plus a price per
//!   migration), best net saving first, at most `max_moves` per round.
//! - The history must be clear about it: counted on the reference steps,
//!   the overloads the move would have removed, net of those it would have
//!   added, must pass a sign test at `confidence_z`. Without it a
//!   difference of one spike looks like a day's saving, and the rule
//!   chases noise (measured on the shared trace: 455 migrations for no
//!   fewer overloads than the reactive baseline).
//!
//! The settings are in units an operator can reason about (hours, days, an
//! exchange rate between overloads and migrations), not thresholds fitted
//! to a trace. Pure: history comes in, proposals come out.

use serde::{Deserialize, Serialize};

use super::controller::RoundInput;
use super::descheduler::may_move;
use super::view::ClusterView;
use crate::domain::PhysicalState;

/// Settings of the risk-aware rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// Utilisation above which an interval counts as overloaded. (0, 2].
    pub threshold: f64,
    /// Earlier days whose same time of day is consulted.
    pub days: usize,
    /// How much of the coming time of day is consulted on each earlier day, ms.
    pub lookahead_ms: i64,
    /// How long a move is meant to stand (the expected saving is counted
    /// over this), ms.
    pub hold_ms: i64,
    /// Overloaded intervals one migration is worth: a move is made only
    /// when it is expected to save more than this.
    pub migration_price: f64,
    /// How sure the history must be: the reference steps a move turns from
    /// overloaded to not, net of the reverse, must pass this many standard
    /// deviations of a sign test (2: about 95 % one-sided).
    pub confidence_z: f64,
    /// Moves per round.
    pub max_moves: usize,
    /// A moved virtual node is not moved again for this long, ms.
    pub cooldown_ms: i64,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            threshold: 0.9,
            days: 7,
            lookahead_ms: 3_600_000,
            hold_ms: 86_400_000,
            migration_price: 1.0,
            confidence_z: 2.0,
            max_moves: 1,
            cooldown_ms: 86_400_000,
        }
    }
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
        if self.days == 0 || self.days > 28 {
            return bad("days", "1..=28", self.days as f64);
        }
        if self.lookahead_ms <= 0 {
            return bad("lookahead", "> 0", self.lookahead_ms as f64);
        }
        if self.hold_ms <= 0 {
            return bad("hold", "> 0", self.hold_ms as f64);
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
        Ok(())
    }

    /// History steps the rule reads at steps of `step_ms`: the earlier days
    /// plus the coming time of day on the first of them.
    pub fn history_steps(&self, step_ms: i64) -> usize {
        let day = day_steps(step_ms);
        self.days * day + self.lookahead_steps(step_ms)
    }

    fn lookahead_steps(&self, step_ms: i64) -> usize {
        (self.lookahead_ms / step_ms.max(1)).max(1) as usize
    }
}

fn day_steps(step_ms: i64) -> usize {
    (86_400_000 / step_ms.max(1)).max(1) as usize
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
    /// Overloaded intervals it is expected to save over the hold.
    pub expected_saving: f64,
}

/// The reference steps, as offsets back from now (0 = the latest step),
/// with their weights (summing to 1).
fn reference_steps(cfg: &RiskConfig, step_ms: i64, len: usize) -> Vec<(usize, f64)> {
    let day = day_steps(step_ms);
    let ahead = cfg.lookahead_steps(step_ms);
    let mut tod = Vec::new();
    for d in 1..=cfg.days {
        for k in 1..=ahead {
            // The step k ahead of now, d days ago, is d·day − k back.
            if let Some(back) = (d * day).checked_sub(k)
                && back < len
            {
                tod.push(back);
            }
        }
    }
    let recent: Vec<usize> = (0..day.min(len)).collect();
    let mut out = Vec::with_capacity(tod.len() + recent.len());
    let halves = usize::from(!tod.is_empty()) + usize::from(!recent.is_empty());
    for part in [tod, recent] {
        if part.is_empty() {
            continue;
        }
        let w = 1.0 / (halves as f64 * part.len() as f64);
        out.extend(part.into_iter().map(|b| (b, w)));
    }
    out
}

/// One round of the rule. `history[vi]` is virtual node `vi`'s CPU use in
/// cores at consecutive steps of `input.step_ms`, oldest first, ending at
/// the latest step (missing points NaN, read as 0); `None` where none is
/// known, read as its demand now throughout. Every given history must have
/// the same length; with fewer than a day's steps nothing is proposed.
pub fn propose(
    view: &ClusterView,
    history: &[Option<&[f64]>],
    input: RoundInput<'_>,
    cfg: &RiskConfig,
) -> Vec<RiskMove> {
    let len = history.iter().flatten().map(|h| h.len()).max().unwrap_or(0);
    if len < day_steps(input.step_ms) || history.len() != view.virt.len() {
        return Vec::new();
    }
    let refs = reference_steps(cfg, input.step_ms, len);
    let at = |vi: usize, back: usize| -> f64 {
        match history[vi] {
            Some(h) if h.len() == len => {
                let x = h[len - 1 - back];
                if x.is_finite() { x.max(0.0) } else { 0.0 }
            }
            _ => view.virt[vi].demand.cpu_cores,
        }
    };
    let n = view.phys.len();
    let limit: Vec<f64> = view.phys.iter().map(|p| cfg.threshold * p.capacity.cpu_cores).collect();
    // Each host's summed load at each reference step, and its members.
    let mut sums = vec![vec![0.0f64; refs.len()]; n];
    let mut on: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (vi, v) in view.virt.iter().enumerate() {
        let Some(p) = v.placement else { continue };
        on[p].push(vi);
        for (r, &(back, _)) in refs.iter().enumerate() {
            sums[p][r] += at(vi, back);
        }
    }
    let risk_with = |sum: &[f64], lim: f64, v: Option<(usize, f64)>| -> f64 {
        refs.iter()
            .zip(sum)
            .filter(|((back, _), s)| {
                let extra = v.map_or(0.0, |(vi, sign)| sign * at(vi, *back));
                *s + extra > lim
            })
            .map(|((_, w), _)| w)
            .sum()
    };
    let hold = input.step_ms.max(1) as f64;
    let hold = cfg.hold_ms.max(cfg.cooldown_ms) as f64 / hold;
    let mut risk: Vec<f64> = (0..n).map(|p| risk_with(&sums[p], limit[p], None)).collect();
    let mut load_now: Vec<f64> = view.phys.iter().map(|p| p.load.cpu_cores).collect();
    let mut moved = vec![false; view.virt.len()];
    let mut out = Vec::new();
    while out.len() < cfg.max_moves {
        let mut best: Option<RiskMove> = None;
        for s in (0..n).filter(|&s| risk[s] > 0.0) {
            for &vi in &on[s] {
                let v = &view.virt[vi];
                if moved[vi] || !may_move(v, &input, cfg.cooldown_ms) {
                    continue;
                }
                let after_s = risk_with(&sums[s], limit[s], Some((vi, -1.0)));
                for d in 0..n {
                    // Never onto a node that would be over the threshold now.
                    if d == s
                        || view.phys[d].state != PhysicalState::Active
                        || load_now[d] + v.demand.cpu_cores > limit[d]
                    {
                        continue;
                    }
                    let after_d = risk_with(&sums[d], limit[d], Some((vi, 1.0)));
                    let saving = hold * (risk[s] + risk[d] - after_s - after_d);
                    if saving <= cfg.migration_price || best.is_some_and(|b| saving <= b.expected_saving) {
                        continue;
                    }
                    // Evidence: reference steps the move turns from
                    // overloaded to not (on either host), against the
                    // reverse; a sign test keeps a difference of one or two
                    // spikes from passing for a trend.
                    let (mut gained, mut lost) = (0.0f64, 0.0f64);
                    for (r, &(back, _)) in refs.iter().enumerate() {
                        let x = at(vi, back);
                        let before = u8::from(sums[s][r] > limit[s]) + u8::from(sums[d][r] > limit[d]);
                        let after = u8::from(sums[s][r] - x > limit[s]) + u8::from(sums[d][r] + x > limit[d]);
                        match before.cmp(&after) {
                            std::cmp::Ordering::Greater => gained += f64::from(before - after),
                            std::cmp::Ordering::Less => lost += f64::from(after - before),
                            std::cmp::Ordering::Equal => {}
                        }
                    }
                    if gained - lost < cfg.confidence_z * (gained + lost).sqrt() {
                        continue;
                    }
                    best = Some(RiskMove {
                        virt: vi,
                        from: s,
                        to: d,
                        source_risk: (risk[s], after_s),
                        target_risk: (risk[d], after_d),
                        expected_saving: saving,
                    });
                }
            }
        }
        let Some(m) = best else { break };
        for (r, &(back, _)) in refs.iter().enumerate() {
            let x = at(m.virt, back);
            sums[m.from][r] -= x;
            sums[m.to][r] += x;
        }
        load_now[m.from] -= view.virt[m.virt].demand.cpu_cores;
        load_now[m.to] += view.virt[m.virt].demand.cpu_cores;
        on[m.from].retain(|&x| x != m.virt);
        on[m.to].push(m.virt);
        (risk[m.from], risk[m.to]) = (m.source_risk.1, m.target_risk.1);
        moved[m.virt] = true;
        out.push(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NodeId;
    use crate::placement::testing::topology;
    use crate::placement::view::ViewInputs;
    use std::collections::HashMap;

    const STEP: i64 = 300_000;

    #[test]
    fn references_cover_the_coming_hour_of_earlier_days_and_the_last_day() {
        let cfg = RiskConfig::default();
        let refs = reference_steps(&cfg, STEP, cfg.history_steps(STEP));
        let total: f64 = refs.iter().map(|r| r.1).sum();
        assert!((total - 1.0).abs() < 1e-9);
        // 7 days × 12 steps of the coming hour, and the 288 steps of the last day.
        assert_eq!(refs.len(), 7 * 12 + 288);
        assert!(refs.contains(&(288 - 1, 0.5 / 84.0)) && refs.contains(&(7 * 288 - 12, 0.5 / 84.0)));
        assert_eq!(cfg.history_steps(STEP), 7 * 288 + 12);
    }

    /// Histories in view order from `(id, series)`.
    fn histories<'a>(view: &ClusterView, series: &'a HashMap<&str, Vec<f64>>) -> Vec<Option<&'a [f64]>> {
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
        assert!(propose(&view, &histories(&view, &calm), input, &cfg).is_empty());
        // Spikes of 5: h0 is over one step in ten; a or b goes to h1, where
        // its spikes never meet c's.
        let series: HashMap<&str, Vec<f64>> = [("a", spiky(5.0, 0)), ("b", spiky(5.0, 0)), ("c", spiky(5.0, 5))].into();
        let history = histories(&view, &series);
        let moves = propose(&view, &history, input, &cfg);
        assert_eq!(moves.len(), 1, "{moves:?}");
        let m = moves[0];
        assert_eq!((view.phys[m.from].id.as_str(), view.phys[m.to].id.as_str()), ("h0", "h1"));
        assert!(["a", "b"].contains(&view.virt[m.virt].id.as_str()));
        assert!((m.source_risk.0 - 0.1).abs() < 0.02 && m.source_risk.1 == 0.0 && m.target_risk == (0.0, 0.0), "{m:?}");
        // Saved over a day of 288 steps: about 29 overloaded intervals.
        assert!((m.expected_saving - 288.0 * m.source_risk.0).abs() < 1e-9, "{m:?}");
        // If c spiked with them, moving one over would only shift the risk: nothing moves.
        let together: HashMap<&str, Vec<f64>> =
            [("a", spiky(5.0, 0)), ("b", spiky(5.0, 0)), ("c", spiky(5.0, 0))].into();
        assert!(propose(&view, &histories(&view, &together), input, &cfg).is_empty());
        // A price above the saving stops it, and so does the cooldown.
        let dear = RiskConfig { migration_price: m.expected_saving + 1.0, ..cfg };
        assert!(propose(&view, &history, input, &dear).is_empty());
        let cooled: HashMap<NodeId, i64> = view.virt.iter().map(|v| (v.id.clone(), input.now_ms - 1)).collect();
        assert!(propose(&view, &history, RoundInput { last_decided: &cooled, ..input }, &cfg).is_empty());
        // Less than a day of history: nothing.
        let short: Vec<Option<&[f64]>> = history.iter().map(|h| h.map(|s| &s[..100])).collect();
        assert!(propose(&view, &short, input, &cfg).is_empty());
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(RiskConfig::default().validate().is_ok());
        let e = RiskConfig { threshold: 0.0, ..Default::default() }.validate().unwrap_err();
        assert_eq!(e.to_string(), "threshold must be in (0, 2], got 0");
        assert!(RiskConfig { days: 0, ..Default::default() }.validate().is_err());
        assert!(RiskConfig { migration_price: f64::NAN, ..Default::default() }.validate().is_err());
    }
}
