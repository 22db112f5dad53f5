//! The planner against consistent and rendezvous hashing on the classic
//! membership changes, for equal-sized items (keys, shards): how much moves,
//! and how balanced the result is. The theoretical minimum — the share of
//! items whose fair node changed, `sum over nodes of max(0, old share - new
//! share)` — is the reference.
//!
//! Each method starts from its own placement of the same items: the
//! hashes from their hash of the old membership, the planner from a
//! balanced one. The planner's target is *exact balance*: every node holds
//! `floor(items x weight / total weight)` or one more.

use super::hashing;
use super::model::{Item, Node, Objective, Problem};

/// A membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// One node joins 100.
    AddOne,
    /// One node of 100 leaves.
    RemoveOne,
    /// Ten nodes join 100.
    AddTen,
    /// One node of 100 doubles its capacity.
    DoubleOne,
}

impl Scenario {
    /// All of them.
    pub const ALL: [Scenario; 4] = [Scenario::AddOne, Scenario::RemoveOne, Scenario::AddTen, Scenario::DoubleOne];

    /// A phrase for reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::AddOne => "add 1 node to 100",
            Scenario::RemoveOne => "remove 1 node of 100",
            Scenario::AddTen => "add 10 nodes to 100",
            Scenario::DoubleOne => "double 1 node's capacity (of 100)",
        }
    }

    /// Node weights before and after (ids n0, n1, ...; a removed node has weight 0 after).
    pub fn weights(self) -> (Vec<f64>, Vec<f64>) {
        let before = vec![1.0; 100];
        let mut after = before.clone();
        match self {
            Scenario::AddOne => after.push(1.0),
            Scenario::RemoveOne => after[99] = 0.0,
            Scenario::AddTen => after.extend([1.0; 10]),
            Scenario::DoubleOne => after[0] = 2.0,
        }
        (before, after)
    }
}

/// One method's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Share of items moved.
    pub moved: f64,
    /// Most loaded node after, relative to its fair share.
    pub max_over_fair: f64,
    /// Least loaded node after, relative to its fair share.
    pub min_over_fair: f64,
}

/// The three methods and the reference on one scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Scenario.
    pub scenario: Scenario,
    /// Theoretical minimum share moved.
    pub minimum: f64,
    /// The least number of items any exactly balanced result must move from
    /// the planner's start (whole items: what the theory's shares round to).
    pub minimum_items: usize,
    /// Consistent hashing (`points` per unit of weight).
    pub consistent: Outcome,
    /// Rendezvous hashing.
    pub rendezvous: Outcome,
    /// The planner.
    pub planner: Outcome,
    /// The planner proved its plan optimal.
    pub planner_optimal: bool,
}

/// A hashing method: (node id, weight) pairs to the node of each key.
type HashFn<'a> = dyn Fn(&[(&str, f64)]) -> Vec<usize> + 'a;

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("n{i}")).collect()
}

fn outcome(before: &[usize], after: &[usize], weights: &[f64]) -> Outcome {
    let moved = before.iter().zip(after).filter(|(a, b)| a != b).count() as f64 / before.len() as f64;
    let total: f64 = weights.iter().sum();
    let mut load = vec![0usize; weights.len()];
    after.iter().for_each(|&p| load[p] += 1);
    let rel: Vec<f64> = load
        .iter()
        .zip(weights)
        .filter(|(_, w)| **w > 0.0)
        .map(|(&l, w)| l as f64 / (before.len() as f64 * w / total))
        .collect();
    Outcome {
        moved,
        max_over_fair: rel.iter().copied().fold(0.0, f64::max),
        min_over_fair: rel.iter().copied().fold(f64::INFINITY, f64::min),
    }
}

/// Runs one scenario with `items` items.
pub fn run(scenario: Scenario, items: usize, points: f64) -> Row {
    let (wb, wa) = scenario.weights();
    let names = ids(wa.len());
    let keys: Vec<String> = (0..items).map(|k| format!("key-{k}")).collect();
    let live = |w: &[f64]| -> Vec<(usize, f64)> {
        w.iter().enumerate().filter(|(_, w)| **w > 0.0).map(|(i, w)| (i, *w)).collect()
    };
    let hash_run = |f: &HashFn| -> Outcome {
        let place = |w: &[f64]| -> Vec<usize> {
            let l = live(w);
            let nodes: Vec<(&str, f64)> = l.iter().map(|&(i, w)| (names[i].as_str(), w)).collect();
            f(&nodes).into_iter().map(|k| l[k].0).collect()
        };
        outcome(&place(&wb), &place(&wa), &wa)
    };
    let consistent = hash_run(&|nodes| hashing::consistent(nodes, &keys, points));
    let rendezvous = hash_run(&|nodes| hashing::rendezvous(nodes, &keys));
    // The planner: balanced start, exactly balanced target: every node gets
    // floor(its share), and the items left over go to the nodes holding the
    // most now (which is what moves least).
    let start: Vec<usize> = (0..items).map(|k| k % wb.len()).collect();
    let total: f64 = wa.iter().sum();
    let mut cap: Vec<f64> = wa.iter().map(|w| (items as f64 * w / total).floor()).collect();
    let mut held = vec![0usize; wa.len()];
    start.iter().for_each(|&p| held[p] += 1);
    let mut extra = items - cap.iter().sum::<f64>() as usize;
    let mut order: Vec<usize> = (0..wa.len()).filter(|&p| wa[p] > 0.0).collect();
    order.sort_by_key(|&p| (std::cmp::Reverse(held[p] as i64 - cap[p] as i64), p));
    for p in order {
        if extra == 0 {
            break;
        }
        cap[p] += 1.0;
        extra -= 1;
    }
    let pb = Problem {
        nodes: wa
            .iter()
            .enumerate()
            .map(|(i, &w)| Node { id: names[i].clone(), cap: [cap[i], 0.0], accepts: w > 0.0, rack: None, zone: None })
            .collect(),
        items: start
            .iter()
            .enumerate()
            .map(|(k, &p)| Item {
                id: keys[k].clone(),
                demand: [1.0, 0.0],
                bytes: 1,
                current: Some(p),
                rule: None,
                pinned: None,
                fixed: false,
            })
            .collect(),
        rules: Vec::new(),
    };
    let minimum_items = (0..wa.len())
        .map(|p| held.get(p).copied().unwrap_or(0).saturating_sub(if wa[p] > 0.0 { cap[p] as usize } else { 0 }))
        .sum();
    let plan = super::plan(&pb, Objective::Moves).expect("balanced targets always fit");
    let planner = outcome(&start, &plan.assignment, &wa);
    let (sb, sa): (f64, f64) = (wb.iter().sum(), total);
    // Nodes that join had no share before, so only the old nodes can lose.
    let minimum = wb.iter().zip(wa.iter()).map(|(b, a)| (b / sb - a / sa).max(0.0)).sum::<f64>();
    Row { scenario, minimum, minimum_items, consistent, rendezvous, planner, planner_optimal: plan.optimal }
}

/// The comparison as a Markdown table.
pub fn markdown(rows: &[Row], items: usize, points: f64) -> String {
    let mut s = format!(
        "{items} equal-sized items on 100 nodes; consistent hashing with {points} points per node; \
         the planner balances every node to within one item of its fair share.\n\n\
         | change | theoretical minimum | planner moved | consistent hashing moved | rendezvous moved | load / fair share, min-max: planner | consistent | rendezvous |\n|---|---:|---:|---:|---:|---|---|---|\n"
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.2} % | {:.2} %{} | {:.2} % | {:.2} % | {:.2}-{:.2} | {:.2}-{:.2} | {:.2}-{:.2} |\n",
            r.scenario.name(),
            r.minimum * 100.0,
            r.planner.moved * 100.0,
            if r.planner_optimal { " (optimal)" } else { "" },
            r.consistent.moved * 100.0,
            r.rendezvous.moved * 100.0,
            r.planner.min_over_fair,
            r.planner.max_over_fair,
            r.consistent.min_over_fair,
            r.consistent.max_over_fair,
            r.rendezvous.min_over_fair,
            r.rendezvous.max_over_fair,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_planner_moves_the_minimum_and_stays_balanced() {
        for s in Scenario::ALL {
            let r = run(s, 10_000, 100.0);
            assert_eq!((r.planner.moved * 10_000.0).round() as usize, r.minimum_items, "{s:?}");
            // Within one item per node of the theoretical minimum (integer shares).
            assert!(r.planner.moved <= r.minimum + 100.0 / 10_000.0 + 1e-9, "{s:?}: {r:?}");
            assert!(r.planner.moved >= r.minimum - 100.0 / 10_000.0, "{s:?}: {r:?}");
            assert!(r.planner_optimal);
            assert!(r.planner.max_over_fair <= 1.0 + 110.0 / 10_000.0, "{s:?}: {r:?}");
            assert!(r.planner.min_over_fair >= 1.0 - 220.0 / 10_000.0, "{s:?}: {r:?}");
            // The hashes are not balanced to within one item.
            assert!(r.consistent.max_over_fair > 1.05 && r.rendezvous.max_over_fair > 1.05, "{s:?}: {r:?}");
        }
    }
}
