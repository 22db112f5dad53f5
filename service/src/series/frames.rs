//! In-memory columnar storage of samples: one Polars frame per
//! (entity kind, metric).
//!
//! Each (entity, location) pair of a metric gets a dense series id (`sid`,
//! u32); the frame has the columns `sid`, `ts` (i64 ms) and `value` (f64),
//! sorted by (sid, ts) with one row per key. Integer keys make the frame
//! small (20 bytes a row) and its sorts cheap; the id ↔ name dictionary lives
//! beside it.
//!
//! Writes land in a row buffer (appending to an Arrow column row by row
//! would be far slower). The buffer is merged into the frame when it is as
//! large as the frame (so merge work is amortised O(log n) per row) and
//! when a snapshot is taken. Reads never merge: they combine the frame with
//! a scan of the buffer. Merging keeps the *last* write of each (sid, ts) —
//! out-of-order and duplicate samples resolve to last-write-wins — and drops
//! rows older than the retention cutoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use polars::prelude::*;

use super::sample::{EntityKind, Metric, Sample};

/// Smallest buffer worth a merge.
const MIN_MERGE: usize = 1 << 20;

/// Frames of every (kind, metric) that has data.
#[derive(Default, Clone)]
pub struct Frames {
    frames: BTreeMap<(EntityKind, Metric), MetricFrame>,
}

#[derive(Clone)]
struct MetricFrame {
    ids: HashMap<(Arc<str>, Arc<str>), u32>,
    names: Vec<(Arc<str>, Arc<str>)>,
    /// Distinct locations per entity (what `limits.max_locations_per_node` bounds).
    locations: HashMap<Arc<str>, u32>,
    sealed: DataFrame,
    hot_sid: Vec<u32>,
    hot_ts: Vec<i64>,
    hot_value: Vec<f64>,
}

impl Default for MetricFrame {
    fn default() -> Self {
        MetricFrame {
            ids: HashMap::new(),
            names: Vec::new(),
            locations: HashMap::new(),
            sealed: frame_of(&[], &[], &[]).expect("an empty frame is valid"),
            hot_sid: Vec::new(),
            hot_ts: Vec::new(),
            hot_value: Vec::new(),
        }
    }
}

fn frame_of(sid: &[u32], ts: &[i64], value: &[f64]) -> PolarsResult<DataFrame> {
    DataFrame::new(
        ts.len(),
        vec![Column::new("sid".into(), sid), Column::new("ts".into(), ts), Column::new("value".into(), value)],
    )
}

/// Sorts by (sid, ts) keeping arrival order among equal keys, then keeps the
/// last row of each key: one linear pass instead of a hash-based unique.
fn sort_dedup(lf: LazyFrame) -> LazyFrame {
    lf.sort(["sid", "ts"], SortMultipleOptions::default().with_maintain_order(true)).filter(
        col("sid").neq(col("sid").shift(lit(-1))).or(col("ts").neq(col("ts").shift(lit(-1)))).fill_null(lit(true)),
    )
}

impl MetricFrame {
    fn hot_len(&self) -> usize {
        self.hot_ts.len()
    }

    /// Every row (sealed and buffered, not yet de-duplicated) with `ts >= from_ms`.
    fn since(&self, from_ms: i64) -> PolarsResult<LazyFrame> {
        let (mut sid, mut ts, mut value) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..self.hot_len() {
            if self.hot_ts[i] >= from_ms {
                sid.push(self.hot_sid[i]);
                ts.push(self.hot_ts[i]);
                value.push(self.hot_value[i]);
            }
        }
        let recent = self.sealed.clone().lazy().filter(col("ts").gt_eq(lit(from_ms)));
        concat([recent, frame_of(&sid, &ts, &value)?.lazy()], UnionArgs::default())
    }

    fn sid(&mut self, entity: &Arc<str>, location: &Arc<str>) -> u32 {
        if let Some(&id) = self.ids.get(&(entity.clone(), location.clone())) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push((entity.clone(), location.clone()));
        self.ids.insert((entity.clone(), location.clone()), id);
        *self.locations.entry(entity.clone()).or_default() += 1;
        id
    }

    fn lookup(&self, entity: &str, location: &str) -> Option<u32> {
        self.ids.get(&(Arc::from(entity), Arc::from(location))).copied()
    }

    fn merge(&mut self, cutoff_ms: i64) -> PolarsResult<()> {
        let hot = frame_of(&self.hot_sid, &self.hot_ts, &self.hot_value)?;
        let both = concat([self.sealed.clone().lazy(), hot.lazy()], UnionArgs::default())?;
        self.sealed = sort_dedup(both.filter(col("ts").gt_eq(lit(cutoff_ms)))).collect()?;
        self.hot_sid.clear();
        self.hot_ts.clear();
        self.hot_value.clear();
        Ok(())
    }
}

fn points(df: &DataFrame) -> PolarsResult<Vec<(i64, f64)>> {
    let ts = df.column("ts")?.i64()?;
    let vals = df.column("value")?.f64()?;
    Ok(ts.into_no_null_iter().zip(vals.into_no_null_iter()).collect())
}

impl Frames {
    /// Buffers validated samples; merges a buffer once it is as large as its frame.
    pub fn insert(&mut self, samples: &[Sample], cutoff_ms: i64) -> PolarsResult<()> {
        for s in samples {
            let f = self.frames.entry((s.kind, s.metric)).or_default();
            let sid = f.sid(&s.entity, &s.location);
            f.hot_sid.push(sid);
            f.hot_ts.push(s.ts_ms);
            f.hot_value.push(s.value);
        }
        for f in self.frames.values_mut() {
            if f.hot_len() >= MIN_MERGE.max(f.sealed.height()) {
                f.merge(cutoff_ms)?;
            }
        }
        Ok(())
    }

    /// Merges every buffer and applies retention.
    pub fn compact_all(&mut self, cutoff_ms: i64) -> PolarsResult<()> {
        for f in self.frames.values_mut() {
            f.merge(cutoff_ms)?;
        }
        Ok(())
    }

    /// How many distinct locations `entity` has series of under `metric`,
    /// and whether `location` is one of them.
    pub fn locations(&self, kind: EntityKind, metric: Metric, entity: &str, location: &str) -> (usize, bool) {
        self.frames.get(&(kind, metric)).map_or((0, false), |f| {
            (f.locations.get(entity).copied().unwrap_or(0) as usize, f.lookup(entity, location).is_some())
        })
    }

    /// Stored rows plus buffered rows (buffered duplicates counted until merged).
    pub fn row_count(&self) -> usize {
        self.frames.values().map(|f| f.sealed.height() + f.hot_len()).sum()
    }

    /// Points of one series in `[from, to)`, oldest first, at most `limit`
    /// (the bool says whether more existed).
    #[allow(clippy::too_many_arguments)]
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
        let Some(sid) = f.lookup(entity, location) else {
            return Ok((Vec::new(), false));
        };
        let df = f
            .sealed
            .clone()
            .lazy()
            .filter(col("sid").eq(lit(sid)).and(col("ts").gt_eq(lit(from_ms))).and(col("ts").lt(lit(to_ms))))
            .collect()?;
        let mut merged: BTreeMap<i64, f64> = points(&df)?.into_iter().collect();
        // Buffered rows are newer writes: they overwrite.
        for i in 0..f.hot_len() {
            let ts = f.hot_ts[i];
            if f.hot_sid[i] == sid && ts >= from_ms && ts < to_ms {
                merged.insert(ts, f.hot_value[i]);
            }
        }
        let truncated = merged.len() > limit;
        Ok((merged.into_iter().take(limit).collect(), truncated))
    }

    /// Mean value per entity over samples with `ts >= from_ms` (summed over
    /// locations for located metrics).
    pub fn window_mean(&self, kind: EntityKind, metric: Metric, from_ms: i64) -> PolarsResult<HashMap<String, f64>> {
        let mut out: HashMap<String, f64> = HashMap::new();
        for (entity, per_loc) in self.window_mean_located(kind, metric, from_ms)? {
            *out.entry(entity).or_default() += per_loc.iter().map(|(_, v)| v).sum::<f64>();
        }
        Ok(out)
    }

    /// Every series' points with `ts >= from_ms` in one pass over the frame
    /// (a round needs them for every virtual node; one query each would scan
    /// the frame once per node): entity → points, oldest first. Located
    /// series are left out.
    pub fn recent(
        &self,
        kind: EntityKind,
        metric: Metric,
        from_ms: i64,
    ) -> PolarsResult<HashMap<String, Vec<(i64, f64)>>> {
        let mut out: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
        let Some(f) = self.frames.get(&(kind, metric)) else {
            return Ok(out);
        };
        let df = sort_dedup(f.since(from_ms)?).collect()?;
        let sids = df.column("sid")?.u32()?;
        for (s, (t, v)) in sids.into_no_null_iter().zip(points(&df)?) {
            let (entity, location) = &f.names[s as usize];
            if location.is_empty() {
                out.entry(entity.to_string()).or_default().push((t, v));
            }
        }
        Ok(out)
    }

    /// Mean value per (entity, location) over samples with `ts >= from_ms`.
    pub fn window_mean_located(
        &self,
        kind: EntityKind,
        metric: Metric,
        from_ms: i64,
    ) -> PolarsResult<HashMap<String, Vec<(String, f64)>>> {
        let Some(f) = self.frames.get(&(kind, metric)) else {
            return Ok(HashMap::new());
        };
        let df = sort_dedup(f.since(from_ms)?).group_by([col("sid")]).agg([col("value").mean()]).collect()?;
        let sids = df.column("sid")?.u32()?;
        let vals = df.column("value")?.f64()?;
        let mut out: HashMap<String, Vec<(String, f64)>> = HashMap::new();
        for (s, v) in sids.iter().zip(vals.iter()) {
            let (Some(s), Some(v)) = (s, v) else { continue };
            let (entity, location) = &f.names[s as usize];
            out.entry(entity.to_string()).or_default().push((location.to_string(), v));
        }
        Ok(out)
    }

    /// Every stored sample in chunks (call after [`Frames::compact_all`]); used to write snapshots.
    pub fn for_each_chunk(
        &self,
        chunk: usize,
        mut f: impl FnMut(&[Sample]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(chunk);
        for (&(kind, metric), mf) in &self.frames {
            let df = &mf.sealed;
            let (Ok(s), Ok(t), Ok(v)) = (
                df.column("sid").and_then(|c| c.u32()),
                df.column("ts").and_then(|c| c.i64()),
                df.column("value").and_then(|c| c.f64()),
            ) else {
                return Err(std::io::Error::other("frame has unexpected columns"));
            };
            for ((s, t), v) in s.into_no_null_iter().zip(t.into_no_null_iter()).zip(v.into_no_null_iter()) {
                let (entity, location) = mf.names[s as usize].clone();
                buf.push(Sample { kind, metric, entity, location, ts_ms: t, value: v });
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
    use proptest::prelude::*;

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

    fn q(f: &Frames, e: &str, from: i64, to: i64, limit: usize) -> (Vec<(i64, f64)>, bool) {
        f.query(EntityKind::Virtual, Metric::CpuUsage, e, "", from, to, limit).unwrap()
    }

    #[test]
    fn last_write_wins_and_order_is_restored() {
        let mut f = Frames::default();
        f.insert(&[s("a", 30, 3.0), s("a", 10, 1.0), s("b", 10, 9.0)], 0).unwrap();
        f.compact_all(0).unwrap();
        f.insert(&[s("a", 10, 1.5), s("a", 20, 2.0)], 0).unwrap();
        // Read before and after the merge: the same answer.
        for _ in 0..2 {
            assert_eq!(q(&f, "a", 0, 100, 10), (vec![(10, 1.5), (20, 2.0), (30, 3.0)], false));
            assert_eq!(q(&f, "a", 15, 100, 1), (vec![(20, 2.0)], true));
            assert_eq!(q(&f, "zzz", 0, 100, 10), (vec![], false));
            f.compact_all(0).unwrap();
        }
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
        f.insert(&[s("a", 10, 1.0), s("b", 1, 100.0)], 0).unwrap();
        f.compact_all(0).unwrap();
        // "a"@10 is overwritten by a buffered write; both parts are combined.
        f.insert(&[s("a", 10, 5.0), s("a", 20, 3.0), s("b", 20, 5.0)], 0).unwrap();
        let m = f.window_mean(EntityKind::Virtual, Metric::CpuUsage, 10).unwrap();
        assert_eq!(m["a"], 4.0);
        assert_eq!(m["b"], 5.0);
        f.compact_all(0).unwrap();
        let mut n = 0;
        f.for_each_chunk(2, |c| {
            n += c.len();
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 4);
    }

    proptest! {
        /// Whatever the order and merges, a query equals a last-write-wins map.
        #[test]
        fn matches_a_last_write_wins_model(
            writes in proptest::collection::vec((0u8..3, 0i64..20, 0u32..100), 1..200),
            merge_every in 1usize..50,
        ) {
            let mut f = Frames::default();
            let mut model: BTreeMap<(u8, i64), f64> = BTreeMap::new();
            for (i, (e, ts, v)) in writes.iter().enumerate() {
                let v = *v as f64;
                f.insert(&[s(&format!("e{e}"), *ts, v)], 0).unwrap();
                model.insert((*e, *ts), v);
                if i % merge_every == 0 {
                    f.compact_all(0).unwrap();
                }
            }
            for e in 0u8..3 {
                let want: Vec<(i64, f64)> = model.iter().filter(|((me, _), _)| *me == e).map(|((_, t), v)| (*t, *v)).collect();
                let (got, _) = q(&f, &format!("e{e}"), 0, 100, 1000);
                prop_assert_eq!(got, want);
            }
        }
    }
}
