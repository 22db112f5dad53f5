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
    /// Per-row loss weights, mean 1; empty when every row weighs the same.
    pub w: Vec<f64>,
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

    /// Every row's loss weight (1 each when the design has none).
    pub fn weights(&self) -> Vec<f64> {
        if self.w.len() == self.rows() { self.w.clone() } else { vec![1.0; self.rows()] }
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
    /// The series' MASE scale, when its rows' loss is weighted to match
    /// MASE (see [`build`]).
    pub mase_scale: Option<f64>,
}

/// Builds one design per horizon. A row of a span with a MASE scale weighs
/// the series' level at its origin over that scale (normalised, see
/// [`normalise`] for why); a design with no such span has no weights.
///
/// The series are split among the cores and their rows joined in series
/// order, so the designs are the same whatever the number of cores.
pub fn build(
    spec: &FeatureSpec,
    series: &[Prepared],
    spans: &[Span],
    horizons: &[usize],
    stride: usize,
) -> Vec<Design> {
    let chunk = series.len().div_ceil(crate::cores::count()).max(1);
    let chunks: Vec<(&[Prepared], &[Span])> = series.chunks(chunk).zip(spans.chunks(chunk)).collect();
    let mut parts =
        crate::cores::map(&chunks, |&(series, spans)| build_rows(spec, series, spans, horizons, stride)).into_iter();
    let mut out = parts
        .next()
        .unwrap_or_else(|| horizons.iter().map(|_| Design { n_features: spec.len(), ..Default::default() }).collect());
    for part in parts {
        for (d, p) in out.iter_mut().zip(part) {
            d.x.extend_from_slice(&p.x);
            d.y.extend_from_slice(&p.y);
            d.w.extend_from_slice(&p.w);
        }
    }
    for d in &mut out {
        normalise(&mut d.w);
    }
    out
}

/// The rows of `series`, unweighted ([`build`] normalises the weights once
/// the rows of every series are in).
fn build_rows(
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
            if let Some(o) = spec.origin(p, t) {
                for (d, &h) in out.iter_mut().zip(horizons) {
                    let target = t + h;
                    if target >= span.target_end || target >= v.len() || v[target].is_nan() {
                        continue;
                    }
                    if spec.row(p, &o, h, &mut row) {
                        d.x.extend_from_slice(&row);
                        d.y.push(v[target] / o.scale - spec.base(p, &o, h));
                        d.w.push(span.mase_scale.map_or(f64::NAN, |m| o.scale / m));
                    }
                }
            }
            t += stride.max(1);
        }
    }
    out
}

/// Makes weights average 1, a row of a series without a MASE scale (NaN)
/// weighing the average; empties them when no row has one.
///
/// Why weights: targets are divided by the series' level (`scale`), so an
/// absolute error in scaled units is `|error| / level`, while MASE, what the
/// backtest judges, charges `|error| / mase_scale`. Weighting a row by
/// `level / mase_scale` makes the loss summed over rows each series' MASE
/// summed over its rows: a smooth series (small seasonal naive error for
/// its level) weighs more, as it does in the metric.
fn normalise(w: &mut Vec<f64>) {
    let (sum, known) = w.iter().filter(|x| x.is_finite()).fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if known == 0 {
        w.clear();
        return;
    }
    let mean = sum / known as f64;
    for x in w.iter_mut() {
        *x = if x.is_finite() { *x / mean } else { 1.0 };
    }
}

#[cfg(test)]
mod tests {
    use swarm_models::features::SeriesRef;

    use super::*;

    /// Two series of the same level: one smooth (small day-to-day error),
    /// one noisy. Their rows weigh level / MASE scale, normalised to mean 1,
    /// so the smooth one's rows weigh more, by the ratio of the scales; a
    /// series without a scale weighs the mean.
    #[test]
    fn rows_weigh_their_level_over_their_mase_scale() {
        let spec =
            FeatureSpec { lags: vec![1], seasons_ms: vec![], rolling: vec![], scale_window: 4, ..Default::default() };
        let smooth: Vec<f64> = (0..40).map(|i| 10.0 + (i % 2) as f64 * 0.2).collect();
        let noisy: Vec<f64> = (0..40).map(|i| 10.0 + (i % 2) as f64 * 2.0).collect();
        let prepared: Vec<Prepared> = [&smooth, &noisy, &smooth]
            .iter()
            .map(|v| Prepared::new(SeriesRef { values: v, start_ms: 0, interval_ms: 1 }))
            .collect();
        let span = |m: Option<f64>| Span { from: 3, to: 30, target_end: 40, mase_scale: m };
        let d = &build(&spec, &prepared, &[span(Some(0.2)), span(Some(2.0)), span(None)], &[1], 1)[0];
        assert_eq!(d.w.len(), d.rows());
        let per = d.rows() / 3;
        let (s, n, none) = (&d.w[..per], &d.w[per..2 * per], &d.w[2 * per..]);
        // MASE scales differ by 10; levels (means of 4 alternating points)
        // are 10.1 and 11.
        let ratio = s.iter().sum::<f64>() / n.iter().sum::<f64>();
        assert!((ratio - 10.0 * 10.1 / 11.0).abs() < 1e-9, "{ratio}");
        assert!(none.iter().all(|&w| w == 1.0));
        let known = &d.w[..2 * per];
        assert!((known.iter().sum::<f64>() / known.len() as f64 - 1.0).abs() < 1e-9);
        // The rows are those of one pass over the series in order, however
        // many cores built them.
        let spans = [span(Some(0.2)), span(Some(2.0)), span(None)];
        let mut one = build_rows(&spec, &prepared, &spans, &[1, 2], 1);
        for d in &mut one {
            normalise(&mut d.w);
        }
        for (a, b) in build(&spec, &prepared, &spans, &[1, 2], 1).iter().zip(&one) {
            assert_eq!((&a.x, &a.y, &a.w), (&b.x, &b.y, &b.w));
        }
        // No scale anywhere: no weights.
        let d = &build(&spec, &prepared, &[span(None), span(None), span(None)], &[1], 1)[0];
        assert!(d.w.is_empty() && d.weights() == vec![1.0; d.rows()]);
    }
}
