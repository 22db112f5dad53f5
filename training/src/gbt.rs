//! Gradient-boosted regression trees with absolute loss (Friedman's
//! LAD-TreeBoost): each tree is fitted to the sign of the residuals, then
//! every leaf takes the *median* residual of its samples, so the ensemble
//! minimises the absolute error that MASE judges.
//!
//! Features are binned into at most `bins` quantile bins once per design
//! (histogram trees), rows are subsampled per tree (stochastic boosting),
//! and the result is written in the artifact's flat tree format
//! ([`swarm_models::model::TreeNode`]), so serving needs no training code.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarm_models::model::{TreeHead, TreeNode};

use crate::design::Design;

/// Boosting parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GbtParams {
    /// Trees.
    pub trees: usize,
    /// Maximum depth of a tree.
    pub depth: usize,
    /// Shrinkage applied to every leaf.
    pub learning_rate: f64,
    /// Fewest samples in a leaf.
    pub min_leaf: usize,
    /// Fraction of rows each tree sees.
    pub subsample: f64,
    /// But at most this many rows per tree (keeps large fits fast; the rows
    /// of neighbouring origins are highly correlated anyway).
    pub max_rows_per_tree: usize,
    /// Quantile bins per feature (at most 255).
    pub bins: usize,
    /// Seed of the row sampling.
    pub seed: u64,
    /// The quantile fitted: 0.5 is the median (absolute loss, what MASE
    /// judges); a high one (say 0.95) fits an upper bound that follows each
    /// series' own spikiness, which a constant-width interval cannot.
    pub quantile: f64,
}

impl Default for GbtParams {
    fn default() -> Self {
        GbtParams {
            trees: 150,
            depth: 4,
            learning_rate: 0.1,
            min_leaf: 50,
            subsample: 0.3,
            max_rows_per_tree: 40_000,
            bins: 64,
            seed: 7,
            quantile: 0.5,
        }
    }
}

struct Binned {
    /// Row-major bin indexes.
    bins: Vec<u8>,
    /// Per feature: the upper edge of each bin but the last.
    edges: Vec<Vec<f64>>,
    n_features: usize,
}

fn bin_design(d: &Design, bins: usize) -> Binned {
    let n = d.rows();
    let f = d.n_features;
    let step = (n / 20_000).max(1);
    let mut edges = Vec::with_capacity(f);
    for j in 0..f {
        let mut sample: Vec<f64> = (0..n).step_by(step).map(|i| d.x[i * f + j]).collect();
        sample.sort_by(f64::total_cmp);
        let mut e: Vec<f64> = (1..bins.min(255)).map(|k| sample[(k * (sample.len() - 1)) / bins.min(255)]).collect();
        e.dedup();
        edges.push(e);
    }
    let mut out = vec![0u8; n * f];
    for i in 0..n {
        for j in 0..f {
            out[i * f + j] = edges[j].partition_point(|&e| e < d.x[i * f + j]) as u8;
        }
    }
    Binned { bins: out, edges, n_features: f }
}

/// The `q` quantile (lower element) of `v`, reordering it.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let at = ((q * v.len() as f64) as usize).min(v.len() - 1);
    let (_, m, _) = v.select_nth_unstable_by(at, f64::total_cmp);
    *m
}

/// A split found for a node.
struct Split {
    feature: usize,
    bin: u8,
}

fn best_split(b: &Binned, idx: &[u32], grad: &[f64], min_leaf: usize) -> Option<Split> {
    let f = b.n_features;
    let n = idx.len();
    if n < 2 * min_leaf {
        return None;
    }
    let total: f64 = idx.iter().map(|&i| grad[i as usize]).sum();
    let base = total * total / n as f64;
    let mut best: Option<(f64, Split)> = None;
    let mut sum = vec![0.0f64; 256];
    let mut cnt = vec![0usize; 256];
    for j in 0..f {
        let nb = b.edges[j].len() + 1;
        sum[..nb].iter_mut().for_each(|x| *x = 0.0);
        cnt[..nb].iter_mut().for_each(|x| *x = 0);
        for &i in idx {
            let bin = b.bins[i as usize * f + j] as usize;
            sum[bin] += grad[i as usize];
            cnt[bin] += 1;
        }
        let (mut sl, mut nl) = (0.0, 0usize);
        for bin in 0..nb - 1 {
            sl += sum[bin];
            nl += cnt[bin];
            let nr = n - nl;
            if nl < min_leaf || nr < min_leaf {
                continue;
            }
            let sr = total - sl;
            let gain = sl * sl / nl as f64 + sr * sr / nr as f64 - base;
            if best.as_ref().is_none_or(|(g, _)| gain > *g) {
                best = Some((gain, Split { feature: j, bin: bin as u8 }));
            }
        }
    }
    best.filter(|(g, _)| *g > 1e-12).map(|(_, s)| s)
}

/// Grows one tree on the rows `idx`; returns nodes in the artifact format
/// (children after parents) with leaf values already shrunk.
fn grow(b: &Binned, idx: Vec<u32>, grad: &[f64], resid: &[f64], p: &GbtParams) -> (Vec<TreeNode>, Vec<u8>) {
    let mut nodes: Vec<TreeNode> = vec![TreeNode { feature: 0, threshold: 0.0, left: 0, right: 0, value: 0.0 }];
    // The split bin of each node, for fast evaluation on the binned rows.
    let mut split_bins = vec![0u8];
    // (node index, rows, depth), breadth first so children follow parents.
    let mut queue = std::collections::VecDeque::from([(0usize, idx, 0usize)]);
    while let Some((at, rows, depth)) = queue.pop_front() {
        let split = if depth < p.depth { best_split(b, &rows, grad, p.min_leaf) } else { None };
        match split {
            Some(s) => {
                let f = b.n_features;
                let (l, r): (Vec<u32>, Vec<u32>) =
                    rows.iter().partition(|&&i| b.bins[i as usize * f + s.feature] <= s.bin);
                let (li, ri) = (nodes.len(), nodes.len() + 1);
                nodes.push(TreeNode { feature: 0, threshold: 0.0, left: 0, right: 0, value: 0.0 });
                nodes.push(TreeNode { feature: 0, threshold: 0.0, left: 0, right: 0, value: 0.0 });
                split_bins.extend([0, 0]);
                split_bins[at] = s.bin;
                nodes[at] = TreeNode {
                    feature: s.feature as u32,
                    threshold: b.edges[s.feature][s.bin as usize],
                    left: li as u32,
                    right: ri as u32,
                    value: 0.0,
                };
                queue.push_back((li, l, depth + 1));
                queue.push_back((ri, r, depth + 1));
            }
            None => {
                let mut v: Vec<f64> = rows.iter().map(|&i| resid[i as usize]).collect();
                nodes[at].value = p.learning_rate * quantile(&mut v, p.quantile);
            }
        }
    }
    (nodes, split_bins)
}

fn eval_binned(nodes: &[TreeNode], split_bins: &[u8], b: &Binned, i: usize) -> f64 {
    let f = b.n_features;
    let mut at = 0usize;
    loop {
        let n = &nodes[at];
        if n.left == 0 {
            return n.value;
        }
        // Bin ≤ split bin ⇔ value ≤ threshold (the bin's upper edge).
        let x_bin = b.bins[i * f + n.feature as usize];
        at = if x_bin <= split_bins[at] { n.left as usize } else { n.right as usize };
    }
}

/// Fits a boosted ensemble for one horizon: LAD-TreeBoost at the median,
/// its quantile (pinball-loss) generalisation elsewhere — trees follow the
/// loss's gradient (`q` above the fit, `q - 1` below) and leaves take the
/// `q` quantile of their residuals.
pub fn fit_lad(d: &Design, horizon: usize, p: &GbtParams) -> TreeHead {
    let n = d.rows();
    let mut y_sorted = d.y.clone();
    let q = p.quantile.clamp(0.0, 1.0);
    let base = quantile(&mut y_sorted, q);
    if n == 0 {
        return TreeHead::new(horizon, base, Vec::new());
    }
    let b = bin_design(d, p.bins);
    let mut pred = vec![base; n];
    let mut rng = StdRng::seed_from_u64(p.seed ^ horizon as u64);
    let mut trees = Vec::with_capacity(p.trees);
    let mut resid = vec![0.0; n];
    let mut grad = vec![0.0; n];
    let fraction = p.subsample.min(p.max_rows_per_tree as f64 / n as f64);
    for _ in 0..p.trees {
        for i in 0..n {
            resid[i] = d.y[i] - pred[i];
            // signum, not a comparison: at the median this is exactly the
            // LAD gradient (halved), so the bundled model refits identically.
            grad[i] = if resid[i].signum() > 0.0 { q } else { q - 1.0 };
        }
        let idx: Vec<u32> = (0..n as u32).filter(|_| rng.random_bool(fraction)).collect();
        let (tree, split_bins) = grow(&b, idx, &grad, &resid, p);
        for (i, pr) in pred.iter_mut().enumerate() {
            *pr += eval_binned(&tree, &split_bins, &b, i);
        }
        trees.push(tree);
    }
    TreeHead::new(horizon, base, trees)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_models::model::Model;

    #[test]
    fn learns_a_step_function_that_a_line_cannot() {
        // y = 1 if x0 > 0.5 else 0, plus heavy-tailed noise on 10 % of rows.
        let mut d = Design { n_features: 2, ..Default::default() };
        let mut rng = StdRng::seed_from_u64(1);
        for i in 0..4000 {
            let x0: f64 = rng.random();
            let x1: f64 = rng.random();
            d.x.extend([x0, x1]);
            let noise = if i % 10 == 0 { 20.0 } else { 0.0 };
            d.y.push(if x0 > 0.5 { 1.0 } else { 0.0 } + noise);
        }
        let head = fit_lad(&d, 1, &GbtParams { trees: 60, subsample: 0.5, min_leaf: 20, ..Default::default() });
        let m = Model::Trees { heads: vec![head] };
        assert!(m.validate(2).is_ok());
        // The serving-side evaluation (raw thresholds) matches the training target.
        assert!((m.predict(0, &[0.9, 0.1]) - 1.0).abs() < 0.1, "{}", m.predict(0, &[0.9, 0.1]));
        assert!(m.predict(0, &[0.1, 0.9]).abs() < 0.1, "{}", m.predict(0, &[0.1, 0.9]));
        // Deterministic for a seed.
        let again = fit_lad(&d, 1, &GbtParams { trees: 60, subsample: 0.5, min_leaf: 20, ..Default::default() });
        assert_eq!(Model::Trees { heads: vec![again] }, m);
    }

    #[test]
    fn a_high_quantile_follows_each_regime_s_own_spread() {
        // Two regimes with the same median and different spreads: x0 < 0.5
        // is calm (uniform 0.4..0.6), x0 > 0.5 is spiky (uniform 0..1). A
        // 0.9 quantile fit must put its bound near 0.58 and 0.9 respectively,
        // which no constant-width interval around the median can do.
        let mut d = Design { n_features: 1, ..Default::default() };
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..20_000 {
            let x0: f64 = rng.random();
            let u: f64 = rng.random();
            d.x.push(x0);
            d.y.push(if x0 < 0.5 { 0.4 + 0.2 * u } else { u });
        }
        let p = GbtParams { trees: 120, subsample: 0.5, min_leaf: 50, quantile: 0.9, ..Default::default() };
        let m = Model::Trees { heads: vec![fit_lad(&d, 1, &p)] };
        let (calm, spiky) = (m.predict(0, &[0.2]), m.predict(0, &[0.8]));
        assert!((calm - 0.58).abs() < 0.03, "calm regime's 0.9 quantile: {calm}");
        assert!((spiky - 0.9).abs() < 0.05, "spiky regime's 0.9 quantile: {spiky}");
        // The median of both is 0.5.
        let med = Model::Trees { heads: vec![fit_lad(&d, 1, &GbtParams { quantile: 0.5, ..p })] };
        for x in [0.2, 0.8] {
            assert!((med.predict(0, &[x]) - 0.5).abs() < 0.05, "median at {x}: {}", med.predict(0, &[x]));
        }
    }
}
