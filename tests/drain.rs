//! Graceful drain, in process with an injected clock: shutdown lets an
//! in-flight ingest stream finish (and makes it durable), ends watch
//! streams, and `serve` returns.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{physical, sample};
use swarm_proto::v1 as pb;
use swarm_service::clock::ManualClock;
use swarm_service::config::Config;
use swarm_service::state::Swarm;

const T0: i64 = 1_800_000_000_000;

fn config(dir: &std::path::Path) -> Config {
    Config { data_dir: dir.to_owned(), round_interval: Duration::from_secs(3600), ..Config::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_calls() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (swarm, _) = Swarm::open(config(dir.path()), Arc::new(clock.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(swarm_service::grpc::serve(listener, swarm, async {
        let _ = stop_rx.await;
    }));
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    topo.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![physical("p0", 8.0)] }).await.unwrap();

    // The injected clock decides what is too old or too far in the future.
    let old = sample(pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage, T0 - 16 * 86_400_000, 1.0);
    let future = sample(pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage, T0 + 600_000, 1.0);
    let r = common::ingest(ch.clone(), vec![vec![old, future]]).await.unwrap();
    assert_eq!(r.rejected, 2);
    clock.advance(700_000);
    let future_now_ok = sample(pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage, T0 + 600_000, 1.0);
    assert_eq!(common::ingest(ch.clone(), vec![vec![future_now_ok]]).await.unwrap().accepted, 1);

    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    let mut watch =
        placement.watch_decisions(pb::WatchDecisionsRequest { from_sequence: 0 }).await.unwrap().into_inner();

    // An ingest stream that is still open when shutdown begins.
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::IngestBatch>(4);
    let mut metrics = pb::metrics_client::MetricsClient::new(ch.clone());
    let in_flight = tokio::spawn(async move { metrics.ingest(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    let batch = |from: i64| pb::IngestBatch {
        samples: (0..1000)
            .map(|k| sample(pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage, T0 + from + k, 2.0))
            .collect(),
    };
    tx.send(batch(0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(batch(10_000)).await.unwrap();
    drop(tx);
    let resp =
        tokio::time::timeout(Duration::from_secs(10), in_flight).await.expect("ingest finishes").unwrap().unwrap();
    assert_eq!(resp.into_inner().accepted, 2000, "the in-flight stream was served to its end");
    let end = tokio::time::timeout(Duration::from_secs(10), watch.message()).await.expect("watch ends on shutdown");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    drop((topo, placement, watch, ch));
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("serve returns").unwrap().unwrap();

    // Everything acknowledged is durable.
    let (swarm, report) = Swarm::open(config(dir.path()), Arc::new(clock.clone())).unwrap();
    assert_eq!(report.series.rows, 2001);
    assert_eq!(report.physical_nodes, 1);
    swarm.close().await;
}
