//! Limits and back-pressure against the real `swarmd`: oversized messages,
//! too many concurrent ingest streams and a stream over its rate are
//! answered RESOURCE_EXHAUSTED (with a retry hint) instead of being
//! buffered; retrying is safe (a resent sample is stored once); the
//! refusals are counted in `/metrics`. Idle streams end, and one
//! connection cannot take every slot.

use crate::common;

use std::time::Duration;

use common::*;
use swarm_proto::v1 as pb;

fn limits_config(dir: &std::path::Path, body: &str) -> String {
    let p = dir.join("swarm.toml");
    std::fs::write(&p, format!("max_batch_samples = 1000\n[limits]\n{body}")).unwrap();
    p.display().to_string()
}

fn batch(id: &str, from_ms: i64, n: usize) -> Vec<pb::Sample> {
    (0..n as i64).map(|k| sample(pb::EntityKind::Virtual, id, pb::Metric::CpuUsage, from_ms + k, 1.0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_streams_and_rates_are_refused_with_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = limits_config(
        dir.path(),
        "max_message_bytes = 65536\nmax_ingest_streams = 2\nmax_stream_samples_per_sec = 1000\nmax_pending_samples = 1000\n",
    );
    let server = Server::start(&["--config", &cfg, "--http", "127.0.0.1:0", "--round-interval", "1h"]);
    let ch = server.channel().await;
    register_cluster(ch.clone(), 1, &[1]).await;
    let now = now_ms() - 60_000;

    // A message over 64 KiB: RESOURCE_EXHAUSTED naming the limit, not buffered.
    let big: Vec<pb::Sample> = batch("v0-0", now, 1000).into_iter().cycle().take(3000).collect();
    let e = ingest(ch.clone(), vec![big]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("limits.max_message_bytes = 65536"), "{}", e.message());
    // A unary call over the limit is refused too.
    let mut t = pb::topology_client::TopologyClient::new(ch.clone());
    let many: Vec<pb::VirtualNode> = (0..3000).map(|i| virt(&format!("fat-{i:05}"), 1.0)).collect();
    let e = t.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: many }).await.unwrap_err();
    assert!(matches!(e.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted), "{e:?}");
    assert!(e.message().contains("too large"), "{}", e.message());

    // Two streams held open: a third is refused at once, with a retry hint.
    let (tx1, rx1) = tokio::sync::mpsc::channel::<pb::IngestBatch>(1);
    let (tx2, rx2) = tokio::sync::mpsc::channel::<pb::IngestBatch>(1);
    let mut m1 = pb::metrics_client::MetricsClient::new(ch.clone());
    let mut m2 = pb::metrics_client::MetricsClient::new(ch.clone());
    let h1 = tokio::spawn(async move { m1.ingest(tokio_stream::wrappers::ReceiverStream::new(rx1)).await });
    let h2 = tokio::spawn(async move { m2.ingest(tokio_stream::wrappers::ReceiverStream::new(rx2)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = ingest(ch.clone(), vec![batch("v0-0", now, 10)]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("too many concurrent ingest calls (the limit is 2"), "{}", e.message());
    assert_eq!(e.metadata().get("retry-after-ms").and_then(|v| v.to_str().ok()), Some("1000"));
    tx1.send(pb::IngestBatch { samples: batch("v0-0", now, 10) }).await.unwrap();
    drop((tx1, tx2));
    assert_eq!(h1.await.unwrap().unwrap().into_inner().accepted, 10);
    assert_eq!(h2.await.unwrap().unwrap().into_inner().accepted, 0);

    // A stream over 1,000 samples/s: the first 1,000 pass, the next batch
    // at once is refused; the client retries the whole stream a little
    // later, and every sample is stored exactly once.
    let first = batch("v0-0", now + 1000, 1000);
    let second = batch("v0-0", now + 2000, 1000);
    let e = ingest(ch.clone(), vec![first.clone(), second.clone()]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("more than 1000 samples/s"), "{}", e.message());
    let mut accepted = 0;
    for b in [first, second] {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        accepted += ingest(ch.clone(), vec![b]).await.unwrap().accepted;
    }
    assert_eq!(accepted, 2000);
    let stored = query(ch.clone(), pb::EntityKind::Virtual, "v0-0", pb::Metric::CpuUsage).await;
    let ts: std::collections::BTreeSet<i64> = stored.iter().map(|p| p.timestamp_ms).collect();
    assert_eq!(stored.len(), ts.len(), "one point per timestamp");
    // Everything acknowledged is there: the held stream's 10 and both batches.
    for t in (now..now + 10).chain(now + 1000..now + 3000) {
        assert!(ts.contains(&t), "acknowledged sample at {t} missing");
    }

    // Counted for operators.
    let base = server.http.clone().unwrap();
    let (_, _, text) = http_get(&base, "/metrics", "");
    for line in [
        "swarm_ingest_overload_total{source=\"grpc\",reason=\"streams\"} 1",
        "swarm_ingest_overload_total{source=\"grpc\",reason=\"rate\"} 1",
        "swarm_ingest_pending_samples 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

#[test]
fn limits_are_validated_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = limits_config(dir.path(), "max_pending_samples = 10\n");
    let out = std::process::Command::new(SWARMD)
        .args(["--listen", "127.0.0.1:0", "--config", &cfg, "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_pending_samples (10) must be at least max_batch_samples (1000)"), "{err}");
}

/// Streams that open and never write (a buggy or hostile client) end after
/// `stream_idle_timeout`, and one connection gets at most its share of the
/// slots: legitimate writers are not locked out for long, and never by a
/// single connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_end_and_one_connection_cannot_take_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = limits_config(
        dir.path(),
        "max_ingest_streams = 4\nmax_ingest_streams_per_connection = 2\nstream_idle_timeout = \"2s\"\n",
    );
    let server = Server::start(&["--config", &cfg, "--http", "127.0.0.1:0", "--round-interval", "1h"]);
    register_cluster(server.channel().await, 1, &[1]).await;
    let now = now_ms() - 60_000;
    type Held = (
        tokio::sync::mpsc::Sender<pb::IngestBatch>,
        tokio::task::JoinHandle<Result<tonic::Response<pb::IngestResponse>, tonic::Status>>,
    );
    let hold = |ch: tonic::transport::Channel| -> Held {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::IngestBatch>(1);
        let mut m = pb::metrics_client::MetricsClient::new(ch);
        (tx, tokio::spawn(async move { m.ingest(tokio_stream::wrappers::ReceiverStream::new(rx)).await }))
    };
    // Connection A holds its two slots; the first of them wrote one batch.
    let a = server.channel().await;
    let (tx_a1, h_a1) = hold(a.clone());
    tx_a1.send(pb::IngestBatch { samples: batch("v0-0", now, 10) }).await.unwrap();
    let (_tx_a2, h_a2) = hold(a.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = ingest(a.clone(), vec![batch("v0-0", now + 100, 10)]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("on this connection"), "{}", e.message());
    // Another connection still writes.
    let b = server.channel().await;
    assert_eq!(ingest(b.clone(), vec![batch("v0-0", now + 200, 10)]).await.unwrap().accepted, 10);
    // C takes the last two slots: now everyone is refused ...
    let c = server.channel().await;
    let (_tx_c1, h_c1) = hold(c.clone());
    let (_tx_c2, h_c2) = hold(c.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = ingest(b.clone(), vec![batch("v0-0", now + 300, 10)]).await.unwrap_err();
    assert!(e.message().contains("limits.max_ingest_streams)"), "{}", e.message());
    // ... until the idle streams are ended, saying why and what was kept.
    for h in [h_a1, h_a2, h_c1, h_c2] {
        let e = tokio::time::timeout(Duration::from_secs(10), h).await.expect("ended").unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
        assert!(e.message().contains("limits.stream_idle_timeout"), "{}", e.message());
    }
    drop(tx_a1);
    assert_eq!(ingest(b.clone(), vec![batch("v0-0", now + 300, 10)]).await.unwrap().accepted, 10);
    // The batch the idle stream sent before it went quiet is stored.
    let stored = query(b.clone(), pb::EntityKind::Virtual, "v0-0", pb::Metric::CpuUsage).await;
    assert!((now..now + 10).all(|t| stored.iter().any(|p| p.timestamp_ms == t)), "{stored:?}");
    let (_, _, text) = http_get(server.http.as_ref().unwrap(), "/metrics", "");
    for line in [
        "swarm_ingest_overload_total{source=\"grpc\",reason=\"connection\"} 1",
        "swarm_ingest_overload_total{source=\"grpc\",reason=\"streams\"} 1",
        "swarm_ingest_overload_total{source=\"grpc\",reason=\"idle\"} 4",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}
