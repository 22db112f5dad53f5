//! Finding a virtual node's best target without scoring every physical node.
//!
//! The exhaustive search scores all `V × P` pairs; at 100,000 × 10,000 that
//! is 10⁹ scores per round. [`TargetIndex`] gets the *same* answer by
//! branch and bound: for every physical node it precomputes an upper bound of
//! any virtual node's score there ([`node_bound`]: the virtual node's own
//! demand left out, which can only raise headroom; history at the node's
//! prior), sorts nodes by it, and scans in that order until the bound falls
//! below the best score found. What the bound does not cover is scored
//! explicitly:
//! - nodes where the virtual node has its own history (it may beat the prior);
//! - nodes in a zone where it reads data (locality may be > 0 there; they are
//!   scanned in per-zone lists with locality bounded by 1, and everywhere
//!   else locality is exactly 0);
//! - nodes whose load fell during the round (sources of moves already taken),
//!   whose precomputed bound may now be too low.
//!
//! Bounds are kept per hardware class (nodes of equal capacities): within a
//! class, a *feasible* target's score is at least a known amount below its
//! node-level bound — the virtual node's demand over the class's capacity,
//! in each headroom component that feasibility keeps off its clamp — which
//! makes the scan stop after a few nodes even for large virtual nodes.
//!
//! What is maximised is not the score alone but the score less a
//! [`Penalty`] that depends on the target only through its distance from
//! the virtual node's current node: the controller's cost of a move (and
//! the relief it forgoes while a slower move is under way) per distance
//! class, in affinity units. A near target with a slightly lower score then
//! wins over a remote one whose extra score does not pay for the longer
//! transfer. The bound stays exact: every candidate's penalty is at least
//! the smallest of the classes.
//!
//! Ties go to the lowest node index, as in the exhaustive loop, so both give
//! identical results (a test checks it on random clusters).

use super::affinity::{Limits, Score, Weights, node_bound, score};
use super::view::{ClusterView, Distance};

/// What choosing a target costs beyond its score, in affinity units, by the
/// target's distance from the node the virtual node runs on. `+∞` rules a
/// distance class out. A virtual node that runs nowhere has no distance to
/// anything, and no penalty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Penalty {
    /// Indexed by `Distance as usize`.
    by_distance: [f64; 4],
}

impl Penalty {
    /// Score alone decides.
    pub const NONE: Penalty = Penalty { by_distance: [0.0; 4] };

    /// The penalty `f(d)` for each distance class.
    pub fn by_distance(f: impl Fn(Distance) -> f64) -> Penalty {
        let d = [Distance::SameNode, Distance::SameRack, Distance::SameZone, Distance::Remote];
        Penalty { by_distance: d.map(f) }
    }

    /// The penalty of moving to `d`.
    pub fn at(&self, d: Distance) -> f64 {
        self.by_distance[d as usize]
    }

    /// The least penalty any target can have (a target is never the node it
    /// runs on, so [`Distance::SameNode`] does not count).
    pub fn least(&self) -> f64 {
        self.by_distance[1..].iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The penalty of each target of `vi`, and the least any of them has.
    fn for_virt<'v>(&self, view: &'v ClusterView, vi: usize) -> (impl Fn(usize) -> f64 + 'v, f64) {
        let by = *self;
        let from = view.virt[vi].placement.filter(|_| by != Penalty::NONE);
        let at = move |pi: usize| from.map_or(0.0, |from| by.at(view.node_distance(from, pi)));
        (at, if from.is_some() { by.least() } else { 0.0 })
    }
}

/// Best feasible target of `vi` other than where it runs whose score is
/// above `floor`, scoring every node: the highest score less `penalty`,
/// lowest index on a tie. (The floor filters candidates, it does not
/// judge the winner: a node that wins on penalty but not on score must not
/// hide one above the floor.)
pub fn best_exhaustive(
    view: &ClusterView,
    vi: usize,
    w: &Weights,
    limits: &Limits,
    floor: f64,
    penalty: &Penalty,
) -> Option<(usize, Score)> {
    let v = &view.virt[vi];
    let (pen, _) = penalty.for_virt(view, vi);
    let mut best: Option<(usize, Score, f64)> = None;
    for pi in 0..view.phys.len() {
        if Some(pi) == v.placement {
            continue;
        }
        let s = score(view, vi, pi, w, limits);
        let key = s.score - pen(pi);
        if s.infeasible.is_none()
            && s.score > floor
            && key > f64::NEG_INFINITY
            && best.as_ref().is_none_or(|b| key > b.2)
        {
            best = Some((pi, s, key));
        }
    }
    best.map(|(pi, s, _)| (pi, s))
}

/// Nodes of one hardware class (same CPU, memory and network capacity):
/// within a class, a feasible target's score is at least a known amount
/// below its node-level bound, so bounds can be tightened per virtual node.
#[derive(Debug)]
struct Class {
    cpu: f64,
    mem: f64,
    /// Sum of the weights of the components present, without and with locality.
    den_plain: f64,
    den_local: f64,
    /// (bound, node) for virtual nodes that read no data, best first.
    no_data: Vec<(f64, usize)>,
    /// For those that do, with locality 0 (nodes outside their data zones).
    remote: Vec<(f64, usize)>,
    /// Per zone id (the last entry: nodes without a zone), locality bounded by 1.
    by_zone: Vec<Vec<(f64, usize)>>,
    /// The least CPU load of its nodes when the index was built. A virtual
    /// node too large for the room this leaves has no feasible target in
    /// the class, and the class is not scanned: in a cluster with no room
    /// left the scan would otherwise visit every node for every virtual
    /// node (loads only rise during a round, except on the dirty nodes,
    /// which are scanned apart).
    min_load: f64,
}

/// Node orderings by score upper bound, built once per round.
#[derive(Debug)]
pub struct TargetIndex {
    classes: Vec<Class>,
    /// Nodes whose load fell since the bounds were computed, with fresh
    /// bounds (without and with locality at 1), best first.
    dirty_plain: Vec<(f64, usize)>,
    dirty_local: Vec<(f64, usize)>,
    /// Nodes marked dirty, in order (see [`TargetIndex::dirty_since`]).
    dirty_log: Vec<usize>,
    /// Class of every node.
    class_of: Vec<usize>,
    /// Fresh bounds of dirty nodes (without, with locality); +infinity otherwise.
    fresh: Vec<(f64, f64)>,
    /// Pairs scored by the last searches (for benchmarks and tests).
    pub scored: std::sync::atomic::AtomicU64,
}

fn sorted(mut v: Vec<(f64, usize)>) -> Vec<(f64, usize)> {
    v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    v
}

impl TargetIndex {
    /// Computes the bounds and orderings for `view`.
    #[allow(clippy::needless_range_loop)] // `pi` is the node's index in several tables
    pub fn build(view: &ClusterView, w: &Weights) -> TargetIndex {
        let n = view.phys.len();
        let mut keys: Vec<(u64, u64, u64)> = Vec::new();
        let mut classes: Vec<Class> = Vec::new();
        let mut class_of = vec![0usize; n];
        for pi in 0..n {
            let cap = view.phys[pi].capacity;
            let key = (cap.cpu_cores.to_bits(), cap.memory_bytes.to_bits(), cap.network_bps.to_bits());
            let c = match keys.iter().position(|k| *k == key) {
                Some(c) => c,
                None => {
                    keys.push(key);
                    let present = |on: bool, w: f64| if on { w } else { 0.0 };
                    let den_plain = present(cap.cpu_cores > 0.0, w.cpu_headroom)
                        + present(cap.memory_bytes > 0.0, w.memory_headroom)
                        + present(cap.network_bps > 0.0, w.network_headroom)
                        + present(cap.cpu_cores > 0.0, w.current_load)
                        + w.history
                        + present(view.horizon > 0 && cap.cpu_cores > 0.0, w.forecast_headroom);
                    classes.push(Class {
                        cpu: cap.cpu_cores,
                        mem: cap.memory_bytes,
                        den_plain,
                        den_local: den_plain + w.locality,
                        no_data: Vec::new(),
                        remote: Vec::new(),
                        by_zone: vec![Vec::new(); view.zones.len() + 1],
                        min_load: f64::INFINITY,
                    });
                    classes.len() - 1
                }
            };
            class_of[pi] = c;
            let cl = &mut classes[c];
            cl.min_load = cl.min_load.min(view.phys[pi].load.cpu_cores);
            cl.no_data.push((node_bound(view, pi, w, None), pi));
            cl.remote.push((node_bound(view, pi, w, Some(0.0)), pi));
            let z = view.phys[pi].zone.map(|z| z as usize).unwrap_or(view.zones.len());
            cl.by_zone[z].push((node_bound(view, pi, w, Some(1.0)), pi));
        }
        for cl in &mut classes {
            cl.no_data = sorted(std::mem::take(&mut cl.no_data));
            cl.remote = sorted(std::mem::take(&mut cl.remote));
            cl.by_zone = std::mem::take(&mut cl.by_zone).into_iter().map(sorted).collect();
        }
        TargetIndex {
            classes,
            dirty_plain: Vec::new(),
            dirty_local: Vec::new(),
            dirty_log: Vec::new(),
            class_of,
            fresh: vec![(f64::INFINITY, f64::INFINITY); n],
            scored: 0.into(),
        }
    }

    /// Notes that node `pi`'s load fell in `view` (its precomputed bound
    /// may be too low): its fresh bounds are kept in a short sorted list
    /// that every search scans too.
    pub fn mark_dirty(&mut self, view: &ClusterView, w: &Weights, pi: usize) {
        let mut fresh = [0.0; 2];
        for (k, (list, loc)) in
            [(&mut self.dirty_plain, None), (&mut self.dirty_local, Some(1.0))].into_iter().enumerate()
        {
            list.retain(|&(_, x)| x != pi);
            let b = node_bound(view, pi, w, loc);
            let at = list.partition_point(|&(ob, ox)| ob > b || (ob == b && ox < pi));
            list.insert(at, (b, pi));
            fresh[k] = b;
        }
        self.fresh[pi] = (fresh[0], fresh[1]);
        self.dirty_log.push(pi);
    }

    /// A dirty node's fresh bound (locality at 1 when `local`); +infinity
    /// for a node that is not dirty (no fresh bound known).
    pub fn fresh_bound(&self, pi: usize, local: bool) -> f64 {
        if local { self.fresh[pi].1 } else { self.fresh[pi].0 }
    }

    /// How many times a node was marked dirty so far (a position in the log).
    pub fn dirty_count(&self) -> usize {
        self.dirty_log.len()
    }

    /// Nodes marked dirty after position `since` of the log.
    pub fn dirty_since(&self, since: usize) -> &[usize] {
        &self.dirty_log[since.min(self.dirty_log.len())..]
    }

    /// Best feasible target of `vi` (other than where it runs) whose score
    /// is above `floor`, by score less `penalty`; exactly what
    /// [`best_exhaustive`] returns for the same floor.
    pub fn best(
        &self,
        view: &ClusterView,
        vi: usize,
        w: &Weights,
        limits: &Limits,
        floor: f64,
        penalty: &Penalty,
    ) -> Option<(usize, Score)> {
        let v = &view.virt[vi];
        let (pen, least) = penalty.for_virt(view, vi);
        if least == f64::INFINITY {
            return None; // every distance class is ruled out
        }
        // (node, score, score less penalty)
        let mut best: Option<(usize, Score, f64)> = None;
        let mut scored = 0u64;
        // `ub`: an upper bound of the score at `pi` (+∞ when none is known).
        // A node whose bound, less its own penalty, is below the best found
        // cannot win: it is not scored (scoring is most of a search's time,
        // and with penalties the scan runs deeper than the winner).
        let mut consider = |pi: usize, ub: f64, best: &mut Option<(usize, Score, f64)>| {
            if Some(pi) == v.placement {
                return;
            }
            let pe = pen(pi);
            if best.as_ref().is_some_and(|b| ub - pe < b.2) {
                return;
            }
            // The cheap part of feasibility first (the same test `score`
            // makes): no CPU room now means infeasible, whatever the score.
            let p = &view.phys[pi];
            if v.demand.cpu_cores > p.capacity.cpu_cores * limits.max_cpu_utilization - p.load.cpu_cores {
                return;
            }
            scored += 1;
            let s = score(view, vi, pi, w, limits);
            if s.infeasible.is_some() || s.score <= floor {
                return;
            }
            let key = s.score - pe;
            if key.is_nan() || key == f64::NEG_INFINITY {
                return;
            }
            let better = match best {
                None => true,
                Some((bi, _, b)) => key > *b || (key == *b && pi < *bi),
            };
            if better {
                *best = Some((pi, s, key));
            }
        };
        // A pinned virtual node can only go to its pin: every other node is infeasible.
        if let Some(pin) = &v.pinned {
            if let Some(&pi) = view.phys_index.get(pin) {
                consider(pi, f64::INFINITY, &mut best);
            }
            self.scored.fetch_add(scored, std::sync::atomic::Ordering::Relaxed);
            return best.map(|(pi, s, _)| (pi, s));
        }
        // Explicit: own history.
        for &(pi, _) in &v.history {
            consider(pi, f64::INFINITY, &mut best);
        }
        // What a feasible target of a class loses at least, because the
        // virtual node's own demand is added: feasibility keeps the CPU,
        // memory and forecast headrooms away from their clamp at 0, so they
        // fall by exactly demand / capacity (the forecast one by at least
        // its smallest step). A hair less, for floating-point rounding.
        let min_fc = (0..view.horizon).map(|h| v.fc_at(h).0).fold(f64::INFINITY, f64::min);
        let reduction = |cl: &Class, den: f64| -> f64 {
            if den <= 0.0 {
                return 0.0;
            }
            let mut r = 0.0;
            if cl.cpu > 0.0 {
                r += w.cpu_headroom * v.demand.cpu_cores / cl.cpu;
                if view.horizon > 0 {
                    r += w.forecast_headroom * min_fc.max(0.0) / cl.cpu;
                }
            }
            if cl.mem > 0.0 {
                r += w.memory_headroom * v.demand.memory_bytes / cl.mem;
            }
            (r / den * (1.0 - 1e-9) - 1e-12).max(0.0)
        };
        // `bound` is a score bound: nothing past it beats `floor`, nor (with
        // the least penalty taken off) the best found.
        let stop = |bound: f64, best: &Option<(usize, Score, f64)>| {
            bound <= floor || best.as_ref().is_some_and(|b| bound - least < b.2)
        };
        // Nodes whose load fell during the round, by their fresh bounds.
        type Den = fn(&Class) -> f64;
        let (dirty, den_of): (&[(f64, usize)], Den) =
            if v.data.is_empty() { (&self.dirty_plain, |c| c.den_plain) } else { (&self.dirty_local, |c| c.den_local) };
        if !dirty.is_empty() {
            let min_red = self.classes.iter().map(|c| reduction(c, den_of(c))).fold(f64::INFINITY, f64::min);
            for &(bound, pi) in dirty {
                if stop(bound - min_red, &best) {
                    break;
                }
                let cl = &self.classes[self.class_of[pi]];
                consider(pi, bound - reduction(cl, den_of(cl)), &mut best);
            }
        }
        let nz = view.zones.len();
        let mut zones: Vec<usize> = v.data.iter().map(|(d, _)| d.zone.map(|z| z as usize).unwrap_or(nz)).collect();
        zones.sort_unstable();
        zones.dedup();
        for cl in &self.classes {
            // The test `consider` makes, for the class's emptiest node.
            if v.demand.cpu_cores > cl.cpu * limits.max_cpu_utilization - cl.min_load {
                continue;
            }
            if v.data.is_empty() {
                let red = reduction(cl, cl.den_plain);
                for &(bound, pi) in &cl.no_data {
                    if stop(bound - red, &best) {
                        break;
                    }
                    consider(pi, bound - red, &mut best);
                }
                continue;
            }
            let red = reduction(cl, cl.den_local);
            for &z in &zones {
                for &(bound, pi) in &cl.by_zone[z] {
                    if stop(bound - red, &best) {
                        break;
                    }
                    consider(pi, bound - red, &mut best);
                }
            }
            for &(bound, pi) in &cl.remote {
                if stop(bound - red, &best) {
                    break;
                }
                let z = view.phys[pi].zone.map(|z| z as usize).unwrap_or(nz);
                if zones.binary_search(&z).is_ok() {
                    continue;
                }
                consider(pi, bound - red, &mut best);
            }
        }
        self.scored.fetch_add(scored, std::sync::atomic::Ordering::Relaxed);
        best.map(|(pi, s, _)| (pi, s))
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::placement::synthetic::{SyntheticParams, synthetic_view};

    #[test]
    fn pruned_search_equals_exhaustive_on_random_clusters() {
        let w = Weights::default();
        let mut rng = StdRng::seed_from_u64(7);
        for seed in 0..10 {
            // Seeds 8 and 9: a limit that leaves many virtual nodes no room
            // anywhere (whole classes are then passed over).
            let tight = seed >= 8;
            let limits = Limits { max_cpu_utilization: if tight { 0.1 } else { 0.9 } };
            let mut nowhere = 0;
            let view =
                synthetic_view(&SyntheticParams { virt: 600, phys: 80, rack_size: 8, seed, ..Default::default() });
            let mut index = TargetIndex::build(&view, &w);
            let mut view = view;
            if seed % 2 == 1 {
                // A stale bound must not hide a node whose load fell.
                let vi = view.virt.iter().position(|v| v.placement == Some(3)).unwrap();
                let to = (0..view.phys.len()).find(|&p| p != 3).unwrap();
                view.apply_move(vi, to);
                index.mark_dirty(&view, &w, 3);
            }
            // Score alone, then penalties by distance: ones that matter
            // (scores differ by a few hundredths), negative ones (relief),
            // and classes ruled out.
            let penalties = [Penalty::NONE].into_iter().chain((0..4).map(|k| {
                let draw: [f64; 4] = std::array::from_fn(|_| match rng.random_range(0..6) {
                    0 => f64::INFINITY,
                    1 => -rng.random_range(0.0..0.05),
                    _ => rng.random_range(0.0..[0.01, 0.05, 0.2, 1.0][k]),
                });
                Penalty::by_distance(|d| draw[d as usize])
            }));
            let mut moved_by_penalty = 0;
            for penalty in penalties {
                for vi in 0..view.virt.len() {
                    // No floor, or the micro-migration phase's: the current
                    // score plus a small threshold.
                    let floor = match (vi % 2, view.virt[vi].placement) {
                        (1, Some(p)) => score(&view, vi, p, &w, &limits).score + 0.01,
                        _ => f64::NEG_INFINITY,
                    };
                    let a = best_exhaustive(&view, vi, &w, &limits, floor, &penalty);
                    let b = index.best(&view, vi, &w, &limits, floor, &penalty);
                    assert_eq!(
                        a.as_ref().map(|x| (x.0, x.1.score)),
                        b.as_ref().map(|x| (x.0, x.1.score)),
                        "seed {seed} v {vi} {penalty:?}"
                    );
                    nowhere += usize::from(a.is_none() && floor == f64::NEG_INFINITY);
                    let plain = best_exhaustive(&view, vi, &w, &limits, floor, &Penalty::NONE);
                    moved_by_penalty += usize::from(a.map(|x| x.0) != plain.map(|x| x.0));
                }
            }
            // The penalties do change choices, and the tight limit leaves
            // nodes without a target (else this test proves little).
            assert!(tight || moved_by_penalty > 0, "seed {seed}");
            if tight {
                assert!(nowhere > 100, "seed {seed}: {nowhere} without a target");
            }
            assert!(
                index.scored.load(std::sync::atomic::Ordering::Relaxed)
                    < (5 * view.virt.len() * view.phys.len()) as u64
            );
        }
    }

    #[test]
    fn a_near_target_wins_when_the_far_one_does_not_pay_for_its_distance() {
        let w = Weights::default();
        let limits = Limits { max_cpu_utilization: 0.9 };
        let view =
            synthetic_view(&SyntheticParams { virt: 300, phys: 40, rack_size: 4, seed: 3, ..Default::default() });
        let index = TargetIndex::build(&view, &w);
        // Remote moves cost more than any score difference: a remote target
        // is chosen only where no nearer one is feasible.
        let penalty = Penalty::by_distance(|d| if d == Distance::Remote { 10.0 } else { 0.0 });
        let (mut near, mut was_remote) = (0, 0);
        for vi in 0..view.virt.len() {
            let Some(from) = view.virt[vi].placement else { continue };
            let Some((to, _)) = index.best(&view, vi, &w, &limits, f64::NEG_INFINITY, &penalty) else { continue };
            let plain = best_exhaustive(&view, vi, &w, &limits, f64::NEG_INFINITY, &Penalty::NONE).unwrap();
            was_remote += usize::from(view.node_distance(from, plain.0) == Distance::Remote);
            if view.node_distance(from, to) == Distance::Remote {
                let nearer_feasible = (0..view.phys.len()).any(|pi| {
                    pi != from
                        && view.node_distance(from, pi) != Distance::Remote
                        && score(&view, vi, pi, &w, &limits).infeasible.is_none()
                });
                assert!(!nearer_feasible, "v {vi} went remote to {to} past a feasible nearer node");
            } else {
                near += 1;
            }
        }
        assert!(near > 0 && was_remote > 0, "near {near}, best by score alone remote {was_remote}");
    }
}
