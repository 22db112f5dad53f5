//! End to end: the outcome of every completed move, measured from the
//! samples the test drove before and after the cutover, stored with the
//! migration (a restart keeps it), and shown by ListDecisions, swarmctl
//! (`decisions list` verdicts, `decisions show`), the dashboard's JSON and
//! `/metrics`.

use crate::common;

use std::time::Duration;

use common::*;
use swarm_proto::v1 as pb;
use tonic::transport::Channel;

use pb::MigrationPhase as P;

type Mig = pb::migrations_client::MigrationsClient<Channel>;

const HEALTHY: pb::ShadowHealth =
    pb::ShadowHealth { latency_ms: 10.0, original_latency_ms: 10.0, error_rate: 0.0, lag_ms: 5.0 };

/// Takes migration `seq` through the protocol to completed; returns its cutover time.
async fn complete(m: &mut Mig, seq: u64) -> i64 {
    let id = format!("m{seq}");
    let a = m
        .accept_migration(pb::AcceptMigrationRequest {
            decision_sequence: seq,
            orchestrator_id: "orch".into(),
            request_id: format!("a{seq}"),
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    let mut report = |phase: P, health: Option<pb::ShadowHealth>| {
        n += 1;
        let req = pb::ReportProgressRequest {
            migration_id: id.clone(),
            epoch: a.epoch,
            phase: phase as i32,
            health,
            request_id: format!("{id}-{n}"),
        };
        let mut m = m.clone();
        async move { m.report_progress(req).await.unwrap().into_inner().instruction }
    };
    report(P::ShadowStarting, None).await;
    report(P::Shadowing, Some(HEALTHY)).await;
    // Past the verify window (300 ms in this config), healthy shadowing is verified.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(report(P::Shadowing, Some(HEALTHY)).await, pb::Instruction::CutOver as i32);
    report(P::CuttingOver, None).await;
    assert_eq!(report(P::Completed, None).await, pb::Instruction::Done as i32);
    let done = m.get_migration(pb::GetMigrationRequest { id }).await.unwrap().into_inner().migration.unwrap();
    done.history.iter().find(|t| t.phase == P::Completed as i32).unwrap().at_ms
}

async fn decisions(ch: Channel) -> Vec<pb::Decision> {
    let mut p = pb::placement_client::PlacementClient::new(ch);
    p.list_decisions(pb::ListDecisionsRequest { from_sequence: 1, limit: 100 }).await.unwrap().into_inner().decisions
}

fn verdict(d: &pb::Decision) -> pb::Verdict {
    pb::Verdict::try_from(d.outcome.as_ref().expect("ListDecisions fills the outcome").verdict).unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_measured_from_the_load_before_and_after_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("swarm.toml");
    // Windows of 3 s each side (the default is the controller's horizon).
    std::fs::write(
        &cfg,
        "[migration]\nverify_window = \"300ms\"\ntick = \"100ms\"\n[controller]\nmax_in_flight_per_node = 10\n[outcomes]\nwindow = \"3s\"\nmargin = 0.1\nmin_points = 3\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let args = ["--round-interval", "1h", "--http", "127.0.0.1:0", "--config", cfg.to_str().unwrap()];
    let mut server = Server::start_in(data.path(), &args);
    let ch = server.channel().await;
    place(
        ch.clone(),
        &[("src", 10.0), ("t0", 10.0), ("t1", 10.0)],
        &[("v0", 2.0, "src"), ("v1", 1.5, "src"), ("v2", 1.0, "src")],
    )
    .await;
    // Draining src makes the round move all three.
    let mut t = pb::topology_client::TopologyClient::new(ch.clone());
    let mut src = physical("src", 10.0);
    src.state = pb::PhysicalNodeState::Draining as i32;
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![src] }).await.unwrap();
    let mut p = pb::placement_client::PlacementClient::new(ch.clone());
    let ds = p.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner().decisions;
    assert_eq!(ds.len(), 3, "{ds:?}");
    let seq = |v: &str| ds.iter().find(|d| d.virtual_node_id == v).unwrap().sequence;

    // Before anything moved: pending.
    assert!(decisions(ch.clone()).await.iter().all(|d| verdict(d) == pb::Verdict::Pending));
    let mut m = Mig::new(ch.clone());
    m.reject_migration(pb::RejectMigrationRequest {
        decision_sequence: seq("v2"),
        orchestrator_id: "orch".into(),
        reason: "not now".into(),
    })
    .await
    .unwrap();
    let c0 = complete(&mut m, seq("v0")).await;
    let c1 = complete(&mut m, seq("v1")).await;
    assert!(c1 - c0 < 1000, "both cutovers fall inside each other's windows: {c0} {c1}");

    // The load around the cutovers: src at 95 % before and 75 % after;
    // the targets at 20 % then 40 %; v0 keeps its 10 ms latency, v1's doubles.
    let (before, after) = ([c0 - 2000, c0 - 1200, c0 - 400], [c1 + 400, c1 + 1200, c1 + 2000]);
    let mut batch = Vec::new();
    let series = |kind, id: &str, metric, b: f64, a: f64| {
        let mut out: Vec<pb::Sample> = before.iter().map(|&ts| sample(kind, id, metric, ts, b)).collect();
        out.extend(after.iter().map(|&ts| sample(kind, id, metric, ts, a)));
        out
    };
    use pb::{EntityKind as K, Metric as M};
    batch.extend(series(K::Physical, "src", M::CpuUsage, 9.5, 7.5));
    for t in ["t0", "t1"] {
        batch.extend(series(K::Physical, t, M::CpuUsage, 2.0, 4.0));
    }
    batch.extend(series(K::Virtual, "v0", M::CpuUsage, 2.0, 2.0));
    batch.extend(series(K::Virtual, "v1", M::CpuUsage, 1.5, 1.5));
    batch.extend(series(K::Virtual, "v0", M::LatencyMs, 10.0, 10.0));
    batch.extend(series(K::Virtual, "v1", M::LatencyMs, 10.0, 20.0));
    let r = ingest(ch.clone(), vec![batch]).await.unwrap();
    assert_eq!(r.rejected, 0, "{r:?}");

    // Still pending until the window after the cutover (and the grace) passed.
    let ds = decisions(ch.clone()).await;
    let by = |ds: &[pb::Decision], v: &str| ds.iter().find(|d| d.virtual_node_id == v).unwrap().clone();
    assert_eq!(verdict(&by(&ds, "v0")), pb::Verdict::Pending);
    assert_eq!(by(&ds, "v0").outcome.unwrap().cutover_at_ms, c0);
    assert_eq!(verdict(&by(&ds, "v2")), pb::Verdict::NotMoved);
    let ds = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let ds = decisions(ch.clone()).await;
            if ds.iter().all(|d| verdict(d) != pb::Verdict::Pending) {
                break ds;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("outcomes are measured once the windows passed");

    // v0: without the move src would have peaked at 7.5 + 2 = 95 %; it
    // peaked at 75 %: an overload prevented, and the relief came true.
    let o0 = by(&ds, "v0").outcome.unwrap();
    assert_eq!(verdict(&by(&ds, "v0")), pb::Verdict::Helped, "{}", o0.summary);
    assert!(o0.overload_prevented);
    assert!(close(o0.source_peak_without_move, 0.95), "{o0:?}");
    assert!(close(o0.predicted_relief, 0.2) && close(o0.realised_relief, 0.2), "{o0:?}");
    let (b, a) = (o0.before.unwrap(), o0.after.unwrap());
    assert!(close(b.source_peak, 0.95) && close(a.source_peak, 0.75), "{b:?} {a:?}");
    assert!(close(b.target_utilisation, 0.2) && close(a.target_utilisation, 0.4), "{b:?} {a:?}");
    assert!(close(b.latency_ms, 10.0) && close(a.latency_ms, 10.0));
    assert_eq!((o0.cutover_at_ms, o0.window_ms), (c0, 3000));
    assert!(o0.measured_at_ms >= c0 + 3000);
    // v1: its latency doubled on the new node.
    let o1 = by(&ds, "v1").outcome.unwrap();
    assert_eq!(verdict(&by(&ds, "v1")), pb::Verdict::Hurt, "{}", o1.summary);
    assert!(o1.summary.contains("latency rose 100 %"), "{}", o1.summary);
    // The rejected one did not move.
    assert_eq!(verdict(&by(&ds, "v2")), pb::Verdict::NotMoved);

    // swarmctl: a verdict column, and the before/after of one decision.
    let ctl = |args: &[&str]| {
        let out = server.ctl(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, list, err) = ctl(&["decisions", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(list.lines().next().unwrap().contains("VERDICT"), "{list}");
    for (v, verdict) in [("v0", "helped"), ("v1", "hurt"), ("v2", "not moved")] {
        assert!(list.lines().any(|l| l.contains(&format!("{v} ")) && l.contains(verdict)), "{v} {verdict}:\n{list}");
    }
    let (code, show, err) = ctl(&["decisions", "show", &seq("v0").to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(show.contains("outcome: helped: prevented an overload"), "{show}");
    assert!(show.contains("source relief: predicted 20.0 %, realised 20.0 %"), "{show}");
    assert!(
        show.lines()
            .any(|l| l.starts_with("source utilisation (peak)") && l.contains("95.0 %") && l.contains("75.0 %")),
        "{show}"
    );
    let (code, json, _) = ctl(&["--output", "json", "decisions", "show", &seq("v1").to_string()]);
    assert_eq!(code, Some(0));
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(j["outcome"]["verdict"], "hurt", "{j}");
    assert_eq!(j["outcome"]["after"]["latency_ms"], 20.0, "{j}");
    let (code, _, err) = ctl(&["decisions", "show", "999"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("NOT_FOUND") && err.contains("decision 999"), "{err}");

    // The dashboard's decisions and /metrics.
    let http = server.http.clone().unwrap();
    let (status, _, body) = http_get(&http, "/api/decisions?limit=10", "");
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = |v: &str| page.as_array().unwrap().iter().find(|d| d["virtual_node_id"] == v).unwrap().clone();
    assert_eq!(row("v1")["outcome"], "hurt");
    assert!(row("v0")["outcome_summary"].as_str().unwrap().contains("prevented"));
    let (_, _, metrics) = http_get(&http, "/metrics", "");
    for line in [
        "swarm_decision_outcomes{kind=\"evacuation\",verdict=\"helped\"} 1",
        "swarm_decision_outcomes{kind=\"evacuation\",verdict=\"hurt\"} 1",
        "swarm_decision_outcomes_pending 0",
        "swarm_decision_outcome_helped_ratio{kind=\"evacuation\"} 0.5",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }

    // Durable: after a restart the same outcomes are there, not re-measured.
    server.kill_and_restart();
    let after_restart = decisions(server.channel().await).await;
    assert_eq!(by(&after_restart, "v0").outcome, by(&ds, "v0").outcome);
    assert_eq!(by(&after_restart, "v1").outcome, by(&ds, "v1").outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_that_hurt_is_proposed_back_once_and_not_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("swarm.toml");
    // Micro-migrations off (gain threshold 1) and a short cooldown, so the
    // only rule that can move v again is the move back.
    std::fs::write(
        &cfg,
        "[migration]\nverify_window = \"300ms\"\ntick = \"100ms\"\n[controller]\ngain_threshold = 1.0\ncooldown = \"1s\"\n[outcomes]\nwindow = \"2s\"\n",
    )
    .unwrap();
    let server = Server::start(&["--round-interval", "1h", "--config", cfg.to_str().unwrap()]);
    let ch = server.channel().await;
    place(ch.clone(), &[("a", 10.0), ("b", 10.0)], &[("v", 1.0, "a")]).await;
    // Maintenance on a moves v to b; a is back in service right after.
    let mut t = pb::topology_client::TopologyClient::new(ch.clone());
    let mut a = physical("a", 10.0);
    a.state = pb::PhysicalNodeState::Draining as i32;
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![a.clone()] }).await.unwrap();
    let mut p = pb::placement_client::PlacementClient::new(ch.clone());
    let first = p.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner().decisions;
    assert_eq!(first.len(), 1, "{first:?}");
    a.state = pb::PhysicalNodeState::Active as i32;
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![a] }).await.unwrap();
    let mut m = Mig::new(ch.clone());
    let cut = complete(&mut m, first[0].sequence).await;

    // On b, v's latency triples.
    use pb::{EntityKind as K, Metric as M};
    let mut batch = Vec::new();
    for (k, ts) in [cut - 1500, cut - 1000, cut - 500, cut + 300, cut + 800, cut + 1300].into_iter().enumerate() {
        let after = k >= 3;
        batch.push(sample(K::Physical, "a", M::CpuUsage, ts, if after { 0.2 } else { 1.0 }));
        batch.push(sample(K::Physical, "b", M::CpuUsage, ts, if after { 1.5 } else { 0.5 }));
        batch.push(sample(K::Virtual, "v", M::CpuUsage, ts, 1.0));
        batch.push(sample(K::Virtual, "v", M::LatencyMs, ts, if after { 30.0 } else { 10.0 }));
    }
    assert_eq!(ingest(ch.clone(), vec![batch]).await.unwrap().rejected, 0);
    let hurt = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let d = decisions(ch.clone()).await.remove(0);
            if verdict(&d) != pb::Verdict::Pending {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the outcome is measured");
    assert_eq!(verdict(&hurt), pb::Verdict::Hurt, "{:?}", hurt.outcome);

    // The next round proposes the move back, priced, citing the outcome.
    let back = p.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner().decisions;
    assert_eq!(back.len(), 1, "{back:?}");
    let b = &back[0];
    assert_eq!(b.kind, pb::DecisionKind::MoveBack as i32);
    assert_eq!((b.virtual_node_id.as_str(), b.from_node_id.as_str(), b.to_node_id.as_str()), ("v", "b", "a"));
    assert_eq!(b.reverses_sequence, hurt.sequence);
    assert!(
        b.reason.contains(&format!("decision #{}", hurt.sequence)) && b.reason.contains("latency rose 200 %"),
        "{}",
        b.reason
    );
    assert!(b.cost.is_some());
    let mig = m.get_migration(pb::GetMigrationRequest { id: format!("m{}", b.sequence) }).await.unwrap();
    let mig = mig.into_inner().migration.unwrap();
    assert!(mig.history[0].cause.contains("moves back"), "{:?}", mig.history[0]);

    // The orchestrator declines it: the hurt move is not proposed back again.
    m.reject_migration(pb::RejectMigrationRequest {
        decision_sequence: b.sequence,
        orchestrator_id: "orch".into(),
        reason: "keep it".into(),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the cooldown
    for _ in 0..2 {
        let again = p.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner().decisions;
        assert!(again.is_empty(), "{again:?}");
    }
    let (_, list, _) = {
        let out = server.ctl(&["decisions", "list"]);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), ())
    };
    assert!(list.lines().any(|l| l.contains("move-back") && l.contains("not moved")), "{list}");
}
