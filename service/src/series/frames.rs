//! In-memory columnar storage of samples: one Polars frame per
//! (entity kind, metric), laid out for a fleet's worth of series.
//!
//! Each (entity, location) pair of a metric gets a dense series id (`sid`).
//! The stored ("sealed") frame has two columns, `ts` (u32, milliseconds
//! after the frame's base time) and `value` (f32), sorted by (sid, ts) with
//! one row per key; where each sid's rows start is kept beside it instead of
//! a sid column. That is 8 bytes a sample (the f64/i64/u32 layout this
//! replaces took 20), one series is a contiguous slice found in O(1), and a
//! round reads every series without sorting anything. Offsets are taken from
//! a base per *epoch*: each series starts one, and a series whose rows span
//! more than [`MAX_SPAN_MS`] (≈ 49.7 days, only with long retention) starts
//! another, so any retention fits. The cost, chosen on purpose: values keep
//! f32's 7 significant digits (metrics are measurements, not counters to be
//! differenced); reads give back the shortest decimal of the stored f32, so
//! a value written with at most 7 digits reads back exactly.
//!
//! Writes land in a per-series buffer (appending to an Arrow column row by
//! row would be far slower). A buffer is merged into the frame once it holds
//! a 32nd of the frame's rows (at least [`MIN_MERGE`]), so it adds at
//! most about a byte per stored sample, and when a snapshot is taken. A merge
//! is one linear pass (both sides are already sorted per series). Reads never
//! merge: they overlay a series' buffered rows on its slice. Merging keeps
//! the *last* write of each (sid, ts) — out-of-order and duplicate samples
//! resolve to last-write-wins — and drops rows older than the retention
//! cutoff.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use polars::prelude::*;

use super::codec::{RunRef, SeriesRun};
use super::sample::{EntityKind, Metric, Sample};

/// Smallest buffer worth a merge, rows.
pub const MIN_MERGE: usize = 1 << 20;
/// A buffer is merged once it holds this fraction (1/n) of the stored rows.
const MERGE_FRACTION: usize = 32;
/// Widest time span one epoch covers: its offsets are u32 milliseconds.
pub const MAX_SPAN_MS: i64 = u32::MAX as i64;

/// Frames of every (kind, metric) that has data.
#[derive(Default, Clone)]
pub struct Frames {
    frames: BTreeMap<(EntityKind, Metric), MetricFrame>,
}

#[derive(Clone, Default)]
struct MetricFrame {
    ids: HashMap<(Arc<str>, Arc<str>), u32>,
    names: Vec<(Arc<str>, Arc<str>)>,
    /// Distinct locations per entity (what `limits.max_locations_per_node` bounds).
    locations: HashMap<Arc<str>, u32>,
    sealed: Sealed,
    /// Buffered writes per sid, in arrival order (duplicates not yet resolved).
    hot: Vec<Vec<(i64, f32)>>,
    hot_rows: usize,
}

/// The stored rows of one metric.
#[derive(Clone)]
struct Sealed {
    /// Columns `ts` (u32 ms after the row's epoch base) and `value` (f32),
    /// each one contiguous chunk, sorted by (sid, ts), one row per key.
    frame: DataFrame,
    /// `starts[sid]..starts[sid + 1]` are sid's rows; sids registered since
    /// the last merge lie past the end and have none.
    starts: Vec<usize>,
    /// Epochs as (first row, base ms), by first row: each sid's first row
    /// starts one; a row further than [`MAX_SPAN_MS`] past its epoch's base
    /// starts another.
    epochs: Vec<(usize, i64)>,
}

impl Default for Sealed {
    fn default() -> Self {
        Sealed::build(Vec::new(), Vec::new(), vec![0], Vec::new()).expect("an empty frame is valid")
    }
}

impl Sealed {
    fn build(ts: Vec<u32>, value: Vec<f32>, starts: Vec<usize>, epochs: Vec<(usize, i64)>) -> PolarsResult<Sealed> {
        let frame = DataFrame::new(
            ts.len(),
            vec![
                UInt32Chunked::from_vec("ts".into(), ts).into_series().into(),
                Float32Chunked::from_vec("value".into(), value).into_series().into(),
            ],
        )?;
        Ok(Sealed { frame, starts, epochs })
    }

    fn height(&self) -> usize {
        self.frame.height()
    }

    /// The two columns as slices (they are built from one vector each).
    fn columns(&self) -> PolarsResult<(&[u32], &[f32])> {
        Ok((self.frame.column("ts")?.u32()?.cont_slice()?, self.frame.column("value")?.f32()?.cont_slice()?))
    }

    fn rows(&self, sid: u32) -> Range<usize> {
        let s = sid as usize;
        if s + 1 < self.starts.len() { self.starts[s]..self.starts[s + 1] } else { 0..0 }
    }

    /// The base of the epoch holding `row`.
    fn base_of(&self, row: usize) -> i64 {
        let k = self.epochs.partition_point(|e| e.0 <= row);
        self.epochs[k.saturating_sub(1)].1
    }

    /// The epochs covering `rows` (which start one), each as (rows, base).
    fn epochs_of(&self, rows: Range<usize>) -> impl Iterator<Item = (Range<usize>, i64)> + '_ {
        let lo = self.epochs.partition_point(|e| e.0 < rows.start);
        let hi = self.epochs.partition_point(|e| e.0 < rows.end);
        (lo..hi).map(move |k| {
            let end = self.epochs.get(k + 1).map_or(rows.end, |e| e.0.min(rows.end));
            (self.epochs[k].0..end, self.epochs[k].1)
        })
    }
}

/// Builds a [`Sealed`] series by series, in sid order.
struct SealedBuilder {
    ts: Vec<u32>,
    value: Vec<f32>,
    starts: Vec<usize>,
    epochs: Vec<(usize, i64)>,
    /// The current series' epoch base, once it has a row.
    base: Option<i64>,
}

impl SealedBuilder {
    fn with_capacity(rows: usize, sids: usize) -> Self {
        SealedBuilder {
            ts: Vec::with_capacity(rows),
            value: Vec::with_capacity(rows),
            starts: Vec::with_capacity(sids + 1),
            epochs: Vec::with_capacity(sids),
            base: None,
        }
    }

    /// Starts the next sid.
    fn next_series(&mut self) {
        self.starts.push(self.ts.len());
        self.base = None;
    }

    /// Appends a row of the current series (times ascending).
    fn push(&mut self, t: i64, v: f32) {
        let base = match self.base {
            Some(b) if t - b <= MAX_SPAN_MS => b,
            _ => {
                self.epochs.push((self.ts.len(), t));
                self.base = Some(t);
                t
            }
        };
        self.ts.push((t - base) as u32);
        self.value.push(v);
    }

    /// Appends rows of the current series stored as offsets from `base`
    /// (one epoch of another frame, times ascending and after any row
    /// already pushed for this series).
    fn copy_epoch(&mut self, off: &[u32], value: &[f32], base: i64) {
        if off.is_empty() {
            return;
        }
        self.epochs.push((self.ts.len(), base));
        self.base = Some(base);
        self.ts.extend_from_slice(off);
        self.value.extend_from_slice(value);
    }

    fn finish(mut self) -> PolarsResult<Sealed> {
        self.starts.push(self.ts.len());
        self.ts.shrink_to_fit();
        self.value.shrink_to_fit();
        self.epochs.shrink_to_fit();
        Sealed::build(self.ts, self.value, self.starts, self.epochs)
    }
}

/// What a client sees of a stored value: a whole number as itself (3 GiB
/// of memory is exact in f32), else the f64 nearest the shortest decimal
/// that reads back as `v`. A plain widening would show the f32's binary
/// expansion (0.1 as 0.10000000149011612); this gives back exactly what was
/// written whenever that had at most 7 significant digits.
fn decimal(v: f32, text: &mut String) -> f64 {
    use std::fmt::Write;
    if v.fract() == 0.0 {
        return v as f64;
    }
    text.clear();
    let _ = write!(text, "{v}");
    text.parse().unwrap_or(v as f64)
}

/// Orders a run of writes by time, keeping the last write of each time.
fn settle(run: &mut Vec<(i64, f32)>) {
    // A stable sort keeps arrival order among equal times.
    run.sort_by_key(|p| p.0);
    let mut keep = 0;
    for i in 0..run.len() {
        if i + 1 < run.len() && run[i + 1].0 == run[i].0 {
            continue;
        }
        run[keep] = run[i];
        keep += 1;
    }
    run.truncate(keep);
}

/// Merges two runs sorted by time into `sink`, `newer` winning equal times
/// (last write wins). `newer` must be [`settle`]d.
fn merge_runs(older: impl Iterator<Item = (i64, f32)>, newer: &[(i64, f32)], mut sink: impl FnMut(i64, f32)) {
    let mut j = 0;
    for (t, v) in older {
        while j < newer.len() && newer[j].0 < t {
            sink(newer[j].0, newer[j].1);
            j += 1;
        }
        if j < newer.len() && newer[j].0 == t {
            sink(t, newer[j].1);
            j += 1;
        } else {
            sink(t, v);
        }
    }
    for &(t, v) in &newer[j..] {
        sink(t, v);
    }
}

impl MetricFrame {
    fn sid(&mut self, entity: &Arc<str>, location: &Arc<str>) -> u32 {
        if let Some(&id) = self.ids.get(&(entity.clone(), location.clone())) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push((entity.clone(), location.clone()));
        self.ids.insert((entity.clone(), location.clone()), id);
        *self.locations.entry(entity.clone()).or_default() += 1;
        self.hot.push(Vec::new());
        id
    }

    /// Buffers one write.
    fn buffer(&mut self, s: &Sample) {
        let sid = self.sid(&s.entity, &s.location);
        self.hot[sid as usize].push((s.ts_ms, s.value as f32));
        self.hot_rows += 1;
    }

    fn lookup(&self, entity: &str, location: &str) -> Option<u32> {
        self.ids.get(&(Arc::from(entity), Arc::from(location))).copied()
    }

    /// Stored rows of `sid` with `from_ms <= ts < to_ms`, as (ts, value).
    fn stored(&self, sid: u32, from_ms: i64, to_ms: i64) -> PolarsResult<impl Iterator<Item = (i64, f32)> + '_> {
        let (ts, value) = self.sealed.columns()?;
        Ok(self.sealed.epochs_of(self.sealed.rows(sid)).flat_map(move |(r, base)| {
            let off = &ts[r.clone()];
            let lo = r.start + off.partition_point(|&o| base + (o as i64) < from_ms);
            let hi = r.start + off.partition_point(|&o| base + (o as i64) < to_ms);
            (lo..hi).map(move |i| (base + ts[i] as i64, value[i]))
        }))
    }

    /// Every point of `sid` with `from_ms <= ts < to_ms`, oldest first, one
    /// per time (buffered writes overwrite stored ones), into `out`.
    fn points(&self, sid: u32, from_ms: i64, to_ms: i64, out: &mut Vec<(i64, f64)>) -> PolarsResult<()> {
        out.clear();
        // Straight copies of each epoch's slice: the round's hot loop.
        let (ts, value) = self.sealed.columns()?;
        for (r, base) in self.sealed.epochs_of(self.sealed.rows(sid)) {
            let off = &ts[r.clone()];
            let lo = off.partition_point(|&o| base + (o as i64) < from_ms);
            let hi = off.partition_point(|&o| base + (o as i64) < to_ms);
            let vals = &value[r.start + lo..r.start + hi];
            out.extend(off[lo..hi].iter().zip(vals).map(|(&o, &v)| (base + o as i64, v as f64)));
        }
        let hot = self.hot.get(sid as usize).map_or(&[][..], |h| h.as_slice());
        let mut newer: Vec<(i64, f32)> = hot.iter().copied().filter(|&(t, _)| t >= from_ms && t < to_ms).collect();
        if newer.is_empty() {
            return Ok(());
        }
        settle(&mut newer);
        if out.last().is_none_or(|l| l.0 < newer[0].0) {
            // Buffered rows newer than every stored one: what steady ingest gives.
            out.extend(newer.iter().map(|&(t, v)| (t, v as f64)));
            return Ok(());
        }
        let stored = std::mem::take(out);
        merge_runs(stored.iter().map(|&(t, v)| (t, v as f32)), &newer, |t, v| out.push((t, v as f64)));
        Ok(())
    }

    /// Folds the buffers into the stored frame, dropping rows older than `cutoff_ms`.
    fn merge(&mut self, cutoff_ms: i64) -> PolarsResult<()> {
        for run in &mut self.hot {
            settle(run);
        }
        let mut out = SealedBuilder::with_capacity(self.sealed.height() + self.hot_rows, self.names.len());
        let (ts, value) = self.sealed.columns()?;
        for sid in 0..self.names.len() as u32 {
            out.next_series();
            let run = &self.hot[sid as usize];
            let newer = &run[run.partition_point(|p| p.0 < cutoff_ms)..];
            let rows = self.sealed.rows(sid);
            let newest = rows.clone().last().map(|i| self.sealed.base_of(i) + ts[i] as i64);
            if newer.first().is_none_or(|n| newest.is_none_or(|t| t < n.0)) {
                // Buffered rows all newer than the stored ones (steady
                // ingest): the stored slices are copied as they are, epoch
                // by epoch, and the new rows appended. At fleet scale this
                // keeps a merge to memory-copy speed.
                for (r, base) in self.sealed.epochs_of(rows) {
                    let off = &ts[r.clone()];
                    let lo = r.start + off.partition_point(|&o| base + (o as i64) < cutoff_ms);
                    out.copy_epoch(&ts[lo..r.end], &value[lo..r.end], base);
                }
                for &(t, v) in newer {
                    out.push(t, v);
                }
            } else {
                merge_runs(self.stored(sid, cutoff_ms, i64::MAX)?, newer, |t, v| out.push(t, v));
            }
        }
        self.sealed = out.finish()?;
        for run in &mut self.hot {
            *run = Vec::new();
        }
        self.hot_rows = 0;
        Ok(())
    }
}

impl Frames {
    /// Buffers validated samples; merges a buffer once it is a 32nd of its frame.
    pub fn insert(&mut self, samples: &[Sample], cutoff_ms: i64) -> PolarsResult<()> {
        for s in samples {
            self.frames.entry((s.kind, s.metric)).or_default().buffer(s);
        }
        for f in self.frames.values_mut() {
            if f.hot_rows >= MIN_MERGE.max(f.sealed.height() / MERGE_FRACTION) {
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
        self.frames.values().map(|f| f.sealed.height() + f.hot_rows).sum()
    }

    /// Series held (every kind and metric).
    pub fn series_count(&self) -> usize {
        self.frames.values().map(|f| f.names.len()).sum()
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
        let mut out = Vec::new();
        if let Some(f) = self.frames.get(&(kind, metric))
            && let Some(sid) = f.lookup(entity, location)
        {
            f.points(sid, from_ms, to_ms, &mut out)?;
        }
        let truncated = out.len() > limit;
        out.truncate(limit);
        let mut text = String::new();
        for p in &mut out {
            p.1 = decimal(p.1 as f32, &mut text);
        }
        Ok((out, truncated))
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

    /// Runs `f` on every unlocated series' points with `ts >= from_ms`
    /// (oldest first, one per time) on up to `threads` threads and collects
    /// what it returns, in sid order. A round needs every virtual node's
    /// series: this reads each slice in place, where copying them all out
    /// first would take gigabytes at fleet scale.
    /// Series whose entity `skip` names are not read at all.
    #[allow(clippy::too_many_arguments)]
    pub fn map_recent<T: Send>(
        &self,
        kind: EntityKind,
        metric: Metric,
        from_ms: i64,
        threads: usize,
        skip: impl Fn(&str) -> bool + Sync,
        f: impl Fn(&Arc<str>, &[(i64, f64)]) -> Option<T> + Sync,
    ) -> PolarsResult<Vec<(Arc<str>, T)>> {
        let Some(mf) = self.frames.get(&(kind, metric)) else {
            return Ok(Vec::new());
        };
        let n = mf.names.len();
        let per = n.div_ceil(threads.max(1)).max(1);
        let part = |range: Range<usize>| -> PolarsResult<Vec<(Arc<str>, T)>> {
            let mut buf = Vec::new();
            let mut out = Vec::new();
            for sid in range {
                let (entity, location) = &mf.names[sid];
                if !location.is_empty() || skip(entity) {
                    continue;
                }
                mf.points(sid as u32, from_ms, i64::MAX, &mut buf)?;
                if !buf.is_empty()
                    && let Some(t) = f(entity, &buf)
                {
                    out.push((entity.clone(), t));
                }
            }
            Ok(out)
        };
        let ranges: Vec<Range<usize>> = (0..n).step_by(per).map(|s| s..(s + per).min(n)).collect();
        if ranges.len() <= 1 {
            return part(0..n);
        }
        type Part<T> = PolarsResult<Vec<(Arc<str>, T)>>;
        let parts: Vec<Part<T>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranges.into_iter().map(|r| scope.spawn(|| part(r))).collect();
            handles.into_iter().map(|h| h.join().expect("series reader panicked")).collect()
        });
        let mut out = Vec::with_capacity(n);
        for p in parts {
            out.extend(p?);
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
        let mut out: HashMap<String, Vec<(String, f64)>> = HashMap::new();
        let Some(f) = self.frames.get(&(kind, metric)) else {
            return Ok(out);
        };
        let mut buf = Vec::new();
        for (sid, (entity, location)) in f.names.iter().enumerate() {
            f.points(sid as u32, from_ms, i64::MAX, &mut buf)?;
            if !buf.is_empty() {
                let mean = buf.iter().map(|p| p.1).sum::<f64>() / buf.len() as f64;
                out.entry(entity.to_string()).or_default().push((location.to_string(), mean));
            }
        }
        Ok(out)
    }

    /// Every series with its points, oldest first, one per time (buffered
    /// writes included); what a snapshot writes.
    pub fn for_each_run(&self, mut f: impl FnMut(RunRef<'_>) -> std::io::Result<()>) -> std::io::Result<()> {
        let mut points = Vec::new();
        for (&(kind, metric), mf) in &self.frames {
            for (sid, (entity, location)) in mf.names.iter().enumerate() {
                points.clear();
                let mut newer = mf.hot[sid].clone();
                settle(&mut newer);
                let stored = mf.stored(sid as u32, i64::MIN, i64::MAX).map_err(std::io::Error::other)?;
                merge_runs(stored, &newer, |t, v| points.push((t, v)));
                if !points.is_empty() {
                    f(RunRef { kind, metric, entity, location, points: &points })?;
                }
            }
        }
        Ok(())
    }
}

/// A stored frame being loaded, and the sid it is at with that sid's newest time.
type Building = (SealedBuilder, Option<(u32, i64)>);

/// Start-up: builds the frames from what recovery hands over. A snapshot's
/// runs come series by series, sorted, each time once, so they go straight
/// into the stored frame (one pass: no buffer, no merge, 8 bytes a sample
/// from the start); samples, and any run out of that order, are buffered and
/// merged at the end.
pub struct Loader {
    frames: Frames,
    building: BTreeMap<(EntityKind, Metric), Building>,
    cutoff_ms: i64,
}

impl Loader {
    /// A loader that drops rows older than `cutoff_ms`.
    pub fn new(cutoff_ms: i64) -> Loader {
        Loader { frames: Frames::default(), building: BTreeMap::new(), cutoff_ms }
    }

    /// One series run of a snapshot.
    pub fn run(&mut self, run: &SeriesRun) {
        let key = (run.kind, run.metric);
        let mf = self.frames.frames.entry(key).or_default();
        let sid = mf.sid(&run.entity, &run.location);
        let points = &run.points[run.points.partition_point(|p| p.0 < self.cutoff_ms)..];
        let Some(&(first, _)) = points.first() else { return };
        let (b, at) = self.building.entry(key).or_insert_with(|| (SealedBuilder::with_capacity(0, 0), None));
        let in_order = match *at {
            Some((cur, last)) => sid > cur || (sid == cur && first > last),
            None => true,
        };
        if !in_order {
            mf.hot[sid as usize].extend_from_slice(points);
            mf.hot_rows += points.len();
            return;
        }
        while b.starts.len() <= sid as usize {
            b.next_series();
        }
        for &(t, v) in points {
            b.push(t, v);
        }
        *at = Some((sid, points[points.len() - 1].0));
    }

    /// Samples (a first-release snapshot's, or the log's).
    pub fn samples(&mut self, samples: &[Sample]) {
        for s in samples {
            self.frames.frames.entry((s.kind, s.metric)).or_default().buffer(s);
        }
    }

    /// The frames, buffers merged and retention applied.
    pub fn finish(mut self) -> PolarsResult<Frames> {
        for (key, (b, _)) in self.building {
            if let Some(mf) = self.frames.frames.get_mut(&key) {
                mf.sealed = b.finish()?;
            }
        }
        self.frames.compact_all(self.cutoff_ms)?;
        Ok(self.frames)
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
    fn a_series_spanning_several_epochs_keeps_every_row_and_values_read_back_as_written() {
        let mut f = Frames::default();
        let rows: Vec<i64> = vec![0, 1, MAX_SPAN_MS, MAX_SPAN_MS + 1, 3 * MAX_SPAN_MS, 3 * MAX_SPAN_MS + 7];
        let write: Vec<Sample> = rows.iter().map(|&t| s("a", t, 0.1 + t as f64 * 1e-12)).collect();
        f.insert(&write, -1).unwrap();
        f.insert(&[s("b", 5, 2.5), s("c", 5, 3.0 * (1u64 << 30) as f64)], -1).unwrap();
        f.compact_all(-1).unwrap();
        f.insert(&[s("a", 2 * MAX_SPAN_MS, 7.0)], -1).unwrap();
        for _ in 0..2 {
            let (all, _) = q(&f, "a", i64::MIN, i64::MAX, 100);
            assert_eq!(all.iter().map(|p| p.0).collect::<Vec<_>>(), {
                let mut t = rows.clone();
                t.insert(4, 2 * MAX_SPAN_MS);
                t
            });
            // Values are f32 inside; a read gives back the decimal written,
            // and whole numbers exactly (3 GiB is not 3221225500).
            assert_eq!(all[0].1, 0.1);
            assert_eq!(q(&f, "b", 0, 10, 100).0, vec![(5, 2.5)]);
            assert_eq!(q(&f, "a", MAX_SPAN_MS + 1, 3 * MAX_SPAN_MS + 1, 100).0.len(), 3);
            assert_eq!(q(&f, "c", 0, 10, 100).0, vec![(5, 3221225472.0)]);
            assert_eq!(q(&f, "b", 0, 10, 100).0, vec![(5, 2.5)]);
            f.compact_all(-1).unwrap();
        }
    }

    #[test]
    fn loading_a_snapshot_and_the_log_equals_inserting_the_samples() {
        let mut f = Frames::default();
        let writes: Vec<Sample> =
            (0..200).map(|i| s(&format!("e{}", i % 7), (i * 37) % 90, (i % 13) as f64 * 0.5)).collect();
        f.insert(&writes, 10).unwrap();
        f.compact_all(10).unwrap();
        let mut runs = Vec::new();
        f.for_each_run(|r| {
            runs.push(SeriesRun {
                kind: r.kind,
                metric: r.metric,
                entity: r.entity.into(),
                location: r.location.into(),
                points: r.points.to_vec(),
            });
            Ok(())
        })
        .unwrap();
        // The log after the snapshot: an overwrite, a new point, a new series.
        let log = [s("e3", 40, 99.0), s("e1", 95, 1.5), s("new", 50, 2.0)];
        f.insert(&log, 10).unwrap();
        let mut l = Loader::new(20);
        // The first run split across two records, the last one out of order
        // (after a later series), and an old run cut by retention.
        let (a, b) = runs[0].points.split_at(runs[0].points.len() / 2);
        l.run(&SeriesRun { points: a.to_vec(), ..runs[0].clone() });
        l.run(&SeriesRun { points: b.to_vec(), ..runs[0].clone() });
        for r in &runs[2..] {
            l.run(r);
        }
        l.run(&runs[1]);
        l.samples(&log);
        let g = l.finish().unwrap();
        f.compact_all(20).unwrap();
        for e in ["e0", "e1", "e2", "e3", "e4", "e5", "e6", "new"] {
            assert_eq!(q(&g, e, i64::MIN, i64::MAX, 1000), q(&f, e, i64::MIN, i64::MAX, 1000), "{e}");
        }
        assert_eq!(g.row_count(), f.row_count());
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
        f.for_each_run(|r| {
            n += r.points.len();
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
            let all: HashMap<Arc<str>, Vec<(i64, f64)>> = f
                .map_recent(EntityKind::Virtual, Metric::CpuUsage, 5, 2, |e| e == "e9", |_, p| Some(p.to_vec()))
                .unwrap()
                .into_iter()
                .collect();
            for e in 0u8..3 {
                let want: Vec<(i64, f64)> = model.iter().filter(|((me, _), _)| *me == e).map(|((_, t), v)| (*t, *v)).collect();
                let (got, _) = q(&f, &format!("e{e}"), 0, 100, 1000);
                prop_assert_eq!(&got, &want);
                // The round's read over every series, split across threads, sees the same.
                let recent: Vec<(i64, f64)> = want.into_iter().filter(|p| p.0 >= 5).collect();
                prop_assert_eq!(all.get(format!("e{e}").as_str()).cloned().unwrap_or_default(), recent);
            }
        }
    }
}
