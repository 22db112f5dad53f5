//! `swarmd --demo`: the generated cluster produces decisions within seconds,
//! predictive ones among them (it starts with a week of history), and the
//! reference orchestrator carries them out through the migration protocol
//! (shadow, verify, cut over).

use crate::common;

use std::time::Duration;

use common::*;
use swarm_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_produces_decisions_that_get_applied() {
    let server = Server::start(&["--demo", "--round-interval", "3s", "--http", "127.0.0.1:0"]);
    let ch = server.channel().await;
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    let mut watch =
        placement.watch_decisions(pb::WatchDecisionsRequest { from_sequence: 1 }).await.unwrap().into_inner();
    let d = tokio::time::timeout(Duration::from_secs(60), watch.message())
        .await
        .expect("a decision within a minute")
        .unwrap()
        .expect("stream open");
    assert_eq!(d.sequence, 1);
    assert_ne!(d.from_node_id, d.to_node_id);
    assert!(d.gain > 0.1, "{d:?}");
    // The demo's orchestrator shadows, verifies and cuts over; then the placement moves.
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    // The agent's steps run on the demo's clock, which a busy 2-core machine
    // slows: wait up to a minute (it takes a few seconds when idle).
    let mut applied = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let vs = topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner().nodes;
        assert_eq!(vs.len(), 200);
        let phys = topo.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.unwrap().into_inner().nodes;
        assert_eq!(phys.len(), 20);
        if vs.iter().any(|v| v.id == d.virtual_node_id && v.placement == d.to_node_id) {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(applied, "decision {} was not carried out", d.sequence);
    let mut m = pb::migrations_client::MigrationsClient::new(ch);
    let mig = m.get_migration(pb::GetMigrationRequest { id: format!("m{}", d.sequence) }).await.unwrap().into_inner();
    let mig = mig.migration.unwrap();
    assert_eq!(mig.phase, pb::MigrationPhase::Completed as i32);
    assert_eq!(mig.orchestrator_id, "demo-agent");
    let seen: Vec<i32> = mig.history.iter().map(|t| t.phase).collect();
    assert!(
        seen.contains(&(pb::MigrationPhase::Shadowing as i32)) && seen.contains(&(pb::MigrationPhase::Verified as i32))
    );
}

/// The demo shows prediction from its first minute: it writes a week of
/// history at start, so `swarmctl forecast` answers at once, and its daily
/// peak (in 20 min) makes the controller move ahead of it: a PREDICTIVE
/// decision within 60 s, whose reason names the forecast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_forecasts_and_decides_ahead_of_its_daily_peak_within_a_minute() {
    let server = Server::start(&["--demo", "--round-interval", "3s", "--http", "127.0.0.1:0"]);
    let ch = server.channel().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    let mut watch =
        placement.watch_decisions(pb::WatchDecisionsRequest { from_sequence: 1 }).await.unwrap().into_inner();
    let mut seen = Vec::new();
    let predictive = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let d = tokio::time::timeout(left, watch.message())
            .await
            .unwrap_or_else(|_| panic!("no predictive decision within 60 s; saw {seen:#?}"))
            .unwrap()
            .expect("stream open");
        if d.kind == pb::DecisionKind::Predictive as i32 {
            break d;
        }
        seen.push(d.reason);
    };
    assert!(predictive.reason.contains("forecast upper bound"), "{}", predictive.reason);
    assert!(!predictive.reason.contains("in 0 min"), "{}", predictive.reason);
    assert!(std::time::Instant::now() < deadline);
    // The dashboard's decisions carry when the overload was expected (the
    // page marks predictive decisions with it).
    let (status, _, body) = http_get(server.http.as_ref().unwrap(), "/api/decisions?limit=1000", "");
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = listed.as_array().unwrap().iter().find(|d| d["sequence"] == predictive.sequence).expect(&body).clone();
    assert_eq!(row["expected_overload_at_ms"], predictive.expected_overload_at_ms, "{row}");
    assert_eq!(row["kind"], "DECISION_KIND_PREDICTIVE", "{row}");
    let out = server.ctl(&["--output", "json", "forecast", "v000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let points = v["points"].as_array().expect("forecast points");
    assert!(
        !points.is_empty() && points.iter().all(|p| p["upper"].as_f64().unwrap() >= p["mean"].as_f64().unwrap()),
        "{v}"
    );
}
