//! Serving forecasts: raw samples → the model's regular grid → the loaded
//! artifact. Pure; `swarmd` uses it for `GetForecast` and for the
//! controller's view, so both see the same numbers.
//!
//! Samples arrive at any rate; the model was trained on a grid of its
//! sampling interval (5 minutes for the bundled one). The grid ends at the
//! newest sample; each grid point aggregates the samples within one step
//! before it (the mean for usage, the maximum for peaks), and gaps of up to
//! three points are interpolated, as in training (`swarm_datasets::regular`).

use swarm_models::features::{Prepared, SeriesRef};
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
    let start = end_ms - (n as i64 - 1) * step_ms;
    let mut sum = vec![0.0; n];
    let mut count = vec![0u32; n];
    // Point i covers (grid_i - step, grid_i]. Points come sorted, so the
    // grid index is walked forward (a division per point cost more than the
    // rest of the loop); one out of order is placed by division.
    let (mut i, mut grid_i) = (0usize, start);
    for &(t, v) in points {
        if t <= grid_i - step_ms {
            let off = t - start + step_ms - 1;
            if off < 0 {
                continue;
            }
            i = (off / step_ms) as usize;
            grid_i = start + i as i64 * step_ms;
        }
        while t > grid_i && i < n {
            i += 1;
            grid_i += step_ms;
        }
        if i >= n {
            continue;
        }
        match agg {
            Aggregate::Mean => sum[i] += v,
            Aggregate::Max => sum[i] = if count[i] == 0 { v } else { sum[i].max(v) },
        }
        count[i] += 1;
    }
    let mut out: Vec<f64> = (0..n)
        .map(|i| match (count[i], agg) {
            (0, _) => f64::NAN,
            (c, Aggregate::Mean) => sum[i] / c as f64,
            (_, Aggregate::Max) => sum[i],
        })
        .collect();
    // Interpolate short interior gaps.
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
    (out, start)
}

/// The oldest sample time [`forecast`] can use at `now_ms` (the history the
/// model needs, plus two steps of slack for a late newest sample).
pub fn history_start_ms(model: &Artifact, now_ms: i64) -> i64 {
    let step = model.training.interval_ms.max(1);
    now_ms - (model.features.history_needed(step) as i64 + 2) * step
}

/// Forecasts `points` with `model` for horizons up to `max_horizon`, given
/// the time now (the newest sample must be within two steps of it).
pub fn forecast(
    model: &Artifact,
    points: &[(i64, f64)],
    now_ms: i64,
    max_horizon: usize,
    agg: Aggregate,
) -> Result<Vec<ForecastPoint>, ForecastError> {
    let step = model.training.interval_ms.max(1);
    let need = model.features.history_needed(step);
    if let Some(&(last, _)) = points.last()
        && now_ms - last > 2 * step
    {
        return Err(ForecastError::Stale { age_s: (now_ms - last) / 1000, max_s: 2 * step / 1000 });
    }
    let (values, start) = regular(points, step, need, agg);
    let have = values.iter().filter(|v| !v.is_nan()).count();
    let p = Prepared::new(SeriesRef { values: &values, start_ms: start, interval_ms: step });
    model.forecast_at_upto(&p, need - 1, max_horizon).ok_or(ForecastError::NotEnoughHistory {
        need,
        have,
        step_s: step / 1000,
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
        let f = forecast(&model, &pts, 9 * 300_000, 2, Aggregate::Mean).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].mean, 2.0);
        assert_eq!(f[1].timestamp_ms, 11 * 300_000);
        let e = forecast(&model, &pts, 20 * 300_000, 2, Aggregate::Mean).unwrap_err();
        assert!(matches!(e, ForecastError::Stale { .. }), "{e}");
        let bundled = Artifact::from_json(swarm_models::DEFAULT_ARTIFACT, "default").unwrap();
        let e = forecast(&bundled, &pts, 9 * 300_000, 6, Aggregate::Mean).unwrap_err();
        assert!(e.to_string().contains("the series has 10 usable"), "{e}");
    }

    proptest::proptest! {
        /// The forward walk over the grid places every point where a
        /// division would, sorted or not.
        #[test]
        fn the_grid_walk_equals_placing_each_point_by_division(
            mut ts in proptest::collection::vec(-2_000i64..4_000, 0..60),
            sorted in proptest::bool::ANY,
            step in 1i64..700,
            n in 1usize..12,
            end in -500i64..3_000,
        ) {
            if sorted {
                ts.sort_unstable();
            }
            let points: Vec<(i64, f64)> = ts.iter().map(|&t| (t, (t % 97) as f64)).collect();
            let start = end - (n as i64 - 1) * step;
            let mut want: Vec<Vec<f64>> = vec![Vec::new(); n];
            for &(t, v) in &points {
                let off = t - start + step - 1;
                if off >= 0 && ((off / step) as usize) < n {
                    want[(off / step) as usize].push(v);
                }
            }
            let (got, _) = regular_until(&points, step, n, end, Aggregate::Max);
            for (i, w) in want.iter().enumerate() {
                if let Some(m) = w.iter().copied().reduce(f64::max) {
                    proptest::prop_assert_eq!(got[i], m, "bucket {}", i);
                }
            }
        }
    }
}
