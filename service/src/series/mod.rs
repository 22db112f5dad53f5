//! Metric series: durable intake (write-ahead log with group commit,
//! periodic snapshots) into in-memory Polars frames.
//!
//! One writer thread owns the log. Ingest handlers send it batches; it writes
//! every batch waiting at that moment, fsyncs once (group commit), applies
//! them to the frames, and only then acknowledges them. So an acknowledged
//! sample is always on disk, and a sample visible to queries is always durable.
//! When the log has grown past a threshold the writer rotates to a new
//! segment and writes a snapshot of the frames, which replaces older segments.

pub mod codec;
pub mod frames;
pub mod sample;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::clock::SharedClock;
pub use frames::Frames;
pub use sample::{EntityKind, Metric, Sample};
use wal::{SegmentWriter, WalError};

/// Tuning of the series store.
#[derive(Debug, Clone)]
pub struct SeriesConfig {
    /// Samples older than this are dropped, ms.
    pub retention_ms: i64,
    /// fsync every group commit. Only tests and benchmarks of the CPU path turn it off.
    pub fsync: bool,
    /// Rotate the segment once it is this large, bytes.
    pub segment_bytes: u64,
    /// Snapshot once the segments since the last snapshot hold this many
    /// bytes, or a quarter of the last snapshot's size if that is more.
    /// About 8 bytes a sample: 64 MiB is 8 M samples, a couple of seconds
    /// of replay at start-up.
    pub snapshot_bytes: u64,
    /// Snapshot at least this often when anything was written.
    pub snapshot_interval: Duration,
    /// Batches waiting for the writer at most (back-pressure beyond).
    pub queue_batches: usize,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        SeriesConfig {
            retention_ms: 7 * 24 * 3600 * 1000,
            fsync: true,
            segment_bytes: 64 << 20,
            snapshot_bytes: 64 << 20,
            snapshot_interval: Duration::from_secs(15 * 60),
            queue_batches: 256,
        }
    }
}

/// Errors of the series store.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    /// On-disk files.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The in-memory frames.
    #[error("frame operation failed: {0}")]
    Frame(#[from] polars::error::PolarsError),
    /// The writer stopped (after an IO error or at shutdown), or the metrics
    /// backend could not be reached; nothing more can be made durable now.
    #[error("the metric store is not accepting writes: {0}")]
    Unavailable(String),
    /// The metrics backend read the samples and refused them (e.g. older
    /// than what it holds for the series): the sender's to fix.
    #[error("{0}")]
    Rejected(String),
}

enum Cmd {
    Append(Vec<Sample>, oneshot::Sender<Result<(), String>>),
    Snapshot(oneshot::Sender<Result<(), String>>),
    Shutdown,
}

/// Cheap-clone handle to the series store.
#[derive(Clone)]
pub struct SeriesStore {
    /// The log writer; `None` for a cache of a remote backend.
    tx: Option<mpsc::Sender<Cmd>>,
    frames: Arc<RwLock<Frames>>,
    clock: SharedClock,
    retention_ms: i64,
    writer: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// What opening the store recovered.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenReport {
    /// Samples loaded from the snapshot.
    pub from_snapshot: usize,
    /// Samples replayed from the log.
    pub from_wal: usize,
    /// Rows kept after retention and de-duplication.
    pub rows: usize,
    /// Bytes cut from a torn log tail.
    pub truncated_bytes: usize,
}

impl SeriesStore {
    /// Recovers the store from `dir` and starts its writer thread.
    pub fn open(dir: &Path, cfg: SeriesConfig, clock: SharedClock) -> Result<(Self, OpenReport), SeriesError> {
        let cutoff = clock.now_ms() - cfg.retention_ms;
        let mut loader = frames::Loader::new(cutoff);
        let rec = wal::recover(dir, &mut |x| match x {
            wal::Replayed::Run(run) => loader.run(run),
            wal::Replayed::Samples(s) => loader.samples(s),
        })?;
        let frames = loader.finish()?;
        let report = OpenReport {
            from_snapshot: rec.from_snapshot,
            from_wal: rec.from_wal,
            rows: frames.row_count(),
            truncated_bytes: rec.truncated_bytes,
        };
        let next_segment = rec.next_segment;
        let segment = SegmentWriter::create(dir, next_segment, cfg.fsync)?;
        let frames = Arc::new(RwLock::new(frames));
        let (tx, rx) = mpsc::channel(cfg.queue_batches.max(1));
        let writer = Writer {
            dir: dir.to_owned(),
            cfg: cfg.clone(),
            segment,
            frames: frames.clone(),
            clock: clock.clone(),
            bytes_since_snapshot: 0,
            last_snapshot_bytes: rec.snapshot_bytes,
            background: None,
            last_snapshot: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("swarm-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| SeriesError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok((
            SeriesStore {
                tx: Some(tx),
                frames,
                clock,
                retention_ms: cfg.retention_ms,
                writer: Arc::new(std::sync::Mutex::new(Some(handle))),
            },
            report,
        ))
    }

    /// Frames only, nothing on disk: the read-through cache of a remote
    /// metrics backend, filled by [`SeriesStore::insert_cached`].
    pub fn cache(retention_ms: i64, clock: SharedClock) -> Self {
        SeriesStore {
            tx: None,
            frames: Arc::new(RwLock::new(Frames::default())),
            clock,
            retention_ms,
            writer: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Puts samples read from the backend into a cache's frames (the same
    /// last-write-wins merge as the log's). Blocking: call off the runtime.
    pub fn insert_cached(&self, samples: &[Sample]) -> Result<(), SeriesError> {
        let cutoff = self.cutoff_ms();
        Ok(self.frames.write().expect("frames lock").insert(samples, cutoff)?)
    }

    fn writer(&self) -> Result<&mpsc::Sender<Cmd>, SeriesError> {
        self.tx.as_ref().ok_or_else(|| {
            SeriesError::Unavailable("this store is a cache of the metrics backend; samples go to the backend".into())
        })
    }

    /// Makes `samples` durable and visible. Returns once they are fsynced.
    pub async fn append(&self, samples: Vec<Sample>) -> Result<(), SeriesError> {
        self.append_start(samples).await?.await
    }

    /// Queues `samples` for the writer and returns a future that resolves once
    /// they are durable. Lets one stream keep several batches in flight so
    /// they share a group commit.
    pub async fn append_start(
        &self,
        samples: Vec<Sample>,
    ) -> Result<impl std::future::Future<Output = Result<(), SeriesError>> + use<>, SeriesError> {
        let (ack, done) = oneshot::channel();
        self.writer()?
            .send(Cmd::Append(samples, ack))
            .await
            .map_err(|_| SeriesError::Unavailable("the writer has stopped".into()))?;
        Ok(async move {
            match done.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(SeriesError::Unavailable(e)),
                Err(_) => Err(SeriesError::Unavailable("the writer stopped before confirming".into())),
            }
        })
    }

    /// Writes a snapshot now (also done automatically).
    pub async fn snapshot(&self) -> Result<(), SeriesError> {
        let (ack, done) = oneshot::channel();
        self.writer()?
            .send(Cmd::Snapshot(ack))
            .await
            .map_err(|_| SeriesError::Unavailable("the writer has stopped".into()))?;
        done.await.map_err(|_| SeriesError::Unavailable("the writer stopped".into()))?.map_err(SeriesError::Unavailable)
    }

    /// Runs `f` on the frames under a read lock (reads never merge buffers,
    /// so they do not wait on a sort). Call from `spawn_blocking` in async code.
    pub fn read<R>(&self, f: impl FnOnce(&Frames) -> R) -> R {
        f(&self.frames.read().expect("frames lock"))
    }

    /// Oldest timestamp still retained, ms.
    pub fn cutoff_ms(&self) -> i64 {
        self.clock.now_ms() - self.retention_ms
    }

    /// Retention window, ms.
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// Stops accepting writes once everything queued before this call is
    /// durable, and waits for the writer thread to finish.
    pub async fn close(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Cmd::Shutdown).await;
        }
        let handle = self.writer.lock().expect("writer lock").take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

struct Writer {
    dir: PathBuf,
    cfg: SeriesConfig,
    segment: SegmentWriter,
    frames: Arc<RwLock<Frames>>,
    clock: SharedClock,
    bytes_since_snapshot: u64,
    /// Size of the newest snapshot, bytes.
    last_snapshot_bytes: u64,
    /// A snapshot being written on its own thread: its size when done.
    background: Option<std::thread::JoinHandle<Result<u64, String>>>,
    last_snapshot: Instant,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut framed = Vec::with_capacity(4 << 20);
        let mut failed: Option<String> = None;
        let mut stopping = false;
        while !stopping {
            let Some(first) = rx.blocking_recv() else { break };
            let mut group = vec![first];
            // Everything already waiting joins this group commit (bounded by bytes).
            let mut approx = 0usize;
            while approx < (64 << 20) && !matches!(group.last(), Some(Cmd::Shutdown)) {
                match rx.try_recv() {
                    Ok(c) => {
                        if let Cmd::Append(s, _) = &c {
                            approx += s.len() * 40;
                        }
                        group.push(c);
                    }
                    Err(_) => break,
                }
            }
            let mut acks = Vec::new();
            let mut batches = Vec::new();
            let mut snapshot_acks = Vec::new();
            framed.clear();
            for c in group {
                match c {
                    Cmd::Append(samples, ack) => {
                        self.segment.encode(&samples, &mut framed);
                        batches.push(samples);
                        acks.push(ack);
                    }
                    Cmd::Snapshot(ack) => snapshot_acks.push(ack),
                    Cmd::Shutdown => stopping = true,
                }
            }
            let result = match &failed {
                Some(e) => Err(e.clone()),
                None => self.commit(&framed, &batches),
            };
            if let Err(e) = &result {
                tracing::error!(error = %e, "write-ahead log failed; refusing further writes");
                failed = Some(e.clone());
            }
            for ack in acks {
                let _ = ack.send(result.clone());
            }
            if framed.capacity() > 8 << 20 {
                // A burst's group can reach tens of MB: give it back once it is written.
                framed = Vec::with_capacity(4 << 20);
            }
            // A snapshot rewrites everything: one after a quarter of the
            // last one's size in log keeps the rewriting linear in what is
            // ingested (a fixed threshold would make a growing store's
            // snapshots quadratic) and the log at most a quarter of the disk.
            let due = self.bytes_since_snapshot >= self.cfg.snapshot_bytes.max(self.last_snapshot_bytes / 4)
                || (self.bytes_since_snapshot > 0 && self.last_snapshot.elapsed() >= self.cfg.snapshot_interval);
            self.reap(false);
            if failed.is_none() && !snapshot_acks.is_empty() {
                let r = self.snapshot(true).map_err(|e| e.to_string());
                if let Err(e) = &r {
                    tracing::error!(error = %e, "snapshot failed; the log keeps every sample, will retry");
                }
                for ack in snapshot_acks {
                    let _ = ack.send(r.clone());
                }
            } else if failed.is_none() && due && self.background.is_none() {
                if let Err(e) = self.snapshot(false) {
                    tracing::error!(error = %e, "snapshot failed; the log keeps every sample, will retry");
                }
            } else {
                for ack in snapshot_acks {
                    let _ = ack.send(match &failed {
                        Some(e) => Err(e.clone()),
                        None => Ok(()),
                    });
                }
            }
        }
        // A snapshot still being written finishes before the writer stops.
        self.reap(true);
    }

    fn commit(&mut self, framed: &[u8], batches: &[Vec<Sample>]) -> Result<(), String> {
        if framed.is_empty() {
            return Ok(());
        }
        self.segment.append(framed).map_err(|e| e.to_string())?;
        self.bytes_since_snapshot += framed.len() as u64;
        let cutoff = self.clock.now_ms() - self.cfg.retention_ms;
        {
            let mut frames = self.frames.write().expect("frames lock");
            for b in batches {
                frames.insert(b, cutoff).map_err(|e| e.to_string())?;
            }
        }
        if self.segment.len() >= self.cfg.segment_bytes {
            self.segment = SegmentWriter::create(&self.dir, self.segment.number() + 1, self.cfg.fsync)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Collects a background snapshot once it is done (`block`: waits for it).
    fn reap(&mut self, block: bool) {
        if !self.background.as_ref().is_some_and(|h| block || h.is_finished()) {
            return;
        }
        let Some(h) = self.background.take() else { return };
        match h.join() {
            Ok(Ok(bytes)) => self.last_snapshot_bytes = bytes,
            Ok(Err(e)) => tracing::error!(error = %e, "snapshot failed; the log keeps every sample, will retry"),
            Err(_) => tracing::error!("the snapshot thread panicked; the log keeps every sample, will retry"),
        }
    }

    /// Rotates the log and writes a snapshot of the frames as they are now:
    /// in this thread when `wait`, else on a thread of its own, so that a
    /// fleet-sized snapshot (gigabytes, seconds) does not stall ingest. The
    /// frames are frozen by a clone (the stored columns are shared, not
    /// copied) and the log goes on in the new segment meanwhile; the
    /// snapshot removes only what lies below that segment.
    fn snapshot(&mut self, wait: bool) -> Result<(), SeriesError> {
        self.reap(true);
        let started = Instant::now();
        // Rotate first: the snapshot then covers exactly the segments below the new one.
        let next = self.segment.number() + 1;
        self.segment = SegmentWriter::create(&self.dir, next, self.cfg.fsync)?;
        let cutoff = self.clock.now_ms() - self.cfg.retention_ms;
        let frozen = {
            let mut frames = self.frames.write().expect("frames lock");
            frames.compact_all(cutoff)?;
            frames.clone()
        };
        self.bytes_since_snapshot = 0;
        self.last_snapshot = Instant::now();
        let dir = self.dir.clone();
        let write = move || -> Result<u64, String> {
            let bytes = wal::write_snapshot(&dir, next, |put| frozen.for_each_run(put)).map_err(|e| e.to_string())?;
            tracing::info!(
                rows = frozen.row_count(),
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "series snapshot written"
            );
            Ok(bytes)
        };
        if wait {
            self.last_snapshot_bytes = write().map_err(SeriesError::Unavailable)?;
        } else {
            let h = std::thread::Builder::new()
                .name("swarm-snapshot".into())
                .spawn(write)
                .map_err(|e| SeriesError::Unavailable(format!("cannot start the snapshot thread: {e}")))?;
            self.background = Some(h);
        }
        Ok(())
    }
}
