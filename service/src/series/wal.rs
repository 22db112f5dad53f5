//! Write-ahead log segments and snapshots on disk, and recovery from them.
//!
//! Files under the series directory:
//! - `wal-NNNNNNNNNNNNNNNN.log`: a segment; records appended, fsynced per group commit;
//! - `snapshot-NNNNNNNNNNNNNNNN.bin`: every retained sample at the moment the
//!   segment with that number was opened, one record per series run
//!   (first-release snapshots hold sample records; both are read); it makes
//!   all lower segments redundant;
//! - `*.tmp`: a snapshot being written; never read, removed at start.
//!
//! Recovery hands the newest snapshot's contents, then every segment's from
//! its number on, to its caller as it decodes them (a fleet's week never sits
//! in memory as decoded samples). Only the newest segment may end in a torn record (the crash
//! happened while writing it): it is truncated to its last whole record, and
//! since a sample is acknowledged only after its record is fsynced, nothing
//! acknowledged is in the torn part. Damage anywhere else is corruption and
//! stops the start-up with the file and offset, instead of silently dropping data.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::codec::{self, Damage, Layout, RunRef, SNAPSHOT_MAGIC, SNAPSHOT_MAGIC_V1, SeriesRun, WAL_MAGIC};
use super::sample::Sample;

/// Errors of the on-disk series files.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A segment between the snapshot and the newest segment is gone.
    #[error(
        "{path} is missing (segments present: {present}): the samples written to it are gone. Refusing to start so that is not silent; restore the file, or move the series directory aside to start without samples"
    )]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// Segment numbers that are there.
        present: String,
    },
    /// An IO operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file is damaged where damage cannot come from a crash.
    #[error(
        "{path} is corrupt at byte {offset}: {what}. Refusing to start so no data is silently lost; restore the file from a backup, or move the series directory aside to start without samples (moving only this file aside loses every sample in it, and the segments before it may already be gone)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first bad record.
        offset: usize,
        /// What is wrong.
        what: String,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io { action, path: path.to_owned(), source }
}

/// Kind of a file in the series directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Segment,
    Snapshot,
}

fn file_name(kind: FileKind, n: u64) -> String {
    match kind {
        FileKind::Segment => format!("wal-{n:016}.log"),
        FileKind::Snapshot => format!("snapshot-{n:016}.bin"),
    }
}

fn parse_name(name: &str) -> Option<(FileKind, u64)> {
    if let Some(n) = name.strip_prefix("wal-").and_then(|r| r.strip_suffix(".log")) {
        return n.parse().ok().map(|n| (FileKind::Segment, n));
    }
    if let Some(n) = name.strip_prefix("snapshot-").and_then(|r| r.strip_suffix(".bin")) {
        return n.parse().ok().map(|n| (FileKind::Snapshot, n));
    }
    None
}

/// What recovery hands over, in file order.
#[derive(Debug)]
pub enum Replayed<'a> {
    /// One series run of the snapshot.
    Run(&'a SeriesRun),
    /// Samples: a first-release snapshot's, or a segment's.
    Samples(&'a [Sample]),
}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Samples that came from the snapshot.
    pub from_snapshot: usize,
    /// Samples that came from the segments.
    pub from_wal: usize,
    /// Segments replayed.
    pub segments: usize,
    /// Bytes cut from a torn tail.
    pub truncated_bytes: usize,
    /// Size of the snapshot read, bytes (0 without one).
    pub snapshot_bytes: u64,
    /// Number for the next segment to open.
    pub next_segment: u64,
}

/// Reads the snapshot and segments in `dir` (created when missing), handing
/// their contents to `sink` in order.
pub fn recover(dir: &Path, sink: &mut dyn FnMut(Replayed<'_>)) -> Result<Recovered, WalError> {
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let mut segments = Vec::new();
    let mut snapshots = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            // A snapshot that never completed: its segments are still there.
            let p = entry.path();
            fs::remove_file(&p).map_err(io_err("remove", &p))?;
            continue;
        }
        match parse_name(&name) {
            Some((FileKind::Segment, n)) => segments.push(n),
            Some((FileKind::Snapshot, n)) => snapshots.push(n),
            None => {}
        }
    }
    segments.sort_unstable();
    snapshots.sort_unstable();
    let mut out = Recovered::default();
    let base = snapshots.last().copied().unwrap_or(0);
    if let Some(&n) = snapshots.last() {
        let path = dir.join(file_name(FileKind::Snapshot, n));
        let data = read_file(&path)?;
        out.snapshot_bytes = data.len() as u64;
        if data.starts_with(SNAPSHOT_MAGIC_V1) {
            let d = codec::decode_records(&data[SNAPSHOT_MAGIC_V1.len()..], Layout::PerSample);
            if let Some(damage) = d.damage {
                return Err(WalError::Corrupt { path, offset: 8 + d.valid_len, what: describe(&damage) });
            }
            out.from_snapshot = d.samples.len();
            sink(Replayed::Samples(&d.samples));
        } else {
            let body = check_magic(&path, &data, SNAPSHOT_MAGIC)?;
            let mut interner = std::collections::HashMap::new();
            let s = codec::scan_records(body, |p| {
                let run = codec::decode_series_run(p, &mut interner)?;
                out.from_snapshot += run.points.len();
                sink(Replayed::Run(&run));
                Ok(())
            });
            if let Some(damage) = s.damage {
                return Err(WalError::Corrupt { path, offset: 8 + s.valid_len, what: describe(&damage) });
            }
        }
    }
    let live: Vec<u64> = segments.iter().copied().filter(|&n| n >= base).collect();
    // Segments are numbered without gaps from the snapshot's number (or 1);
    // a missing one held acknowledged samples.
    for (expect, &n) in (base.max(1)..).zip(&live) {
        if n != expect {
            let path = dir.join(file_name(FileKind::Segment, expect));
            return Err(WalError::Missing {
                path,
                present: live.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
            });
        }
    }
    for (i, &n) in live.iter().enumerate() {
        let path = dir.join(file_name(FileKind::Segment, n));
        let data = read_file(&path)?;
        let last = i + 1 == live.len();
        if data.len() < WAL_MAGIC.len() && last && WAL_MAGIC.starts_with(&data) {
            // Crashed while creating the segment: nothing was ever acknowledged from it.
            out.truncated_bytes += data.len();
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            continue;
        }
        // This build's segments group samples by series; first-release ones are still read.
        let layout = data.get(..8).and_then(Layout::of_segment).ok_or_else(|| WalError::Corrupt {
            path: path.clone(),
            offset: 0,
            what: format!("expected the header {:?}", String::from_utf8_lossy(WAL_MAGIC)),
        })?;
        let body = &data[8..];
        let d = codec::decode_records(body, layout);
        if let Some(damage) = d.damage {
            let torn = last && matches!(damage, Damage::Truncated | Damage::BadChecksum);
            if !torn {
                return Err(WalError::Corrupt { path, offset: 8 + d.valid_len, what: describe(&damage) });
            }
            // A torn tail is an incomplete *last* record. A damaged record
            // with intact records after it is bit rot: cutting there would
            // drop acknowledged samples, so refuse instead.
            if let Some(next) = codec::intact_record_after(body, d.valid_len + 1, layout) {
                return Err(WalError::Corrupt {
                    path,
                    offset: 8 + d.valid_len,
                    what: format!(
                        "{}, and intact records follow it (the next at byte {}), so this is damage, not a torn tail",
                        describe(&damage),
                        8 + next
                    ),
                });
            }
            let keep = 8 + d.valid_len;
            out.truncated_bytes += data.len() - keep;
            tracing::warn!(file = %path.display(), cut_bytes = data.len() - keep, "truncating torn tail of the write-ahead log");
            let f = OpenOptions::new().write(true).open(&path).map_err(io_err("open", &path))?;
            f.set_len(keep as u64).map_err(io_err("truncate", &path))?;
            f.sync_all().map_err(io_err("sync", &path))?;
        }
        out.from_wal += d.samples.len();
        sink(Replayed::Samples(&d.samples));
        out.segments += 1;
    }
    out.next_segment = segments.last().copied().unwrap_or(0).max(base) + 1;
    Ok(out)
}

fn describe(d: &Damage) -> String {
    match d {
        Damage::Truncated => "the file ends inside a record".into(),
        Damage::BadChecksum => "a record's checksum does not match".into(),
        Damage::BadPayload(s) => format!("a record is malformed ({s})"),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, WalError> {
    let mut data = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut data)).map_err(io_err("read", path))?;
    Ok(data)
}

fn check_magic<'a>(path: &Path, data: &'a [u8], magic: &[u8; 8]) -> Result<&'a [u8], WalError> {
    if data.len() < 8 || &data[..8] != magic {
        return Err(WalError::Corrupt {
            path: path.to_owned(),
            offset: 0,
            what: format!("expected the header {:?}", String::from_utf8_lossy(magic)),
        });
    }
    Ok(&data[8..])
}

/// The segment being appended to.
pub struct SegmentWriter {
    dir: PathBuf,
    number: u64,
    file: File,
    len: u64,
    fsync: bool,
    /// The series this segment's records have named (ids are per segment).
    encoder: codec::SegmentEncoder,
}

impl SegmentWriter {
    /// Creates segment `number` in `dir`.
    pub fn create(dir: &Path, number: u64, fsync: bool) -> Result<Self, WalError> {
        let path = dir.join(file_name(FileKind::Segment, number));
        let mut file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io_err("create", &path))?;
        file.write_all(WAL_MAGIC).map_err(io_err("write", &path))?;
        if fsync {
            file.sync_all().map_err(io_err("sync", &path))?;
            sync_dir(dir)?;
        }
        Ok(SegmentWriter { dir: dir.to_owned(), number, file, len: 8, fsync, encoder: Default::default() })
    }

    /// Segment number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Bytes in the segment.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether only the header was written.
    pub fn is_empty(&self) -> bool {
        self.len <= 8
    }

    /// Frames a record of `samples` for this segment into `out` (naming the
    /// series this segment has not named yet); [`SegmentWriter::append`]
    /// writes it, to this segment and no other.
    pub fn encode(&mut self, samples: &[Sample], out: &mut Vec<u8>) {
        self.encoder.encode(samples, out);
    }

    /// Appends already-framed records and makes them durable (one fsync: the group commit).
    pub fn append(&mut self, framed: &[u8]) -> Result<(), WalError> {
        let path = self.dir.join(file_name(FileKind::Segment, self.number));
        self.file.write_all(framed).map_err(io_err("write", &path))?;
        if self.fsync {
            self.file.sync_data().map_err(io_err("sync", &path))?;
        }
        self.len += framed.len() as u64;
        Ok(())
    }
}

/// Writes a snapshot numbered `number` (covering every segment below it)
/// atomically, then removes the segments and snapshots it replaces; its size
/// in bytes.
pub fn write_snapshot(
    dir: &Path,
    number: u64,
    fill: impl FnOnce(&mut dyn FnMut(RunRef<'_>) -> io::Result<()>) -> io::Result<()>,
) -> Result<u64, WalError> {
    let tmp = dir.join(format!("{}.tmp", file_name(FileKind::Snapshot, number)));
    let fin = dir.join(file_name(FileKind::Snapshot, number));
    let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    let mut w = io::BufWriter::with_capacity(1 << 20, file);
    w.write_all(SNAPSHOT_MAGIC).map_err(io_err("write", &tmp))?;
    let mut buf = Vec::new();
    let mut bytes = SNAPSHOT_MAGIC.len() as u64;
    fill(&mut |run| {
        for points in run.points.chunks(codec::MAX_RUN_POINTS) {
            buf.clear();
            codec::encode_series_run(RunRef { points, ..run }, &mut buf);
            bytes += buf.len() as u64;
            w.write_all(&buf)?;
        }
        Ok(())
    })
    .map_err(io_err("write", &tmp))?;
    let file =
        w.into_inner().map_err(|e| WalError::Io { action: "flush", path: tmp.clone(), source: e.into_error() })?;
    file.sync_all().map_err(io_err("sync", &tmp))?;
    drop(file);
    fs::rename(&tmp, &fin).map_err(io_err("rename", &tmp))?;
    sync_dir(dir)?;
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let old = match parse_name(&entry.file_name().to_string_lossy()) {
            Some((FileKind::Segment, n)) => n < number,
            Some((FileKind::Snapshot, n)) => n < number,
            None => false,
        };
        if old {
            let p = entry.path();
            fs::remove_file(&p).map_err(io_err("remove", &p))?;
        }
    }
    sync_dir(dir)?;
    Ok(bytes)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("sync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::sample::{EntityKind, Metric};

    fn s(i: i64) -> Sample {
        Sample {
            kind: EntityKind::Physical,
            entity: "p1".into(),
            metric: Metric::CpuUsage,
            location: "".into(),
            ts_ms: i,
            value: i as f64,
        }
    }

    /// Recovery with everything it hands over collected as samples.
    fn recover_all(dir: &Path) -> Result<(Recovered, Vec<Sample>), WalError> {
        let mut all = Vec::new();
        let r = recover(dir, &mut |x| match x {
            Replayed::Samples(s) => all.extend_from_slice(s),
            Replayed::Run(run) => all.extend(run.points.iter().map(|&(ts_ms, v)| Sample {
                kind: run.kind,
                metric: run.metric,
                entity: run.entity.clone(),
                location: run.location.clone(),
                ts_ms,
                value: v as f64,
            })),
        })?;
        Ok((r, all))
    }

    fn framed(samples: &[Sample]) -> Vec<u8> {
        let mut b = Vec::new();
        codec::encode_record(samples, &mut b);
        b
    }

    /// Appends `partial` (a record cut short) to segment `number`: a crash
    /// in the middle of a write.
    fn tear(dir: &Path, number: u64, partial: &[u8]) {
        let p = dir.join(file_name(FileKind::Segment, number));
        OpenOptions::new().append(true).open(&p).unwrap().write_all(partial).unwrap();
    }

    #[test]
    fn segments_replay_and_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 1, true).unwrap();
        w.append(&framed(&[s(1), s(2)])).unwrap();
        w.append(&framed(&[s(3)])).unwrap();
        drop(w);
        // Simulate a crash in the middle of the next write.
        tear(dir.path(), 1, &framed(&[s(4)])[..10]);
        let (r, samples) = recover_all(dir.path()).unwrap();
        assert_eq!(samples, vec![s(1), s(2), s(3)]);
        assert_eq!(r.truncated_bytes, 10);
        assert_eq!(r.next_segment, 2);
        // The cut is durable: a second recovery sees a clean file.
        let (r, samples) = recover_all(dir.path()).unwrap();
        assert_eq!(r.truncated_bytes, 0);
        assert_eq!(samples.len(), 3);
    }

    #[test]
    fn a_first_release_segment_and_this_builds_replay_in_order_after_an_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        // Segment 1 as the first release wrote it (one entry per sample), ...
        let mut old = codec::WAL_MAGIC_V1.to_vec();
        codec::encode_record_per_sample(&[s(1), s(2)], &mut old);
        fs::write(dir.path().join(file_name(FileKind::Segment, 1)), &old).unwrap();
        // ... then this build's grouped segment 2, torn at its end.
        let mut w = SegmentWriter::create(dir.path(), 2, false).unwrap();
        w.append(&framed(&[s(3), s(2)])).unwrap();
        drop(w);
        tear(dir.path(), 2, &framed(&[s(4)])[..12]);
        let (r, samples) = recover_all(dir.path()).unwrap();
        assert_eq!(samples, vec![s(1), s(2), s(3), s(2)]);
        assert_eq!((r.truncated_bytes, r.next_segment), (12, 3));
        // A header that is neither is refused, naming this build's.
        fs::write(dir.path().join(file_name(FileKind::Segment, 3)), b"SWRMWAL9").unwrap();
        let e = recover_all(dir.path()).unwrap_err().to_string();
        assert!(e.contains("SWRMWAL2") && e.contains("wal-0000000000000003.log"), "{e}");
    }

    #[test]
    fn bit_rot_in_the_newest_segment_is_an_error_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 1, false).unwrap();
        for i in 0..100 {
            w.append(&framed(&[s(i), s(i + 1000)])).unwrap();
        }
        drop(w);
        let p = dir.path().join(file_name(FileKind::Segment, 1));
        let mut data = fs::read(&p).unwrap();
        let n = data.len();
        let mid = n / 2;
        data[mid..mid + 4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        fs::write(&p, &data).unwrap();
        let err = recover_all(dir.path()).unwrap_err().to_string();
        assert!(err.contains("wal-0000000000000001.log is corrupt at byte"), "{err}");
        assert!(err.contains("intact records follow it"), "{err}");
        assert_eq!(fs::read(&p).unwrap().len(), n, "nothing was cut");
        // A damaged last record (its payload garbled before the fsync) is still a torn tail.
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 1, false).unwrap();
        w.append(&framed(&[s(1)])).unwrap();
        let mut last = framed(&[s(2)]);
        let k = last.len() - 1;
        last[k] ^= 0xff;
        w.append(&last).unwrap();
        drop(w);
        let (r, samples) = recover_all(dir.path()).unwrap();
        assert_eq!(samples, vec![s(1)]);
        assert_eq!(r.truncated_bytes, last.len());
    }

    #[test]
    fn a_missing_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for n in 1..=3 {
            SegmentWriter::create(dir.path(), n, false).unwrap().append(&framed(&[s(n as i64)])).unwrap();
        }
        fs::remove_file(dir.path().join(file_name(FileKind::Segment, 2))).unwrap();
        let err = recover_all(dir.path()).unwrap_err().to_string();
        assert!(err.contains("wal-0000000000000002.log is missing (segments present: 1, 3)"), "{err}");
        // Without a snapshot the log starts at segment 1.
        fs::remove_file(dir.path().join(file_name(FileKind::Segment, 1))).unwrap();
        let err = recover_all(dir.path()).unwrap_err().to_string();
        assert!(err.contains("wal-0000000000000001.log is missing"), "{err}");
    }

    #[test]
    fn corruption_in_an_older_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 1, false).unwrap();
        w.append(&framed(&[s(1)])).unwrap();
        let mut w2 = SegmentWriter::create(dir.path(), 2, false).unwrap();
        w2.append(&framed(&[s(2)])).unwrap();
        let p = dir.path().join(file_name(FileKind::Segment, 1));
        let mut data = fs::read(&p).unwrap();
        let n = data.len();
        data[n - 1] ^= 1;
        fs::write(&p, data).unwrap();
        let err = recover_all(dir.path()).unwrap_err().to_string();
        assert!(err.contains("wal-0000000000000001.log is corrupt"), "{err}");
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn snapshot_replaces_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 1, false).unwrap();
        w.append(&framed(&[s(1)])).unwrap();
        let mut w2 = SegmentWriter::create(dir.path(), 2, false).unwrap();
        let run = RunRef {
            kind: EntityKind::Physical,
            metric: Metric::CpuUsage,
            entity: "p1",
            location: "",
            points: &[(1, 1.0)],
        };
        write_snapshot(dir.path(), 2, |put| put(run)).unwrap();
        w2.append(&framed(&[s(5)])).unwrap();
        fs::write(dir.path().join("snapshot-0000000000000003.bin.tmp"), b"half").unwrap();
        let (r, samples) = recover_all(dir.path()).unwrap();
        assert_eq!(samples, vec![s(1), s(5)]);
        assert_eq!(r.from_snapshot, 1);
        assert!(!dir.path().join(file_name(FileKind::Segment, 1)).exists());
        assert!(!dir.path().join("snapshot-0000000000000003.bin.tmp").exists());
        assert_eq!(r.next_segment, 3);
    }
}
