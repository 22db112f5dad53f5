//! In-memory columnar storage of samples: one Polars frame per
//! (entity kind, metric), laid out for a fleet's worth of series.
//!
//! Each (entity, location) pair of a metric gets a dense series id (`sid`).
//! The stored ("sealed") frame is one column, `value` (f32), sorted by
//! (sid, time) with one row per key; where each sid's rows start is kept
//! beside it instead of a sid column, and times are kept beside it as
//! *runs*, not as a column. A run is a stretch of one series' rows that is
//! either *regular* (row k at `base + k * step`: a scrape or report on a
//! fixed period, which is what nearly every series is, so its times cost
//! nothing per row) or *explicit* (a u32 millisecond offset per row from the
//! run's base, for irregular or jittered times). So a regularly reported
//! sample takes 4 bytes and any other 8 (the f64/i64/u32 layout this
//! replaces took 20, the u32/f32 columns before this 8 for every sample);
//! one series is a contiguous slice found in O(1), and a round reads every
//! series without sorting anything. An explicit run spans at most
//! [`MAX_SPAN_MS`] (≈ 49.7 days, only with long retention), so any
//! retention fits. The cost, chosen on purpose: values keep f32's 7
//! significant digits (metrics are measurements, not counters to be
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
/// Widest time span one explicit run covers: its offsets are u32 milliseconds.
pub const MAX_SPAN_MS: i64 = u32::MAX as i64;
/// Rows in arithmetic progression at the end of an explicit run that become
/// a regular run of their own. Short enough that a series which turns
/// regular (after a gap, at its start) stops paying for its times within a
/// few rows; long enough that a run's 32 bytes stay under half a byte a row
/// however a series alternates between jittered and regular stretches.
const REGULAR_MIN: usize = 64;

/// Frames of every (kind, metric) that has data.
#[derive(Default, Clone)]
pub struct Frames {
    frames: BTreeMap<(EntityKind, Metric), MetricFrame>,
}

/// One stored series, read in place (see [`Frames::map_series`]).
#[derive(Clone, Copy)]
pub struct SeriesHandle<'a> {
    frame: &'a MetricFrame,
    sid: u32,
    values: &'a [f32],
}

impl SeriesHandle<'_> {
    /// The time of the newest point, ms.
    pub fn newest_ms(&self) -> Option<i64> {
        self.frame.newest(self.sid)
    }

    /// Appends the points with `from_ms <= t < to_ms`, oldest first, one per
    /// time, to `out` (after any earlier points of this series there).
    pub fn read(&self, from_ms: i64, to_ms: i64, out: &mut Vec<(i64, f64)>) {
        self.frame.append_points(self.sid, self.values, from_ms, to_ms, out);
    }
}

#[derive(Clone, Default)]
struct MetricFrame {
    /// Hashed with foldhash: every sample written or replayed is looked up
    /// here (with SipHash this was over a third of a fleet's start-up).
    ids: HashMap<(Arc<str>, Arc<str>), u32, foldhash::fast::RandomState>,
    names: Vec<(Arc<str>, Arc<str>)>,
    /// Distinct locations per entity (what `limits.max_locations_per_node` bounds).
    locations: HashMap<Arc<str>, u32>,
    sealed: Sealed,
    /// Buffered writes per sid, in arrival order (duplicates not yet resolved).
    hot: Vec<Vec<(i64, f32)>>,
    hot_rows: usize,
}

/// How the times of a run's rows are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Times {
    /// Row `k` of the run is at `base + k * step` (`step > 0`): a scrape or
    /// report on a fixed period, which is what nearly every series is.
    Regular { step: i64 },
    /// Row `k` of the run is at `base + offsets[off + k]` (u32 ms).
    Explicit { off: usize },
}

/// A stretch of one series' rows whose times follow one rule. A run never
/// spans two series: each series' first row starts one.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// First row.
    row: usize,
    /// Time of the first row, ms.
    base: i64,
    times: Times,
}

/// How many of a regular run's `len` rows are before `t`.
fn regular_before(base: i64, step: i64, len: usize, t: i64) -> usize {
    if t <= base {
        return 0;
    }
    let ahead = (t as i128 - base as i128 + step as i128 - 1) / step as i128;
    ahead.min(len as i128) as usize
}

/// The stored rows of one metric.
#[derive(Clone)]
struct Sealed {
    /// Column `value` (f32), one contiguous chunk, sorted by (sid, time),
    /// one row per key. Times are not a column: [`Sealed::runs`] derive them.
    frame: DataFrame,
    /// Offsets of the explicit runs' rows, u32 ms after their run's base.
    offsets: Vec<u32>,
    /// `starts[sid]..starts[sid + 1]` are sid's rows; sids registered since
    /// the last merge lie past the end and have none.
    starts: Vec<usize>,
    /// Runs by first row; each sid's first row starts one.
    runs: Vec<Run>,
}

impl Default for Sealed {
    fn default() -> Self {
        Sealed::build(Vec::new(), Vec::new(), vec![0], Vec::new()).expect("an empty frame is valid")
    }
}

impl Sealed {
    fn build(value: Vec<f32>, offsets: Vec<u32>, starts: Vec<usize>, runs: Vec<Run>) -> PolarsResult<Sealed> {
        let frame =
            DataFrame::new(value.len(), vec![Float32Chunked::from_vec("value".into(), value).into_series().into()])?;
        Ok(Sealed { frame, offsets, starts, runs })
    }

    fn height(&self) -> usize {
        self.frame.height()
    }

    /// The value column as a slice (it is built from one vector).
    fn values(&self) -> PolarsResult<&[f32]> {
        self.frame.column("value")?.f32()?.cont_slice()
    }

    fn rows(&self, sid: u32) -> Range<usize> {
        let s = sid as usize;
        if s + 1 < self.starts.len() { self.starts[s]..self.starts[s + 1] } else { 0..0 }
    }

    /// The runs covering `rows` (which start one), each with its rows.
    fn runs_of(&self, rows: Range<usize>) -> impl Iterator<Item = (Range<usize>, Run)> + '_ {
        let lo = self.runs.partition_point(|r| r.row < rows.start);
        let hi = self.runs.partition_point(|r| r.row < rows.end);
        (lo..hi).map(move |k| {
            let end = self.runs.get(k + 1).map_or(rows.end, |r| r.row.min(rows.end));
            (self.runs[k].row..end, self.runs[k])
        })
    }

    /// The time of `row`, one of `run`'s.
    fn time(&self, run: &Run, row: usize) -> i64 {
        match run.times {
            Times::Regular { step } => run.base + (row - run.row) as i64 * step,
            Times::Explicit { off } => run.base + self.offsets[off + row - run.row] as i64,
        }
    }

    /// The time of `sid`'s newest stored row.
    fn newest(&self, sid: u32) -> Option<i64> {
        self.runs_of(self.rows(sid)).last().map(|(r, run)| self.time(&run, r.end - 1))
    }

    /// The first of `run`'s `rows` at or after `t`.
    fn seek(&self, run: &Run, rows: &Range<usize>, t: i64) -> usize {
        rows.start
            + match run.times {
                Times::Regular { step } => regular_before(run.base, step, rows.len(), t),
                Times::Explicit { off } => {
                    self.offsets[off..off + rows.len()].partition_point(|&o| run.base + (o as i64) < t)
                }
            }
    }

    /// The rows of `sid` with `from_ms <= t < to_ms`, run by run.
    fn spans(&self, sid: u32, from_ms: i64, to_ms: i64) -> impl Iterator<Item = (Range<usize>, Run)> + '_ {
        self.runs_of(self.rows(sid)).filter_map(move |(rows, run)| {
            let lo = self.seek(&run, &rows, from_ms);
            let hi = self.seek(&run, &rows, to_ms);
            (lo < hi).then_some((lo..hi, run))
        })
    }

    /// Appends the (time, value) of `rows`, one of `run`'s, to `out`.
    fn extend_points<T>(
        &self,
        run: &Run,
        rows: Range<usize>,
        values: &[f32],
        out: &mut Vec<T>,
        f: impl Fn(i64, f32) -> T,
    ) {
        let vals = &values[rows.clone()];
        match run.times {
            Times::Regular { step } => {
                let t0 = run.base + (rows.start - run.row) as i64 * step;
                out.extend(vals.iter().enumerate().map(|(k, &v)| f(t0 + k as i64 * step, v)));
            }
            Times::Explicit { off } => {
                let o = &self.offsets[off + rows.start - run.row..off + rows.end - run.row];
                out.extend(o.iter().zip(vals).map(|(&o, &v)| f(run.base + o as i64, v)));
            }
        }
    }

    /// Bytes the stored rows take (values, explicit times, runs, series starts).
    fn bytes(&self) -> usize {
        self.height() * size_of::<f32>()
            + self.offsets.len() * size_of::<u32>()
            + self.runs.len() * size_of::<Run>()
            + self.starts.len() * size_of::<usize>()
    }
}

/// The run a [`SealedBuilder`] is appending to.
#[derive(Clone, Copy)]
enum Open {
    /// No row of the current series yet.
    None,
    Regular,
    /// With how many of its newest rows are in arithmetic progression by `d`
    /// (ms), the newest at `last`.
    Explicit {
        streak: usize,
        d: i64,
        last: i64,
    },
}

/// Builds a [`Sealed`] series by series, in sid order, finding the regular
/// runs as rows arrive: a row on its regular run's period extends it; other
/// rows go to an explicit run, whose newest [`REGULAR_MIN`] rows become a
/// regular run as soon as they are in arithmetic progression.
struct SealedBuilder {
    value: Vec<f32>,
    offsets: Vec<u32>,
    starts: Vec<usize>,
    runs: Vec<Run>,
    open: Open,
}

impl SealedBuilder {
    fn with_capacity(rows: usize, sids: usize) -> Self {
        SealedBuilder {
            value: Vec::with_capacity(rows),
            offsets: Vec::new(),
            starts: Vec::with_capacity(sids + 1),
            runs: Vec::with_capacity(sids),
            open: Open::None,
        }
    }

    /// Starts the next sid.
    fn next_series(&mut self) {
        self.starts.push(self.value.len());
        self.open = Open::None;
    }

    fn start_explicit(&mut self, t: i64) {
        self.runs.push(Run { row: self.value.len(), base: t, times: Times::Explicit { off: self.offsets.len() } });
        self.offsets.push(0);
        self.open = Open::Explicit { streak: 1, d: 0, last: t };
    }

    /// Appends a row of the current series (times strictly ascending).
    fn push(&mut self, t: i64, v: f32) {
        let row = self.value.len();
        match (self.open, self.runs.last_mut()) {
            (Open::Regular, Some(run))
                if matches!(run.times, Times::Regular { step }
                    if (row - run.row) as i128 * step as i128 + run.base as i128 == t as i128) => {}
            (Open::Explicit { streak, d, last }, Some(run)) if t - run.base <= MAX_SPAN_MS => {
                let streak = if streak >= 2 && t - last == d { streak + 1 } else { 2 };
                let d = t - last;
                if streak >= REGULAR_MIN {
                    // The newest rows and this one are on a period: they
                    // leave the explicit run for a regular one.
                    let first = row + 1 - REGULAR_MIN;
                    let base = t - (REGULAR_MIN as i64 - 1) * d;
                    self.offsets.truncate(self.offsets.len() + 1 - REGULAR_MIN);
                    let times = Times::Regular { step: d };
                    if first == run.row {
                        *run = Run { row: first, base, times };
                    } else {
                        self.runs.push(Run { row: first, base, times });
                    }
                    self.open = Open::Regular;
                } else {
                    self.offsets.push((t - run.base) as u32);
                    self.open = Open::Explicit { streak, d, last: t };
                }
            }
            _ => self.start_explicit(t),
        }
        self.value.push(v);
    }

    /// Appends `value.len()` rows of the current series at `base`,
    /// `base + step`, … (after any row already pushed for it).
    fn copy_regular(&mut self, base: i64, step: i64, value: &[f32]) {
        if value.is_empty() {
            return;
        }
        let row = self.value.len();
        let extends = matches!((self.open, self.runs.last()), (Open::Regular, Some(run))
            if run.times == (Times::Regular { step }) && run.base as i128 + (row - run.row) as i128 * step as i128 == base as i128);
        if !extends {
            self.runs.push(Run { row, base, times: Times::Regular { step } });
        }
        self.value.extend_from_slice(value);
        self.open = Open::Regular;
    }

    /// Appends rows of the current series at `base + off[k]` (times
    /// ascending and after any row already pushed for this series).
    fn copy_explicit(&mut self, off: &[u32], value: &[f32], base: i64) {
        let Some(&newest) = off.last() else { return };
        self.runs.push(Run { row: self.value.len(), base, times: Times::Explicit { off: self.offsets.len() } });
        self.offsets.extend_from_slice(off);
        self.value.extend_from_slice(value);
        // The progression its newest rows already make, so that rows pushed
        // next can complete it (a series' first rows, frozen by a merge
        // before there were enough of them, still turn regular).
        let (mut streak, mut d) = (1, 0);
        if let [.., a, b] = off {
            d = (b - a) as i64;
            streak = 2;
            while streak < off.len().min(REGULAR_MIN)
                && (off[off.len() - streak] - off[off.len() - streak - 1]) as i64 == d
            {
                streak += 1;
            }
        }
        self.open = Open::Explicit { streak, d, last: base + newest as i64 };
    }

    fn finish(mut self) -> PolarsResult<Sealed> {
        self.starts.push(self.value.len());
        self.value.shrink_to_fit();
        self.offsets.shrink_to_fit();
        self.runs.shrink_to_fit();
        Sealed::build(self.value, self.offsets, self.starts, self.runs)
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
        let values = self.sealed.values()?;
        Ok(self
            .sealed
            .spans(sid, from_ms, to_ms)
            .flat_map(move |(rows, run)| rows.map(move |i| (self.sealed.time(&run, i), values[i]))))
    }

    /// Every point of `sid` with `from_ms <= ts < to_ms`, oldest first, one
    /// per time (buffered writes overwrite stored ones), into `out`.
    fn points(&self, sid: u32, from_ms: i64, to_ms: i64, out: &mut Vec<(i64, f64)>) -> PolarsResult<()> {
        out.clear();
        self.append_points(sid, self.sealed.values()?, from_ms, to_ms, out);
        Ok(())
    }

    /// [`MetricFrame::points`] appended to `out` (which may hold earlier
    /// points of the series), given the stored values.
    fn append_points(&self, sid: u32, values: &[f32], from_ms: i64, to_ms: i64, out: &mut Vec<(i64, f64)>) {
        let start = out.len();
        // Each run's rows straight out of the column: the round's hot loop.
        for (rows, run) in self.sealed.spans(sid, from_ms, to_ms) {
            self.sealed.extend_points(&run, rows, values, out, |t, v| (t, v as f64));
        }
        let hot = self.hot.get(sid as usize).map_or(&[][..], |h| h.as_slice());
        if hot.is_empty() {
            return;
        }
        let mut newer: Vec<(i64, f32)> = hot.iter().copied().filter(|&(t, _)| t >= from_ms && t < to_ms).collect();
        if newer.is_empty() {
            return;
        }
        settle(&mut newer);
        if out[start..].last().is_none_or(|l| l.0 < newer[0].0) {
            // Buffered rows newer than every stored one: what steady ingest gives.
            out.extend(newer.iter().map(|&(t, v)| (t, v as f64)));
            return;
        }
        let stored: Vec<(i64, f64)> = out.drain(start..).collect();
        merge_runs(stored.iter().map(|&(t, v)| (t, v as f32)), &newer, |t, v| out.push((t, v as f64)));
    }

    /// The time of `sid`'s newest point, stored or buffered.
    fn newest(&self, sid: u32) -> Option<i64> {
        let stored = self.sealed.newest(sid);
        let buffered = self.hot.get(sid as usize).and_then(|h| h.iter().map(|p| p.0).max());
        stored.max(buffered)
    }

    /// Folds the buffers into the stored frame, dropping rows older than `cutoff_ms`.
    fn merge(&mut self, cutoff_ms: i64) -> PolarsResult<()> {
        for run in &mut self.hot {
            settle(run);
        }
        let mut out = SealedBuilder::with_capacity(self.sealed.height() + self.hot_rows, self.names.len());
        let values = self.sealed.values()?;
        for sid in 0..self.names.len() as u32 {
            out.next_series();
            let run = &self.hot[sid as usize];
            let newer = &run[run.partition_point(|p| p.0 < cutoff_ms)..];
            let rows = self.sealed.rows(sid);
            let newest = self.sealed.newest(sid);
            if newer.first().is_none_or(|n| newest.is_none_or(|t| t < n.0)) {
                // Buffered rows all newer than the stored ones (steady
                // ingest): the stored runs are copied as they are and the
                // new rows appended (extending the last run when they keep
                // its period). At fleet scale this keeps a merge to
                // memory-copy speed.
                for (r, run) in self.sealed.runs_of(rows) {
                    let lo = self.sealed.seek(&run, &r, cutoff_ms);
                    if lo == r.end {
                        continue;
                    }
                    match run.times {
                        Times::Regular { step } => {
                            out.copy_regular(self.sealed.time(&run, lo), step, &values[lo..r.end])
                        }
                        Times::Explicit { off } => out.copy_explicit(
                            &self.sealed.offsets[off + lo - run.row..off + r.end - run.row],
                            &values[lo..r.end],
                            run.base,
                        ),
                    }
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

    /// Bytes of memory the stored rows take (buffers not counted).
    pub fn stored_bytes(&self) -> usize {
        self.frames.values().map(|f| f.sealed.bytes()).sum()
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

    /// Runs `f` on every unlocated series (a handle that reads it in place,
    /// and a scratch buffer) on up to `threads` threads and collects what it
    /// returns, in sid order. A round needs every virtual node's series:
    /// this reads each in place, where copying them all out first would take
    /// gigabytes at fleet scale. Series whose entity `skip` names are not
    /// read at all.
    #[allow(clippy::too_many_arguments)]
    pub fn map_series<'a, T: Send>(
        &'a self,
        kind: EntityKind,
        metric: Metric,
        threads: usize,
        skip: impl Fn(&str) -> bool + Sync,
        f: impl Fn(&Arc<str>, &SeriesHandle<'a>, &mut Vec<(i64, f64)>) -> Option<T> + Sync,
    ) -> PolarsResult<Vec<(Arc<str>, T)>> {
        let Some(mf) = self.frames.get(&(kind, metric)) else {
            return Ok(Vec::new());
        };
        let values = mf.sealed.values()?;
        let n = mf.names.len();
        let per = n.div_ceil(threads.max(1)).max(1);
        let part = |range: Range<usize>| -> Vec<(Arc<str>, T)> {
            let mut buf = Vec::new();
            let mut out = Vec::new();
            for sid in range {
                let (entity, location) = &mf.names[sid];
                if !location.is_empty() || skip(entity) {
                    continue;
                }
                let handle = SeriesHandle { frame: mf, sid: sid as u32, values };
                if let Some(t) = f(entity, &handle, &mut buf) {
                    out.push((entity.clone(), t));
                }
            }
            out
        };
        let ranges: Vec<Range<usize>> = (0..n).step_by(per).map(|s| s..(s + per).min(n)).collect();
        if ranges.len() <= 1 {
            return Ok(part(0..n));
        }
        let parts: Vec<Vec<(Arc<str>, T)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranges.into_iter().map(|r| scope.spawn(|| part(r))).collect();
            handles.into_iter().map(|h| h.join().expect("series reader panicked")).collect()
        });
        Ok(parts.into_iter().flatten().collect())
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
    fn a_series_spanning_several_explicit_runs_keeps_every_row_and_values_read_back_as_written() {
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

    /// Times of a series made of stretches: (period, rows, gap before, jittered).
    fn stretches(parts: &[(i64, usize, i64, bool)]) -> Vec<i64> {
        let mut t = 1_000;
        let mut out = Vec::new();
        for (k, &(step, n, gap, jitter)) in parts.iter().enumerate() {
            t += gap;
            for i in 0..n {
                // Jitter that never reorders: up to 0.4 of a period late.
                let late = if jitter { ((i * 7 + k * 3) % 5) as i64 * (step / 10) } else { 0 };
                out.push(t + late);
                t += step;
            }
        }
        out
    }

    #[test]
    fn a_regular_series_costs_four_bytes_a_sample_and_a_jittered_one_eight() {
        let week: Vec<i64> = (0..2016).map(|i| 7 * 86_400_000 + i * 300_000).collect();
        let jittered: Vec<i64> = week.iter().enumerate().map(|(i, t)| t + (i % 3) as i64 * 7).collect();
        for (times, most) in [(&week, 4.1), (&jittered, 8.1)] {
            let mut f = Frames::default();
            // Arrives in 2-hour batches over 50 series, merged now and then.
            for (b, chunk) in times.chunks(24).enumerate() {
                let batch: Vec<Sample> = (0..50)
                    .flat_map(|e| chunk.iter().map(move |&t| s(&format!("e{e}"), t, (t % 997) as f64)))
                    .collect();
                f.insert(&batch, 0).unwrap();
                if b % 5 == 0 {
                    f.compact_all(0).unwrap();
                }
            }
            f.compact_all(0).unwrap();
            let per = f.stored_bytes() as f64 / f.row_count() as f64;
            assert!(per <= most, "{per} bytes a sample, want at most {most}");
            let want: Vec<(i64, f64)> = times.iter().map(|&t| (t, (t % 997) as f64)).collect();
            assert_eq!(q(&f, "e7", i64::MIN, i64::MAX, 10_000).0, want);
            assert_eq!(q(&f, "e7", times[100], times[900] + 1, 10_000).0, want[100..=900].to_vec());
        }
    }

    proptest! {
        /// Series of regular, jittered and gapped stretches read back as
        /// written whatever the merges, overwrites and retention, run
        /// boundaries included.
        #[test]
        fn runs_of_every_kind_read_back_as_written(
            parts in proptest::collection::vec(
                (prop_oneof![Just(1i64), Just(300), Just(300_000)], 0usize..200, 0i64..2_000_000, any::<bool>()),
                1..6,
            ),
            merge_every in 1usize..400,
            overwrite in proptest::collection::vec((any::<prop::sample::Index>(), 0u32..100), 0..10),
            cut in any::<prop::sample::Index>(),
            window in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
        ) {
            let times = stretches(&parts);
            prop_assume!(!times.is_empty());
            let mut f = Frames::default();
            let mut model: BTreeMap<i64, f64> = BTreeMap::new();
            for (i, &t) in times.iter().enumerate() {
                f.insert(&[s("a", t, i as f64)], i64::MIN).unwrap();
                model.insert(t, i as f64);
                if i % merge_every == merge_every - 1 {
                    f.compact_all(i64::MIN).unwrap();
                }
            }
            for (at, v) in &overwrite {
                let t = times[at.index(times.len())];
                f.insert(&[s("a", t, *v as f64)], i64::MIN).unwrap();
                model.insert(t, *v as f64);
            }
            let cutoff = times[cut.index(times.len())];
            f.compact_all(cutoff).unwrap();
            model.retain(|t, _| *t >= cutoff);
            let (lo, hi) = (times[window.0.index(times.len())], times[window.1.index(times.len())]);
            let want: Vec<(i64, f64)> = model.range(lo..hi.max(lo)).map(|(t, v)| (*t, *v)).collect();
            prop_assert_eq!(q(&f, "a", lo, hi, usize::MAX).0, want);
            let all: Vec<(i64, f64)> = model.iter().map(|(t, v)| (*t, *v)).collect();
            prop_assert_eq!(q(&f, "a", i64::MIN, i64::MAX, usize::MAX).0, all);
            // Never more than the explicit layout's 8 bytes a row, plus a
            // run per stretch and the series' start.
            prop_assert!(f.stored_bytes() <= 8 * f.row_count() + 64 * (parts.len() + 2) + 16);
        }

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
                .map_series(EntityKind::Virtual, Metric::CpuUsage, 2, |e| e == "e9", |_, series, buf| {
                    buf.clear();
                    series.read(5, i64::MAX, buf);
                    (!buf.is_empty()).then(|| buf.clone())
                })
                .unwrap()
                .into_iter()
                .collect();
            // A handle reads stretches one after another, and knows the newest time.
            type Read = (Vec<(i64, f64)>, Option<i64>);
            let stretches: HashMap<Arc<str>, Read> = f
                .map_series(EntityKind::Virtual, Metric::CpuUsage, 2, |_| false, |_, series, buf| {
                    buf.clear();
                    series.read(0, 7, buf);
                    series.read(12, 20, buf);
                    Some((buf.clone(), series.newest_ms()))
                })
                .unwrap()
                .into_iter()
                .collect();
            for e in 0u8..3 {
                let want: Vec<(i64, f64)> = model.iter().filter(|((me, _), _)| *me == e).map(|((_, t), v)| (*t, *v)).collect();
                if let Some((got, newest)) = stretches.get(format!("e{e}").as_str()) {
                    let read: Vec<(i64, f64)> = want.iter().copied().filter(|p| p.0 < 7 || (12..20).contains(&p.0)).collect();
                    prop_assert_eq!(got, &read);
                    prop_assert_eq!(*newest, want.last().map(|p| p.0));
                }
                let (got, _) = q(&f, &format!("e{e}"), 0, 100, 1000);
                prop_assert_eq!(&got, &want);
                // The round's read over every series, split across threads, sees the same.
                let recent: Vec<(i64, f64)> = want.into_iter().filter(|p| p.0 >= 5).collect();
                prop_assert_eq!(all.get(format!("e{e}").as_str()).cloned().unwrap_or_default(), recent);
            }
        }
    }
}
