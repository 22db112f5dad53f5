//! Binary framing shared by the write-ahead log and snapshots.
//!
//! A file starts with an 8-byte magic that names its kind and version, then
//! holds records `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`.
//!
//! Segments written by this build (`SWRMWAL2`) group each record's samples
//! by series and name each series in full only once per segment: the
//! payload is `[base time i64][groups u32]` followed by `groups` groups, each
//! `[series: LEB128 varint]`, which is 0 for a series named here and now
//! (`[kind u8][metric u8][entity len u16][entity][location len u16]
//! [location]` follow, and it takes the segment's next id) or the id + 1 of
//! one named earlier in the segment, then `[count: varint]` and per sample
//! `[time: zigzag varint][value f32]`, the time being the change of the
//! distance to the previous sample (to the base time for the first):
//! Gorilla's delta-of-delta, so samples at the record's time or on their
//! series' period cost one byte. A group keeps its samples in arrival order
//! (times may repeat or go back: last write wins where the frames merge
//! them), which is all that matters, since samples of different series
//! never overwrite each other. Values are stored as f32, what the frames
//! keep. A batch of one step of a fleet costs about 8 bytes a sample, one
//! of each node's 2-hour history about 5.5; the first-release layout below
//! took about 29, so the log since the last snapshot made most of a
//! fleet's disk.
//!
//! First-release segments (`SWRMWAL1`) and snapshots (`SWRMSNP1`) hold one
//! entry per sample: `[count: u32]` followed by `count` samples, each
//! `[kind u8][metric u8][entity len u16][entity][location len u16][location]
//! [timestamp i64][value f64]`, all little-endian. Both are still read.
//!
//! Snapshots written by this build (`SWRMSNP2`) hold one record per run of a
//! series instead: `[kind u8][metric u8][entity len u16][entity][location
//! len u16][location][count u32][first timestamp i64][first value f32]`, then
//! per further point `[time step: LEB128 varint][value f32]`, the time step
//! being the second point's distance from the first, and after that the
//! change of distance, zigzag-coded (Gorilla's delta-of-delta: a regularly
//! sampled series spends one byte on each time). A 5-minute series costs 5
//! bytes a sample, which is what a fleet's week on disk and its start-up
//! read come to.
//!
//! The CRC lets recovery tell a torn tail (a crash in the middle of a write)
//! from a valid record, so replay can stop exactly at the last complete one.

use std::collections::HashMap;
use std::sync::Arc;

use super::sample::{EntityKind, Metric, Sample};

/// Magic of WAL segment files written by this build (samples grouped by series).
pub const WAL_MAGIC: &[u8; 8] = b"SWRMWAL2";
/// Magic of first-release WAL segment files (sample records), still read.
pub const WAL_MAGIC_V1: &[u8; 8] = b"SWRMWAL1";
/// Magic of snapshot files written by this build (series runs).
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"SWRMSNP2";
/// Magic of first-release snapshot files (sample records), still read.
pub const SNAPSHOT_MAGIC_V1: &[u8; 8] = b"SWRMSNP1";

/// Most points one series-run record holds (a longer series takes several
/// consecutive records), so a record stays far below [`MAX_PAYLOAD`].
pub const MAX_RUN_POINTS: usize = 1 << 20;

/// Largest payload accepted when decoding (guards against a corrupt length).
pub const MAX_PAYLOAD: usize = 256 << 20;

/// How the samples of a record are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One entry per sample (first-release segments and snapshots).
    PerSample,
    /// Grouped by series (this build's segments).
    Grouped,
}

impl Layout {
    /// The layout of a segment file with this magic.
    pub fn of_segment(magic: &[u8]) -> Option<Layout> {
        match magic {
            m if m == WAL_MAGIC => Some(Layout::Grouped),
            m if m == WAL_MAGIC_V1 => Some(Layout::PerSample),
            _ => None,
        }
    }
}

/// Wraps the payload appended to `out` since `start + 8` in its frame
/// (the 8 bytes at `start` were reserved for it).
fn frame(out: &mut [u8], start: usize) {
    let payload_len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_series(out: &mut Vec<u8>, kind: EntityKind, metric: Metric, entity: &str, location: &str) {
    out.push(kind.code());
    out.push(metric.code());
    put_str(out, entity);
    put_str(out, location);
}

/// A series as records name it: kind, metric, entity, location.
pub type SeriesKey = (EntityKind, Metric, Arc<str>, Arc<str>);

/// Encodes the records of one segment. The first record of a segment that
/// carries a series names it in full, which gives it the next id; later
/// records refer to it by id. The ids are the segment's own, so every
/// segment reads alone; a segment holds a few million samples, so naming
/// each series once costs well under a byte a sample.
#[derive(Default)]
pub struct SegmentEncoder {
    ids: HashMap<SeriesKey, u32, foldhash::fast::FixedState>,
    /// Per id, its group in the record being encoded (`u32::MAX`: none).
    group_of: Vec<u32>,
}

impl SegmentEncoder {
    /// Appends one framed record holding `samples` to `out`.
    pub fn encode(&mut self, samples: &[Sample], out: &mut Vec<u8>) {
        let named_before = self.ids.len() as u32;
        // Each sample's group (its series'), groups in order of first arrival.
        let mut groups: Vec<(u32, u32)> = Vec::new(); // (series id, samples)
        let group: Vec<u32> = samples
            .iter()
            .map(|s| {
                let next = self.ids.len() as u32;
                let id = *self.ids.entry((s.kind, s.metric, s.entity.clone(), s.location.clone())).or_insert(next);
                if id as usize >= self.group_of.len() {
                    self.group_of.resize(id as usize + 1, u32::MAX);
                }
                let g = &mut self.group_of[id as usize];
                if *g == u32::MAX {
                    *g = groups.len() as u32;
                    groups.push((id, 0));
                }
                groups[*g as usize].1 += 1;
                *g
            })
            .collect();
        // The samples ordered by group, arrival order kept within one.
        let mut at: Vec<u32> = groups
            .iter()
            .scan(0u32, |acc, g| {
                let start = *acc;
                *acc += g.1;
                Some(start)
            })
            .collect();
        let mut order = vec![0u32; samples.len()];
        for (i, &g) in group.iter().enumerate() {
            order[at[g as usize] as usize] = i as u32;
            at[g as usize] += 1;
        }
        let start = out.len();
        out.extend_from_slice(&[0u8; 8]);
        let base = samples.first().map_or(0, |s| s.ts_ms);
        out.extend_from_slice(&base.to_le_bytes());
        out.extend_from_slice(&(groups.len() as u32).to_le_bytes());
        let mut members = order.iter().map(|&i| &samples[i as usize]);
        for &(id, count) in &groups {
            self.group_of[id as usize] = u32::MAX;
            let mut members = members.by_ref().take(count as usize).peekable();
            if id >= named_before {
                put_varint(out, 0);
                let s = members.peek().expect("a group has a sample");
                put_series(out, s.kind, s.metric, &s.entity, &s.location);
            } else {
                put_varint(out, id as u64 + 1);
            }
            put_varint(out, count as u64);
            let (mut prev, mut step) = (base, 0i64);
            for s in members {
                let d = s.ts_ms.wrapping_sub(prev);
                put_varint(out, zigzag(d.wrapping_sub(step)));
                out.extend_from_slice(&(s.value as f32).to_le_bytes());
                (prev, step) = (s.ts_ms, d);
            }
        }
        frame(out, start);
    }
}

/// Appends one framed record holding `samples` to `out`, naming every
/// series in full (a record that reads alone, in any segment).
pub fn encode_record(samples: &[Sample], out: &mut Vec<u8>) {
    SegmentEncoder::default().encode(samples, out);
}

/// Appends one framed record holding `samples` to `out` in the first-release
/// layout, one entry per sample (what `SWRMWAL1` segments and `SWRMSNP1`
/// snapshots hold; kept so their reading stays tested).
pub fn encode_record_per_sample(samples: &[Sample], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    for s in samples {
        put_series(out, s.kind, s.metric, &s.entity, &s.location);
        out.extend_from_slice(&s.ts_ms.to_le_bytes());
        out.extend_from_slice(&s.value.to_le_bytes());
    }
    frame(out, start);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Ids are at most 256 bytes and locations are validated likewise, so u16 suffices.
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Why decoding stopped before the end of the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Damage {
    /// The input ends inside a record (a torn write).
    Truncated,
    /// A record's CRC does not match its payload.
    BadChecksum,
    /// A record's CRC matched but its content is not valid.
    BadPayload(String),
}

/// Result of decoding a run of records.
#[derive(Debug)]
pub struct Decoded {
    /// Every sample of every complete, valid record, in file order.
    pub samples: Vec<Sample>,
    /// Number of records decoded.
    pub records: usize,
    /// Bytes of input covered by valid records (where a truncation would cut).
    pub valid_len: usize,
    /// Set when decoding stopped early.
    pub damage: Option<Damage>,
}

/// Where a scan of records stopped.
#[derive(Debug)]
pub struct Scanned {
    /// Number of records decoded.
    pub records: usize,
    /// Bytes of input covered by valid records (where a truncation would cut).
    pub valid_len: usize,
    /// Set when decoding stopped early.
    pub damage: Option<Damage>,
}

/// Hands each record's payload in `data` (which starts right after the
/// magic) to `payload` until the end or the first damaged record (a payload
/// it refuses counts as damage).
pub fn scan_records(data: &[u8], mut payload: impl FnMut(&[u8]) -> Result<(), String>) -> Scanned {
    let mut pos = 0usize;
    let mut records = 0usize;
    let damage = loop {
        if pos == data.len() {
            break None;
        }
        if data.len() - pos < 8 {
            break Some(Damage::Truncated);
        }
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap());
        if len > MAX_PAYLOAD {
            break Some(Damage::BadPayload(format!("record length {len} exceeds {MAX_PAYLOAD}")));
        }
        if data.len() - pos - 8 < len {
            break Some(Damage::Truncated);
        }
        let p = &data[pos + 8..pos + 8 + len];
        if crc32fast::hash(p) != crc {
            break Some(Damage::BadChecksum);
        }
        if let Err(e) = payload(p) {
            break Some(Damage::BadPayload(e));
        }
        pos += 8 + len;
        records += 1;
    };
    Scanned { records, valid_len: pos, damage }
}

/// Decodes sample records of `layout` from `data` (which starts right after
/// the magic) until the end or the first damaged record.
pub fn decode_records(data: &[u8], layout: Layout) -> Decoded {
    let mut interner: HashMap<Box<[u8]>, Arc<str>> = HashMap::new();
    let mut names = SegmentNames::default();
    let mut samples = Vec::new();
    let s = scan_records(data, |p| decode_payload(p, layout, &mut names, &mut interner, &mut samples));
    Decoded { samples, records: s.records, valid_len: s.valid_len, damage: s.damage }
}

/// One series' points, oldest first, each time once: a snapshot record.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRun {
    /// Entity kind.
    pub kind: EntityKind,
    /// Metric.
    pub metric: Metric,
    /// Entity id.
    pub entity: Arc<str>,
    /// Location (empty for unlocated metrics).
    pub location: Arc<str>,
    /// (timestamp ms, value), times strictly ascending.
    pub points: Vec<(i64, f32)>,
}

/// A series run to write: what [`SeriesRun`] holds, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RunRef<'a> {
    /// Entity kind.
    pub kind: EntityKind,
    /// Metric.
    pub metric: Metric,
    /// Entity id.
    pub entity: &'a str,
    /// Location (empty for unlocated metrics).
    pub location: &'a str,
    /// (timestamp ms, value): sorted, each time once, at least one, at most [`MAX_RUN_POINTS`].
    pub points: &'a [(i64, f32)],
}

/// Appends one framed series-run record to `out`.
pub fn encode_series_run(run: RunRef<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    put_series(out, run.kind, run.metric, run.entity, run.location);
    out.extend_from_slice(&(run.points.len() as u32).to_le_bytes());
    let (mut prev, mut step) = (None, None);
    for &(t, v) in run.points {
        match (prev, step) {
            (None, _) => out.extend_from_slice(&t.to_le_bytes()),
            (Some(p), None) => put_varint(out, (t - p) as u64),
            (Some(p), Some(s)) => put_varint(out, zigzag((t - p) - s)),
        }
        out.extend_from_slice(&v.to_le_bytes());
        step = prev.map(|p| t - p);
        prev = Some(t);
    }
    frame(out, start);
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Decodes one series-run payload; every rule the encoder keeps is checked
/// (a known kind and metric, at least one point, times strictly ascending,
/// finite values, nothing left over).
pub fn decode_series_run(p: &[u8], interner: &mut HashMap<Box<[u8]>, Arc<str>>) -> Result<SeriesRun, String> {
    let mut r = Reader { p, pos: 0 };
    let (kind, metric, entity, location) = r.series(interner)?;
    let count = r.u32()? as usize;
    if count == 0 || count > MAX_RUN_POINTS {
        return Err(format!("a series run of {count} points (1..={MAX_RUN_POINTS})"));
    }
    // Each point takes at least 5 bytes: refuse a count the payload cannot hold before allocating.
    if count.saturating_mul(5) > p.len() - r.pos {
        return Err(format!("{count} points do not fit in the record"));
    }
    let mut points = Vec::with_capacity(count);
    let mut t = i64::from_le_bytes(r.take(8)?.try_into().unwrap());
    let mut step: Option<i64> = None;
    for k in 0..count {
        if k > 0 {
            let x = r.varint()?;
            let d = match step {
                None => i64::try_from(x).map_err(|_| "series run time step overflows")?,
                Some(s) => s.checked_add(unzigzag(x)).ok_or("series run time step overflows")?,
            };
            if d <= 0 {
                return Err("series run times are not strictly ascending".into());
            }
            t = t.checked_add(d).ok_or("series run time overflows")?;
            step = Some(d);
        }
        let v = f32::from_le_bytes(r.take(4)?.try_into().unwrap());
        if !v.is_finite() {
            return Err("a series run value is not finite".into());
        }
        points.push((t, v));
    }
    if r.pos != p.len() {
        return Err(format!("{} trailing bytes after a series run of {count} points", p.len() - r.pos));
    }
    Ok(SeriesRun { kind, metric, entity, location, points })
}

/// The smallest encoded sample of the first-release layout: kind, metric, a
/// one-byte id, an empty location, time and value.
const MIN_SAMPLE_BYTES: usize = 1 + 1 + 3 + 2 + 8 + 8;

/// Where the first intact record (length in bounds, checksum and content
/// valid) starts in `data[from..]`, if anywhere. Recovery asks this after a
/// damaged record in the newest segment: a torn tail has nothing intact
/// after it; bit rot in the middle of the file has. Cheap structural checks
/// come before the checksum, so scanning a long tail stays fast.
pub fn intact_record_after(data: &[u8], from: usize, layout: Layout) -> Option<usize> {
    let mut interner: HashMap<Box<[u8]>, Arc<str>> = HashMap::new();
    let mut scratch = Vec::new();
    let mut pos = from;
    while pos + 8 + 4 <= data.len() {
        let at = pos;
        pos += 1;
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if !(4..=MAX_PAYLOAD).contains(&len) || data.len() - at - 8 < len {
            continue;
        }
        let payload = &data[at + 8..at + 8 + len];
        let plausible = match layout {
            Layout::PerSample => {
                let count = u32::from_le_bytes(payload[..4].try_into().unwrap()) as usize;
                count > 0
                    && count.saturating_mul(MIN_SAMPLE_BYTES) <= len - 4
                    && EntityKind::from_code(payload[4]).is_some()
                    && Metric::from_code(payload[5]).is_some()
            }
            // Base time, group count, and per group at least an id, a
            // count, a time and a value.
            Layout::Grouped => {
                len >= 12 && {
                    let groups = u32::from_le_bytes(payload[8..12].try_into().unwrap()) as usize;
                    groups.saturating_mul(7) <= len - 12
                }
            }
        };
        if !plausible {
            continue;
        }
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap());
        if crc32fast::hash(payload) != crc {
            continue;
        }
        scratch.clear();
        // The series it refers to were named in records before it, which
        // were not read: only its structure can be checked.
        let mut names = SegmentNames { structure_only: true, ..Default::default() };
        if decode_payload(payload, layout, &mut names, &mut interner, &mut scratch).is_ok() {
            return Some(at);
        }
    }
    None
}

/// The series a segment's records named so far, by id (see [`SegmentEncoder`]).
#[derive(Default)]
struct SegmentNames {
    names: Vec<SeriesKey>,
    /// Accept ids named before the records at hand (which were not read):
    /// checking a record's structure alone, where bit rot is looked for.
    structure_only: bool,
}

/// Appends a record's samples to `out`, all or none: a malformed record
/// leaves `out` (and the segment's names) as it was (found by the
/// `wal_records` fuzz target: a record cut inside a sample used to leave
/// its first samples behind).
fn decode_payload(
    p: &[u8],
    layout: Layout,
    names: &mut SegmentNames,
    interner: &mut HashMap<Box<[u8]>, Arc<str>>,
    out: &mut Vec<Sample>,
) -> Result<(), String> {
    let (before, named) = (out.len(), names.names.len());
    let r = match layout {
        Layout::PerSample => decode_samples(p, interner, out),
        Layout::Grouped => decode_groups(p, names, interner, out),
    };
    if r.is_err() {
        out.truncate(before);
        names.names.truncate(named);
    }
    r
}

fn decode_samples(p: &[u8], interner: &mut HashMap<Box<[u8]>, Arc<str>>, out: &mut Vec<Sample>) -> Result<(), String> {
    let mut r = Reader { p, pos: 0 };
    let count = r.u32()? as usize;
    for _ in 0..count {
        let (kind, metric, entity, location) = r.series(interner)?;
        let ts_ms = i64::from_le_bytes(r.take(8)?.try_into().unwrap());
        let value = f64::from_le_bytes(r.take(8)?.try_into().unwrap());
        out.push(Sample { kind, entity, metric, location, ts_ms, value });
    }
    if r.pos != p.len() {
        return Err(format!("{} trailing bytes after {count} samples", p.len() - r.pos));
    }
    Ok(())
}

fn decode_groups(
    p: &[u8],
    names: &mut SegmentNames,
    interner: &mut HashMap<Box<[u8]>, Arc<str>>,
    out: &mut Vec<Sample>,
) -> Result<(), String> {
    let mut r = Reader { p, pos: 0 };
    let base = i64::from_le_bytes(r.take(8)?.try_into().unwrap());
    let groups = r.u32()? as usize;
    for _ in 0..groups {
        let key = match r.varint()? {
            0 => {
                let key = r.series(interner)?;
                names.names.push(key.clone());
                Some(key)
            }
            id => match names.names.get(id as usize - 1) {
                Some(key) => Some(key.clone()),
                None if names.structure_only => None,
                None => return Err(format!("series id {} was not named earlier in the segment", id - 1)),
            },
        };
        let count = r.varint()?;
        // Each sample takes at least 5 bytes: refuse a count the payload
        // cannot hold before allocating for it.
        if count == 0 || count.saturating_mul(5) > (p.len() - r.pos) as u64 {
            return Err(format!("a group of {count} samples does not fit in the record"));
        }
        out.reserve(count as usize);
        let (mut ts_ms, mut step) = (base, 0i64);
        for _ in 0..count {
            let d = step.wrapping_add(unzigzag(r.varint()?));
            ts_ms = ts_ms.wrapping_add(d);
            step = d;
            let value = f32::from_le_bytes(r.take(4)?.try_into().unwrap()) as f64;
            if let Some((kind, metric, entity, location)) = &key {
                out.push(Sample {
                    kind: *kind,
                    entity: entity.clone(),
                    metric: *metric,
                    location: location.clone(),
                    ts_ms,
                    value,
                });
            }
        }
    }
    if r.pos != p.len() {
        return Err(format!("{} trailing bytes after {groups} groups", p.len() - r.pos));
    }
    Ok(())
}

struct Reader<'a> {
    p: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.p.len() - self.pos < n {
            return Err("payload ends inside a sample".into());
        }
        let s = &self.p[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn varint(&mut self) -> Result<u64, String> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            x |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(x);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    /// A series' kind, metric, entity and location.
    fn series(&mut self, interner: &mut HashMap<Box<[u8]>, Arc<str>>) -> Result<SeriesKey, String> {
        let kind = EntityKind::from_code(self.u8()?).ok_or("unknown entity kind")?;
        let metric = Metric::from_code(self.u8()?).ok_or("unknown metric")?;
        Ok((kind, metric, self.string(interner)?, self.string(interner)?))
    }
    fn string(&mut self, interner: &mut HashMap<Box<[u8]>, Arc<str>>) -> Result<Arc<str>, String> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as usize;
        let b = self.take(n)?;
        if let Some(s) = interner.get(b) {
            return Ok(s.clone());
        }
        let s: Arc<str> = std::str::from_utf8(b).map_err(|_| "string is not UTF-8")?.into();
        interner.insert(b.into(), s.clone());
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(i: i64) -> Sample {
        Sample {
            kind: if i % 2 == 0 { EntityKind::Physical } else { EntityKind::Virtual },
            entity: format!("n{}", i % 7).into(),
            metric: Metric::ALL[(i as usize) % Metric::ALL.len()],
            location: if i % 3 == 0 { "eu/r1".into() } else { "".into() },
            ts_ms: 1_700_000_000_000 + i,
            value: i as f64 * 0.5,
        }
    }

    /// Samples grouped by series, series in order of first arrival and
    /// arrival order kept within one: what a grouped record gives back.
    fn by_series(mut v: Vec<Sample>) -> Vec<Sample> {
        let key = |s: &Sample| (s.kind, s.metric, s.entity.clone(), s.location.clone());
        let mut first = HashMap::new();
        for (i, s) in v.iter().enumerate() {
            first.entry(key(s)).or_insert(i);
        }
        v.sort_by_key(|s| first[&key(s)]);
        v
    }

    #[test]
    fn round_trip() {
        let a: Vec<_> = (0..10).map(sample).collect();
        let b: Vec<_> = (10..13).map(sample).collect();
        for (layout, encode) in [
            (Layout::PerSample, encode_record_per_sample as fn(&[Sample], &mut Vec<u8>)),
            (Layout::Grouped, encode_record),
        ] {
            let mut buf = Vec::new();
            encode(&a, &mut buf);
            encode(&b, &mut buf);
            let d = decode_records(&buf, layout);
            assert_eq!(d.damage, None);
            assert_eq!(d.records, 2);
            assert_eq!(d.valid_len, buf.len());
            let (first, second) = d.samples.split_at(a.len());
            assert_eq!(by_series(first.to_vec()), by_series(a.clone()), "{layout:?}");
            assert_eq!(by_series(second.to_vec()), by_series(b.clone()), "{layout:?}");
        }
    }

    #[test]
    fn a_grouped_record_of_a_fleets_two_hours_takes_under_six_bytes_a_sample() {
        // What an agent sends: every node's usage and peak, step by step.
        let mut batch = Vec::new();
        for step in 0..24i64 {
            for node in 0..500 {
                for metric in [Metric::CpuUsage, Metric::CpuPeak] {
                    batch.push(Sample {
                        kind: EntityKind::Virtual,
                        entity: format!("v{node:06}").into(),
                        metric,
                        location: "".into(),
                        ts_ms: 1_700_000_000_000 + step * 300_000,
                        value: (node * 7 + step) as f64 * 0.125,
                    });
                }
            }
        }
        let (mut grouped, mut per_sample) = (Vec::new(), Vec::new());
        encode_record(&batch, &mut grouped);
        encode_record_per_sample(&batch, &mut per_sample);
        let per = grouped.len() as f64 / batch.len() as f64;
        assert!(per < 6.0, "{per} bytes a sample grouped ({} per sample)", per_sample.len() / batch.len());
        let d = decode_records(&grouped, Layout::Grouped);
        assert_eq!(d.damage, None);
        assert_eq!(d.samples, by_series(batch));
    }

    #[test]
    fn a_segment_names_each_series_once_and_a_step_of_a_fleet_then_costs_eight_bytes_a_sample() {
        let step = |k: i64| -> Vec<Sample> {
            (0..1000)
                .map(|node| Sample {
                    kind: EntityKind::Virtual,
                    entity: format!("v{node:06}").into(),
                    metric: Metric::CpuPeak,
                    location: "".into(),
                    ts_ms: 1_700_000_000_000 + k * 300_000,
                    value: (node + k) as f64 * 0.5,
                })
                .collect()
        };
        let mut enc = SegmentEncoder::default();
        let mut buf = Vec::new();
        enc.encode(&step(0), &mut buf);
        let first = buf.len();
        for k in 1..11 {
            enc.encode(&step(k), &mut buf);
        }
        let per = (buf.len() - first) as f64 / 10_000.0;
        assert!(per <= 8.1, "{per} bytes a sample once the series are named");
        let d = decode_records(&buf, Layout::Grouped);
        assert_eq!(d.damage, None);
        assert_eq!(d.samples, (0..11).flat_map(step).collect::<Vec<_>>());
        // A record read without the one that named its series is damage,
        // and leaves nothing behind; its structure alone is still intact
        // (what telling bit rot from a torn tail needs).
        let d = decode_records(&buf[first..], Layout::Grouped);
        assert!(
            matches!(d.damage, Some(Damage::BadPayload(ref e)) if e.contains("not named earlier")),
            "{:?}",
            d.damage
        );
        assert!(d.samples.is_empty() && d.records == 0);
        assert_eq!(intact_record_after(&buf, 1, Layout::Grouped), Some(first));
    }

    #[test]
    fn torn_tail_and_bit_flip_are_detected() {
        for (layout, encode) in [
            (Layout::PerSample, encode_record_per_sample as fn(&[Sample], &mut Vec<u8>)),
            (Layout::Grouped, encode_record),
        ] {
            let mut buf = Vec::new();
            encode(&[sample(1)], &mut buf);
            let first = buf.len();
            encode(&[sample(2), sample(3)], &mut buf);
            let d = decode_records(&buf[..buf.len() - 3], layout);
            assert_eq!(d.damage, Some(Damage::Truncated));
            assert_eq!(d.valid_len, first);
            assert_eq!(d.samples.len(), 1);
            let mut flipped = buf.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 0x40;
            let d = decode_records(&flipped, layout);
            assert_eq!(d.damage, Some(Damage::BadChecksum));
            assert_eq!(d.valid_len, first);
            // An intact record after a damaged one is found in either layout.
            let mut rot = buf.clone();
            rot[10] ^= 0x01;
            encode(&[sample(4)], &mut rot);
            assert!(intact_record_after(&rot, 1, layout).is_some());
            assert_eq!(intact_record_after(&buf[..buf.len() - 3], 1, layout), None);
        }
    }

    #[test]
    fn series_runs_round_trip_in_five_bytes_a_five_minute_sample_and_damage_is_refused() {
        let points: Vec<(i64, f32)> = (0..2016).map(|i| (1_700_000_000_000 + i * 300_000, i as f32 * 0.25)).collect();
        let mut buf = Vec::new();
        let run = |points| RunRef {
            kind: EntityKind::Virtual,
            metric: Metric::CpuPeak,
            entity: "vm-1",
            location: "",
            points,
        };
        encode_series_run(run(&points), &mut buf);
        assert!(buf.len() <= 5 * points.len() + 40, "{} bytes", buf.len());
        let mut interner = HashMap::new();
        let mut runs = Vec::new();
        let s = scan_records(&buf, |p| {
            runs.push(decode_series_run(p, &mut interner)?);
            Ok(())
        });
        assert_eq!((s.records, s.damage), (1, None));
        assert_eq!(runs[0].points, points);
        // Irregular steps (shorter, longer, far apart) round-trip too.
        let odd: Vec<(i64, f32)> =
            [-5, 0, 1, 1_000, 1_001, 9_000_000_000, 9_000_000_002].iter().map(|&t| (t, t as f32)).collect();
        let mut b = Vec::new();
        encode_series_run(run(&odd), &mut b);
        let s = scan_records(&b, |p| {
            assert_eq!(decode_series_run(p, &mut interner)?.points, odd);
            Ok(())
        });
        assert_eq!(s.damage, None);
        assert_eq!((&*runs[0].entity, runs[0].metric), ("vm-1", Metric::CpuPeak));
        // Times that do not ascend are damage, even under a valid checksum.
        let mut bad = Vec::new();
        encode_series_run(run(&[(5, 1.0), (5, 2.0)]), &mut bad);
        let s = scan_records(&bad, |p| decode_series_run(p, &mut interner).map(drop));
        assert!(matches!(s.damage, Some(Damage::BadPayload(ref e)) if e.contains("ascending")), "{:?}", s.damage);
    }

    proptest! {
        /// A group keeps its samples' order and times whatever they are:
        /// repeated, going back, or at the ends of the i64 range.
        #[test]
        fn grouped_records_keep_any_times_in_arrival_order(
            times in proptest::collection::vec(prop_oneof![any::<i64>(), 0i64..1_000, Just(i64::MIN), Just(i64::MAX)], 1..50),
            values in proptest::collection::vec(0u32..1_000_000, 50),
        ) {
            let batch: Vec<Sample> = times
                .iter()
                .enumerate()
                .map(|(i, &t)| Sample { ts_ms: t, value: values[i] as f64 * 0.25, ..sample(i as i64 % 3) })
                .collect();
            let mut buf = Vec::new();
            encode_record(&batch, &mut buf);
            let d = decode_records(&buf, Layout::Grouped);
            prop_assert_eq!(d.damage, None);
            prop_assert_eq!(d.samples, by_series(batch));
        }

        #[test]
        fn any_prefix_decodes_to_whole_records(cut in 0usize..400) {
            let mut buf = Vec::new();
            let mut ends = vec![0];
            for i in 0..5 {
                encode_record(&[sample(i), sample(i + 100)], &mut buf);
                ends.push(buf.len());
            }
            let cut = cut.min(buf.len());
            let d = decode_records(&buf[..cut], Layout::Grouped);
            prop_assert!(ends.contains(&d.valid_len));
            prop_assert!(d.valid_len <= cut);
            prop_assert_eq!(d.samples.len(), d.records * 2);
        }
    }
}
