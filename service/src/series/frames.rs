//! In-memory columnar storage of samples: one Polars frame per
//! (entity kind, metric).
//!
//! Each frame has the columns `entity` (str), `location` (str), `ts` (i64 ms)
//! and `value` (f64). Writes first land in a small row buffer (appending to
//! an Arrow column one row at a time would be far slower); the buffer is
//! merged into the sorted, de-duplicated frame on compaction. Compaction keeps
//! the *last* write for each (entity, location, ts) — out-of-order and
//! duplicate samples resolve to last-write-wins — and drops rows older than
//! the retention cutoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use polars::prelude::*;

use super::sample::{EntityKind, Metric, Sample};

/// Hot rows are merged into the frame once there are this many.
const COMPACT_AT: usize = 1 << 20;

/// Frames of every (kind, metric) that has data.
#[derive(Default, Clone)]
pub struct Frames {
    frames: BTreeMap<(EntityKind, Metric), MetricFrame>,
}

#[derive(Clone)]
struct MetricFrame {
    sealed: DataFrame,
    hot_entity: Vec<Arc<str>>,
    hot_location: Vec<Arc<str>>,
    hot_ts: Vec<i64>,
    hot_value: Vec<f64>,
}

impl Default for MetricFrame {
    fn default() -> Self {
        MetricFrame {
            sealed: empty_frame(),
            hot_entity: Vec::new(),
            hot_location: Vec::new(),
            hot_ts: Vec::new(),
            hot_value: Vec::new(),
        }
    }
}

fn empty_frame() -> DataFrame {
    frame_of(&[], &[], &[], &[]).expect("an empty frame is valid")
}

fn frame_of(entity: &[Arc<str>], location: &[Arc<str>], ts: &[i64], value: &[f64]) -> PolarsResult<DataFrame> {
    let e: Vec<&str> = entity.iter().map(|s| &**s).collect();
    let l: Vec<&str> = location.iter().map(|s| &**s).collect();
    DataFrame::new(
        ts.len(),
        vec![
            Column::new("entity".into(), e),
            Column::new("location".into(), l),
            Column::new("ts".into(), ts),
            Column::new("value".into(), value),
        ],
    )
}

impl MetricFrame {
    fn hot_len(&self) -> usize {
        self.hot_ts.len()
    }

    fn compact(&mut self, cutoff_ms: i64) -> PolarsResult<()> {
        let hot = frame_of(&self.hot_entity, &self.hot_location, &self.hot_ts, &self.hot_value)?;
        let merged = concat([self.sealed.clone().lazy(), hot.lazy()], UnionArgs::default())?
            .filter(col("ts").gt_eq(lit(cutoff_ms)))
            // Stable: among equal keys the later row (the later write) wins.
            .unique_stable_generic(Some(vec![col("entity"), col("location"), col("ts")]), UniqueKeepStrategy::Last)
            .sort(["entity", "location", "ts"], SortMultipleOptions::default())
            .collect()?;
        self.sealed = merged;
        self.hot_entity.clear();
        self.hot_location.clear();
        self.hot_ts.clear();
        self.hot_value.clear();
        Ok(())
    }
}

impl Frames {
    /// Buffers validated samples; merges a frame's buffer once it is large.
    pub fn insert(&mut self, samples: &[Sample], cutoff_ms: i64) -> PolarsResult<()> {
        for s in samples {
            let f = self.frames.entry((s.kind, s.metric)).or_default();
            f.hot_entity.push(s.entity.clone());
            f.hot_location.push(s.location.clone());
            f.hot_ts.push(s.ts_ms);
            f.hot_value.push(s.value);
        }
        for f in self.frames.values_mut() {
            if f.hot_len() >= COMPACT_AT {
                f.compact(cutoff_ms)?;
            }
        }
        Ok(())
    }

    /// Merges every buffer and applies retention.
    pub fn compact_all(&mut self, cutoff_ms: i64) -> PolarsResult<()> {
        for f in self.frames.values_mut() {
            f.compact(cutoff_ms)?;
        }
        Ok(())
    }

    /// Whether any buffered rows are waiting for compaction.
    pub fn has_pending(&self) -> bool {
        self.frames.values().any(|f| f.hot_len() > 0)
    }

    /// Stored rows (after de-duplication) plus buffered rows.
    pub fn row_count(&self) -> usize {
        self.frames.values().map(|f| f.sealed.height() + f.hot_len()).sum()
    }

    /// Points of one series in `[from, to)`, oldest first, at most `limit`
    /// (the bool says whether more existed). Call after [`Frames::compact_all`].
    pub fn query(
        &self,
        kind: EntityKind,
        metric: Metric,
        entity: &str,
        location: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> PolarsResult<(Vec<(i64, f64)>, bool)> {
        let Some(f) = self.frames.get(&(kind, metric)) else {
            return Ok((Vec::new(), false));
        };
        let df = f
            .sealed
            .clone()
            .lazy()
            .filter(
                col("entity")
                    .eq(lit(entity))
                    .and(col("location").eq(lit(location)))
                    .and(col("ts").gt_eq(lit(from_ms)))
                    .and(col("ts").lt(lit(to_ms))),
            )
            .limit(limit as IdxSize + 1)
            .collect()?;
        let ts = df.column("ts")?.i64()?;
        let vals = df.column("value")?.f64()?;
        let mut out: Vec<(i64, f64)> = ts.into_no_null_iter().zip(vals.into_no_null_iter()).collect();
        let truncated = out.len() > limit;
        out.truncate(limit);
        Ok((out, truncated))
    }

    /// Mean value per entity over samples with `ts >= from_ms` (summed over
    /// locations first for located metrics). Call after [`Frames::compact_all`].
    pub fn window_mean(&self, kind: EntityKind, metric: Metric, from_ms: i64) -> PolarsResult<HashMap<String, f64>> {
        let Some(f) = self.frames.get(&(kind, metric)) else {
            return Ok(HashMap::new());
        };
        let df = f
            .sealed
            .clone()
            .lazy()
            .filter(col("ts").gt_eq(lit(from_ms)))
            .group_by([col("entity"), col("location")])
            .agg([col("value").mean().alias("value")])
            .group_by([col("entity")])
            .agg([col("value").sum().alias("value")])
            .collect()?;
        let ents = df.column("entity")?.str()?;
        let vals = df.column("value")?.f64()?;
        Ok(ents.iter().zip(vals.iter()).filter_map(|(e, v)| Some((e?.to_owned(), v?))).collect())
    }

    /// Every stored sample (call after [`Frames::compact_all`]); used to write snapshots.
    pub fn for_each_chunk(
        &self,
        chunk: usize,
        mut f: impl FnMut(&[Sample]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(chunk);
        let mut interner: HashMap<String, Arc<str>> = HashMap::new();
        for (&(kind, metric), mf) in &self.frames {
            let df = &mf.sealed;
            let (Ok(e), Ok(l), Ok(t), Ok(v)) = (
                df.column("entity").and_then(|c| c.str()),
                df.column("location").and_then(|c| c.str()),
                df.column("ts").and_then(|c| c.i64()),
                df.column("value").and_then(|c| c.f64()),
            ) else {
                return Err(std::io::Error::other("frame has unexpected columns"));
            };
            for (((e, l), t), v) in e.iter().zip(l.iter()).zip(t.iter()).zip(v.iter()) {
                let (Some(e), Some(l), Some(t), Some(v)) = (e, l, t, v) else { continue };
                let mut intern = |s: &str| interner.entry(s.to_owned()).or_insert_with(|| Arc::from(s)).clone();
                buf.push(Sample { kind, metric, entity: intern(e), location: intern(l), ts_ms: t, value: v });
                if buf.len() == chunk {
                    f(&buf)?;
                    buf.clear();
                }
            }
        }
        if !buf.is_empty() {
            f(&buf)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(entity: &str, ts: i64, v: f64) -> Sample {
        Sample {
            kind: EntityKind::Virtual,
            entity: entity.into(),
            metric: Metric::CpuUsage,
            location: "".into(),
            ts_ms: ts,
            value: v,
        }
    }

    #[test]
    fn last_write_wins_and_order_is_restored() {
        let mut f = Frames::default();
        f.insert(&[s("a", 30, 3.0), s("a", 10, 1.0), s("b", 10, 9.0)], 0).unwrap();
        f.insert(&[s("a", 10, 1.5), s("a", 20, 2.0)], 0).unwrap();
        f.compact_all(0).unwrap();
        let (pts, trunc) = f.query(EntityKind::Virtual, Metric::CpuUsage, "a", "", 0, 100, 10).unwrap();
        assert_eq!(pts, vec![(10, 1.5), (20, 2.0), (30, 3.0)]);
        assert!(!trunc);
        let (pts, trunc) = f.query(EntityKind::Virtual, Metric::CpuUsage, "a", "", 15, 100, 1).unwrap();
        assert_eq!(pts, vec![(20, 2.0)]);
        assert!(trunc);
        assert_eq!(f.row_count(), 4);
    }

    #[test]
    fn retention_drops_old_rows() {
        let mut f = Frames::default();
        f.insert(&[s("a", 5, 1.0), s("a", 50, 2.0)], 0).unwrap();
        f.compact_all(10).unwrap();
        assert_eq!(f.row_count(), 1);
    }

    #[test]
    fn window_mean_per_entity() {
        let mut f = Frames::default();
        f.insert(&[s("a", 10, 1.0), s("a", 20, 3.0), s("b", 20, 5.0), s("b", 1, 100.0)], 0).unwrap();
        f.compact_all(0).unwrap();
        let m = f.window_mean(EntityKind::Virtual, Metric::CpuUsage, 10).unwrap();
        assert_eq!(m["a"], 2.0);
        assert_eq!(m["b"], 5.0);
        let mut n = 0;
        f.for_each_chunk(2, |c| {
            n += c.len();
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 4);
    }
}
