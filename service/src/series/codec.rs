//! Binary framing shared by the write-ahead log and snapshots.
//!
//! A file starts with an 8-byte magic that names its kind and version, then
//! holds records `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`.
//! A payload is `[count: u32]` followed by `count` samples, each
//! `[kind u8][metric u8][entity len u16][entity][location len u16][location]
//! [timestamp i64][value f64]`, all little-endian.
//!
//! Snapshots written by this build (`SWRMSNP2`) hold one record per run of a
//! series instead: `[kind u8][metric u8][entity len u16][entity][location
//! len u16][location][count u32][first timestamp i64][first value f32]`, then
//! per further point `[time step: LEB128 varint][value f32]`, the time step
//! being the second point's distance from the first, and after that the
//! change of distance, zigzag-coded (Gorilla's delta-of-delta: a regularly
//! sampled series spends one byte on each time). A 5-minute series costs 5
//! bytes a sample (the sample records take about 29), which is what a
//! fleet's week on disk and its start-up read come to. First-release snapshots (`SWRMSNP1`, sample records) are still read.
//!
//! The CRC lets recovery tell a torn tail (a crash in the middle of a write)
//! from a valid record, so replay can stop exactly at the last complete one.

use std::collections::HashMap;
use std::sync::Arc;

use super::sample::{EntityKind, Metric, Sample};

/// Magic of WAL segment files.
pub const WAL_MAGIC: &[u8; 8] = b"SWRMWAL1";
/// Magic of snapshot files written by this build (series runs).
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"SWRMSNP2";
/// Magic of first-release snapshot files (sample records), still read.
pub const SNAPSHOT_MAGIC_V1: &[u8; 8] = b"SWRMSNP1";

/// Most points one series-run record holds (a longer series takes several
/// consecutive records), so a record stays far below [`MAX_PAYLOAD`].
pub const MAX_RUN_POINTS: usize = 1 << 20;

/// Largest payload accepted when decoding (guards against a corrupt length).
pub const MAX_PAYLOAD: usize = 256 << 20;

/// Appends one framed record holding `samples` to `out`.
pub fn encode_record(samples: &[Sample], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    for s in samples {
        out.push(s.kind.code());
        out.push(s.metric.code());
        put_str(out, &s.entity);
        put_str(out, &s.location);
        out.extend_from_slice(&s.ts_ms.to_le_bytes());
        out.extend_from_slice(&s.value.to_le_bytes());
    }
    let payload_len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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

/// Decodes sample records from `data` (which starts right after the magic)
/// until the end or the first damaged record.
pub fn decode_records(data: &[u8]) -> Decoded {
    let mut interner: HashMap<Box<[u8]>, Arc<str>> = HashMap::new();
    let mut samples = Vec::new();
    let s = scan_records(data, |p| decode_payload(p, &mut interner, &mut samples));
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
    out.push(run.kind.code());
    out.push(run.metric.code());
    put_str(out, run.entity);
    put_str(out, run.location);
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
    let payload_len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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
    let kind = EntityKind::from_code(r.u8()?).ok_or("unknown entity kind")?;
    let metric = Metric::from_code(r.u8()?).ok_or("unknown metric")?;
    let entity = r.string(interner)?;
    let location = r.string(interner)?;
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

/// The smallest encoded sample: kind, metric, a one-byte id, an empty
/// location, time and value.
const MIN_SAMPLE_BYTES: usize = 1 + 1 + 3 + 2 + 8 + 8;

/// Where the first intact record (length in bounds, checksum and content
/// valid) starts in `data[from..]`, if anywhere. Recovery asks this after a
/// damaged record in the newest segment: a torn tail has nothing intact
/// after it; bit rot in the middle of the file has. Cheap structural checks
/// come before the checksum, so scanning a long tail stays fast.
pub fn intact_record_after(data: &[u8], from: usize) -> Option<usize> {
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
        let count = u32::from_le_bytes(payload[..4].try_into().unwrap()) as usize;
        if count == 0 || count.saturating_mul(MIN_SAMPLE_BYTES) > len - 4 {
            continue;
        }
        if EntityKind::from_code(payload[4]).is_none() || Metric::from_code(payload[5]).is_none() {
            continue;
        }
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap());
        if crc32fast::hash(payload) != crc {
            continue;
        }
        scratch.clear();
        if decode_payload(payload, &mut interner, &mut scratch).is_ok() {
            return Some(at);
        }
    }
    None
}

/// Appends a record's samples to `out`, all or none: a malformed record
/// leaves `out` as it was (found by the `wal_records` fuzz target: a record
/// cut inside a sample used to leave its first samples behind).
fn decode_payload(p: &[u8], interner: &mut HashMap<Box<[u8]>, Arc<str>>, out: &mut Vec<Sample>) -> Result<(), String> {
    let before = out.len();
    let r = decode_samples(p, interner, out);
    if r.is_err() {
        out.truncate(before);
    }
    r
}

fn decode_samples(p: &[u8], interner: &mut HashMap<Box<[u8]>, Arc<str>>, out: &mut Vec<Sample>) -> Result<(), String> {
    let mut r = Reader { p, pos: 0 };
    let count = r.u32()? as usize;
    for _ in 0..count {
        let kind = EntityKind::from_code(r.u8()?).ok_or("unknown entity kind")?;
        let metric = Metric::from_code(r.u8()?).ok_or("unknown metric")?;
        let entity = r.string(interner)?;
        let location = r.string(interner)?;
        let ts_ms = i64::from_le_bytes(r.take(8)?.try_into().unwrap());
        let value = f64::from_le_bytes(r.take(8)?.try_into().unwrap());
        out.push(Sample { kind, entity, metric, location, ts_ms, value });
    }
    if r.pos != p.len() {
        return Err(format!("{} trailing bytes after {count} samples", p.len() - r.pos));
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

    #[test]
    fn round_trip() {
        let a: Vec<_> = (0..10).map(sample).collect();
        let b: Vec<_> = (10..13).map(sample).collect();
        let mut buf = Vec::new();
        encode_record(&a, &mut buf);
        encode_record(&b, &mut buf);
        let d = decode_records(&buf);
        assert_eq!(d.damage, None);
        assert_eq!(d.records, 2);
        assert_eq!(d.valid_len, buf.len());
        assert_eq!(d.samples, [a, b].concat());
    }

    #[test]
    fn torn_tail_and_bit_flip_are_detected() {
        let mut buf = Vec::new();
        encode_record(&[sample(1)], &mut buf);
        let first = buf.len();
        encode_record(&[sample(2), sample(3)], &mut buf);
        let d = decode_records(&buf[..buf.len() - 3]);
        assert_eq!(d.damage, Some(Damage::Truncated));
        assert_eq!(d.valid_len, first);
        assert_eq!(d.samples.len(), 1);
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let d = decode_records(&flipped);
        assert_eq!(d.damage, Some(Damage::BadChecksum));
        assert_eq!(d.valid_len, first);
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
        #[test]
        fn any_prefix_decodes_to_whole_records(cut in 0usize..400) {
            let mut buf = Vec::new();
            let mut ends = vec![0];
            for i in 0..5 {
                encode_record(&[sample(i), sample(i + 100)], &mut buf);
                ends.push(buf.len());
            }
            let cut = cut.min(buf.len());
            let d = decode_records(&buf[..cut]);
            prop_assert!(ends.contains(&d.valid_len));
            prop_assert!(d.valid_len <= cut);
            prop_assert_eq!(d.samples.len(), d.records * 2);
        }
    }
}
