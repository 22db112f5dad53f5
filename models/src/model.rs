//! Model types: how a feature row becomes a (scaled) prediction.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// A linear model for one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearHead {
    /// Steps ahead.
    pub horizon: usize,
    /// Intercept.
    pub intercept: f64,
    /// One coefficient per feature.
    pub coefficients: Vec<f64>,
}

/// One node of a regression tree, stored flat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeNode {
    /// Feature index tested (ignored at a leaf).
    pub feature: u32,
    /// Go left when `x[feature] <= threshold`.
    pub threshold: f64,
    /// Index of the left child; 0 marks a leaf (the root is never a child).
    pub left: u32,
    /// Index of the right child.
    pub right: u32,
    /// Leaf value.
    pub value: f64,
}

/// A boosted ensemble for one horizon: `base + Σ trees`, each tree's leaf
/// values already multiplied by the learning rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeHead {
    /// Steps ahead.
    pub horizon: usize,
    /// Starting value (median of the scaled targets).
    pub base: f64,
    /// The trees.
    pub trees: Vec<Vec<TreeNode>>,
    /// The trees laid out for evaluation, built on first use.
    #[serde(skip)]
    pub flat: FlatTrees,
}

impl TreeHead {
    /// A head of these trees.
    pub fn new(horizon: usize, base: f64, trees: Vec<Vec<TreeNode>>) -> TreeHead {
        TreeHead { horizon, base, trees, flat: FlatTrees::default() }
    }

    /// `base + Σ trees` at `x`, each tree walked node by node.
    fn walk_nodes(&self, x: &[f64]) -> f64 {
        self.base + self.trees.iter().map(|t| eval_tree(t, x)).sum::<f64>()
    }

    /// `base + Σ trees` at `x`, the trees summed in order.
    fn predict(&self, x: &[f64]) -> f64 {
        match self.flat.0.get_or_init(|| Flat::build(&self.trees)) {
            Some(flat) => self.base + flat.sum(x),
            None => self.walk_nodes(x),
        }
    }
}

/// Most levels a tree may have to be laid out complete (2^9 - 1 nodes);
/// deeper ones are walked node by node.
const FLAT_MAX_DEPTH: u32 = 8;

/// Trees walked side by side. One walk is a chain of loads that each wait
/// on the comparison before; walks of different trees are independent, so
/// the processor overlaps [`LANES`] of them instead of waiting on one.
const LANES: usize = 16;

/// A head's trees as [`Flat`], derived from [`TreeHead::trees`] on first
/// use (`None`: a tree too deep to lay out complete). Not part of the
/// artifact, and equal whenever the trees are.
#[derive(Debug, Clone, Default)]
pub struct FlatTrees(OnceLock<Option<Flat>>);

impl PartialEq for FlatTrees {
    fn eq(&self, _: &FlatTrees) -> bool {
        true
    }
}

/// Trees padded to complete trees of one depth, level order, in flat
/// arrays: internal node `k`'s children are `2k + 1` and `2k + 2`, so a
/// walk is `depth` steps of arithmetic with no branch to mispredict. A
/// leaf above the bottom is pushed down: its node tests `x <= +inf` and
/// both children carry it, so any value (NaN included) reaches it.
#[derive(Debug, Clone)]
pub struct Flat {
    depth: u32,
    /// Per tree, `2^depth - 1` internal nodes.
    feature: Vec<u32>,
    threshold: Vec<f64>,
    /// Per tree, `2^depth` leaves.
    value: Vec<f64>,
    trees: usize,
}

impl Flat {
    fn build(trees: &[Vec<TreeNode>]) -> Option<Flat> {
        fn depth(t: &[TreeNode], i: usize, level: u32) -> Option<u32> {
            let n = t.get(i)?;
            if level > FLAT_MAX_DEPTH {
                return None;
            }
            if n.left == 0 {
                return Some(level);
            }
            Some(depth(t, n.left as usize, level + 1)?.max(depth(t, n.right as usize, level + 1)?))
        }
        let d = trees.iter().map(|t| depth(t, 0, 0)).try_fold(0, |a, b| Some(a.max(b?)))?;
        let (internal, leaves) = ((1usize << d) - 1, 1usize << d);
        let mut f = Flat {
            depth: d,
            feature: vec![0; internal * trees.len()],
            threshold: vec![f64::INFINITY; internal * trees.len()],
            value: vec![0.0; leaves * trees.len()],
            trees: trees.len(),
        };
        fn place(f: &mut Flat, t: &[TreeNode], ti: usize, node: usize, k: usize, level: u32) {
            let n = &t[node];
            let internal = (1usize << f.depth) - 1;
            if level == f.depth {
                f.value[ti * (internal + 1) + k - internal] = n.value;
                return;
            }
            let (l, r) = if n.left == 0 {
                (node, node)
            } else {
                f.feature[ti * internal + k] = n.feature;
                f.threshold[ti * internal + k] = n.threshold;
                (n.left as usize, n.right as usize)
            };
            place(f, t, ti, l, 2 * k + 1, level + 1);
            place(f, t, ti, r, 2 * k + 2, level + 1);
        }
        for (ti, t) in trees.iter().enumerate() {
            place(&mut f, t, ti, 0, 0, 0);
        }
        Some(f)
    }

    /// The sum of every tree's leaf at `x`, added in tree order as
    /// `Iterator::sum` adds (from -0), so the same bits as the node-by-node
    /// walk; the trees walked [`LANES`] at a time, their leaves added as
    /// each group lands (no iterator to hand them out one by one: that cost
    /// a quarter of a forecast).
    fn sum(&self, x: &[f64]) -> f64 {
        let internal = (1usize << self.depth) - 1;
        let mut total = -0.0;
        for first in (0..self.trees).step_by(LANES) {
            let lanes = LANES.min(self.trees - first);
            let mut k = [0usize; LANES];
            for _ in 0..self.depth {
                for (lane, k) in k.iter_mut().enumerate().take(lanes) {
                    let at = (first + lane) * internal + *k;
                    // Right unless `x <= threshold` (NaN goes right, as in `eval_tree`).
                    let left = x[self.feature[at] as usize] <= self.threshold[at];
                    let right = !left;
                    *k = 2 * *k + 1 + usize::from(right);
                }
            }
            for (lane, k) in k.iter().enumerate().take(lanes) {
                total += self.value[(first + lane) * (internal + 1) + k - internal];
            }
        }
        total
    }
}

/// A forecasting model: one head per horizon (direct multi-horizon).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Model {
    /// Linear heads.
    Linear {
        /// One per horizon, in the artifact's horizon order.
        heads: Vec<LinearHead>,
    },
    /// Gradient-boosted regression trees.
    Trees {
        /// One per horizon, in the artifact's horizon order.
        heads: Vec<TreeHead>,
    },
}

fn eval_tree(nodes: &[TreeNode], x: &[f64]) -> f64 {
    let mut i = 0usize;
    loop {
        let n = &nodes[i];
        if n.left == 0 {
            return n.value;
        }
        i = if x[n.feature as usize] <= n.threshold { n.left as usize } else { n.right as usize };
    }
}

impl Model {
    /// `linear` or `trees`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Model::Linear { .. } => "linear",
            Model::Trees { .. } => "trees",
        }
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        match self {
            Model::Linear { heads } => heads.len(),
            Model::Trees { heads } => heads.len(),
        }
    }

    /// Horizon of head `i`.
    pub fn horizon(&self, i: usize) -> usize {
        match self {
            Model::Linear { heads } => heads[i].horizon,
            Model::Trees { heads } => heads[i].horizon,
        }
    }

    /// Scaled prediction of head `i` for feature row `x`.
    pub fn predict(&self, i: usize, x: &[f64]) -> f64 {
        match self {
            Model::Linear { heads } => {
                let h = &heads[i];
                h.intercept + h.coefficients.iter().zip(x).map(|(c, v)| c * v).sum::<f64>()
            }
            Model::Trees { heads } => heads[i].predict(x),
        }
    }

    /// [`Model::predict`] with every tree walked node by node as the
    /// artifact stores it: the reference the flat layout must equal bit for
    /// bit, and the baseline `cargo bench -p swarm-models --bench forecast`
    /// times the flat walk against in the same process.
    pub fn predict_node_by_node(&self, i: usize, x: &[f64]) -> f64 {
        match self {
            Model::Linear { .. } => self.predict(i, x),
            Model::Trees { heads } => heads[i].walk_nodes(x),
        }
    }

    /// Checks shapes against the number of features; says what is wrong.
    pub fn validate(&self, n_features: usize) -> Result<(), String> {
        match self {
            Model::Linear { heads } => {
                for h in heads {
                    if h.coefficients.len() != n_features {
                        return Err(format!(
                            "head for horizon {} has {} coefficients for {n_features} features",
                            h.horizon,
                            h.coefficients.len()
                        ));
                    }
                    if !h.intercept.is_finite() || h.coefficients.iter().any(|c| !c.is_finite()) {
                        return Err(format!("head for horizon {} has a non-finite coefficient", h.horizon));
                    }
                }
            }
            Model::Trees { heads } => {
                for h in heads {
                    for (ti, t) in h.trees.iter().enumerate() {
                        if t.is_empty() {
                            return Err(format!("tree {ti} of horizon {} is empty", h.horizon));
                        }
                        for (i, n) in t.iter().enumerate() {
                            if n.left == 0 {
                                continue;
                            }
                            // Children come after their parent: evaluation always terminates.
                            let (l, r) = (n.left as usize, n.right as usize);
                            if l <= i || r <= i || l >= t.len() || r >= t.len() || n.feature as usize >= n_features {
                                return Err(format!("tree {ti} of horizon {} is malformed at node {i}", h.horizon));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_and_tree_predictions() {
        let m = Model::Linear { heads: vec![LinearHead { horizon: 1, intercept: 1.0, coefficients: vec![2.0, -1.0] }] };
        assert_eq!(m.predict(0, &[3.0, 1.0]), 6.0);
        assert!(m.validate(2).is_ok());
        assert!(m.validate(3).is_err());
        let leaf = |v| TreeNode { feature: 0, threshold: 0.0, left: 0, right: 0, value: v };
        let tree = vec![TreeNode { feature: 1, threshold: 0.5, left: 1, right: 2, value: 0.0 }, leaf(-1.0), leaf(1.0)];
        let t = Model::Trees { heads: vec![TreeHead::new(3, 10.0, vec![tree.clone(), tree])] };
        assert_eq!(t.predict(0, &[0.0, 0.0]), 8.0);
        assert_eq!(t.predict(0, &[0.0, 0.9]), 12.0);
        assert!(t.validate(2).is_ok());
        assert!(t.validate(1).is_err());
    }

    /// Random trees (leaves at any depth, NaN and infinite features, fewer
    /// trees than lanes and more): the flat walk gives every head's
    /// prediction bit for bit as the node-by-node one.
    #[test]
    fn the_flat_layout_predicts_exactly_as_the_trees_do() {
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        fn grow(t: &mut Vec<TreeNode>, at: usize, depth: u32, next: &mut impl FnMut() -> u64) {
            if depth == 0 || next().is_multiple_of(4) {
                t[at].value = (next() % 2001) as f64 / 1000.0 - 1.0;
                return;
            }
            let (l, r) = (t.len(), t.len() + 1);
            t.extend([t[at].clone(), t[at].clone()]);
            t[at] = TreeNode {
                feature: (next() % 5) as u32,
                threshold: (next() % 200) as f64 / 100.0 - 1.0,
                left: l as u32,
                right: r as u32,
                value: 0.0,
            };
            grow(t, l, depth - 1, next);
            grow(t, r, depth - 1, next);
        }
        for (n_trees, max_depth) in [(1, 0), (3, 2), (8, 5), (13, 4), (150, 6), (9, 8), (4, 11)] {
            let trees: Vec<Vec<TreeNode>> = (0..n_trees)
                .map(|_| {
                    let mut t = vec![TreeNode { feature: 0, threshold: 0.0, left: 0, right: 0, value: 0.0 }];
                    grow(&mut t, 0, max_depth, &mut next);
                    t
                })
                .collect();
            let head = TreeHead::new(1, 0.25, trees);
            let flat = Flat::build(&head.trees);
            assert_eq!(flat.is_some(), max_depth <= FLAT_MAX_DEPTH, "{n_trees} trees of depth {max_depth}");
            for _ in 0..300 {
                let x: Vec<f64> = (0..5)
                    .map(|_| match next() % 10 {
                        0 => f64::NAN,
                        1 => f64::INFINITY,
                        2 => f64::NEG_INFINITY,
                        _ => (next() % 240) as f64 / 100.0 - 1.2,
                    })
                    .collect();
                let walked = head.walk_nodes(&x);
                assert_eq!(
                    head.predict(&x).to_bits(),
                    walked.to_bits(),
                    "{n_trees} trees of depth {max_depth} at {x:?}"
                );
            }
        }
    }
}
