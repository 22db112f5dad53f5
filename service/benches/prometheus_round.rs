//! Rounds over a fleet whose metrics live in a real Prometheus (Debian's
//! package, on loopback): how long the first fill of the read-through cache
//! takes, and a steady-state round (which reads only the new steps), beside
//! the same round on the embedded store with the same samples (baseline, in
//! the same process).
//!
//! Run: `cargo bench -p swarm-service --bench prometheus_round`
//! (env `VIRTUAL` = virtual nodes, default 10,000; a tenth as many physical
//! nodes; `HOURS` of 5-minute history, default 24).

#[path = "../../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_proto::v1 as pb;
use swarm_service::clock::SystemClock;
use swarm_service::config::Config;
use swarm_service::state::Swarm;

struct Running {
    swarm: Swarm,
    ch: tonic::transport::Channel,
    stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(metrics: swarm_service::prometheus::MetricsConfig) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    common::seasonal_naive().save(&model).unwrap();
    let cfg = Config {
        data_dir: dir.path().join("data"),
        round_interval: Duration::from_secs(3600),
        model: Some(model),
        fsync: false,
        metrics,
        ..Config::default()
    };
    let (swarm, _) = Swarm::open(cfg, Arc::new(SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(swarm_service::grpc::serve(listener, swarm.clone(), async {
        let _ = stopped.await;
    }));
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    Running { swarm, ch, stop, _dir: dir }
}

/// Registers the fleet: 16-core physical nodes, 1–8-core virtual nodes round-robin.
async fn register(ch: tonic::transport::Channel, v: usize, p: usize) {
    let phys: Vec<(String, f64)> = (0..p).map(|i| (format!("p{i:05}"), 16.0)).collect();
    let virt: Vec<(String, f64, String)> =
        (0..v).map(|i| (format!("v{i:06}"), (1 + i % 8) as f64, phys[i % p].0.clone())).collect();
    let phys_ref: Vec<(&str, f64)> = phys.iter().map(|(id, c)| (id.as_str(), *c)).collect();
    let virt_ref: Vec<(&str, f64, &str)> = virt.iter().map(|(id, c, h)| (id.as_str(), *c, h.as_str())).collect();
    common::place(ch, &phys_ref, &virt_ref).await;
}

/// One step of CPU usage for every virtual node (a daily wave, per-node phase).
fn step_samples(v: usize, ts: i64) -> Vec<pb::Sample> {
    (0..v)
        .map(|i| {
            let cores = (1 + i % 8) as f64;
            let phase = (ts as f64 / 86_400_000.0 + i as f64 / 97.0) * std::f64::consts::TAU;
            let value = cores * (0.45 + 0.3 * phase.sin());
            common::sample(pb::EntityKind::Virtual, &format!("v{i:06}"), pb::Metric::CpuUsage, ts, value)
        })
        .collect()
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, f64) {
    let t = Instant::now();
    let r = f.await;
    (r, t.elapsed().as_secs_f64())
}

/// The median of three dry-run rounds, a little over a second apart (so a
/// Prometheus-backed one reads the backend each time, as a real round would).
async fn median_round(swarm: &Swarm) -> f64 {
    let mut t = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (r, s) = timed(swarm.run_round(true)).await;
        r.unwrap();
        t.push(s);
    }
    t.sort_by(f64::total_cmp);
    t[1]
}

fn main() {
    let v: usize = std::env::var("VIRTUAL").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let hours: i64 = std::env::var("HOURS").ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    let p = (v / 10).max(1);
    let steps = hours * 12;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let prom = common::prom::Prometheus::start(&[]);
        println!(
            "prometheus round benchmark: {v} virtual x {p} physical nodes, {hours} h of 5-minute CPU per virtual node ({} samples), Prometheus 2.42 and swarmd on the same 2 cores",
            v as i64 * (steps + 1)
        );
        let last = common::now_ms().div_euclid(common::STEP) * common::STEP;
        let history: Vec<Vec<pb::Sample>> =
            (0..=steps).map(|k| step_samples(v, last - (steps - k) * common::STEP)).collect();

        // The writing swarmd: remote-writes the history in time order (Prometheus refuses older-than-newest).
        let metrics = swarm_service::prometheus::MetricsConfig {
            backend: swarm_service::prometheus::Backend::Prometheus,
            url: Some(prom.url.clone()),
            ..Default::default()
        };
        let writer = start(metrics.clone()).await;
        register(writer.ch.clone(), v, p).await;
        let total: usize = history.iter().map(|b| b.len()).sum();
        let (r, secs) = timed(common::ingest(writer.ch.clone(), history.clone())).await;
        assert_eq!(r.unwrap().accepted as usize, total);
        println!("  remote-write of the history (Ingest -> Prometheus)  {secs:>8.2} s  ({:.0} samples/s)", total as f64 / secs);
        let _ = writer.stop.send(());

        // A fresh swarmd on the same Prometheus: the first round fills the cache.
        let reader = start(metrics).await;
        register(reader.ch.clone(), v, p).await;
        let (r, fill) = timed(reader.swarm.run_round(true)).await;
        let r = r.unwrap();
        println!("  first round (cache filled from Prometheus)           {fill:>8.2} s  ({} evaluated)", r.evaluated);
        let steady = median_round(&reader.swarm).await;
        println!("  steady-state round (median of 3; re-reads 10 min)    {steady:>8.2} s");
        let _ = reader.stop.send(());

        // Baseline: the same samples in the embedded store.
        let embedded = start(Default::default()).await;
        register(embedded.ch.clone(), v, p).await;
        common::ingest(embedded.ch.clone(), history).await.unwrap();
        let base = median_round(&embedded.swarm).await;
        println!("  embedded-store round, same samples (median of 3)     {base:>8.2} s");
        println!(
            "  steady-state round / embedded round: {:.2}x; its Prometheus reads: {:.2} s",
            steady / base,
            (steady - base).max(0.0)
        );
        let _ = embedded.stop.send(());
    });
}
