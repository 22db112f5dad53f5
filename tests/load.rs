//! Load against the real `swarmd` (loopback, bounded in count and time):
//! 1,000 concurrent ingest streams, twice; during the second wave swarmd is
//! SIGKILLed. After a restart on the same data directory every sample of
//! every acknowledged call is there, and swarmd's peak memory stayed under
//! the stated bound. Prints the figures that BENCHMARKS.md records:
//!
//!     cargo test -p swarm-service --test e2e load:: -- --nocapture

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use common::*;
use swarm_proto::v1 as pb;
use tonic::transport::Channel;

const STREAMS: usize = 1000;
const BATCHES: usize = 10;
const PER_BATCH: usize = 100;
const CHANNELS: usize = 20;
/// swarmd's peak resident memory must stay under this. The ingest path
/// holds at most `max_pending_samples` (1,000,000 by default, about 100 MB
/// at worst) pending; the frames keep the data (up to 2M samples here,
/// about 50 MB); the rest is the runtime, Polars and the buffers of 1,000
/// streams. Measured peaks are about a quarter of it (BENCHMARKS.md).
const MEMORY_BOUND_MIB: u64 = 512;

/// Peak resident set of a process, MiB (Linux /proc).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("Linux /proc");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb / 1024
}

struct Wave {
    /// Per stream (= per virtual node): the timestamps of acknowledged samples.
    acked: HashMap<usize, Vec<i64>>,
    failed: usize,
    seconds: f64,
}

/// One wave: every stream sends BATCHES batches for its own virtual node,
/// timestamps from `t0`. `kill_after` acknowledgements, `on_kill` runs once.
async fn wave(channels: &[Channel], t0: i64, kill_after: Option<(u64, Box<dyn FnOnce() + Send>)>) -> Wave {
    let started = Instant::now();
    let acks = Arc::new(AtomicU64::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let killer = kill_after.map(|(n, f)| (n, Arc::new(std::sync::Mutex::new(Some(f)))));
    let mut tasks = Vec::new();
    for s in 0..STREAMS {
        let ch = channels[s % channels.len()].clone();
        let (acks, killed, killer) = (acks.clone(), killed.clone(), killer.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("vm{s:04}");
            let mut ts = Vec::with_capacity(BATCHES * PER_BATCH);
            let batches: Vec<pb::IngestBatch> = (0..BATCHES)
                .map(|b| pb::IngestBatch {
                    samples: (0..PER_BATCH)
                        .map(|k| {
                            let t = t0 + ((b * PER_BATCH + k) as i64) * 1000;
                            ts.push(t);
                            sample(pb::EntityKind::Virtual, &id, pb::Metric::CpuUsage, t, (s % 7) as f64)
                        })
                        .collect(),
                })
                .collect();
            let mut m = pb::metrics_client::MetricsClient::new(ch);
            let r = m.ingest(tokio_stream::iter(batches)).await;
            let ok = matches!(&r, Ok(resp) if resp.get_ref().accepted == (BATCHES * PER_BATCH) as u64);
            if ok {
                let n = acks.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some((after, f)) = &killer
                    && n >= *after
                    && !killed.swap(true, Ordering::SeqCst)
                    && let Some(f) = f.lock().unwrap().take()
                {
                    f();
                }
            }
            (s, ok.then_some(ts))
        }));
    }
    let mut acked = HashMap::new();
    let mut failed = 0;
    for t in tasks {
        match t.await.unwrap() {
            (s, Some(ts)) => {
                acked.insert(s, ts);
            }
            _ => failed += 1,
        }
    }
    Wave { acked, failed, seconds: started.elapsed().as_secs_f64() }
}

async fn channels(server: &Server) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..CHANNELS {
        out.push(Channel::from_shared(server.endpoint()).unwrap().connect().await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_then_sigkill_lose_no_acknowledged_sample() {
    let mut server = Server::start(&["--round-interval", "1h", "--retention", "30d"]);
    let ch = server.channel().await;
    let mut t = pb::topology_client::TopologyClient::new(ch.clone());
    let nodes = (0..STREAMS).map(|s| virt(&format!("vm{s:04}"), 1.0)).collect();
    t.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes }).await.unwrap();
    let per_wave = (STREAMS * BATCHES * PER_BATCH) as f64;
    let t0 = now_ms() - 3 * 86_400_000;

    // Wave 1: everything acknowledged.
    let chans = channels(&server).await;
    let w1 = wave(&chans, t0, None).await;
    assert_eq!((w1.acked.len(), w1.failed), (STREAMS, 0), "every stream of wave 1 acknowledged");
    let rss1 = peak_rss_mib(server.pid());

    // Wave 2: SIGKILL once half the streams are acknowledged.
    let pid = server.pid();
    let peak_at_kill = Arc::new(AtomicU64::new(0));
    let at_kill = peak_at_kill.clone();
    let kill: Box<dyn FnOnce() + Send> = Box::new(move || {
        // The high-water mark, read the instant before the kill.
        at_kill.store(peak_rss_mib(pid), Ordering::SeqCst);
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    });
    let w2 = wave(&chans, t0 + 86_400_000, Some(((STREAMS / 2) as u64, kill))).await;
    assert!(
        w2.acked.len() >= STREAMS / 2 && w2.failed > 0,
        "the kill came mid-wave: {} acked, {} failed",
        w2.acked.len(),
        w2.failed
    );
    let peak = peak_at_kill.load(Ordering::SeqCst).max(rss1);

    // Restart on the same data directory: every acknowledged sample is there.
    let restarted = Instant::now();
    server.kill_and_restart();
    let ch = server.channel().await;
    let restart_s = restarted.elapsed().as_secs_f64();
    let checking = Instant::now();
    let mut lost = 0usize;
    let mut checked = 0usize;
    use futures::StreamExt;
    let stored: Vec<(usize, std::collections::HashSet<i64>)> = futures::stream::iter(0..STREAMS)
        .map(|s| {
            let ch = ch.clone();
            async move {
                let id = format!("vm{s:04}");
                let points = query(ch, pb::EntityKind::Virtual, &id, pb::Metric::CpuUsage).await;
                (s, points.iter().map(|p| p.timestamp_ms).collect())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (s, have) in stored {
        for w in [&w1, &w2] {
            if let Some(ts) = w.acked.get(&s) {
                checked += ts.len();
                lost += ts.iter().filter(|t| !have.contains(t)).count();
            }
        }
    }
    println!(
        "load: {STREAMS} streams x {BATCHES} batches x {PER_BATCH} samples over {CHANNELS} connections; \
         wave 1: {:.2} s ({:.0} samples/s acknowledged); wave 2: SIGKILL after {} of {STREAMS} streams acknowledged \
         ({} cut off); restart {restart_s:.1} s; {checked} acknowledged samples checked in {:.1} s, {lost} lost; \
         swarmd peak RSS {peak} MiB (bound {MEMORY_BOUND_MIB} MiB)",
        w1.seconds,
        per_wave / w1.seconds,
        w2.acked.len(),
        w2.failed,
        checking.elapsed().as_secs_f64(),
    );
    assert_eq!(lost, 0, "acknowledged samples lost after SIGKILL");
    assert!(checked >= (STREAMS + STREAMS / 2) * BATCHES * PER_BATCH);
    assert!(peak < MEMORY_BOUND_MIB, "swarmd peaked at {peak} MiB, over the {MEMORY_BOUND_MIB} MiB bound");
}
