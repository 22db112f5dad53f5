//! Ingest throughput over real gRPC on loopback, with the real write-ahead
//! log (fsync on), plus a breakdown of where the time goes.
//!
//! Run: `cargo bench -p swarm-service --bench ingest`
//! (env `SAMPLES` = total samples per run, default 4,000,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use swarm_proto::v1 as pb;
use swarm_service::clock::{Clock, SystemClock};
use swarm_service::config::Config;
use swarm_service::series::Frames;
use swarm_service::state::Swarm;

const ENTITIES: usize = 1000;

fn batch(start: usize, n: usize, now: i64) -> pb::IngestBatch {
    pb::IngestBatch {
        samples: (start..start + n)
            .map(|i| pb::Sample {
                entity_kind: pb::EntityKind::Virtual as i32,
                entity_id: format!("vm-{:05}", i % ENTITIES),
                metric: pb::Metric::CpuUsage as i32,
                timestamp_ms: now - 3_600_000 + (i / ENTITIES) as i64,
                value: (i % 97) as f64 * 0.01,
                location: String::new(),
            })
            .collect(),
    }
}

async fn end_to_end(total: usize, streams: usize, batch_size: usize, fsync: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        data_dir: dir.path().to_owned(),
        fsync,
        round_interval: Duration::from_secs(3600),
        ..Config::default()
    };
    let (swarm, _) = Swarm::open(cfg, Arc::new(SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(swarm_service::grpc::serve(listener, swarm, async {
        let _ = stopped.await;
    }));
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    let nodes = (0..ENTITIES)
        .map(|i| pb::VirtualNode {
            id: format!("vm-{i:05}"),
            requested: Some(pb::Resources { cpu_cores: 1.0, ..Default::default() }),
            ..Default::default()
        })
        .collect();
    topo.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes }).await.unwrap();
    let now = SystemClock.now_ms();
    let per_stream = total / streams;
    // Batches are built before the clock starts: we measure the server, not the generator.
    let prepared: Vec<Vec<pb::IngestBatch>> = (0..streams)
        .map(|s| {
            (0..per_stream / batch_size).map(|b| batch(s * per_stream + b * batch_size, batch_size, now)).collect()
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for batches in prepared {
        let ch = ch.clone();
        tasks.push(tokio::spawn(async move {
            let mut m = pb::metrics_client::MetricsClient::new(ch).max_encoding_message_size(64 << 20);
            m.ingest(tokio_stream::iter(batches)).await.unwrap().into_inner().accepted
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(accepted as usize, per_stream / batch_size * batch_size * streams);
    let _ = stop.send(());
    drop((topo, ch));
    server.await.unwrap().unwrap();
    accepted as f64 / secs
}

fn stage(name: &str, n: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    println!("  {name:<44} {:>12.0} samples/s", rate);
    rate
}

fn main() {
    let total: usize = std::env::var("SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(4_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "ingest benchmark: {total} samples, {ENTITIES} entities, real gRPC on loopback, client and server on the same 2 cores"
    );
    println!("end to end (accepted samples per second until every response is back):");
    for (streams, batch_size, fsync) in [(1, 10_000, true), (4, 10_000, true), (4, 50_000, true), (4, 10_000, false)] {
        let rate = rt.block_on(end_to_end(total, streams, batch_size, fsync));
        println!("  streams={streams} batch={batch_size:<6} fsync={:<5} {:>12.0} samples/s", fsync, rate);
    }
    println!("where the time goes (single thread, {total} samples):");
    let now = SystemClock.now_ms();
    let batches: Vec<pb::IngestBatch> = (0..total / 10_000).map(|b| batch(b * 10_000, 10_000, now)).collect();
    let mut encoded = Vec::new();
    stage("protobuf encode (client side)", total, || {
        encoded = batches.iter().map(|b| b.encode_to_vec()).collect::<Vec<_>>();
    });
    let mut decoded = Vec::new();
    stage("protobuf decode", total, || {
        decoded = encoded.iter().map(|e| pb::IngestBatch::decode(e.as_slice()).unwrap()).collect::<Vec<_>>();
    });
    let mut topo = swarm_core::domain::Topology::default();
    for i in 0..ENTITIES {
        let v = swarm_core::domain::VirtualNode {
            id: swarm_core::domain::NodeId::parse(&format!("vm-{i:05}")).unwrap(),
            requested: Default::default(),
            state_size_bytes: 0,
            group: None,
            pinned: None,
            anti_affinity_group: None,
            placement: None,
        };
        topo.virtual_nodes.insert(v.id.clone(), v);
    }
    let limits = swarm_service::validate::SampleLimits {
        now_ms: now,
        max_future_skew_ms: 300_000,
        oldest_ms: 0,
        cpu_multiple: 4.0,
        memory_multiple: 2.0,
    };
    let topo = Arc::new(topo);
    let mut cache = swarm_service::validate::EntityCache::default();
    let mut valid = Vec::new();
    stage("validation (ids, values, timestamps)", total, || {
        for b in &decoded {
            for s in &b.samples {
                valid.push(swarm_service::validate::sample(s, &topo, &limits, &mut cache).unwrap());
            }
        }
    });
    let mut wal = Vec::new();
    stage("WAL record encoding + CRC", total, || {
        for c in valid.chunks(10_000) {
            swarm_service::series::codec::encode_record(c, &mut wal);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    stage("WAL write + fdatasync (one group commit per 10k)", total, || {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.path().join("w")).unwrap();
        for c in wal.chunks(wal.len() / (total / 10_000).max(1) + 1) {
            f.write_all(c).unwrap();
            f.sync_data().unwrap();
        }
    });
    let mut frames = Frames::default();
    stage("Polars frames: buffer + compaction", total, || {
        for c in valid.chunks(10_000) {
            frames.insert(c, 0).unwrap();
        }
        frames.compact_all(0).unwrap();
    });
}
