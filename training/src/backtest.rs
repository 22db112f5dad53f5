//! The rolling-origin backtest and its report.
//!
//! Protocol: the test window is the last `window` points (2 days of 5-minute
//! data) of every series; forecast origins are every `origin_every` points
//! (1 hour) from the point just before the window, while all 12 horizons
//! stay inside it. A model is fitted only on data before the window (or
//! evaluated as given). For each series, MASE divides the mean absolute
//! error by the in-sample MAE of the one-day seasonal naive forecast on the
//! data before the window; the report averages per-series MAE and MASE over
//! series, per horizon group. Baselines — Naive (last value), SeasonalNaive
//! (same time one day earlier) and a moving average (mean of the last
//! `ma_window` points) — are scored on exactly the same origins and horizons.
//! An origin the model cannot forecast (missing history) or a missing
//! target is skipped for every method alike.

use std::collections::BTreeMap;

use serde::Serialize;
use swarm_datasets::regular::Series;
use swarm_models::artifact::Artifact;

use crate::fit::prepare;
use crate::mase::seasonal_naive_mae;

/// The protocol's parameters.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Protocol {
    /// Test window, points.
    pub window: usize,
    /// Points between origins.
    pub origin_every: usize,
    /// Longest horizon.
    pub max_horizon: usize,
    /// Seasonal period of the naive baseline and the MASE scale, points
    /// (a fit judged by this protocol weighs its rows by the same scale:
    /// `fit::MaseWeights::Points`).
    pub season: usize,
    /// Window of the moving-average baseline, points.
    pub ma_window: usize,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol { window: 576, origin_every: 12, max_horizon: 12, season: 288, ma_window: 12 }
    }
}

/// Horizon groups reported.
pub const GROUPS: [(&str, usize, usize); 5] =
    [("h1", 1, 1), ("h1-3", 1, 3), ("h4-6", 4, 6), ("h7-12", 7, 12), ("h1-12", 1, 12)];

/// MAE and MASE of one method on one horizon group.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Score {
    /// Mean over series of the mean absolute error.
    pub mae: f64,
    /// Mean over series of MAE / seasonal-naive in-sample MAE.
    pub mase: f64,
}

/// The report, shaped for other tools (see the README of `models/`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Method → group → score.
    pub models: BTreeMap<String, BTreeMap<String, Score>>,
    /// Fraction of targets inside the model's interval.
    pub coverage90: f64,
    /// Fraction of targets at or below the served upper bound: the
    /// upper-quantile model's forecast where the artifact has one (its
    /// nominal coverage is [`Report::upper_quantile`]), else the interval's
    /// upper end (nominally half-way between the interval's coverage and 1).
    pub upper_coverage: f64,
    /// How far above the point forecast the upper bound sits: per series
    /// the mean gap divided by the MASE scale, averaged over series. At equal
    /// coverage a smaller gap is a sharper bound (fewer false alarms for a
    /// controller that acts on it).
    pub upper_gap: f64,
    /// The upper-quantile model's quantile, when the artifact has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper_quantile: Option<f64>,
    /// Series evaluated.
    pub series: usize,
    /// Forecast origins evaluated (all series).
    pub origins: usize,
    /// The protocol.
    pub protocol: Protocol,
    /// Horizons of the model that were evaluated.
    pub horizons: Vec<usize>,
    /// Each evaluated series' MASE, method → group → MASE: where a model
    /// loses is rarely spread evenly, and the mean hides which series (a
    /// smooth one, a spiky one, one with a regime change only in the test
    /// window) carry the difference between two models.
    pub per_series: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
}

/// Training ends (exclusive) per series: everything before the test window.
pub fn train_ends(series: &[Series], p: &Protocol) -> Vec<usize> {
    series.iter().map(|s| s.values.len().saturating_sub(p.window)).collect()
}

#[derive(Default, Clone)]
struct Acc {
    sum: f64,
    n: usize,
}

/// Runs the protocol for `artifact` and the baselines.
pub fn evaluate(series: &[Series], artifact: &Artifact, p: &Protocol) -> Report {
    let methods = ["swarm", "naive", "seasonal_naive", "moving_average"];
    let prepared = prepare(series);
    let horizons: Vec<usize> = artifact.horizons.iter().copied().filter(|&h| h <= p.max_horizon).collect();
    // Per method, per group: sums of per-series MAE and MASE.
    let mut totals: BTreeMap<(&str, &str), (f64, f64, usize)> = BTreeMap::new();
    let (mut covered, mut judged, mut origins) = (0usize, 0usize, 0usize);
    let mut below_upper = 0usize;
    // Per series: the mean of (upper bound - point forecast) over its
    // judged targets, divided by its MASE scale; summed, and series counted.
    let (mut gap_sum, mut gap_series) = (0.0, 0usize);
    let mut per_series: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>> = BTreeMap::new();
    for (s, prep) in series.iter().zip(&prepared) {
        let v = &s.values;
        let n = v.len();
        if n < p.window + p.season + 1 {
            continue;
        }
        let cut = n - p.window;
        // MASE scale: in-sample one-day seasonal naive MAE before the window.
        let Some(denom) = seasonal_naive_mae(&v[..cut], p.season) else {
            continue;
        };
        let mut acc: BTreeMap<(&str, usize), Acc> = BTreeMap::new();
        let mut gap = Acc::default();
        let mut t = cut - 1;
        while t + p.max_horizon < n {
            let Some(fc) = artifact.forecast_at(prep, t) else {
                t += p.origin_every;
                continue;
            };
            origins += 1;
            let ma_from = t + 1 - p.ma_window.min(t + 1);
            let ma = v[ma_from..=t].iter().sum::<f64>() / (t + 1 - ma_from) as f64;
            for f in fc.iter().filter(|f| f.horizon <= p.max_horizon) {
                let h = f.horizon;
                let y = v[t + h];
                let sn = v[t + h - p.season];
                if y.is_nan() || v[t].is_nan() || sn.is_nan() || ma.is_nan() {
                    continue;
                }
                judged += 1;
                if f.lower <= y && y <= f.upper {
                    covered += 1;
                }
                if y <= f.upper {
                    below_upper += 1;
                }
                gap.sum += f.upper - f.mean;
                gap.n += 1;
                for (m, pred) in [("swarm", f.mean), ("naive", v[t]), ("seasonal_naive", sn), ("moving_average", ma)] {
                    let a = acc.entry((m, h)).or_default();
                    a.sum += (y - pred).abs();
                    a.n += 1;
                }
            }
            t += p.origin_every;
        }
        if gap.n > 0 {
            gap_sum += gap.sum / gap.n as f64 / denom;
            gap_series += 1;
        }
        for m in methods {
            for (g, lo, hi) in GROUPS {
                let (sum, cnt) =
                    (lo..=hi).filter_map(|h| acc.get(&(m, h))).fold((0.0, 0usize), |(s, c), a| (s + a.sum, c + a.n));
                if cnt == 0 {
                    continue;
                }
                let mae = sum / cnt as f64;
                let e = totals.entry((m, g)).or_insert((0.0, 0.0, 0));
                e.0 += mae;
                e.1 += mae / denom;
                e.2 += 1;
                per_series
                    .entry(s.entity.clone())
                    .or_default()
                    .entry(m.to_owned())
                    .or_default()
                    .insert(g.to_owned(), mae / denom);
            }
        }
    }
    let mut models: BTreeMap<String, BTreeMap<String, Score>> = BTreeMap::new();
    let mut evaluated_series = 0;
    for ((m, g), (mae, mase, k)) in totals {
        evaluated_series = evaluated_series.max(k);
        models
            .entry(m.to_owned())
            .or_default()
            .insert(g.to_owned(), Score { mae: mae / k as f64, mase: mase / k as f64 });
    }
    Report {
        models,
        coverage90: if judged > 0 { covered as f64 / judged as f64 } else { f64::NAN },
        upper_coverage: if judged > 0 { below_upper as f64 / judged as f64 } else { f64::NAN },
        upper_quantile: artifact.upper.as_ref().map(|u| u.quantile),
        upper_gap: if gap_series > 0 { gap_sum / gap_series as f64 } else { f64::NAN },
        series: evaluated_series,
        origins,
        protocol: *p,
        horizons,
        per_series,
    }
}

impl Report {
    /// MASE of `method` on `group`, if evaluated.
    pub fn mase(&self, method: &str, group: &str) -> Option<f64> {
        self.models.get(method)?.get(group).map(|s| s.mase)
    }

    /// A Markdown rendering: MASE (MAE) per method and group.
    pub fn markdown(&self, title: &str) -> String {
        let mut out = format!("## {title}\n\n");
        out.push_str(&format!(
            "{} series, {} origins, horizons {:?}; 90 % interval coverage {:.1} %; {}: {:.1} % of targets at or below it, {:.2} MASE scales above the point forecast.\n\n",
            self.series,
            self.origins,
            self.horizons,
            self.coverage90 * 100.0,
            match self.upper_quantile {
                Some(q) => format!("upper bound from the {q} quantile model"),
                None => "upper bound from the interval".into(),
            },
            self.upper_coverage * 100.0,
            self.upper_gap
        ));
        out.push_str("| method |");
        for (g, _, _) in GROUPS {
            out.push_str(&format!(" {g} MASE (MAE) |"));
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(GROUPS.len()));
        out.push('\n');
        for (m, groups) in &self.models {
            out.push_str(&format!("| {m} |"));
            for (g, _, _) in GROUPS {
                match groups.get(g) {
                    Some(s) => out.push_str(&format!(" {:.3} ({:.3}) |", s.mase, s.mae)),
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn naive_artifact() -> Artifact {
        Artifact::naive(&(1..=12).collect::<Vec<_>>(), 1.0)
    }

    #[test]
    fn a_model_equal_to_naive_scores_like_naive_and_seasonal_data_favours_snaive() {
        // A pure daily pattern: seasonal naive is perfect, naive is not.
        // Noise only in the first two days, so the MASE scale is not zero
        // while the test window and the days it looks back on are clean.
        let values: Vec<f64> = (0..288 * 5)
            .map(|i| {
                let noise = if i < 576 { ((i * 7919) % 13) as f64 * 0.1 } else { 0.0 };
                10.0 + 5.0 * ((i % 288) as f64 / 288.0 * std::f64::consts::TAU).sin() + noise
            })
            .collect();
        let s = Series { entity: "a".into(), start_ms: 0, interval_ms: 300_000, values };
        let r = evaluate(&[s], &naive_artifact(), &Protocol::default());
        assert_eq!(r.series, 1);
        assert_eq!(r.origins, 48);
        let (sw, nv) = (r.mase("swarm", "h1-12").unwrap(), r.mase("naive", "h1-12").unwrap());
        assert!((sw - nv).abs() < 1e-9, "{sw} vs {nv}");
        assert!(r.mase("seasonal_naive", "h1-12").unwrap() < 1e-9);
        assert!(r.mase("naive", "h7-12").unwrap() > r.mase("naive", "h1").unwrap());
        assert!(r.markdown("t").contains("| seasonal_naive |"));
    }
}
