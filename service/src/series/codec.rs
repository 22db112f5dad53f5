//! Binary framing shared by the write-ahead log and snapshots.
//!
//! A file starts with an 8-byte magic that names its kind and version, then
//! holds records `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`.
//! A payload is `[count: u32]` followed by `count` samples, each
//! `[kind u8][metric u8][entity len u16][entity][location len u16][location]
//! [timestamp i64][value f64]`, all little-endian.
//!
//! The CRC lets recovery tell a torn tail (a crash in the middle of a write)
//! from a valid record, so replay can stop exactly at the last complete one.

use std::collections::HashMap;
use std::sync::Arc;

use super::sample::{EntityKind, Metric, Sample};

/// Magic of WAL segment files.
pub const WAL_MAGIC: &[u8; 8] = b"SWRMWAL1";
/// Magic of snapshot files.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"SWRMSNP1";

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

/// Decodes records from `data` (which starts right after the magic) until the
/// end or the first damaged record.
pub fn decode_records(data: &[u8]) -> Decoded {
    let mut interner: HashMap<Box<[u8]>, Arc<str>> = HashMap::new();
    let mut samples = Vec::new();
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
        let payload = &data[pos + 8..pos + 8 + len];
        if crc32fast::hash(payload) != crc {
            break Some(Damage::BadChecksum);
        }
        match decode_payload(payload, &mut interner, &mut samples) {
            Ok(()) => {}
            Err(e) => break Some(Damage::BadPayload(e)),
        }
        pos += 8 + len;
        records += 1;
    };
    Decoded { samples, records, valid_len: pos, damage }
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
