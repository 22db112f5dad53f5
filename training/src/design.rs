//! Design matrices: one per horizon, rows = forecast origins, built with the
//! shared feature pipeline so training sees exactly what serving computes.

use swarm_models::features::{FeatureSpec, Prepared};

/// Rows of one horizon.
#[derive(Debug, Clone, Default)]
pub struct Design {
    /// Row-major features.
    pub x: Vec<f64>,
    /// Scaled targets.
    pub y: Vec<f64>,
    /// Features per row.
    pub n_features: usize,
}

impl Design {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.n_features..(i + 1) * self.n_features]
    }
}

/// Which origins of a series to use: `t` in `[from, to)` stepping by
/// `stride`, with every target `t + h` strictly below `target_end`.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// First origin.
    pub from: usize,
    /// End of origins (exclusive).
    pub to: usize,
    /// Targets must be `< target_end`.
    pub target_end: usize,
}

/// Builds one design per horizon.
pub fn build(
    spec: &FeatureSpec,
    series: &[Prepared],
    spans: &[Span],
    horizons: &[usize],
    stride: usize,
) -> Vec<Design> {
    let n_features = spec.len();
    let mut out: Vec<Design> = horizons.iter().map(|_| Design { n_features, ..Default::default() }).collect();
    let mut row = Vec::with_capacity(n_features);
    for (p, span) in series.iter().zip(spans) {
        let v = p.series().values;
        let mut t = span.from;
        while t < span.to {
            if let Some(scale) = spec.scale(p, t) {
                for (d, &h) in out.iter_mut().zip(horizons) {
                    let target = t + h;
                    if target >= span.target_end || target >= v.len() || v[target].is_nan() {
                        continue;
                    }
                    if spec.row(p, t, h, scale, &mut row) {
                        d.x.extend_from_slice(&row);
                        d.y.push(v[target] / scale - spec.base(p, t, h, scale));
                    }
                }
            }
            t += stride.max(1);
        }
    }
    out
}
