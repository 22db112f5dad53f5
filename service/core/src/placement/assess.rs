//! What the controller's rules and its cost function say about moving one
//! virtual node to each physical node: the explanation behind
//! `swarmctl affinity VNODE` and `GetAffinity(assess_moves)`.
//!
//! Like a TiKV PD filter, every refusal carries its reason rather than a
//! bool. The checks and the pricing are the round's own (`controller::price`,
//! `controller::cooling_until`, `controller::node_free`), so the explanation
//! cannot drift from what a round does. What it leaves out is the round's competition: the budget,
//! and other virtual nodes taking the same room first.

use super::affinity::{Infeasible, Limits, Score, score};
use super::controller::{self, ControllerConfig, RoundInput};
use super::cost::CostEstimate;
use super::search;
use super::view::ClusterView;
use crate::domain::PhysicalState;

/// Why a move there would be made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Motive {
    /// The source is draining: any feasible target will do.
    Evacuation,
    /// The source is at risk of overload and the move relieves it.
    Relief {
        /// The source's peak utilisation after the move.
        source_after: f64,
    },
    /// The affinity gain beats the threshold and pays for the move.
    Gain,
}

/// The verdict on one (virtual node, physical node) move.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// It runs there.
    Current,
    /// It runs nowhere: placement is the scheduler's first job, not a move.
    Unplaced,
    /// The target cannot take it.
    Infeasible(Infeasible),
    /// A migration of it is in flight.
    Migrating,
    /// It was decided or moved recently; no decision before `until_ms`.
    Cooling {
        /// End of the cooldown, ms since the epoch.
        until_ms: i64,
    },
    /// The source or the target already takes part in as many migrations as allowed.
    Busy {
        /// The busy node.
        node: String,
    },
    /// The affinity gain does not beat the hysteresis threshold.
    BelowThreshold {
        /// Gain.
        gain: f64,
        /// Threshold.
        threshold: f64,
    },
    /// Benefit minus cost does not reach the minimum.
    DoesNotPay {
        /// Benefit minus cost, affinity-seconds.
        net: f64,
        /// The minimum.
        min: f64,
    },
    /// The move passes every rule.
    Pays(Motive),
}

impl Verdict {
    /// Whether a round would make this move (budget and competition aside).
    pub fn pays(&self) -> bool {
        matches!(self, Verdict::Pays(_))
    }
}

/// One assessed move.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Target physical node index.
    pub to: usize,
    /// Affinity there.
    pub score: Score,
    /// Score there minus score where it runs (0 when unplaced).
    pub gain: f64,
    /// The cost function's figures; `None` where no move is priced
    /// (current, unplaced, infeasible, migrating).
    pub cost: Option<CostEstimate>,
    /// The verdict.
    pub verdict: Verdict,
    /// One sentence for people.
    pub explanation: String,
}

/// Every target of virtual node `vi`, in physical-node order, and the one a
/// round would move it to: the feasible target with the largest net benefit
/// (lowest index on a tie), when that move pays.
pub fn assess(
    view: &ClusterView,
    vi: usize,
    input: &RoundInput<'_>,
    cfg: &ControllerConfig,
) -> (Vec<Assessment>, Option<usize>) {
    let limits: Limits = cfg.limits();
    let v = &view.virt[vi];
    let from_score = v.placement.map(|from| score(view, vi, from, &cfg.weights, &limits));
    let out: Vec<Assessment> = (0..view.phys.len())
        .map(|pi| {
            let s = score(view, vi, pi, &cfg.weights, &limits);
            one(view, vi, pi, s, from_score.as_ref(), input, cfg)
        })
        .collect();
    // The round's choice, by the round's own search: the largest net
    // benefit, relief included when the source is at risk; a move off a
    // node that is neither draining nor at risk must also beat the gain
    // threshold, as in the micro-migration phase.
    let choice = v.placement.zip(from_score.as_ref()).and_then(|(from, fs)| {
        let draining = view.phys[from].state == PhysicalState::Draining;
        let relief = !draining && controller::at_risk(view, from, cfg);
        let floor = if draining || relief { f64::NEG_INFINITY } else { fs.score + cfg.gain_threshold };
        let penalty = controller::target_penalty(view, vi, from, relief, input, cfg);
        let (to, _) = search::best_exhaustive(view, vi, &cfg.weights, &limits, floor, &penalty)?;
        out[to].verdict.pays().then_some(to)
    });
    (out, choice)
}

fn one(
    view: &ClusterView,
    vi: usize,
    pi: usize,
    s: Score,
    from_score: Option<&Score>,
    input: &RoundInput<'_>,
    cfg: &ControllerConfig,
) -> Assessment {
    let v = &view.virt[vi];
    let mk = |verdict: Verdict, gain: f64, cost: Option<CostEstimate>, explanation: String, s: Score| Assessment {
        to: pi,
        score: s,
        gain,
        cost,
        verdict,
        explanation,
    };
    let (Some(from), Some(fs)) = (v.placement, from_score) else {
        return mk(Verdict::Unplaced, 0.0, None, format!("{} runs nowhere; placing it is not a move", v.id), s);
    };
    let gain = s.score - fs.score;
    if v.migrating {
        // The view already places it at its target (whose room is reserved).
        let text = format!("{} is migrating to {}; nothing is decided until that ends", v.id, view.phys[from].id);
        return mk(Verdict::Migrating, gain, None, text, s);
    }
    if pi == from {
        return mk(Verdict::Current, 0.0, None, format!("{} runs here", v.id), s);
    }
    if let Some(r) = &s.infeasible {
        let text = format!("cannot go there: {r}");
        return mk(Verdict::Infeasible(r.clone()), gain, None, text, s);
    }
    let draining = view.phys[from].state == PhysicalState::Draining;
    if !draining && let Some(until_ms) = controller::cooling_until(view, vi, input, cfg) {
        let mins = (until_ms - input.now_ms) as f64 / 60_000.0;
        let text = format!("in cooldown for {mins:.0} more min (decided or moved recently)");
        return mk(Verdict::Cooling { until_ms }, gain, None, text, s);
    }
    for node in [from, pi] {
        if !controller::node_free(view, node, cfg) {
            let id = view.phys[node].id.to_string();
            let text =
                format!("{id} already takes part in {} migration(s), the most allowed", cfg.max_in_flight_per_node);
            return mk(Verdict::Busy { node: id }, gain, None, text, s);
        }
    }
    let terms = |c: &CostEstimate| {
        format!(
            "benefit {:.0} vs cost {:.0} affinity-s ({}, transfer {:.1} s + overhead {:.0} s)",
            c.benefit,
            c.cost,
            view.node_distance(from, pi).name(),
            c.transfer_seconds,
            c.overhead_seconds
        )
    };
    if draining {
        let c = controller::price(view, vi, from, pi, gain, false, input, cfg).cost;
        let text = format!("{} is draining: evacuation ignores threshold and cost; {}", view.phys[from].id, terms(&c));
        return mk(Verdict::Pays(Motive::Evacuation), gain, Some(c), text, s);
    }
    let min = cfg.cost.min_net_benefit;
    if controller::at_risk(view, from, cfg) {
        let p = controller::price(view, vi, from, pi, gain, true, input, cfg);
        if p.relief > 0.0 && p.cost.net() > min {
            let text = format!(
                "{} is at risk of overload; moving takes it to {:.0}% at peak; {}: pays",
                view.phys[from].id,
                p.after * 100.0,
                terms(&p.cost)
            );
            return mk(Verdict::Pays(Motive::Relief { source_after: p.after }), gain, Some(p.cost), text, s);
        }
    }
    let c = controller::price(view, vi, from, pi, gain, false, input, cfg).cost;
    if gain <= cfg.gain_threshold {
        let text = format!("gain {gain:+.3} does not beat the threshold {:.2}", cfg.gain_threshold);
        return mk(Verdict::BelowThreshold { gain, threshold: cfg.gain_threshold }, gain, Some(c), text, s);
    }
    if c.net() <= min {
        let text = format!("{}: net {:.0} does not reach {min:.0}", terms(&c), c.net());
        return mk(Verdict::DoesNotPay { net: c.net(), min }, gain, Some(c), text, s);
    }
    let text = format!("gain {gain:+.3} > threshold {:.2}; {}: pays", cfg.gain_threshold, terms(&c));
    mk(Verdict::Pays(Motive::Gain), gain, Some(c), text, s)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::domain::NodeId;
    use crate::placement::affinity::ObservedUsage;
    use crate::placement::controller::run_round;
    use crate::placement::synthetic::{SyntheticParams, synthetic_view};
    use crate::placement::testing::topology;

    fn input(last: &HashMap<NodeId, i64>) -> RoundInput<'_> {
        RoundInput { now_ms: 1_000_000, step_ms: 300_000, last_decided: last }
    }

    #[test]
    fn each_rule_gives_its_verdict() {
        let t = topology(
            &[("hot", 10.0, "z", "r1"), ("cold", 10.0, "z", "r1"), ("full", 4.0, "z", "r2")],
            &[("a", 3.0, "hot"), ("b", 3.0, "hot"), ("c", 3.0, "hot"), ("f", 3.5, "full")],
        );
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let cfg = ControllerConfig::default();
        let last = HashMap::new();
        let vi = view.virt.iter().position(|v| v.id.as_str() == "a").unwrap();
        let idx = |id: &str| view.phys.iter().position(|p| p.id.as_str() == id).unwrap();
        let (all, choice) = assess(&view, vi, &input(&last), &cfg);
        assert_eq!(all.len(), 3);
        assert_eq!(all[idx("hot")].verdict, Verdict::Current);
        assert!(matches!(all[idx("full")].verdict, Verdict::Infeasible(Infeasible::NoCpuRoom { .. })));
        // hot is at 90 %: moving to cold relieves it and pays.
        let cold = &all[idx("cold")];
        assert!(matches!(cold.verdict, Verdict::Pays(_)), "{cold:?}");
        assert_eq!(choice, Some(idx("cold")));
        // In cooldown: held, with its end.
        let last: HashMap<NodeId, i64> = [(NodeId::parse("a").unwrap(), 900_000)].into();
        let (all, choice) = assess(&view, vi, &input(&last), &cfg);
        assert_eq!(all[idx("cold")].verdict, Verdict::Cooling { until_ms: 900_000 + cfg.cooldown_ms });
        assert_eq!(choice, None);
        // A threshold of 1 turns micro-migrations off: balanced nodes give "below threshold".
        let t = topology(&[("x", 10.0, "", ""), ("y", 10.0, "", "")], &[("a", 1.0, "x"), ("b", 1.0, "y")]);
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let last = HashMap::new();
        let (all, choice) = assess(&view, 0, &input(&last), &cfg);
        assert!(matches!(all[1].verdict, Verdict::BelowThreshold { .. }), "{:?}", all[1]);
        assert_eq!(choice, None);
        // A clear gain pays for a stateless node; with 1 TiB of state to
        // move between unlabelled nodes (remote) it does not.
        let mut t = topology(&[("x", 10.0, "", ""), ("y", 10.0, "", "")], &[("a", 6.0, "x"), ("b", 1.0, "x")]);
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let b = view.virt.iter().position(|v| v.id.as_str() == "b").unwrap();
        let (all, choice) = assess(&view, b, &input(&last), &cfg);
        assert_eq!(all[1].verdict, Verdict::Pays(Motive::Gain), "{:?}", all[1]);
        assert_eq!(choice, Some(1));
        for v in t.virtual_nodes.values_mut() {
            v.state_size_bytes = 1 << 40;
        }
        let view = ClusterView::build(&t, &ObservedUsage::default());
        let (all, choice) = assess(&view, b, &input(&last), &cfg);
        assert!(matches!(all[1].verdict, Verdict::DoesNotPay { .. }), "{:?}", all[1]);
        assert!(all[1].explanation.contains("remote"), "{}", all[1].explanation);
        assert_eq!(choice, None);
    }

    /// The explanation agrees with the round: whenever a round proposes a
    /// virtual node's move, the assessment of that virtual node (on the
    /// round's starting view) names the same target as its choice, for every
    /// first move of a source or a micro-migration taken before any other.
    #[test]
    fn the_choice_is_what_a_round_does_first() {
        for seed in 0..40u64 {
            let view =
                synthetic_view(&SyntheticParams { virt: 72, phys: 12, rack_size: 4, seed, ..Default::default() });
            let cfg = ControllerConfig { max_decisions_per_round: 1, ..Default::default() };
            let last = HashMap::new();
            let inp = input(&last);
            let out = run_round(&view, inp, &cfg);
            if let Some(p) = out.proposals.first() {
                let (all, choice) = assess(&view, p.virt, &inp, &cfg);
                assert!(all[p.to].verdict.pays(), "seed {seed}: {:?} vs {}", all[p.to], p.reason);
                assert_eq!(choice, Some(p.to), "seed {seed}: {}", p.reason);
            }
        }
    }
}
