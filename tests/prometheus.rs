//! The Prometheus metrics backend end to end, against a real Prometheus
//! (Debian's package) on loopback: samples written over gRPC reach it by
//! remote-write and are read back by PromQL; an outage skips rounds with
//! the reason and loses nothing; exporter metrics scraped by Prometheus
//! feed forecasts and decisions.

mod common;

use std::process::Command;
use std::time::Duration;

use common::prom::Prometheus;
use common::*;
use swarm_proto::v1 as pb;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn swarmd_on(prom: &Prometheus, extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    seasonal_naive().save(&model).unwrap();
    let model = model.display().to_string();
    let mut args = vec!["--prometheus-url", &prom.url, "--model", &model, "--round-interval", "1h"];
    args.extend_from_slice(extra);
    (Server::start(&args), dir)
}

async fn metrics_health(ch: tonic::transport::Channel) -> i32 {
    let mut h = HealthClient::new(ch);
    h.check(HealthCheckRequest { service: "swarm.v1.Metrics".into() }).await.unwrap().into_inner().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_go_to_prometheus_by_remote_write_and_come_back_by_promql() {
    let prom = Prometheus::start(&[]);
    let (server, _dir) = swarmd_on(&prom, &[]);
    let ch = server.channel().await;
    place(ch.clone(), &[("p1", 16.0), ("p2", 16.0)], &[("v1", 2.0, "p1"), ("v2", 2.0, "p1"), ("v3", 4.0, "p2")]).await;

    // Two hours of 5-minute samples, on the step grid, oldest first.
    let now = now_ms();
    let last = now.div_euclid(STEP) * STEP;
    let value = |v: usize, k: i64| 0.25 * (v as f64 + 1.0) + 0.01 * k as f64;
    let mut batch = Vec::new();
    for k in 0..24i64 {
        let ts = last - (23 - k) * STEP;
        for v in 0..3 {
            batch.push(sample(pb::EntityKind::Virtual, &format!("v{}", v + 1), pb::Metric::CpuUsage, ts, value(v, k)));
        }
        batch.push(sample(pb::EntityKind::Physical, "p1", pb::Metric::CpuUsage, ts, 3.5));
    }
    let r = ingest(ch.clone(), vec![batch[..48].to_vec(), batch[48..].to_vec()]).await.unwrap();
    assert_eq!((r.accepted, r.rejected), (96, 0));

    // They are in Prometheus itself, under Swarm's names...
    let answer = prom.query("count(swarm_cpu)");
    assert_eq!(answer["data"]["result"][0]["value"][1], "4", "{answer}");
    let answer = prom.query(r#"swarm_cpu{swarm_node="v2",swarm_kind="virtual"}"#);
    assert_eq!(answer["data"]["result"][0]["value"][1], format!("{}", value(1, 23)), "{answer}");

    // ...and swarmd reads them back through PromQL with the same values.
    for v in 0..3 {
        let pts = query(ch.clone(), pb::EntityKind::Virtual, &format!("v{}", v + 1), pb::Metric::CpuUsage).await;
        // The cache also holds the steps up to now that Prometheus still
        // answers from the newest sample (its 5-minute lookback).
        let mine: Vec<(i64, f64)> =
            pts.iter().filter(|p| p.timestamp_ms <= last).map(|p| (p.timestamp_ms, p.value)).collect();
        let expected: Vec<(i64, f64)> = (0..24).map(|k| (last - (23 - k) * STEP, value(v, k))).collect();
        assert_eq!(mine, expected, "v{}", v + 1);
    }

    // A sample older than what Prometheus holds for its series is refused
    // by the backend: INVALID_ARGUMENT with its reason, nothing else lost.
    let stale = vec![sample(pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage, last - 30 * 60_000 + 1, 9.0)];
    let e = ingest(ch.clone(), vec![stale]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("out of order") && e.message().contains(&prom.url), "{}", e.message());
    // Swarm's own validation still runs first: unknown ids and NaN are refused per sample.
    let r = ingest(
        ch.clone(),
        vec![vec![
            sample(pb::EntityKind::Virtual, "ghost", pb::Metric::CpuUsage, now, 1.0),
            sample(pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage, now, f64::NAN),
        ]],
    )
    .await
    .unwrap();
    assert_eq!((r.accepted, r.rejected), (0, 2));
    let pts = query(ch.clone(), pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage).await;
    assert!(pts.iter().all(|p| p.value != 9.0 && p.value.is_finite()));
    assert_eq!(metrics_health(ch.clone()).await, 1, "SERVING");
    // The controller reads the same data: p1 is placed with 0.75 cores of v1+v2 and reports 3.5.
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    let round = placement.run_round(pb::RunRoundRequest { dry_run: true }).await.unwrap().into_inner();
    assert_eq!(round.virtual_nodes_evaluated, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_skips_rounds_with_the_reason_and_loses_nothing() {
    let mut prom = Prometheus::start(&[]);
    let (server, _dir) = swarmd_on(&prom, &["--http", "127.0.0.1:0"]);
    let ch = server.channel().await;
    place(ch.clone(), &[("p1", 16.0), ("p2", 16.0)], &[("v1", 2.0, "p1")]).await;
    let last = now_ms().div_euclid(STEP) * STEP;
    let before: Vec<_> = (0..6)
        .map(|k| sample(pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage, last - (5 - k) * STEP, 1.0 + k as f64))
        .collect();
    assert_eq!(ingest(ch.clone(), vec![before]).await.unwrap().accepted, 6);
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap();

    prom.stop();
    let e = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message().starts_with("round skipped: the metrics backend") && e.message().contains(&prom.url),
        "{}",
        e.message()
    );
    // swarmctl says the same, as an unreachable-service failure (exit 3).
    let out = Command::new(&*SWARMCTL).args(["--server", &server.endpoint(), "round"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("round skipped"), "{stderr}");
    // Writes are not acknowledged while nothing can store them...
    let during = vec![sample(pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage, last + 1000, 42.0)];
    let e = ingest(ch.clone(), vec![during]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    // ...health says so, other calls still answer, and /metrics counts it.
    assert_eq!(metrics_health(ch.clone()).await, 2, "NOT_SERVING");
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    assert_eq!(
        topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner().nodes.len(),
        1
    );
    let (_, _, metrics) = http_get(server.http.as_ref().unwrap(), "/metrics", "");
    for line in [
        "swarm_rounds_skipped_total{reason=\"metrics_backend\"} 2",
        "swarm_metrics_backend_up{backend=\"prometheus\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }

    prom.restart();
    let round = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match placement.run_round(pb::RunRoundRequest { dry_run: false }).await {
                Ok(r) => break r.into_inner(),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .expect("rounds resume once Prometheus is back");
    assert_eq!(round.virtual_nodes_evaluated, 1);
    assert_eq!(metrics_health(ch.clone()).await, 1, "SERVING again");
    let pts = query(ch.clone(), pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage).await;
    let kept: Vec<f64> = pts.iter().filter(|p| p.timestamp_ms <= last).map(|p| p.value).collect();
    assert_eq!(kept, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "what was acknowledged before the outage is all there");
    assert!(pts.iter().all(|p| p.value != 42.0), "the refused write did not land");
}
