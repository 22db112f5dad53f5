//! Canonical frame → regular series, with the gap and duplicate policy.
//!
//! Policy (what the training pipeline and the replay both rely on):
//! - **Duplicates**: several values for the same (entity, metric, timestamp)
//!   resolve to the *last* one in file order (as live ingest does).
//! - **Sampling interval**: each series' interval is the most common gap
//!   between consecutive timestamps; timestamps are snapped to the nearest
//!   point of the grid starting at the series' first timestamp (a value
//!   snapped onto an occupied point replaces it, like a duplicate).
//! - **Gaps**: a run of up to `max_fill` missing points is filled by linear
//!   interpolation between its neighbours; longer runs stay missing (NaN),
//!   and consumers skip any window that touches a missing point rather
//!   than inventing data.

use polars::prelude::*;

/// One regular series; missing points are NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Entity id.
    pub entity: String,
    /// Timestamp of `values[0]`, ms.
    pub start_ms: i64,
    /// Sampling interval, ms.
    pub interval_ms: i64,
    /// Values on the grid.
    pub values: Vec<f64>,
}

impl Series {
    /// Timestamp of point `i`.
    pub fn ts(&self, i: usize) -> i64 {
        self.start_ms + i as i64 * self.interval_ms
    }
}

/// What regularisation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Values replaced by a later value for the same point.
    pub duplicates: u64,
    /// Points filled by interpolation.
    pub filled: u64,
    /// Points left missing (gaps longer than `max_fill`).
    pub missing: u64,
}

/// Regular series of `metric`, one per entity, in the order entities first
/// appear in the frame (so "the first 10 VMs" means the file's first 10).
pub fn regularize(frame: &DataFrame, metric: &str, max_fill: usize) -> PolarsResult<(Vec<Series>, Report)> {
    let of_metric = frame.clone().lazy().filter(col("metric").eq(lit(metric)));
    let order_df =
        of_metric.clone().select([col("entity")]).unique_stable(None, UniqueKeepStrategy::First).collect()?;
    let order: std::collections::HashMap<String, usize> =
        order_df.column("entity")?.str()?.iter().flatten().enumerate().map(|(i, e)| (e.to_owned(), i)).collect();
    let df = of_metric
        .select([col("entity"), col("timestamp"), col("value")])
        .sort(["entity", "timestamp"], SortMultipleOptions::default().with_maintain_order(true))
        .collect()?;
    let ents = df.column("entity")?.str()?;
    let ts = df.column("timestamp")?.i64()?;
    let vals = df.column("value")?.f64()?;
    let mut out = Vec::new();
    let mut report = Report::default();
    let mut start = 0usize;
    let n = df.height();
    let ents_v: Vec<&str> = ents.iter().map(|e| e.unwrap_or_default()).collect();
    let ts_v: Vec<i64> = ts.into_no_null_iter().collect();
    let vals_v: Vec<f64> = vals.into_no_null_iter().collect();
    while start < n {
        let mut end = start;
        while end < n && ents_v[end] == ents_v[start] {
            end += 1;
        }
        out.push(one(ents_v[start], &ts_v[start..end], &vals_v[start..end], max_fill, &mut report));
        start = end;
    }
    out.sort_by_key(|s| order.get(&s.entity).copied().unwrap_or(usize::MAX));
    Ok((out, report))
}

fn one(entity: &str, ts: &[i64], vals: &[f64], max_fill: usize, report: &mut Report) -> Series {
    let mut gaps: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for w in ts.windows(2) {
        if w[1] > w[0] {
            *gaps.entry(w[1] - w[0]).or_default() += 1;
        }
    }
    // Most common gap; ties go to the smaller one.
    let interval =
        gaps.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))).map(|(g, _)| g).unwrap_or(1).max(1);
    let start = ts[0];
    let len = ((ts[ts.len() - 1] - start) as f64 / interval as f64).round() as usize + 1;
    let mut values = vec![f64::NAN; len];
    for (&t, &v) in ts.iter().zip(vals) {
        let i = (((t - start) as f64) / interval as f64).round() as usize;
        if !values[i].is_nan() {
            report.duplicates += 1;
        }
        values[i] = v;
    }
    let mut i = 0;
    while i < len {
        if !values[i].is_nan() {
            i += 1;
            continue;
        }
        let gap_start = i;
        while i < len && values[i].is_nan() {
            i += 1;
        }
        let gap = i - gap_start;
        // Interior gaps only: both neighbours exist since the first and last points are observed.
        if gap <= max_fill && gap_start > 0 && i < len {
            let (a, b) = (values[gap_start - 1], values[i]);
            for k in 0..gap {
                values[gap_start + k] = a + (b - a) * (k + 1) as f64 / (gap + 1) as f64;
            }
            report.filled += gap as u64;
        } else {
            report.missing += gap as u64;
        }
    }
    Series { entity: entity.to_owned(), start_ms: start, interval_ms: interval, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(rows: &[(&str, i64, f64)]) -> DataFrame {
        df!(
            "timestamp" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "entity" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "metric" => rows.iter().map(|_| "cpu").collect::<Vec<_>>(),
            "value" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn duplicates_gaps_and_order() {
        let f = frame(&[
            ("b", 0, 1.0),
            ("a", 300, 2.0),
            ("a", 0, 1.0),
            ("a", 300, 9.0),  // duplicate: last wins
            ("a", 1200, 5.0), // 2 missing points: filled
            ("a", 3000, 1.0), // 5 missing points: left missing
        ]);
        let (s, r) = regularize(&f, "cpu", 3).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].entity, "b", "file order: b appears first");
        let s = [s[1].clone(), s[0].clone()];
        assert_eq!(s[0].entity, "a");
        assert_eq!(s[0].interval_ms, 300);
        let v = &s[0].values;
        assert_eq!(v.len(), 11);
        assert_eq!(&v[..5], &[1.0, 9.0, 9.0 + (5.0 - 9.0) / 3.0, 9.0 + 2.0 * (5.0 - 9.0) / 3.0, 5.0]);
        assert!(v[5..10].iter().all(|x| x.is_nan()));
        assert_eq!(v[10], 1.0);
        assert_eq!(r, Report { duplicates: 1, filled: 2, missing: 5 });
        assert_eq!(s[1].values, vec![1.0]);
    }
}
