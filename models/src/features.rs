//! The feature pipeline.
//!
//! A forecast is made at an *origin* `t` (index of the last observed point of
//! a regular series) for a horizon `h` (steps ahead). Its features use only
//! points `..= t`; the target is the point `t + h`. Every value is divided by
//! the series' scale at the origin (mean absolute value of the last
//! `scale_window` points), so one pooled model serves series of any size;
//! predictions are multiplied back.
//!
//! Features, in order (see [`FeatureSpec::names`]):
//! - `lag_k`: the value `k - 1` steps before the origin (`lag_1` is the last value);
//! - `season_S`: the value one season `S` (wall-clock, e.g. 1 day) before
//!   the *target* time; seasons are given in milliseconds and converted by
//!   the series' sampling interval, so the same spec serves 1-minute and
//!   5-minute series;
//! - `mean_w`, `std_w`: rolling mean and standard deviation of the last `w` points;
//! - `tod_sin`, `tod_cos`, `dow_sin`, `dow_cos`: time of day and day of week
//!   of the target time (UTC; trace-relative time counts from midnight of day 0);
//! - `own_period_lag`, `own_period_strength`: the series' own period found on
//!   the scale window ([`crate::period`]), as the mean of the values one and
//!   two periods before the target, and how much better than the last value
//!   that period repeats.
//!
//! What does not depend on the horizon (the scale, the period) is computed
//! once per origin: [`FeatureSpec::origin`].
//!
//! The target of horizon `h` is the value at `t + h`, scaled, or for the
//! horizons in [`FeatureSpec::change_horizons`] its change from the value at
//! `t` ([`FeatureSpec::base`] is what the model's output is added to).
//!
//! A window that touches a missing (NaN) point yields no row: nothing is imputed here.

use serde::{Deserialize, Serialize};

use crate::period::{self, Period};

/// One day, ms: the daily season and time-of-day period.
pub const DAY_MS: i64 = 86_400_000;

/// What features to compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Lags in steps (1 = the last value).
    pub lags: Vec<usize>,
    /// Seasons in wall-clock milliseconds (e.g. 86400000 for one day).
    pub seasons_ms: Vec<i64>,
    /// Rolling windows in steps.
    pub rolling: Vec<usize>,
    /// Add time-of-day encodings.
    pub time_of_day: bool,
    /// Add day-of-week encodings.
    pub day_of_week: bool,
    /// Points in the per-series scale.
    pub scale_window: usize,
    /// Horizons whose model predicts the change from the last value
    /// (scaled), not the value. Trees cannot extrapolate: a series that
    /// climbs to a level its scale has never seen (an idle VM pinned at
    /// 100 % for an hour) falls in the top bin of every level feature, and a
    /// level target caps the forecast at the largest scaled value in
    /// training. A change target carries the level over, which pays where
    /// the next values stay near the last one (short horizons) and costs
    /// where they revert to the series' usual level (long ones);
    /// `swarm-train` chooses per horizon on held-out data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub change_horizons: Vec<usize>,
    /// Longest own period searched, wall-clock ms (0: no own-period
    /// features). Converted by the series' sampling interval and capped at
    /// half the scale window, which is where the period is found: the
    /// points serving reads anyway, and both values a feature takes (one
    /// and two periods before the target) lie in it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub own_period_max_ms: i64,
}

fn is_zero(x: &i64) -> bool {
    *x == 0
}

impl Default for FeatureSpec {
    fn default() -> Self {
        FeatureSpec {
            lags: (1..=12).collect(),
            seasons_ms: vec![DAY_MS, 7 * DAY_MS],
            rolling: vec![6, 12, 48, 288],
            time_of_day: true,
            day_of_week: false,
            scale_window: 288,
            change_horizons: Vec::new(),
            own_period_max_ms: 4 * 3_600_000,
        }
    }
}

/// What every horizon of a forecast at origin `t` shares, computed once
/// ([`FeatureSpec::origin`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Origin {
    /// The origin: the last observed point.
    pub t: usize,
    /// The series' scale there ([`FeatureSpec::scale`]).
    pub scale: f64,
    /// Its own period there, when the spec has own-period features.
    pub period: Option<Period>,
}

/// A series view the pipeline reads: values on a regular grid.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    /// Values; NaN marks a missing point.
    pub values: &'a [f64],
    /// Timestamp of `values[0]`, ms.
    pub start_ms: i64,
    /// Sampling interval, ms.
    pub interval_ms: i64,
}

/// `ranges` sorted, with overlapping and touching ones joined.
pub fn merge_ranges(mut ranges: Vec<std::ops::Range<usize>>) -> Vec<std::ops::Range<usize>> {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<std::ops::Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Prefix sums that make rolling statistics O(1) per origin.
#[derive(Debug, Clone)]
pub struct Prepared<'a> {
    s: SeriesRef<'a>,
    /// The first point the sums cover: windows start there or later.
    first: usize,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    sum_abs: Vec<f64>,
    nan: Vec<u32>,
}

impl<'a> Prepared<'a> {
    /// Prepares a series (every origin: what training and backtests use).
    pub fn new(s: SeriesRef<'a>) -> Self {
        Self::from_point(s, 0)
    }

    /// Prepares a series for windows that start at point `first` or later:
    /// serving, which forecasts from the last point only and needs the last
    /// [`FeatureSpec::min_history`] points' sums, not a week's.
    pub fn from_point(s: SeriesRef<'a>, first: usize) -> Self {
        let first = first.min(s.values.len());
        let n = s.values.len() - first;
        let (mut sum, mut sum_sq, mut sum_abs, mut nan) =
            (vec![0.0; n + 1], vec![0.0; n + 1], vec![0.0; n + 1], vec![0u32; n + 1]);
        for (i, &v) in s.values[first..].iter().enumerate() {
            let ok = !v.is_nan();
            let x = if ok { v } else { 0.0 };
            sum[i + 1] = sum[i] + x;
            sum_sq[i + 1] = sum_sq[i] + x * x;
            sum_abs[i + 1] = sum_abs[i] + x.abs();
            nan[i + 1] = nan[i] + (!ok) as u32;
        }
        Prepared { s, first, sum, sum_sq, sum_abs, nan }
    }

    /// The series.
    pub fn series(&self) -> SeriesRef<'a> {
        self.s
    }

    /// Whether points `from..=to_incl` are all observed (and covered by the sums).
    fn window_ok(&self, from: usize, to_incl: usize) -> bool {
        from >= self.first && self.nan[to_incl + 1 - self.first] == self.nan[from - self.first]
    }

    /// The sum of `prefix`'s quantity over points `from..=to_incl` (a window [`Prepared::window_ok`] passed).
    fn over(&self, prefix: &[f64], from: usize, to_incl: usize) -> f64 {
        prefix[to_incl + 1 - self.first] - prefix[from - self.first]
    }
}

impl FeatureSpec {
    /// Feature names, in order.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.lags.iter().map(|l| format!("lag_{l}")).collect();
        n.extend(self.seasons_ms.iter().map(|s| format!("season_{}h", s / 3_600_000)));
        for w in &self.rolling {
            n.push(format!("mean_{w}"));
            n.push(format!("std_{w}"));
        }
        if self.time_of_day {
            n.extend(["tod_sin".into(), "tod_cos".into()]);
        }
        if self.day_of_week {
            n.extend(["dow_sin".into(), "dow_cos".into()]);
        }
        if self.own_period_max_ms > 0 {
            n.extend(["own_period_lag".into(), "own_period_strength".into()]);
        }
        n
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.names().len()
    }

    /// Whether the spec has no features.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the spec is usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.lags.iter().chain(&self.rolling).any(|&x| x == 0) {
            return Err("lags and rolling windows must be >= 1".into());
        }
        if self.seasons_ms.iter().any(|&s| s <= 0) {
            return Err("seasons must be > 0 ms".into());
        }
        if self.own_period_max_ms < 0 {
            return Err("own_period_max_ms must be >= 0".into());
        }
        if self.scale_window == 0 {
            return Err("scale_window must be >= 1".into());
        }
        if self.is_empty() {
            return Err("the spec has no features".into());
        }
        Ok(())
    }

    /// Points of history a forecast at any horizon needs on a grid of
    /// `interval_ms`: [`FeatureSpec::min_history`], or one full season for
    /// the seasonal lags (taken at the target time), whichever is longer.
    pub fn history_needed(&self, interval_ms: i64) -> usize {
        let season = self.seasons_ms.iter().map(|s| (s / interval_ms.max(1)) as usize).max().unwrap_or(0);
        self.min_history().max(season)
    }

    /// Points of history an origin needs (before seasonal lags).
    pub fn min_history(&self) -> usize {
        self.lags.iter().chain(&self.rolling).copied().chain([self.scale_window]).max().unwrap_or(1)
    }

    /// The points [`FeatureSpec::scale`] and [`FeatureSpec::row`] read for
    /// origin `t` and horizons up to `max_h` on a grid of `interval_ms`, as
    /// ascending, disjoint ranges of point indices: the last
    /// [`FeatureSpec::min_history`] points and, per season, the points one
    /// season before each target. A series known only there gives the same
    /// rows as the whole series (with [`Prepared::from_point`] at the first
    /// of the last points), so serving reads these, not a week.
    pub fn points_read(&self, t: usize, max_h: usize, interval_ms: i64) -> Vec<std::ops::Range<usize>> {
        let mut ranges = Vec::with_capacity(1 + self.seasons_ms.len());
        ranges.push((t + 1).saturating_sub(self.min_history())..t + 1);
        for &s in &self.seasons_ms {
            let steps = (s / interval_ms.max(1)) as usize;
            // Targets t + h with steps >= h and t + h >= steps read t + h - steps.
            let lo = (t + 1).saturating_sub(steps);
            let hi = (t + max_h.min(steps) + 1).saturating_sub(steps);
            if lo < hi {
                ranges.push(lo..hi);
            }
        }
        merge_ranges(ranges)
    }

    /// Per-series scale at origin `t`: mean |value| of the last
    /// `scale_window` points (fewer at the start), floored so a flat-zero
    /// series does not divide by zero. `None` when the window has a gap.
    pub fn scale(&self, p: &Prepared, t: usize) -> Option<f64> {
        let w = self.scale_window.min(t + 1);
        let from = t + 1 - w;
        if !p.window_ok(from, t) {
            return None;
        }
        Some((p.over(&p.sum_abs, from, t) / w as f64).max(1e-3))
    }

    /// What the model's output for horizon `h` is added to, in scaled
    /// units: the last value when that horizon's target is the change from
    /// it, else 0. Training subtracts it from the scaled target, serving adds
    /// it back.
    pub fn base(&self, p: &Prepared, o: &Origin, h: usize) -> f64 {
        if self.change_horizons.contains(&h) { p.s.values[o.t] / o.scale } else { 0.0 }
    }

    /// The origin `t`'s scale and, when the spec has own-period features,
    /// the period found on the scale window. `None` when the scale window
    /// has a gap (no forecast from there).
    pub fn origin(&self, p: &Prepared, t: usize) -> Option<Origin> {
        let scale = self.scale(p, t)?;
        let period = (self.own_period_max_ms > 0).then(|| {
            let w = self.scale_window.min(t + 1);
            let max = (self.own_period_max_ms / p.s.interval_ms.max(1)) as usize;
            period::detect(&p.s.values[t + 1 - w..=t], max, 1e-9 * scale)
        });
        Some(Origin { t, scale, period })
    }

    /// Writes the features for origin `o` and horizon `h` into `out`;
    /// `false` when some input is missing.
    pub fn row(&self, p: &Prepared, o: &Origin, h: usize, out: &mut Vec<f64>) -> bool {
        out.clear();
        let (t, scale) = (o.t, o.scale);
        let v = p.s.values;
        if t >= v.len() || t + 1 < self.min_history() {
            return false;
        }
        for &l in &self.lags {
            let x = v[t + 1 - l];
            if x.is_nan() {
                return false;
            }
            out.push(x / scale);
        }
        for &s in &self.seasons_ms {
            let steps = (s / p.s.interval_ms.max(1)) as usize;
            // The target's value one season earlier must be observed already.
            if steps < h || t + h < steps {
                return false;
            }
            let x = v[t + h - steps];
            if x.is_nan() {
                return false;
            }
            out.push(x / scale);
        }
        for &w in &self.rolling {
            let from = t + 1 - w;
            if !p.window_ok(from, t) {
                return false;
            }
            let n = w as f64;
            let mean = p.over(&p.sum, from, t) / n;
            let var = (p.over(&p.sum_sq, from, t) / n - mean * mean).max(0.0);
            out.push(mean / scale);
            out.push(var.sqrt() / scale);
        }
        let target_ms = p.s.start_ms + (t + h) as i64 * p.s.interval_ms;
        if self.time_of_day {
            let a = std::f64::consts::TAU * target_ms.rem_euclid(DAY_MS) as f64 / DAY_MS as f64;
            out.extend([a.sin(), a.cos()]);
        }
        if self.day_of_week {
            let a = std::f64::consts::TAU * (target_ms.div_euclid(DAY_MS).rem_euclid(7)) as f64 / 7.0;
            out.extend([a.sin(), a.cos()]);
        }
        if self.own_period_max_ms > 0 {
            // An origin from elsewhere (no period) has no row here.
            let Some(Period { steps, strength }) = o.period else {
                return false;
            };
            // The last point one period before the target that is already
            // observed, and the one a period before that: the mean of two
            // halves one repeat's noise. Both lie in the scale window, which
            // the period is at most half of.
            let back = h.div_ceil(steps) * steps;
            let (Some(a), Some(b)) = ((t + h).checked_sub(back), (t + h).checked_sub(back + steps)) else {
                return false;
            };
            let mean = (v[a] + v[b]) / 2.0;
            if mean.is_nan() {
                return false;
            }
            out.extend([mean / scale, strength]);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn series(n: usize) -> Vec<f64> {
        (0..n).map(|i| 10.0 + (i as f64 * 0.1).sin() * 3.0 + (i % 7) as f64).collect()
    }

    #[test]
    fn features_are_what_the_names_say() {
        let spec = FeatureSpec { scale_window: 12, ..FeatureSpec::default() };
        let v = series(3000);
        let s = SeriesRef { values: &v, start_ms: 0, interval_ms: 300_000 };
        let p = Prepared::new(s);
        let t = 2500;
        let h = 3;
        let o = spec.origin(&p, t).unwrap();
        let scale = o.scale;
        let want_scale = v[t - 11..=t].iter().map(|x| x.abs()).sum::<f64>() / 12.0;
        assert!((scale - want_scale).abs() < 1e-9);
        let mut row = Vec::new();
        assert!(spec.row(&p, &o, h, &mut row));
        let names = spec.names();
        assert_eq!(row.len(), names.len());
        let get = |n: &str| row[names.iter().position(|x| x == n).unwrap()];
        assert!((get("lag_1") - v[t] / scale).abs() < 1e-12);
        assert!((get("lag_12") - v[t - 11] / scale).abs() < 1e-12);
        assert!((get("season_24h") - v[t + h - 288] / scale).abs() < 1e-12);
        assert!((get("season_168h") - v[t + h - 2016] / scale).abs() < 1e-12);
        let m48 = v[t - 47..=t].iter().sum::<f64>() / 48.0;
        assert!((get("mean_48") - m48 / scale).abs() < 1e-9);
        // The period is found on the 12-point scale window: at most 6 steps.
        let period = crate::period::detect(&v[t - 11..=t], 6, 1e-9 * scale);
        assert_eq!(o.period, Some(period));
        let back = h.div_ceil(period.steps) * period.steps;
        let own = (v[t + h - back] + v[t + h - back - period.steps]) / 2.0;
        assert!((get("own_period_lag") - own / scale).abs() < 1e-12);
        assert_eq!(get("own_period_strength"), period.strength);
        // A gap in the window: no row.
        let mut g = v.clone();
        g[t - 3] = f64::NAN;
        let pg = Prepared::new(SeriesRef { values: &g, ..s });
        assert!(!spec.row(&pg, &o, h, &mut row));
        assert_eq!(spec.origin(&pg, t), None, "the gap is in the scale window");
        // Too little history for the weekly season: no row.
        assert!(!spec.row(&p, &spec.origin(&p, 1000).unwrap(), h, &mut row));
        // An origin without the period the spec asks for: no row.
        assert!(!spec.row(&p, &Origin { period: None, ..o }, h, &mut row));
    }

    /// A spec written before the own-period features reads as one without
    /// them (the artifacts trained then keep their meaning), and one with
    /// them writes the field.
    #[test]
    fn a_spec_without_the_own_period_has_none() {
        let old =
            r#"{"lags":[1],"seasons_ms":[],"rolling":[],"time_of_day":false,"day_of_week":false,"scale_window":4}"#;
        let spec: FeatureSpec = serde_json::from_str(old).unwrap();
        assert_eq!(spec.own_period_max_ms, 0);
        assert_eq!(spec.names(), vec!["lag_1".to_string()]);
        let v = series(50);
        let p = Prepared::new(SeriesRef { values: &v, start_ms: 0, interval_ms: 300_000 });
        assert_eq!(spec.origin(&p, 40).unwrap().period, None);
        let with = FeatureSpec { own_period_max_ms: 3_600_000, ..spec };
        assert!(serde_json::to_string(&with).unwrap().contains(r#""own_period_max_ms":3600000"#));
        assert!(with.origin(&p, 40).unwrap().period.is_some());
        assert_eq!(with.validate(), Ok(()));
        assert!(FeatureSpec { own_period_max_ms: -1, ..with }.validate().is_err());
    }

    #[test]
    fn seasons_follow_the_sampling_interval() {
        let spec = FeatureSpec {
            seasons_ms: vec![DAY_MS],
            rolling: vec![],
            lags: vec![1],
            scale_window: 1,
            ..Default::default()
        };
        let v = series(2000);
        // One-minute data: one day is 1440 steps.
        let p = Prepared::new(SeriesRef { values: &v, start_ms: 0, interval_ms: 60_000 });
        let mut row = Vec::new();
        let o = spec.origin(&p, 1500).unwrap();
        assert!(spec.row(&p, &o, 1, &mut row));
        assert_eq!(row[1], v[1501 - 1440] / o.scale);
    }

    #[test]
    fn sums_from_a_later_point_serve_the_last_origin_and_refuse_earlier_windows() {
        let spec = FeatureSpec::default();
        let v = series(3000);
        let s = SeriesRef { values: &v, start_ms: 0, interval_ms: 300_000 };
        let t = 2999;
        let first = t + 1 - spec.min_history();
        let (full, tail) = (Prepared::new(s), Prepared::from_point(s, first));
        let (oa, ob) = (spec.origin(&full, t).unwrap(), spec.origin(&tail, t).unwrap());
        assert!((oa.scale - ob.scale).abs() <= 1e-12 * oa.scale);
        assert_eq!(oa.period, ob.period);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for h in 1..=12 {
            assert!(spec.row(&full, &oa, h, &mut a) && spec.row(&tail, &ob, h, &mut b));
            assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-9 * x.abs().max(1.0)), "{a:?} {b:?}");
        }
        // An origin whose windows start before the sums do has none.
        assert_eq!(spec.origin(&tail, t - 1), None);
    }

    proptest! {
        /// A series whose points outside [`FeatureSpec::points_read`] are
        /// unknown gives the same scale and rows, bit for bit.
        #[test]
        fn the_points_read_are_all_a_row_reads(t in 2015usize..2900, max_h in 1usize..13, gap in 0usize..3000) {
            let spec = FeatureSpec::default();
            let mut v = series(3000);
            v[gap] = f64::NAN;
            let read = spec.points_read(t, max_h, 300_000);
            let sparse: Vec<f64> =
                (0..v.len()).map(|i| if read.iter().any(|r| r.contains(&i)) { v[i] } else { f64::NAN }).collect();
            let first = t + 1 - spec.min_history();
            let full = Prepared::from_point(SeriesRef { values: &v, start_ms: 0, interval_ms: 300_000 }, first);
            let part = Prepared::from_point(SeriesRef { values: &sparse, start_ms: 0, interval_ms: 300_000 }, first);
            let (oa, ob) = (spec.origin(&full, t), spec.origin(&part, t));
            prop_assert_eq!(oa.map(|o| o.scale.to_bits()), ob.map(|o| o.scale.to_bits()));
            prop_assert_eq!(oa.and_then(|o| o.period), ob.and_then(|o| o.period));
            let (Some(oa), Some(ob)) = (oa, ob) else { return Ok(()) };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for h in 1..=max_h {
                let (ra, rb) = (spec.row(&full, &oa, h, &mut a), spec.row(&part, &ob, h, &mut b));
                prop_assert_eq!(ra, rb);
                prop_assert_eq!(a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), b.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            }
        }

        /// Serving computes features from a prefix of the series (what it
        /// has seen so far); training from the whole series. Same origin,
        /// same features.
        #[test]
        fn prefix_and_full_series_agree(t in 2100usize..2900, h in 1usize..13, cut_extra in 0usize..50) {
            let spec = FeatureSpec::default();
            let v = series(3000);
            let full = Prepared::new(SeriesRef { values: &v, start_ms: 1_000, interval_ms: 300_000 });
            let prefix = &v[..(t + 1 + cut_extra).min(v.len())];
            let part = Prepared::new(SeriesRef { values: prefix, start_ms: 1_000, interval_ms: 300_000 });
            let (oa, ob) = (spec.origin(&full, t).unwrap(), spec.origin(&part, t).unwrap());
            prop_assert_eq!(oa, ob);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            prop_assert!(spec.row(&full, &oa, h, &mut a));
            prop_assert!(spec.row(&part, &ob, h, &mut b));
            prop_assert_eq!(a, b);
        }
    }
}
