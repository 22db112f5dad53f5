//! Serving forecasts: raw samples → the model's regular grid → the loaded
//! artifact. Pure; `swarmd` uses it for `GetForecast` and for the
//! controller's view, so both see the same numbers.
//!
//! Samples arrive at any rate; the model was trained on a grid of its
//! sampling interval (5 minutes for the bundled one). The grid ends at the
//! newest sample; each grid point aggregates the samples within one step
//! before it (the mean for usage, the maximum for peaks), and gaps of up to
//! three points are interpolated, as in training (`swarm_datasets::regular`).

use swarm_models::features::{Prepared, SeriesRef, merge_ranges};
use swarm_models::period::Period;
use swarm_models::{Artifact, ForecastPoint};

/// The line a series is judged against, in the series' unit, and its name:
/// what an operator compares a forecast with. For a physical node's CPU the
/// overload threshold the controller acts on; for a virtual node's CPU its
/// requested cores; for memory the capacity or the request. `None` for
/// series without one (network, latency, throughput) or unknown nodes.
pub fn threshold(
    topo: &swarm_core::domain::Topology,
    overload_threshold: f64,
    kind: crate::series::EntityKind,
    id: &str,
    metric: crate::series::Metric,
) -> Option<(f64, &'static str)> {
    use crate::series::{EntityKind, Metric};
    let cpu = matches!(metric, Metric::CpuUsage | Metric::CpuPeak);
    let (value, label) = match kind {
        EntityKind::Physical => {
            let n = topo.physical.get(id)?;
            match metric {
                _ if cpu => (n.capacity.cpu_cores * overload_threshold, "overload threshold"),
                Metric::MemoryBytes => (n.capacity.memory_bytes, "capacity"),
                _ => return None,
            }
        }
        EntityKind::Virtual => {
            let v = topo.virtual_nodes.get(id)?;
            match metric {
                _ if cpu => (v.requested.cpu_cores, "requested"),
                Metric::MemoryBytes => (v.requested.memory_bytes, "requested"),
                _ => return None,
            }
        }
    };
    (value > 0.0).then_some((value, label))
}

/// How samples within one step combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Mean (usage).
    Mean,
    /// Maximum (peaks).
    Max,
}

impl Aggregate {
    /// How `metric`'s samples combine on a grid: peaks by their maximum,
    /// everything else by its mean.
    pub fn of(metric: crate::series::Metric) -> Aggregate {
        if metric == crate::series::Metric::CpuPeak { Aggregate::Max } else { Aggregate::Mean }
    }
}

/// Why no forecast could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    /// Too little history.
    #[error(
        "the model needs {need} points at {step_s} s spacing (with gaps of at most 3 points); the series has {have} usable"
    )]
    NotEnoughHistory {
        /// Points needed.
        need: usize,
        /// Points there.
        have: usize,
        /// Grid spacing, seconds.
        step_s: i64,
    },
    /// The newest sample is too old to forecast from.
    #[error("the newest sample is {age_s} s old; forecasts need one within {max_s} s")]
    Stale {
        /// Its age.
        age_s: i64,
        /// The limit.
        max_s: i64,
    },
}

/// Gaps up to this many points are interpolated.
pub const MAX_FILL: usize = 3;

/// Puts `points` (oldest first) on a grid of `n` points `step_ms` apart
/// ending at the newest point's timestamp. Returns (values, start_ms).
pub fn regular(points: &[(i64, f64)], step_ms: i64, n: usize, agg: Aggregate) -> (Vec<f64>, i64) {
    let Some(&(last, _)) = points.last() else { return (vec![f64::NAN; n], 0) };
    regular_until(points, step_ms, n, last, agg)
}

/// [`regular`] on a grid ending at `end_ms`, so that several series share
/// their steps (a point after `end_ms` is left out).
pub fn regular_until(points: &[(i64, f64)], step_ms: i64, n: usize, end_ms: i64, agg: Aggregate) -> (Vec<f64>, i64) {
    let mut out = vec![f64::NAN; n];
    let start = regular_into(points, step_ms, end_ms, agg, &mut out);
    (out, start)
}

/// [`regular_until`] into `out` (its length is the grid's), for a caller
/// that reads many series through one buffer. Returns the grid's start, ms.
pub fn regular_into(points: &[(i64, f64)], step_ms: i64, end_ms: i64, agg: Aggregate, out: &mut [f64]) -> i64 {
    let n = out.len();
    let start = end_ms - (n as i64 - 1) * step_ms;
    out.fill(f64::NAN);
    if let Some(&(t0, _)) = points.first()
        && points.windows(2).all(|w| w[1].0 - w[0].0 == step_ms)
    {
        // Points exactly a step apart (a series reported on the grid's
        // period, which is nearly every series): each lands in the cell
        // after its predecessor's, alone, so it is written straight there
        // (a cell of one point holds that point, as the fold below gives
        // it). Cell c covers (start + (c - 1) step, start + c step].
        let c0 = (t0 - start + step_ms - 1).div_euclid(step_ms);
        let skip = usize::try_from(-c0).unwrap_or(0).min(points.len());
        let first = usize::try_from(c0).unwrap_or(0);
        for (x, &(_, v)) in out.iter_mut().skip(first).zip(&points[skip..]) {
            *x = match agg {
                Aggregate::Mean => (0.0 + v) / 1.0,
                Aggregate::Max => v,
            };
        }
        interpolate_short_gaps(out);
        return start;
    }
    // Point i covers (grid_i - step, grid_i]. Points come sorted, so each
    // cell is folded as its points pass and written once, and the grid
    // index is walked forward (a division per point cost more than the rest
    // of the loop); a point before a cell already written (out of order)
    // hands the whole series to the general version.
    let (mut i, mut grid_i) = (0usize, start);
    let mut cell: Option<(usize, f64, u32)> = None;
    let finish = |(c, acc, count): (usize, f64, u32), out: &mut [f64]| {
        out[c] = match agg {
            Aggregate::Mean => acc / count as f64,
            Aggregate::Max => acc,
        };
    };
    for &(t, v) in points {
        if t <= grid_i - step_ms {
            if t - start + step_ms - 1 < 0 && cell.is_none() {
                continue; // before the grid
            }
            regular_any_order(points, step_ms, start, agg, out);
            return start;
        }
        while t > grid_i && i < n {
            i += 1;
            grid_i += step_ms;
        }
        if i >= n {
            continue;
        }
        cell = Some(match cell {
            Some((c, acc, count)) if c == i => match agg {
                Aggregate::Mean => (c, acc + v, count + 1),
                Aggregate::Max => (c, acc.max(v), count + 1),
            },
            prev => {
                if let Some(p) = prev {
                    finish(p, out);
                }
                // As the general version folds it: from 0 for a mean.
                (i, if agg == Aggregate::Mean { 0.0 + v } else { v }, 1)
            }
        });
    }
    if let Some(p) = cell {
        finish(p, out);
    }
    interpolate_short_gaps(out);
    start
}

/// [`regular_into`] for points in any order, on the grid from `start`.
fn regular_any_order(points: &[(i64, f64)], step_ms: i64, start: i64, agg: Aggregate, out: &mut [f64]) {
    let n = out.len();
    let mut sum = vec![0.0; n];
    let mut count = vec![0u32; n];
    for &(t, v) in points {
        let off = t - start + step_ms - 1;
        if off < 0 || (off / step_ms) as usize >= n {
            continue;
        }
        let i = (off / step_ms) as usize;
        match agg {
            Aggregate::Mean => sum[i] += v,
            Aggregate::Max => sum[i] = if count[i] == 0 { v } else { sum[i].max(v) },
        }
        count[i] += 1;
    }
    for (i, x) in out.iter_mut().enumerate() {
        *x = match (count[i], agg) {
            (0, _) => f64::NAN,
            (c, Aggregate::Mean) => sum[i] / c as f64,
            (_, Aggregate::Max) => sum[i],
        };
    }
    interpolate_short_gaps(out);
}

/// Interpolates interior gaps of at most [`MAX_FILL`] points linearly.
fn interpolate_short_gaps(out: &mut [f64]) {
    let n = out.len();
    let mut i = 0;
    while i < n {
        if !out[i].is_nan() {
            i += 1;
            continue;
        }
        let j = (i..n).find(|&k| !out[k].is_nan()).unwrap_or(n);
        if i > 0 && j < n && j - i <= MAX_FILL {
            let (a, b) = (out[i - 1], out[j]);
            for (k, x) in out[i..j].iter_mut().enumerate() {
                *x = a + (b - a) * (k + 1) as f64 / (j - i + 1) as f64;
            }
        }
        i = j;
    }
}

/// The oldest sample time [`forecast`] can use at `now_ms` (the history the
/// model needs, plus two steps of slack for a late newest sample).
pub fn history_start_ms(model: &Artifact, now_ms: i64) -> i64 {
    let step = model.training.interval_ms.max(1);
    now_ms - (model.features.history_needed(step) as i64 + 2) * step
}

/// A series a forecast reads: the time of its newest point, and its points
/// in a time range. A forecast reads only the stretches its features use
/// ([`swarm_models::features::FeatureSpec::points_read`]: the last day and a
/// few points a day and a week back), a sixth of the week it reaches over.
pub trait Series {
    /// The time of the newest point, ms.
    fn newest_ms(&self) -> Option<i64>;
    /// Appends the points with `from_ms <= t < to_ms`, oldest first, one per
    /// time, to `out` (after earlier points of the series there).
    fn read(&self, from_ms: i64, to_ms: i64, out: &mut Vec<(i64, f64)>);
}

/// Points sorted by time, one per time (what a query returns).
impl Series for [(i64, f64)] {
    fn newest_ms(&self) -> Option<i64> {
        self.last().map(|p| p.0)
    }

    fn read(&self, from_ms: i64, to_ms: i64, out: &mut Vec<(i64, f64)>) {
        let lo = self.partition_point(|p| p.0 < from_ms);
        let hi = self.partition_point(|p| p.0 < to_ms);
        out.extend_from_slice(&self[lo..hi.max(lo)]);
    }
}

impl Series for crate::series::frames::SeriesHandle<'_> {
    fn newest_ms(&self) -> Option<i64> {
        crate::series::frames::SeriesHandle::newest_ms(self)
    }

    fn read(&self, from_ms: i64, to_ms: i64, out: &mut Vec<(i64, f64)>) {
        crate::series::frames::SeriesHandle::read(self, from_ms, to_ms, out)
    }
}

/// A forecast and what its origin found that an operator may want to see.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    /// The forecast, one point per step.
    pub points: Vec<ForecastPoint>,
    /// The series' own period at the origin, when the model has
    /// own-period features (`swarm_models::period`).
    pub period: Option<Period>,
}

/// Forecasts `points` (sorted, one per time) with `model` for horizons up
/// to `max_horizon`, given the time now (the newest sample must be within
/// two steps of it).
pub fn forecast(
    model: &Artifact,
    points: &[(i64, f64)],
    now_ms: i64,
    max_horizon: usize,
    agg: Aggregate,
) -> Result<Explained, ForecastError> {
    forecast_series(model, points, now_ms, max_horizon, agg, &mut Vec::new())
}

/// [`forecast`] of a [`Series`], reading only the points the model's
/// features use (`scratch` holds them; a round passes one per thread). The
/// grid is the one the whole series gives (it ends at the newest point),
/// and each stretch read reaches [`MAX_FILL`] + 1 points past what the
/// features use, so a short gap is filled exactly as on the whole series:
/// the forecast is the same, bit for bit.
pub fn forecast_series(
    model: &Artifact,
    series: &(impl Series + ?Sized),
    now_ms: i64,
    max_horizon: usize,
    agg: Aggregate,
    scratch: &mut Vec<(i64, f64)>,
) -> Result<Explained, ForecastError> {
    let step = model.training.interval_ms.max(1);
    let need = model.features.history_needed(step);
    let last = series.newest_ms();
    if let Some(last) = last
        && now_ms - last > 2 * step
    {
        return Err(ForecastError::Stale { age_s: (now_ms - last) / 1000, max_s: 2 * step / 1000 });
    }
    let end = last.unwrap_or(0);
    let start = end - (need as i64 - 1) * step;
    // Point k of the grid is at start + k * step and covers the samples in
    // (its time - step, its time].
    let at = |k: usize| start + k as i64 * step;
    let read = |ranges: &[std::ops::Range<usize>], scratch: &mut Vec<(i64, f64)>| {
        scratch.clear();
        for r in ranges {
            series.read(at(r.start) - step + 1, at(r.end - 1) + 1, scratch);
        }
        regular_until(scratch, step, need, end, agg).0
    };
    let t = need - 1;
    let used = model.features.points_read(t, max_horizon, step);
    let margin = MAX_FILL + 1;
    let stretches =
        merge_ranges(used.iter().map(|r| r.start.saturating_sub(margin)..(r.end + margin).min(need)).collect());
    let values = if last.is_some() { read(&stretches, scratch) } else { vec![f64::NAN; need] };
    // The sums cover only the windows of the last origin (a day's points,
    // not the week the seasonal lag reaches back to).
    let first = need - model.features.min_history().min(need);
    let p = Prepared::from_point(SeriesRef { values: &values, start_ms: start, interval_ms: step }, first);
    let origin = model.features.origin(&p, t);
    let points = origin.and_then(|o| model.forecast_from(&p, &o, max_horizon));
    points.map(|points| Explained { points, period: origin.and_then(|o| o.period) }).ok_or_else(|| {
        // What the whole series has, for the message: read on this rare path only.
        let whole = 0..need;
        let have = if last.is_some() {
            read(std::slice::from_ref(&whole), scratch).iter().filter(|v| !v.is_nan()).count()
        } else {
            0
        };
        ForecastError::NotEnoughHistory { need, have, step_s: step / 1000 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_on_the_grid_and_short_gaps_are_filled() {
        // Samples every minute onto a 5-minute grid: each point is the mean of 5.
        let pts: Vec<(i64, f64)> = (0..30).map(|i| (i * 60_000, i as f64)).collect();
        let (v, start) = regular(&pts, 300_000, 6, Aggregate::Mean);
        assert_eq!(start, 29 * 60_000 - 5 * 300_000);
        assert_eq!(v[5], (25.0 + 26.0 + 27.0 + 28.0 + 29.0) / 5.0);
        let (m, _) = regular(&pts, 300_000, 6, Aggregate::Max);
        assert_eq!(m[5], 29.0);
        // A 2-point gap is interpolated; a 5-point gap is not.
        let gappy: Vec<(i64, f64)> = [0, 1, 4, 5, 11, 12].iter().map(|&i| (i * 300_000, i as f64)).collect();
        let (g, _) = regular(&gappy, 300_000, 13, Aggregate::Mean);
        assert_eq!((g[2], g[3]), (2.0, 3.0));
        assert!(g[6].is_nan() && g[10].is_nan());
    }

    #[test]
    fn forecasts_need_history_and_fresh_data() {
        let model = Artifact::naive(&[1, 2], 0.1);
        let pts: Vec<(i64, f64)> = (0..10).map(|i| (i * 300_000, 2.0)).collect();
        let f = forecast(&model, &pts, 9 * 300_000, 2, Aggregate::Mean).unwrap().points;
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].mean, 2.0);
        assert_eq!(f[1].timestamp_ms, 11 * 300_000);
        let e = forecast(&model, &pts, 20 * 300_000, 2, Aggregate::Mean).unwrap_err();
        assert!(matches!(e, ForecastError::Stale { .. }), "{e}");
        let bundled = Artifact::from_json(swarm_models::DEFAULT_ARTIFACT, "default").unwrap();
        let e = forecast(&bundled, &pts, 9 * 300_000, 6, Aggregate::Mean).unwrap_err();
        assert!(e.to_string().contains("the series has 10 usable"), "{e}");
    }

    /// What [`forecast_series`] does, on the whole series: the grid of all
    /// its points, then the model.
    fn forecast_whole(
        model: &Artifact,
        points: &[(i64, f64)],
        max_h: usize,
        agg: Aggregate,
    ) -> Option<Vec<ForecastPoint>> {
        let step = model.training.interval_ms;
        let need = model.features.history_needed(step);
        let (values, start) = regular(points, step, need, agg);
        let first = need - model.features.min_history();
        let p = Prepared::from_point(SeriesRef { values: &values, start_ms: start, interval_ms: step }, first);
        model.forecast_at_upto(&p, need - 1, max_h)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Reading only the stretches the features use forecasts exactly
        /// as reading the whole week does: gaps short and long (filled or
        /// not, at a stretch's edge or inside), samples between grid
        /// points, several samples in one step.
        #[test]
        fn reading_the_stretches_the_features_use_equals_reading_the_week(
            gaps in proptest::collection::vec((0usize..2200, 1usize..8), 0..40),
            extra in proptest::collection::vec((0usize..2200, 1i64..300_000), 0..40),
            max_h in 1usize..13,
            peaks in proptest::bool::ANY,
        ) {
            let model = Artifact::from_json(swarm_models::DEFAULT_ARTIFACT, "default").unwrap();
            let step = 300_000;
            let mut t: std::collections::BTreeMap<i64, f64> = (0..2200i64)
                .map(|i| (1_000_000 + i * step, 2.0 + (i as f64 * 0.05).sin() + (i % 7) as f64 * 0.1))
                .collect();
            for (at, len) in gaps {
                for k in at..at + len {
                    t.remove(&(1_000_000 + k as i64 * step));
                }
            }
            for (at, off) in extra {
                t.insert(1_000_000 + at as i64 * step - off, 1.0 + off as f64 * 1e-6);
            }
            let points: Vec<(i64, f64)> = t.into_iter().collect();
            let now = points.last().unwrap().0;
            let agg = if peaks { Aggregate::Max } else { Aggregate::Mean };
            let whole = forecast_whole(&model, &points, max_h, agg);
            let read = forecast(&model, &points, now, max_h, agg).ok().map(|f| f.points);
            let bits = |f: &Option<Vec<ForecastPoint>>| {
                f.as_ref().map(|f| f.iter().map(|p| (p.timestamp_ms, p.mean.to_bits(), p.upper.to_bits())).collect::<Vec<_>>())
            };
            proptest::prop_assert_eq!(bits(&read), bits(&whole));
        }

    }

    proptest::proptest! {
        /// The forward walk over the grid places every point where a
        /// division would, sorted or not.
        #[test]
        fn the_grid_walk_equals_placing_each_point_by_division(
            mut ts in proptest::collection::vec(-2_000i64..4_000, 0..60),
            order in 0u8..3,
            step in 1i64..700,
            n in 1usize..12,
            end in -500i64..3_000,
        ) {
            match order {
                0 => {}
                1 => ts.sort_unstable(),
                // A step apart from the first time: the periodic path.
                _ => {
                    let t0 = ts.first().copied().unwrap_or(0);
                    ts = (0..ts.len() as i64).map(|k| t0 + k * step).collect();
                }
            }
            let points: Vec<(i64, f64)> = ts.iter().map(|&t| (t, (t.rem_euclid(97)) as f64 * 0.37)).collect();
            let start = end - (n as i64 - 1) * step;
            let mut want: Vec<Vec<f64>> = vec![Vec::new(); n];
            for &(t, v) in &points {
                let off = t - start + step - 1;
                if off >= 0 && ((off / step) as usize) < n {
                    want[(off / step) as usize].push(v);
                }
            }
            let (max, _) = regular_until(&points, step, n, end, Aggregate::Max);
            let (mean, _) = regular_until(&points, step, n, end, Aggregate::Mean);
            for (i, w) in want.iter().enumerate() {
                if let Some(m) = w.iter().copied().reduce(f64::max) {
                    proptest::prop_assert_eq!(max[i], m, "bucket {}", i);
                    // The same sum in the same order: bit for bit.
                    let avg = w.iter().fold(0.0, |a, b| a + b) / w.len() as f64;
                    proptest::prop_assert_eq!(mean[i].to_bits(), avg.to_bits(), "bucket {}", i);
                }
            }
            // In any order the general version gives the same grid.
            for agg in [Aggregate::Max, Aggregate::Mean] {
                let (got, _) = regular_until(&points, step, n, end, agg);
                let mut general = vec![0.0; n];
                regular_any_order(&points, step, start, agg, &mut general);
                proptest::prop_assert_eq!(
                    got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    general.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                );
            }
        }
    }
}
