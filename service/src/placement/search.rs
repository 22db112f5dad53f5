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
//! Ties go to the lowest node index, as in the exhaustive loop, so both give
//! identical results (a test checks it on random clusters).

use super::affinity::{Limits, Score, Weights, node_bound, score};
use super::view::ClusterView;

/// Best feasible target of `vi` other than where it runs, scoring every node.
pub fn best_exhaustive(view: &ClusterView, vi: usize, w: &Weights, limits: &Limits) -> Option<(usize, Score)> {
    let v = &view.virt[vi];
    let mut best: Option<(usize, Score)> = None;
    for pi in 0..view.phys.len() {
        if Some(pi) == v.placement {
            continue;
        }
        let s = score(view, vi, pi, w, limits);
        if s.infeasible.is_none() && best.as_ref().is_none_or(|(_, b)| s.score > b.score) {
            best = Some((pi, s));
        }
    }
    best
}

/// Node orderings by score upper bound, built once per round.
#[derive(Debug)]
pub struct TargetIndex {
    /// (bound, node) for virtual nodes that read no data, best first.
    no_data: Vec<(f64, usize)>,
    /// For those that do, with locality 0 (nodes outside their data zones).
    remote: Vec<(f64, usize)>,
    /// Per zone id (the last entry: nodes without a zone), locality bounded by 1.
    by_zone: Vec<Vec<(f64, usize)>>,
    /// Nodes whose load fell since the bounds were computed.
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    /// Pairs scored by the last searches (for benchmarks and tests).
    pub scored: std::sync::atomic::AtomicU64,
}

fn sorted(mut v: Vec<(f64, usize)>) -> Vec<(f64, usize)> {
    v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    v
}

impl TargetIndex {
    /// Computes the bounds and orderings for `view`.
    pub fn build(view: &ClusterView, w: &Weights) -> TargetIndex {
        let n = view.phys.len();
        let no_data = sorted((0..n).map(|pi| (node_bound(view, pi, w, None), pi)).collect());
        let remote = sorted((0..n).map(|pi| (node_bound(view, pi, w, Some(0.0)), pi)).collect());
        let mut by_zone = vec![Vec::new(); view.zones.len() + 1];
        for pi in 0..n {
            let z = view.phys[pi].zone.map(|z| z as usize).unwrap_or(view.zones.len());
            by_zone[z].push((node_bound(view, pi, w, Some(1.0)), pi));
        }
        let by_zone = by_zone.into_iter().map(sorted).collect();
        TargetIndex { no_data, remote, by_zone, dirty: Vec::new(), is_dirty: vec![false; n], scored: 0.into() }
    }

    /// Notes that node `pi`'s load fell (its bound may be stale).
    pub fn mark_dirty(&mut self, pi: usize) {
        if !self.is_dirty[pi] {
            self.is_dirty[pi] = true;
            self.dirty.push(pi);
        }
    }

    /// Best feasible target of `vi` (other than where it runs) whose score
    /// is above `floor`; exactly what [`best_exhaustive`] returns when that
    /// one's score is above `floor`.
    pub fn best(
        &self,
        view: &ClusterView,
        vi: usize,
        w: &Weights,
        limits: &Limits,
        floor: f64,
    ) -> Option<(usize, Score)> {
        let v = &view.virt[vi];
        let mut best: Option<(usize, Score)> = None;
        let mut scored = 0u64;
        let mut consider = |pi: usize, best: &mut Option<(usize, Score)>| {
            if Some(pi) == v.placement {
                return;
            }
            scored += 1;
            let s = score(view, vi, pi, w, limits);
            if s.infeasible.is_some() || s.score <= floor {
                return;
            }
            let better = match best {
                None => true,
                Some((bi, b)) => s.score > b.score || (s.score == b.score && pi < *bi),
            };
            if better {
                *best = Some((pi, s));
            }
        };
        // Explicit: own history, and nodes whose bounds are stale.
        for &(pi, _) in &v.history {
            consider(pi, &mut best);
        }
        for &pi in &self.dirty {
            consider(pi, &mut best);
        }
        let stop = |bound: f64, best: &Option<(usize, Score)>| {
            bound <= floor || best.as_ref().is_some_and(|(_, b)| bound < b.score)
        };
        if v.data.is_empty() {
            for &(bound, pi) in &self.no_data {
                if stop(bound, &best) {
                    break;
                }
                consider(pi, &mut best);
            }
        } else {
            let nz = self.by_zone.len() - 1;
            let mut zones: Vec<usize> = v.data.iter().map(|(d, _)| d.zone.map(|z| z as usize).unwrap_or(nz)).collect();
            zones.sort_unstable();
            zones.dedup();
            for &z in &zones {
                for &(bound, pi) in &self.by_zone[z] {
                    if stop(bound, &best) {
                        break;
                    }
                    consider(pi, &mut best);
                }
            }
            for &(bound, pi) in &self.remote {
                if stop(bound, &best) {
                    break;
                }
                let z = view.phys[pi].zone.map(|z| z as usize).unwrap_or(nz);
                if zones.binary_search(&z).is_ok() {
                    continue;
                }
                consider(pi, &mut best);
            }
        }
        self.scored.fetch_add(scored, std::sync::atomic::Ordering::Relaxed);
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::synthetic::{SyntheticParams, synthetic_view};

    #[test]
    fn pruned_search_equals_exhaustive_on_random_clusters() {
        let w = Weights::default();
        let limits = Limits { max_cpu_utilization: 0.9 };
        for seed in 0..6 {
            let view = synthetic_view(&SyntheticParams { virt: 600, phys: 80, seed, ..Default::default() });
            let mut index = TargetIndex::build(&view, &w);
            if seed % 2 == 1 {
                // A stale bound must not hide a node whose load fell.
                index.mark_dirty(3);
            }
            for vi in 0..view.virt.len() {
                let a = best_exhaustive(&view, vi, &w, &limits);
                let b = index.best(&view, vi, &w, &limits, f64::NEG_INFINITY);
                assert_eq!(
                    a.as_ref().map(|x| (x.0, x.1.score)),
                    b.as_ref().map(|x| (x.0, x.1.score)),
                    "seed {seed} v {vi}"
                );
            }
            assert!(
                index.scored.load(std::sync::atomic::Ordering::Relaxed) < (view.virt.len() * view.phys.len()) as u64
            );
        }
    }
}
