//! Fleet scale end to end against the real `swarmd` (this build's binary,
//! its own process, fsync on): register V virtual nodes (1–8 cores,
//! round-robin on V/10 physical nodes of 16 cores in 4 zones, racks of 40),
//! stream `DAYS` of 5-minute `CPU_USAGE` and `CPU_PEAK` per virtual node
//! ending now over `Metrics.Ingest` on 4 streams, then time dry-run rounds
//! with forecasts (the bundled model), one-series `QuerySeries` and
//! `GetForecast`, a restart on the same data directory, and dry-run rounds
//! in which the risk-aware rule reads every node's window (restarted with a
//! target limit no host meets, so the controller's other rules propose
//! nothing and the rule acts).
//!
//! Prints the ingest rate, the round's stage times (from swarmd's own
//! `/metrics`), resident memory and disk per retained sample, and start-up
//! time. Generation runs on producer threads while the streams send; its own
//! rate is measured first and printed, so one can see it does not dominate.
//!
//! Run: `cargo bench --workspace --bench scale` (env `VIRTUAL`, default
//! 10,000; `DAYS`, default 7.5; `ROUNDS`, default 3);
//! `service/benches/scale_baseline.sh REV` runs it against swarmd at REV
//! and at this checkout, and prints the ratios.

#[path = "../../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::time::{Duration, Instant};

use swarm_proto::v1 as pb;

const STEP_MS: i64 = 300_000;
const STREAMS: usize = 4;

/// Deterministic noise in [0, 1) (no RNG state shared between producers).
fn noise(a: u64, b: u64) -> f64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// One step of usage and peak for the given virtual nodes: a daily pattern
/// with a per-node phase, noise, and a rare spike.
fn step_batch(ids: &[(usize, String)], ts: i64) -> pb::IngestBatch {
    let mut samples = Vec::with_capacity(ids.len() * 2);
    let day = (ts as f64 / 86_400_000.0) * std::f64::consts::TAU;
    for (i, id) in ids {
        let cores = (1 + i % 8) as f64;
        let (n1, n2) = (noise(*i as u64, ts as u64), noise(ts as u64, *i as u64));
        let spike = if n2 > 0.995 { 0.4 } else { 0.0 };
        let usage = cores * (0.35 + 0.2 * (day + *i as f64 / 13.0).sin() + 0.1 * n1 + spike).clamp(0.0, 1.0);
        let peak = (usage * (1.15 + 0.3 * n2)).min(cores);
        for (metric, value) in [(pb::Metric::CpuUsage, usage), (pb::Metric::CpuPeak, peak)] {
            samples.push(pb::Sample {
                entity_kind: pb::EntityKind::Virtual as i32,
                entity_id: id.clone(),
                metric: metric as i32,
                timestamp_ms: ts,
                value,
                location: String::new(),
            });
        }
    }
    pb::IngestBatch { samples }
}

async fn register(ch: tonic::transport::Channel, v: usize, p: usize) {
    let mut topo = pb::topology_client::TopologyClient::new(ch).max_encoding_message_size(64 << 20);
    let phys: Vec<pb::PhysicalNode> = (0..p)
        .map(|i| {
            let mut n = common::physical(&format!("p{i:05}"), 16.0);
            n.labels =
                [("zone".to_string(), format!("z{}", i % 4)), ("rack".to_string(), format!("r{}", i / 40))].into();
            n
        })
        .collect();
    for chunk in phys.chunks(10_000) {
        topo.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: chunk.to_vec() }).await.unwrap();
    }
    let virt: Vec<pb::VirtualNode> = (0..v).map(|i| common::virt(&format!("v{i:06}"), (1 + i % 8) as f64)).collect();
    for chunk in virt.chunks(10_000) {
        topo.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: chunk.to_vec() }).await.unwrap();
    }
    let placements: Vec<pb::PlacementAssignment> = (0..v)
        .map(|i| pb::PlacementAssignment {
            virtual_node_id: format!("v{i:06}"),
            physical_node_id: format!("p{:05}", i % p),
        })
        .collect();
    for chunk in placements.chunks(10_000) {
        topo.set_placements(pb::SetPlacementsRequest { placements: chunk.to_vec() }).await.unwrap();
    }
}

/// Steps of history one Ingest call carries (2 hours): a call refused with
/// RESOURCE_EXHAUSTED is sent again, as a real client does (re-sending is safe).
const STEPS_PER_CALL: i64 = 24;

/// One Ingest call of `steps` from `k0` for `ids`; its batches are generated
/// by a thread of its own ahead of the sender.
async fn ingest_call(
    ch: tonic::transport::Channel,
    ids: std::sync::Arc<Vec<(usize, String)>>,
    k0: i64,
    k1: i64,
    steps: i64,
    last: i64,
) -> Result<u64, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::IngestBatch>(4);
    std::thread::spawn(move || {
        for k in k0..k1 {
            let ts = last - (steps - 1 - k) * STEP_MS;
            // At most 50,000 samples a batch.
            for part in ids.chunks(25_000) {
                if tx.blocking_send(step_batch(part, ts)).is_err() {
                    return;
                }
            }
        }
    });
    let mut m = pb::metrics_client::MetricsClient::new(ch).max_encoding_message_size(64 << 20);
    Ok(m.ingest(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner().accepted)
}

/// Streams the history on [`STREAMS`] concurrent streams, each a sequence of
/// Ingest calls. Returns (samples, seconds, calls refused and sent again).
async fn ingest(ch: tonic::transport::Channel, v: usize, steps: i64, last: i64) -> (u64, f64, u64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..STREAMS {
        let ids: std::sync::Arc<Vec<(usize, String)>> =
            std::sync::Arc::new((s..v).step_by(STREAMS).map(|i| (i, format!("v{i:06}"))).collect());
        let ch = ch.clone();
        tasks.push(tokio::spawn(async move {
            let (mut accepted, mut retried) = (0, 0);
            let mut k0 = 0;
            while k0 < steps {
                let k1 = (k0 + STEPS_PER_CALL).min(steps);
                match ingest_call(ch.clone(), ids.clone(), k0, k1, steps, last).await {
                    Ok(n) => {
                        accepted += n;
                        k0 = k1;
                    }
                    Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                        retried += 1;
                        let ms = e.metadata().get("retry-after-ms").and_then(|v| v.to_str().ok()?.parse().ok());
                        tokio::time::sleep(Duration::from_millis(ms.unwrap_or(1000))).await;
                    }
                    Err(e) => panic!("ingest failed: {e}"),
                }
            }
            (accepted, retried)
        }));
    }
    let (mut accepted, mut retried) = (0, 0);
    for t in tasks {
        let (a, r) = t.await.unwrap();
        accepted += a;
        retried += r;
    }
    (accepted, started.elapsed().as_secs_f64(), retried)
}

fn rss_bytes(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024.0
}

fn disk_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() { disk_bytes(&e.path()) } else { m.len() };
    }
    total
}

/// Whether a snapshot is being written under `dir` (its `*.tmp` file).
fn snapshot_in_flight(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let m = e.metadata().unwrap();
        if m.is_dir() { snapshot_in_flight(&e.path()) } else { e.file_name().to_string_lossy().ends_with(".tmp") }
    })
}

/// `name{labels} value` lines of swarmd's /metrics that start with `prefix`.
fn scrape(http: &str, prefix: &str) -> Vec<(String, f64)> {
    let (status, _, text) = common::http_get(http, "/metrics", "");
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(f64::NAN))))
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, f64) {
    let t = Instant::now();
    let r = f.await;
    (r, t.elapsed().as_secs_f64())
}

/// Times `rounds` dry-run rounds: prints their median time under `title`
/// and each stage's (read from swarmd's own `swarm_round_stage_seconds`),
/// and returns the stages' medians by name.
async fn time_rounds(
    ch: tonic::transport::Channel,
    http: &str,
    rounds: usize,
    title: &str,
) -> std::collections::HashMap<&'static str, f64> {
    let mut placement = pb::placement_client::PlacementClient::new(ch);
    let mut times = Vec::new();
    let mut stages: Vec<Vec<(String, f64)>> = Vec::new();
    for _ in 0..rounds {
        let (r, s) = timed(placement.run_round(pb::RunRoundRequest { dry_run: true })).await;
        let r = r.unwrap().into_inner();
        assert!(r.virtual_nodes_evaluated > 0);
        times.push(s);
        stages.push(scrape(http, "swarm_round_stage_seconds"));
    }
    println!("  {title:<40} {:>9.3} s (median of {rounds})", median(times));
    let stage = |name: &str| {
        let key = format!("swarm_round_stage_seconds{{stage=\"{name}\"}}");
        median(stages.iter().map(|s| s.iter().find(|(n, _)| *n == key).map_or(f64::NAN, |x| x.1)).collect())
    };
    // In the order a round runs them (README, swarmd's /metrics).
    let names = [
        "metrics_backend",
        "performance",
        "usage",
        "forecasts",
        "data_access",
        "view",
        "risk",
        "decide",
        "commit",
        "release",
    ];
    names
        .into_iter()
        .map(|name| {
            // (A swarmd from before 2026-12-07, run by scale_baseline.sh,
            // called the risk-aware rule's stage risk_history.)
            let t = if name == "risk" && stage(name).is_nan() { stage("risk_history") } else { stage(name) };
            println!("    {name:<38} {t:>9.3} s");
            (name, t)
        })
        .collect()
}

fn main() {
    let v: usize = std::env::var("VIRTUAL").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let days: f64 = std::env::var("DAYS").ok().and_then(|s| s.parse().ok()).unwrap_or(7.5);
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let p = (v / 10).max(1);
    let steps = (days * 288.0) as i64;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        println!(
            "scale benchmark: {v} virtual x {p} physical nodes, {days} days of 5-minute CPU_USAGE and CPU_PEAK each ({} samples), swarmd ({}) and the client on the same 2 cores",
            2 * v as i64 * steps,
            std::env::var("SWARM_BENCH_SWARMD").unwrap_or_else(|_| common::SWARMD.into())
        );
        // Generation alone, for scale: one step of the whole fleet.
        let ids: Vec<(usize, String)> = (0..v).map(|i| (i, format!("v{i:06}"))).collect();
        let t = Instant::now();
        let b = step_batch(&ids, 0);
        println!("  generation alone                          {:>12.0} samples/s (one thread)", b.samples.len() as f64 / t.elapsed().as_secs_f64());
        drop((b, ids));

        let mut server = common::Server::start(&["--round-interval", "24h", "--http", "127.0.0.1:0"]);
        let ch = server.channel().await;
        register(ch.clone(), v, p).await;
        let empty_rss = rss_bytes(server.pid());
        let last = common::now_ms().div_euclid(STEP_MS) * STEP_MS;
        let (accepted, secs, retried) = ingest(ch.clone(), v, steps, last).await;
        // A refused call may have made part of its samples durable before the
        // refusal; sent again, they overwrite themselves (last write wins).
        assert!(accepted as i64 >= 2 * v as i64 * steps, "{accepted} accepted");
        println!(
            "  ingest, 4 streams, fsync group commit     {:>12.0} samples/s ({secs:.1} s; {retried} calls refused with RESOURCE_EXHAUSTED and sent again)",
            (2 * v as i64 * steps) as f64 / secs
        );
        // The steps that passed while ingesting, so the history ends now
        // (forecasts need a sample within two steps).
        let newest = common::now_ms().div_euclid(STEP_MS) * STEP_MS;
        let extra = (newest - last) / STEP_MS;
        if extra > 0 {
            ingest(ch.clone(), v, extra, newest).await;
        }
        let steps = steps + extra;

        let http = server.http.clone().unwrap();
        // Every sample is retained once; the gauge also counts buffered
        // copies of re-sent samples until they are merged.
        let rows = (2 * v as i64 * steps) as f64;
        let held = scrape(&http, "swarm_series_rows")[0].1;
        assert!(held >= rows, "{held} rows held");
        tokio::time::sleep(Duration::from_secs(2)).await;
        // A snapshot started by the last of the ingest runs on a thread of
        // its own for a while (seconds at 100k): the data dir then holds the
        // old snapshot, the new one and the log, and the thread takes a
        // core from the rounds. Measure once it is written.
        let t = Instant::now();
        while snapshot_in_flight(&server.data_dir) && t.elapsed() < Duration::from_secs(600) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("  waited for a snapshot being written        {:>12.1} s", t.elapsed().as_secs_f64());
        let rss = rss_bytes(server.pid());
        let disk = disk_bytes(&server.data_dir);
        println!("  retained samples                          {rows:>12.0}");
        println!("  swarmd resident memory                    {:>12.2} GB, {:.1} B per retained sample (whole process)", rss / 1e9, rss / rows);
        println!(
            "    of which the samples (above the {:.0} MB of swarmd with the fleet registered) {:.1} B per sample",
            empty_rss / 1e6,
            (rss - empty_rss) / rows
        );
        // (A swarmd from before the gauge, run by scale_baseline.sh, has none.)
        if let Some((_, stored)) = scrape(&http, "swarm_store_bytes{store=\"series_memory\"}").first() {
            println!("    of which the stored samples' layout (swarm_store_bytes{{store=\"series_memory\"}}) {:.2} B per sample", stored / rows);
        }
        println!("  data dir on disk                          {:>12.2} GB, {:.1} B per retained sample", disk as f64 / 1e9, disk as f64 / rows);

        let stage = time_rounds(ch.clone(), &http, rounds, "dry-run round with forecasts").await;
        let forecasts = stage["forecasts"];
        let after = rss_bytes(server.pid());
        println!("  swarmd resident memory after the rounds    {:>12.2} GB, {:.1} B per retained sample (whole process)", after / 1e9, after / rows);
        println!("  forecasts per second in the round         {:>12.0} (one per virtual node: its peak series)", v as f64 / forecasts);

        let mut metrics = pb::metrics_client::MetricsClient::new(ch.clone()).max_decoding_message_size(64 << 20);
        let mut q = Vec::new();
        let mut f = Vec::new();
        for k in 0..21 {
            let id = format!("v{:06}", (k * 7919) % v);
            let req = pb::QuerySeriesRequest {
                entity_kind: pb::EntityKind::Virtual as i32,
                entity_id: id.clone(),
                metric: pb::Metric::CpuUsage as i32,
                from_ms: last - 7 * 86_400_000,
                ..Default::default()
            };
            let (r, s) = timed(metrics.query_series(req)).await;
            assert!(r.unwrap().into_inner().points.len() >= 2000);
            q.push(s);
            let (r, s) = timed(common::forecast(ch.clone(), pb::EntityKind::Virtual, &id, pb::Metric::CpuPeak, 12)).await;
            r.unwrap();
            f.push(s);
        }
        println!("  QuerySeries, one series, a week (median)  {:>12.2} ms", median(q) * 1e3);
        println!("  GetForecast, one series, 12 steps (median){:>12.2} ms", median(f) * 1e3);

        let t = Instant::now();
        server.kill_and_restart();
        println!("  start-up after SIGKILL (snapshot + log)   {:>12.1} s", t.elapsed().as_secs_f64());
        let rows_after = scrape(server.http.as_ref().unwrap(), "swarm_series_rows")[0].1;
        assert_eq!(rows_after, rows, "the restart kept every sample");

        // A round in which the risk-aware rule reads every node's window: it
        // acts only when the controller's other rules propose nothing, which
        // a target limit no host meets ensures here.
        let config = server.data_dir.with_file_name("quiet.toml");
        std::fs::write(&config, "[controller]\nmax_cpu_utilization = 0.01\n").unwrap();
        server.kill();
        let quiet = common::Server::start_in(
            &server.data_dir,
            &["--round-interval", "24h", "--http", "127.0.0.1:0", "--config", config.to_str().unwrap()],
        );
        let ch = quiet.channel().await;
        let now_last = common::now_ms().div_euclid(STEP_MS) * STEP_MS;
        let extra = (now_last - newest) / STEP_MS;
        if extra > 0 {
            ingest(ch.clone(), v, extra, now_last).await;
        }
        let http = quiet.http.clone().unwrap();
        let stage = time_rounds(ch, &http, rounds, "dry-run round the risk-aware rule reads").await;
        assert!(stage["risk"] > 0.0, "the risk-aware rule read its history");
    });
}
