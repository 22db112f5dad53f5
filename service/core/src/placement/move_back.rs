//! Moving a virtual node back when its last move hurt its service.
//!
//! Why a rule of its own: a measured outcome is evidence no forecast or
//! affinity score has (the virtual node's latency got worse *there*), so the
//! move back does not have to beat the gain threshold. It does go through
//! everything else a move goes through: the target must be feasible (room,
//! not draining, anti-affinity), both nodes must have a migration slot, the
//! virtual node must be out of its cooldown and not moving, the round's
//! budget must have room, and the move is priced by the same cost function,
//! so its decision carries the cost like any other.
//!
//! Which moves are candidates is decided from the migration book
//! ([`candidates`]): the virtual node's latest migration completed, its
//! outcome says the service got worse, it still runs on that migration's
//! target, and no move back of it was decided within the quiet period. A
//! move back is itself a migration, so it becomes the latest one: the hurt
//! move is proposed back at most once, and a move back that hurts in turn
//! is not reversed again within the period (no ping-pong).

use std::collections::HashMap;

use crate::domain::{NodeId, Topology};
use crate::migration::book::Book;
use crate::migration::machine::{Migration, Phase};
use crate::placement::affinity::{ClusterView, score};
use crate::placement::controller::{self, ControllerConfig, Proposal, ProposalKind, RoundInput};

/// A move the book says should be reversed.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// The virtual node.
    pub virt: NodeId,
    /// Where it came from (the target of the move back).
    pub to: NodeId,
    /// The decision whose move hurt.
    pub reverses: u64,
    /// The outcome's summary.
    pub why: String,
}

/// Hurt moves to reverse at `now_ms`: see the module doc. `quiet_ms` is the
/// period after a move back in which the same virtual node is not moved
/// back again.
pub fn candidates(book: &Book, topo: &Topology, now_ms: i64, quiet_ms: i64) -> Vec<Wanted> {
    let mut latest: HashMap<&str, &Migration> = HashMap::new();
    let mut last_back: HashMap<&str, i64> = HashMap::new();
    for m in book.all() {
        latest.insert(m.virt.as_str(), m);
        if m.reverses.is_some() {
            let at = m.history.first().map_or(0, |t| t.at_ms);
            let e = last_back.entry(m.virt.as_str()).or_insert(at);
            *e = (*e).max(at);
        }
    }
    let mut out: Vec<Wanted> = latest
        .into_values()
        .filter(|m| m.phase == Phase::Completed)
        .filter_map(|m| {
            let o = m.outcome.as_ref().filter(|o| o.service_worse)?;
            let placed = topo.virtual_nodes.get(m.virt.as_str())?.placement.as_ref()?;
            if placed.as_str() != m.to {
                return None;
            }
            if last_back.get(m.virt.as_str()).is_some_and(|&at| now_ms - at < quiet_ms) {
                return None;
            }
            Some(Wanted {
                virt: NodeId::parse(&m.virt).ok()?,
                to: NodeId::parse(&m.from).ok()?,
                reverses: m.decision_sequence,
                why: o.summary.clone(),
            })
        })
        .collect();
    out.sort_by_key(|w| w.reverses);
    out
}

/// What became of one wanted move back this round.
#[derive(Debug, Clone)]
pub enum Attempt {
    /// Proposed; the decision reverses `reverses`.
    Proposed {
        /// The proposal.
        proposal: Box<Proposal>,
        /// The decision it reverses.
        reverses: u64,
    },
    /// Not this round, and why (the filter's reason).
    Held {
        /// The virtual node.
        virt: NodeId,
        /// Why.
        reason: String,
    },
}

/// Proposals moving each of `wanted` back, on `view` after the round's own
/// `taken` proposals, within the round's remaining budget.
pub fn proposals(
    view: &ClusterView,
    taken: &[Proposal],
    wanted: &[Wanted],
    input: RoundInput<'_>,
    cfg: &ControllerConfig,
) -> Vec<Attempt> {
    let mut view = view.clone();
    for p in taken {
        view.apply_move(p.virt, p.to);
    }
    let mut budget = cfg.max_decisions_per_round.saturating_sub(taken.len());
    let limits = cfg.limits();
    wanted
        .iter()
        .map(|w| {
            let held = |reason: String| Attempt::Held { virt: w.virt.clone(), reason };
            let Ok(vi) = view.virt.binary_search_by(|v| v.id.cmp(&w.virt)) else {
                return held("it is not in the topology".into());
            };
            let Some(&to) = view.phys_index.get(&w.to) else {
                return held(format!("{} is no longer a physical node", w.to));
            };
            let v = &view.virt[vi];
            let Some(from) = v.placement else { return held("it runs nowhere".into()) };
            if v.migrating {
                return held("it is migrating".into());
            }
            if v.pinned.is_some() {
                return held("it is pinned".into());
            }
            if let Some(until) = controller::cooling_until(&view, vi, &input, cfg) {
                return held(format!("in cooldown for {:.0} more min", (until - input.now_ms) as f64 / 60_000.0));
            }
            for node in [from, to] {
                if !controller::node_free(&view, node, cfg) {
                    return held(format!("{} has no free migration slot", view.phys[node].id));
                }
            }
            let (from_score, to_score) =
                (score(&view, vi, from, &cfg.weights, &limits), score(&view, vi, to, &cfg.weights, &limits));
            if let Some(r) = &to_score.infeasible {
                return held(format!("cannot go back to {}: {r}", w.to));
            }
            if budget == 0 {
                return held("the round's decision budget is spent".into());
            }
            let gain = to_score.score - from_score.score;
            let cost = controller::price(&view, vi, from, to, gain, false, &input, cfg).cost;
            let reason = format!(
                "moving {} back to {}: its move to {} (decision #{}) hurt: {}; {} would be at {:.0}% CPU; transfer {:.1} s + overhead {:.0} s ({})",
                w.virt,
                w.to,
                view.phys[from].id,
                w.reverses,
                w.why,
                w.to,
                to_score.projected_cpu_util * 100.0,
                cost.transfer_seconds,
                cost.overhead_seconds,
                view.node_distance(from, to).name(),
            );
            let proposal = Proposal {
                virt: vi,
                from,
                to,
                from_score,
                to_score,
                kind: ProposalKind::MoveBack,
                cost,
                expected_overload_step: None,
                source_peak: None,
                reason,
            };
            if !proposal.is_finite() {
                return held("a number in the move is not finite".into());
            }
            view.apply_move(vi, to);
            budget -= 1;
            Attempt::Proposed { proposal: Box::new(proposal), reverses: w.reverses }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::machine::Transition;
    use crate::outcome::{Outcome, Side, Verdict};
    use crate::placement::affinity::ObservedUsage;
    use crate::placement::testing::{id, topology};

    fn hurt() -> Outcome {
        Outcome {
            kind: crate::decision::DecisionKind::MicroMigration,
            cutover_at_ms: 10,
            window_ms: 10,
            measured_at_ms: 30,
            before: Side::default(),
            after: Side::default(),
            source_peak_without_move: None,
            overload_prevented: false,
            service_worse: true,
            predicted_relief: None,
            realised_relief: None,
            verdict: Verdict::Hurt,
            summary: "latency rose 100 %".into(),
        }
    }

    fn completed(seq: u64, virt: &str, from: &str, to: &str, at: i64) -> Migration {
        let mut m = Migration::propose(format!("m{seq}"), seq, virt.into(), from.into(), to.into(), at);
        m.phase = Phase::Completed;
        m.history.push(Transition { phase: Phase::Completed, at_ms: at + 5, cause: "done".into() });
        m
    }

    #[test]
    fn a_hurt_move_is_wanted_back_once_and_a_move_back_is_not_reversed_in_the_quiet_period() {
        let topo = topology(&[("a", 10.0, "", ""), ("b", 10.0, "", "")], &[("v", 1.0, "b")]);
        let mut m1 = completed(1, "v", "a", "b", 0);
        m1.outcome = Some(hurt());
        let book = Book::new(vec![m1.clone()]).unwrap();
        let w = candidates(&book, &topo, 100, 1000);
        assert_eq!(w, vec![Wanted { virt: id("v"), to: id("a"), reverses: 1, why: "latency rose 100 %".into() }]);
        // Only where it still runs on the hurt move's target.
        let elsewhere = topology(&[("a", 10.0, "", ""), ("b", 10.0, "", "")], &[("v", 1.0, "a")]);
        assert!(candidates(&book, &elsewhere, 100, 1000).is_empty());
        // Once a move back is proposed it is the latest migration: no second one.
        let mut back = Migration::propose("m2".into(), 2, "v".into(), "b".into(), "a".into(), 50);
        back.reverses = Some(1);
        assert!(candidates(&Book::new(vec![m1.clone(), back.clone()]).unwrap(), &topo, 100, 1000).is_empty());
        // A later move to b that hurts again is not reversed within the quiet period...
        back.phase = Phase::Completed;
        let mut m3 = completed(3, "v", "a", "b", 200);
        m3.outcome = Some(hurt());
        let book = Book::new(vec![m1, back, m3]).unwrap();
        assert!(candidates(&book, &topo, 900, 1000).is_empty());
        // ...and is after it.
        assert_eq!(candidates(&book, &topo, 1100, 1000).len(), 1);
    }

    fn input(last: &HashMap<NodeId, i64>) -> RoundInput<'_> {
        RoundInput { now_ms: 1_000_000, step_ms: 300_000, last_decided: last }
    }

    #[test]
    fn the_move_back_goes_through_cooldown_room_and_budget() {
        let topo = topology(&[("a", 10.0, "", ""), ("b", 10.0, "", "")], &[("v", 2.0, "b"), ("w", 9.0, "b")]);
        let view = ClusterView::build(&topo, &ObservedUsage::default());
        let wanted = [Wanted { virt: id("v"), to: id("a"), reverses: 1, why: "latency rose 100 %".into() }];
        let cfg = ControllerConfig::default();
        let mut last = HashMap::new();
        let r = proposals(&view, &[], &wanted, input(&last), &cfg);
        let Attempt::Proposed { proposal, reverses } = &r[0] else { panic!("{r:?}") };
        assert_eq!((view.phys[proposal.to].id.as_str(), *reverses, proposal.kind), ("a", 1, ProposalKind::MoveBack));
        assert!(proposal.reason.contains("hurt: latency rose 100 %") && proposal.reason.contains("decision #1"));
        assert!(proposal.cost.transfer_seconds >= 0.0);
        // Cooling: held with the reason.
        last.insert(id("v"), 999_000);
        let r = proposals(&view, &[], &wanted, input(&last), &cfg);
        assert!(matches!(&r[0], Attempt::Held { reason, .. } if reason.contains("cooldown")), "{r:?}");
        // No room on the way back: held.
        let full = topology(&[("a", 10.0, "", ""), ("b", 10.0, "", "")], &[("v", 2.0, "b"), ("x", 9.0, "a")]);
        let view = ClusterView::build(&full, &ObservedUsage::default());
        let none = HashMap::new();
        let r = proposals(&view, &[], &wanted, input(&none), &cfg);
        assert!(matches!(&r[0], Attempt::Held { reason, .. } if reason.contains("cannot go back")), "{r:?}");
        // No budget left.
        let view = ClusterView::build(&topo, &ObservedUsage::default());
        let cfg = ControllerConfig { max_decisions_per_round: 0, ..Default::default() };
        let r = proposals(&view, &[], &wanted, input(&none), &cfg);
        assert!(matches!(&r[0], Attempt::Held { reason, .. } if reason.contains("budget")), "{r:?}");
    }
}
