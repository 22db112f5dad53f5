//! Gradient-boosted regression trees with absolute loss (Friedman's
//! LAD-TreeBoost): each tree is fitted to the sign of the residuals, then
//! every leaf takes the *median* residual of its samples, so the ensemble
//! minimises the absolute error that MASE judges. Rows carry weights (the
//! design's, see [`crate::design::build`]): gradients, hessians and leaf
//! medians are weighted, so the loss is each series' MASE.
//!
//! Features are binned into at most `bins` quantile bins once per design
//! (histogram trees), rows are subsampled per tree (stochastic boosting),
//! and the result is written in the artifact's flat tree format
//! ([`swarm_models::model::TreeNode`]), so serving needs no training code.

use swarm_models::model::{TreeHead, TreeNode};

use crate::design::Design;

/// Boosting parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GbtParams {
    /// Trees.
    pub trees: usize,
    /// Maximum depth of a tree (serving walks trees of depth ≤ 8 without
    /// branches, deeper ones node by node).
    pub depth: usize,
    /// Most leaves of a tree, grown best-first.
    pub leaves: usize,
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
            trees: 100,
            depth: 4,
            leaves: 16,
            learning_rate: 0.15,
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
    /// Where each feature's bins start in a [`Hist`], laid end to end; the
    /// last entry is the total.
    offsets: Vec<usize>,
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
    let mut offsets = vec![0usize];
    for e in &edges {
        offsets.push(offsets.last().expect("starts at 0") + e.len() + 1);
    }
    Binned { bins: out, edges, offsets, n_features: f }
}

/// The weighted `q` quantile of `(value, weight)` pairs, reordering them: the
/// smallest value whose cumulative weight passes `q` of the total. With equal
/// weights it is the element at `floor(q n)` in sorted order. Found by
/// selection (expected linear time), not by sorting: a leaf's rows are tens
/// of thousands and every tree sets every leaf.
fn weighted_quantile(v: &mut [(f64, f64)], q: f64) -> f64 {
    let cmp = |a: &(f64, f64), b: &(f64, f64)| a.0.total_cmp(&b.0);
    let mut target = q * v.iter().map(|p| p.1).sum::<f64>();
    let mut s = v;
    loop {
        match s.len() {
            0 => return 0.0,
            1 => return s[0].0,
            _ => {}
        }
        let mid = s.len() / 2;
        s.select_nth_unstable_by(mid, cmp);
        let left: f64 = s[..mid].iter().map(|p| p.1).sum();
        if left > target {
            s = &mut s[..mid];
        } else if left + s[mid].1 > target || mid + 1 == s.len() {
            return s[mid].0;
        } else {
            target -= left + s[mid].1;
            s = &mut s[mid + 1..];
        }
    }
}

/// A split found for a node: rows with `bin <= bin` on `feature` go left.
#[derive(Clone, Copy)]
struct Split {
    feature: usize,
    bin: u8,
    gain: f64,
}

/// Per-feature histograms of one node's rows, laid end to end (feature `j`'s
/// bins start at `offsets[j]`): rows, their weight, and the weight of those
/// above the fit. The gradient is the sign of the residual (`q` above,
/// `q - 1` below), so the weight above and the total weight give every bin's
/// gradient sum, and the weight is the hessian. A parent's histogram minus
/// one child's is the other child's, so only the smaller child is ever
/// counted (LightGBM's subtraction trick).
struct Hist(Vec<Bin>);

/// One bin of a [`Hist`]: its three sums side by side in 12 bytes, so
/// counting a row touches one cache line per feature instead of three. Single
/// precision is enough for a split's choice (at least `min_leaf` rows a
/// side, weights of mean 1) and made fitting about 6 % faster
/// (models/README.md "More rows for the final model").
#[derive(Clone, Copy, Default)]
struct Bin {
    weight: f32,
    above: f32,
    rows: u32,
}

impl Hist {
    fn build(b: &Binned, rows: &[u32], above: &[bool], w: &[f64]) -> Hist {
        let offsets = &b.offsets;
        let total = *offsets.last().expect("offsets end with the total");
        let mut h = vec![Bin::default(); total];
        let f = b.n_features;
        for &i in rows {
            let i = i as usize;
            let wi = w[i] as f32;
            let up = if above[i] { wi } else { 0.0 };
            for (&bin, &at) in b.bins[i * f..(i + 1) * f].iter().zip(&offsets[..f]) {
                let k = &mut h[at + bin as usize];
                k.rows += 1;
                k.weight += wi;
                k.above += up;
            }
        }
        Hist(h)
    }

    /// `self - other`, for the sibling of the child `other` counted.
    fn minus(mut self, other: &Hist) -> Hist {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            a.rows -= b.rows;
            a.weight -= b.weight;
            a.above -= b.above;
        }
        self
    }
}

/// The best split of a node by the loss reduction of a Newton step on the
/// gradient (`G²/H` per side, `H` the weight); `None` when no split leaves
/// `min_leaf` rows on both sides or none reduces it.
fn best_split(h: &Hist, offsets: &[usize], q: f64, min_leaf: usize) -> Option<Split> {
    let grad = |weight: f64, above: f64| above * q + (weight - above) * (q - 1.0);
    let (n, w, w_above) = {
        let r = offsets[0]..*offsets.get(1)?;
        let bins = &h.0[r];
        (
            bins.iter().map(|b| b.rows).sum::<u32>(),
            bins.iter().map(|b| b.weight as f64).sum::<f64>(),
            bins.iter().map(|b| b.above as f64).sum::<f64>(),
        )
    };
    if (n as usize) < 2 * min_leaf || w <= 0.0 {
        return None;
    }
    let total = grad(w, w_above);
    let base = total * total / w;
    let mut best: Option<Split> = None;
    for j in 0..offsets.len() - 1 {
        let (mut nl, mut wl, mut al) = (0u32, 0.0, 0.0);
        let bins = offsets[j + 1] - offsets[j];
        for bin in 0..bins - 1 {
            let k = offsets[j] + bin;
            let b = &h.0[k];
            nl += b.rows;
            wl += b.weight as f64;
            al += b.above as f64;
            let nr = n - nl;
            if (nl as usize) < min_leaf {
                continue;
            }
            if (nr as usize) < min_leaf {
                break;
            }
            let wr = w - wl;
            if wl <= 0.0 || wr <= 0.0 {
                continue;
            }
            let sl = grad(wl, al);
            let sr = total - sl;
            let gain = sl * sl / wl + sr * sr / wr - base;
            if best.is_none_or(|b| gain > b.gain) {
                best = Some(Split { feature: j, bin: bin as u8, gain });
            }
        }
    }
    best.filter(|s| s.gain > 1e-12)
}

/// A leaf that may still be split: its rows are `rows[range]` of the tree's
/// row list, which splits partition in place (no list per node).
struct Open {
    at: usize,
    range: std::ops::Range<usize>,
    hist: Hist,
    depth: usize,
    split: Option<Split>,
}

/// One grown tree: nodes in the artifact format (children after parents)
/// with leaf values already shrunk, each node's split bin, and the leaves
/// with the rows (ranges of the row list) that reached them.
struct Grown {
    nodes: Vec<TreeNode>,
    split_bins: Vec<u8>,
    leaves: Vec<(usize, std::ops::Range<usize>)>,
}

/// Grows one tree on `rows` best-first (leaf-wise, as LightGBM does): the
/// leaf whose split reduces the loss most is split next, until `p.leaves`
/// leaves or no leaf can be split; no leaf is deeper than `p.depth`, which
/// keeps serving on its branch-free path (depth ≤ 8). `rows` is reordered
/// so each leaf's rows are contiguous.
fn grow(b: &Binned, rows: &mut [u32], above: &[bool], resid: &[f64], w: &[f64], p: &GbtParams) -> Grown {
    let q = p.quantile.clamp(0.0, 1.0);
    let leaf = || TreeNode { feature: 0, threshold: 0.0, left: 0, right: 0, value: 0.0 };
    let mut nodes: Vec<TreeNode> = vec![leaf()];
    let mut split_bins = vec![0u8];
    let consider = |hist: &Hist, depth: usize| {
        if depth < p.depth { best_split(hist, &b.offsets, q, p.min_leaf) } else { None }
    };
    let hist = Hist::build(b, rows, above, w);
    let split = consider(&hist, 0);
    let mut open = vec![Open { at: 0, range: 0..rows.len(), hist, depth: 0, split }];
    let mut leaves = 1;
    let f = b.n_features;
    while leaves < p.leaves.max(1) {
        // The open leaf with the largest gain; ties go to the earliest, so
        // the tree does not depend on anything but the data.
        let Some(k) = open
            .iter()
            .enumerate()
            .filter_map(|(k, o)| o.split.map(|s| (k, s.gain)))
            .fold(None, |best: Option<(usize, f64)>, (k, g)| match best {
                Some((_, bg)) if bg >= g => best,
                _ => Some((k, g)),
            })
            .map(|(k, _)| k)
        else {
            break;
        };
        let o = open.swap_remove(k);
        let s = o.split.expect("chosen for its split");
        // In-place partition: rows going left first. Order inside a leaf
        // does not matter: histograms are integer counts, leaf values order
        // statistics.
        let slice = &mut rows[o.range.clone()];
        let mut mid = 0;
        for j in 0..slice.len() {
            if b.bins[slice[j] as usize * f + s.feature] <= s.bin {
                slice.swap(mid, j);
                mid += 1;
            }
        }
        let (l, r) = (o.range.start..o.range.start + mid, o.range.start + mid..o.range.end);
        let (li, ri) = (nodes.len(), nodes.len() + 1);
        nodes.extend([leaf(), leaf()]);
        split_bins.extend([0, 0]);
        split_bins[o.at] = s.bin;
        nodes[o.at] = TreeNode {
            feature: s.feature as u32,
            threshold: b.edges[s.feature][s.bin as usize],
            left: li as u32,
            right: ri as u32,
            value: 0.0,
        };
        let (lh, rh) = if l.len() <= r.len() {
            let lh = Hist::build(b, &rows[l.clone()], above, w);
            let rh = o.hist.minus(&lh);
            (lh, rh)
        } else {
            let rh = Hist::build(b, &rows[r.clone()], above, w);
            let lh = o.hist.minus(&rh);
            (lh, rh)
        };
        let depth = o.depth + 1;
        let (ls, rs) = (consider(&lh, depth), consider(&rh, depth));
        open.push(Open { at: li, range: l, hist: lh, depth, split: ls });
        open.push(Open { at: ri, range: r, hist: rh, depth, split: rs });
        leaves += 1;
    }
    let mut v = Vec::new();
    let mut out = Vec::with_capacity(open.len());
    for o in open {
        v.clear();
        v.extend(rows[o.range.clone()].iter().map(|&i| (resid[i as usize], w[i as usize])));
        nodes[o.at].value = p.learning_rate * weighted_quantile(&mut v, q);
        out.push((o.at, o.range));
    }
    Grown { nodes, split_bins, leaves: out }
}

/// Whether row `i` is in tree `tree`'s sample: a hash of (seed, tree, row)
/// against the sampling threshold. Deterministic and stateless, and a
/// fraction of the cost of drawing a random number per row.
fn sampled(seed: u64, tree: u64, i: u64, threshold: u64) -> bool {
    // splitmix64's finaliser over the three inputs.
    let mut z = seed ^ tree.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) < threshold
}

/// A grown tree laid out for walking the binned rows without branches: a
/// step is `at = next[at] + (bin > split[at])` (a right child always follows
/// its left one), and a leaf points at itself with a split no bin exceeds,
/// so every row takes the same `depth` steps and eight rows are walked side
/// by side (their chains of loads overlap). Walking the rows outside a
/// tree's sample was half of fitting as a node-by-node walk.
struct BinnedWalk {
    feature: Vec<u32>,
    split: Vec<u8>,
    next: Vec<u32>,
    value: Vec<f64>,
    depth: usize,
}

impl BinnedWalk {
    fn new(g: &Grown) -> BinnedWalk {
        let n = g.nodes.len();
        let mut w = BinnedWalk {
            feature: vec![0; n],
            split: vec![u8::MAX; n],
            next: (0..n as u32).collect(),
            value: vec![0.0; n],
            depth: 0,
        };
        let mut depth = vec![0usize; n];
        for (at, node) in g.nodes.iter().enumerate() {
            if node.left == 0 {
                w.value[at] = node.value;
                w.depth = w.depth.max(depth[at]);
            } else {
                debug_assert_eq!(node.right, node.left + 1, "grow puts a right child after its left one");
                w.feature[at] = node.feature;
                w.split[at] = g.split_bins[at];
                w.next[at] = node.left;
                depth[node.left as usize] = depth[at] + 1;
                depth[node.right as usize] = depth[at] + 1;
            }
        }
        w
    }

    /// Adds the tree's value for every row `i` with `!skip[i]` to `pred[i]`.
    fn add_to(&self, b: &Binned, skip: &[bool], pred: &mut [f64]) {
        const LANES: usize = 8;
        let f = b.n_features;
        let step = |at: u32, i: usize| {
            let a = at as usize;
            self.next[a] + (b.bins[i * f + self.feature[a] as usize] > self.split[a]) as u32
        };
        let n = pred.len();
        let mut i = 0;
        while i + LANES <= n {
            let mut at = [0u32; LANES];
            for _ in 0..self.depth {
                for (k, a) in at.iter_mut().enumerate() {
                    *a = step(*a, i + k);
                }
            }
            for (k, a) in at.iter().enumerate() {
                if !skip[i + k] {
                    pred[i + k] += self.value[*a as usize];
                }
            }
            i += LANES;
        }
        for i in i..n {
            let mut a = 0u32;
            for _ in 0..self.depth {
                a = step(a, i);
            }
            if !skip[i] {
                pred[i] += self.value[a as usize];
            }
        }
    }
}

/// Fits a boosted ensemble for one horizon: LAD-TreeBoost at the median,
/// its quantile (pinball-loss) generalisation elsewhere — trees follow the
/// loss's gradient (`q` above the fit, `q - 1` below) and leaves take the
/// `q` quantile of their residuals.
pub fn fit_lad(d: &Design, horizon: usize, p: &GbtParams) -> TreeHead {
    let n = d.rows();
    let w = d.weights();
    let mut y_weighted: Vec<(f64, f64)> = d.y.iter().copied().zip(w.iter().copied()).collect();
    let q = p.quantile.clamp(0.0, 1.0);
    let base = weighted_quantile(&mut y_weighted, q);
    if n == 0 {
        return TreeHead::new(horizon, base, Vec::new());
    }
    let b = bin_design(d, p.bins);
    let mut pred = vec![base; n];
    let seed = p.seed ^ horizon as u64;
    let mut trees = Vec::with_capacity(p.trees);
    let mut resid = vec![0.0; n];
    let mut above = vec![false; n];
    let mut in_sample = vec![false; n];
    let fraction = p.subsample.min(p.max_rows_per_tree as f64 / n as f64);
    // Row i is drawn when its hash is below `threshold`; all rows at 1.
    let threshold = if fraction >= 1.0 { u64::MAX } else { (fraction.max(0.0) * u64::MAX as f64) as u64 };
    let mut rows: Vec<u32> = Vec::with_capacity(n);
    for tree in 0..p.trees as u64 {
        for i in 0..n {
            resid[i] = d.y[i] - pred[i];
            // signum, not a comparison: at the median this is exactly the
            // LAD gradient (halved).
            above[i] = resid[i].signum() > 0.0;
        }
        rows.clear();
        rows.extend((0..n as u32).filter(|&i| threshold == u64::MAX || sampled(seed, tree, i as u64, threshold)));
        let g = grow(&b, &mut rows, &above, &resid, &w, p);
        // Rows in the sample: their leaf is known from the partition.
        for (at, range) in &g.leaves {
            let value = g.nodes[*at].value;
            for &i in &rows[range.clone()] {
                pred[i as usize] += value;
                in_sample[i as usize] = true;
            }
        }
        // The others are walked down the tree.
        BinnedWalk::new(&g).add_to(&b, &in_sample, &mut pred);
        in_sample.fill(false);
        trees.push(g.nodes);
    }
    TreeHead::new(horizon, base, trees)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

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

    /// The training side walks binned rows (`BinnedWalk`), serving walks raw
    /// features against thresholds: for every row, inside the tree's sample
    /// or not, both must land in the same leaf, or the residuals boosting
    /// fits are not those of the model it ships. Features with ties, a
    /// constant one and more distinct values than bins.
    #[test]
    fn the_binned_walk_lands_where_serving_does() {
        let mut d = Design { n_features: 3, ..Default::default() };
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..3000 {
            let (x0, x1): (f64, f64) = (rng.random(), (rng.random_range(0..5u32)) as f64);
            d.x.extend([x0, x1, 1.0]);
            d.y.push(x0 * 3.0 + x1 + rng.random_range(-0.5..0.5));
        }
        let p = GbtParams { leaves: 12, depth: 5, min_leaf: 10, bins: 32, subsample: 0.5, ..Default::default() };
        let b = bin_design(&d, p.bins);
        let resid = d.y.clone();
        let above: Vec<bool> = resid.iter().map(|r| *r > 2.0).collect();
        let mut rows: Vec<u32> = (0..d.rows() as u32).filter(|i| sampled(1, 0, *i as u64, u64::MAX / 2)).collect();
        let g = grow(&b, &mut rows, &above, &resid, &vec![1.0; d.rows()], &p);
        assert!(g.leaves.len() > 4, "a tree worth testing: {} leaves", g.leaves.len());
        let mut walked = vec![0.0; d.rows()];
        BinnedWalk::new(&g).add_to(&b, &vec![false; d.rows()], &mut walked);
        let served = Model::Trees { heads: vec![TreeHead::new(1, 0.0, vec![g.nodes.clone()])] };
        for (i, w) in walked.iter().enumerate() {
            assert_eq!(w.to_bits(), served.predict(0, d.row(i)).to_bits(), "row {i}: {:?}", d.row(i));
        }
        // And the sampled rows' leaves, known from the partition, agree too.
        for (at, range) in &g.leaves {
            for &i in &rows[range.clone()] {
                assert_eq!(walked[i as usize], g.nodes[*at].value, "sampled row {i}");
            }
        }
    }

    #[test]
    fn the_weighted_quantile_is_the_plain_one_at_equal_weights() {
        let values = [5.0, 1.0, 4.0, 2.0, 3.0];
        for q in [0.0, 0.2, 0.5, 0.79, 0.95] {
            let mut v: Vec<(f64, f64)> = values.iter().map(|&x| (x, 2.5)).collect();
            let mut sorted = values.to_vec();
            sorted.sort_by(f64::total_cmp);
            let want = sorted[((q * 5.0) as usize).min(4)];
            assert_eq!(weighted_quantile(&mut v, q), want, "q {q}");
        }
        // A heavy point pulls the median to itself.
        let mut v = vec![(1.0, 1.0), (2.0, 1.0), (9.0, 5.0)];
        assert_eq!(weighted_quantile(&mut v, 0.5), 9.0);
        assert_eq!(weighted_quantile(&mut [], 0.5), 0.0);
    }

    /// Two kinds of rows the features cannot tell apart, with different
    /// targets: unweighted, the leaf median follows the majority; weighted,
    /// it follows the rows that weigh more — as MASE weighs a smooth series
    /// over a noisy one.
    #[test]
    fn row_weights_decide_whose_error_the_fit_minimises() {
        let mut d = Design { n_features: 1, ..Default::default() };
        for i in 0..3000 {
            let x = (i % 100) as f64 / 100.0;
            let heavy = i % 3 == 0;
            d.x.push(x);
            d.y.push(if heavy { 2.0 } else { 0.0 });
            d.w.push(if heavy { 2.5 } else { 0.25 });
        }
        let p = GbtParams { trees: 30, subsample: 0.5, min_leaf: 20, ..Default::default() };
        let weighted = Model::Trees { heads: vec![fit_lad(&d, 1, &p)] };
        assert!((weighted.predict(0, &[0.5]) - 2.0).abs() < 1e-6, "{}", weighted.predict(0, &[0.5]));
        d.w.clear();
        let plain = Model::Trees { heads: vec![fit_lad(&d, 1, &p)] };
        assert!(plain.predict(0, &[0.5]).abs() < 1e-6, "{}", plain.predict(0, &[0.5]));
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
