//! Reconfiguration with minimal movement: given the current placement and
//! a new configuration (nodes joining, leaving, draining or changing
//! capacity; groups and their spreading rules), a valid placement that moves
//! as few virtual nodes (or bytes) as possible.
//!
//! Pure, like [`crate::placement`]: no IO, no clock.
//!
//! - [`model`]: the problem, the plan, validity, infeasibility messages;
//! - [`flow`]: min-cost flow (successive shortest paths);
//! - [`unit`]: the exact planner when all movable virtual nodes have the
//!   same size (min-cost flow);
//! - [`sized`]: the planner for mixed sizes (bin packing is NP-hard): best
//!   fit plus a proven lower bound, so each plan says whether it is optimal;
//! - [`hashing`]: consistent and rendezvous hashing, the baselines the
//!   planner is compared with; [`compare`]: that comparison;
//! - [`synthetic`]: large seeded problems for benchmarks;
//! - [`record`]: group policies and applied plans as the store keeps them.

// Loops over the two resource dimensions index several arrays at once.
#![allow(clippy::needless_range_loop)]

pub mod compare;
pub mod flow;
pub mod hashing;
pub mod model;
pub mod record;
pub mod sized;
pub mod synthetic;
pub mod unit;

pub use model::{Domain, Infeasible, Item, Move, Node, Objective, Plan, Problem, Reason, Rule};

/// Plans `pb` under `obj`: refuses what no placement can satisfy (saying
/// which constraint fails and by how much), else returns a valid plan.
pub fn plan(pb: &Problem, obj: Objective) -> Result<Plan, Infeasible> {
    pb.precheck()?;
    let plan = match unit::is_uniform(pb) {
        Some(size) => unit::plan(pb, obj, size)?,
        None if pb.items.iter().all(|i| i.fixed) => unit::plan(pb, obj, [1.0, 0.0])?,
        None => sized::plan(pb, obj)?,
    };
    debug_assert_eq!(pb.check(&plan.assignment), Ok(()), "planners return valid placements");
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every assignment, the cheapest valid one.
    fn brute(pb: &Problem, obj: Objective) -> Option<u64> {
        let (n, m) = (pb.items.len(), pb.nodes.len());
        let mut a = vec![0usize; n];
        let mut best = None;
        loop {
            if pb.check(&a).is_ok() {
                let c = pb.cost_of(&a, obj);
                best = Some(best.map_or(c, |b: u64| b.min(c)));
            }
            let mut i = 0;
            while i < n {
                a[i] += 1;
                if a[i] < m {
                    break;
                }
                a[i] = 0;
                i += 1;
            }
            if i == n {
                return best;
            }
        }
    }

    fn arb_problem(uniform: bool) -> impl Strategy<Value = Problem> {
        let nodes = prop::collection::vec((1u8..5, prop::bool::weighted(0.8), 0u32..2, 0u32..2), 2..5);
        let items = prop::collection::vec(
            (
                1u8..3,
                0u64..5,
                prop::option::weighted(0.9, 0usize..5),
                prop::option::weighted(0.4, 0usize..2),
                prop::option::weighted(0.1, 0usize..5),
                prop::bool::weighted(0.1),
            ),
            1..7,
        );
        let rules = prop::collection::vec(
            (prop_oneof![Just(Domain::Node), Just(Domain::Rack), Just(Domain::Zone)], 1u32..3),
            2,
        );
        (nodes, items, rules).prop_map(move |(nodes, items, rules)| {
            let m = nodes.len();
            let nodes: Vec<Node> = nodes
                .into_iter()
                .enumerate()
                .map(|(p, (cap, accepts, zone, rack))| Node {
                    id: format!("p{p}"),
                    cap: [cap as f64, 100.0],
                    accepts,
                    zone: Some(zone),
                    rack: Some(zone * 2 + rack),
                })
                .collect();
            let items = items
                .into_iter()
                .enumerate()
                .map(|(i, (size, bytes, cur, rule, pin, fixed))| {
                    let current = cur.map(|c| c % m);
                    Item {
                        id: format!("v{i}"),
                        demand: [if uniform { 1.0 } else { size as f64 }, 1.0],
                        bytes: bytes * 1024,
                        current,
                        rule,
                        pinned: pin.map(|p| p % m),
                        fixed: fixed && current.is_some(),
                    }
                })
                .collect();
            let rules = rules
                .into_iter()
                .enumerate()
                .map(|(r, (domain, max))| Rule { name: format!("g{r}"), domain, max_per_domain: max })
                .collect();
            Problem { nodes, items, rules }
        })
    }

    /// Keeps instances whose current state is self-consistent for fixed
    /// items (a fixed item sits where it is allowed to).
    fn sane(pb: &Problem) -> bool {
        pb.items.iter().all(|i| !i.fixed || i.pinned.is_none())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Equal sizes: the plan is valid and exactly as cheap as the best
        /// of all assignments (when spreading is per node, or proven so),
        /// and a refusal means no valid assignment exists.
        #[test]
        fn equal_sizes_match_brute_force(pb in arb_problem(true), bytes in any::<bool>()) {
            prop_assume!(sane(&pb));
            let obj = if bytes { Objective::Bytes } else { Objective::Moves };
            let best = brute(&pb, obj);
            match plan(&pb, obj) {
                Ok(p) => {
                    prop_assert_eq!(pb.check(&p.assignment), Ok(()));
                    let b = best.expect("a plan exists, so brute force finds one");
                    prop_assert!(p.lower_bound <= b, "lower bound {} above the optimum {}", p.lower_bound, b);
                    prop_assert!(p.cost >= b);
                    if p.optimal {
                        prop_assert_eq!(p.cost, b, "claimed optimal");
                    }
                    if pb.rules.iter().all(|r| r.domain == Domain::Node) || pb.items.iter().all(|i| i.rule.is_none()) {
                        prop_assert!(p.optimal);
                        prop_assert_eq!(p.cost, b);
                    }
                }
                Err(e) => prop_assert!(best.is_none(), "refused ({e}) but {best:?} exists"),
            }
        }

        /// Mixed sizes: valid, never below the optimum, the lower bound is
        /// a true bound, and "optimal" is only claimed when it is.
        #[test]
        fn mixed_sizes_are_valid_and_bounded(pb in arb_problem(false), bytes in any::<bool>()) {
            prop_assume!(sane(&pb));
            let obj = if bytes { Objective::Bytes } else { Objective::Moves };
            let best = brute(&pb, obj);
            if let Ok(p) = plan(&pb, obj) {
                prop_assert_eq!(pb.check(&p.assignment), Ok(()));
                let b = best.expect("a plan exists");
                prop_assert!(p.lower_bound <= b && b <= p.cost, "lb {} opt {} cost {}", p.lower_bound, b, p.cost);
                if p.optimal {
                    prop_assert_eq!(p.cost, b);
                }
            }
        }
    }

    #[test]
    fn infeasible_configurations_say_what_fails_and_by_how_much() {
        let node = |id: &str, cap: f64, accepts: bool, zone: u32| Node {
            id: id.into(),
            cap: [cap, 1e12],
            accepts,
            zone: Some(zone),
            rack: Some(zone),
        };
        let item = |id: &str, c: f64, cur: usize, rule: Option<usize>| Item {
            id: id.into(),
            demand: [c, 0.0],
            bytes: 0,
            current: Some(cur),
            rule,
            pinned: None,
            fixed: false,
        };
        let pb = Problem {
            nodes: vec![node("a", 8.0, true, 0), node("b", 8.0, false, 1)],
            items: vec![item("v0", 6.0, 0, None), item("v1", 6.0, 1, None)],
            rules: vec![],
        };
        let e = plan(&pb, Objective::Moves).unwrap_err().to_string();
        assert!(e.contains("need 12.00 cores") && e.contains("have 8.00 (short by 4.00)"), "{e}");
        let pb = Problem {
            nodes: vec![node("a", 8.0, true, 0), node("b", 8.0, true, 0), node("c", 8.0, true, 1)],
            items: (0..3).map(|i| item(&format!("r{i}"), 1.0, i, Some(0))).collect(),
            rules: vec![Rule { name: "db".into(), domain: Domain::Zone, max_per_domain: 1 }],
        };
        let e = plan(&pb, Objective::Moves).unwrap_err().to_string();
        assert!(
            e.contains("group db has 3 members to place, but at most 1 per zone leaves room for 2 on the 2 zones")
                && e.contains("short by 1"),
            "{e}"
        );
    }

    /// How often plans are optimal (by brute force) and proven so, on 3,000
    /// random small instances each (the figures are in the README).
    #[test]
    fn optimality_rates_on_random_instances() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        for (uniform, min_proven, min_true) in [(true, 0.94, 0.99), (false, 0.9, 0.96)] {
            let mut runner = TestRunner::deterministic();
            let (mut feasible, mut proven, mut truly) = (0u32, 0u32, 0u32);
            for _ in 0..3000 {
                let pb = arb_problem(uniform).new_tree(&mut runner).unwrap().current();
                if let Ok(p) = plan(&pb, Objective::Moves) {
                    feasible += 1;
                    proven += u32::from(p.optimal);
                    truly += u32::from(brute(&pb, Objective::Moves) == Some(p.cost));
                }
            }
            let (pr, tr) = (proven as f64 / feasible as f64, truly as f64 / feasible as f64);
            println!(
                "uniform={uniform}: {feasible} feasible of 3000, optimal {truly} ({:.1} %), proven {proven} ({:.1} %)",
                tr * 100.0,
                pr * 100.0
            );
            assert!(feasible > 1500 && pr >= min_proven && tr >= min_true, "{pr} {tr}");
        }
    }

    /// A plan at benchmark scale (100,000 x 1,000) is valid, moves exactly
    /// what leaves the drained nodes (nothing else has to move), and is
    /// proven optimal, for both planners.
    #[test]
    fn large_drain_and_join_is_valid_and_minimal() {
        for uniform in [true, false] {
            let pb = synthetic::drain_and_join(7, 100_000, 1_000, uniform);
            let forced = (0..pb.items.len()).filter(|&i| pb.may_stay(i).is_err()).count() as u64;
            let p = plan(&pb, Objective::Moves).unwrap();
            assert_eq!(pb.check(&p.assignment), Ok(()));
            assert_eq!((p.cost, p.lower_bound), (forced, forced), "uniform={uniform}");
            assert!(p.optimal);
        }
    }
}
