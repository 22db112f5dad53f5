//! Model types: how a feature row becomes a (scaled) prediction.

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
            Model::Trees { heads } => {
                let h = &heads[i];
                h.base + h.trees.iter().map(|t| eval_tree(t, x)).sum::<f64>()
            }
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
        let t = Model::Trees { heads: vec![TreeHead { horizon: 3, base: 10.0, trees: vec![tree.clone(), tree] }] };
        assert_eq!(t.predict(0, &[0.0, 0.0]), 8.0);
        assert_eq!(t.predict(0, &[0.0, 0.9]), 12.0);
        assert!(t.validate(2).is_ok());
        assert!(t.validate(1).is_err());
    }
}
