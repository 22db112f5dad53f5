//! End to end: register a cluster, stream 100k samples, run rounds, and
//! receive the decisions on WatchDecisions, resuming from a sequence number.

use crate::common;

use std::time::Duration;

use common::*;
use swarm_proto::v1 as pb;
use tokio_stream::StreamExt;

fn config_file(dir: &std::path::Path) -> String {
    let p = dir.join("swarm.toml");
    std::fs::write(
        &p,
        "round_interval = \"1h\"\n[controller]\nmax_decisions_per_round = 3\nmax_in_flight_per_node = 10\n",
    )
    .unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_node_gets_decisions_and_watch_resumes_exactly() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = config_file(cfg_dir.path());
    let server = Server::start(&["--config", &cfg]);
    let ch = server.channel().await;
    let ids = register_cluster(ch.clone(), 4, &[8, 2, 2, 2]).await;

    // 18 entities x 5556 points at 100 ms = 100,008 samples over the last ~9 minutes.
    let now = now_ms();
    let mut all = Vec::new();
    for k in 0..5556i64 {
        let ts = now - 555_600 + k * 100;
        for (p, on) in ids.iter().enumerate() {
            let per_vnode = if p == 0 { 1.9 } else { 0.5 };
            for v in on {
                all.push(sample(pb::EntityKind::Virtual, v, pb::Metric::CpuUsage, ts, per_vnode));
            }
            let phys_load = if p == 0 { 15.5 } else { 1.0 };
            all.push(sample(pb::EntityKind::Physical, &format!("p{p}"), pb::Metric::CpuUsage, ts, phys_load));
        }
    }
    assert_eq!(all.len(), 100_008);
    let batches: Vec<Vec<pb::Sample>> = all.chunks(10_000).map(|c| c.to_vec()).collect();
    let r = ingest(ch.clone(), batches).await.unwrap();
    assert_eq!((r.accepted, r.rejected), (100_008, 0));

    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    let mut live =
        placement.watch_decisions(pb::WatchDecisionsRequest { from_sequence: 0 }).await.unwrap().into_inner();

    let round1 = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert_eq!(round1.decisions.len(), 3, "budget of 3 per round: {:?}", round1.decisions);
    assert!(round1.skipped_budget > 0);
    for d in &round1.decisions {
        assert_eq!(d.from_node_id, "p0", "only the overloaded node sheds load: {d:?}");
        assert_ne!(d.to_node_id, "p0");
        assert!(d.from_score.as_ref().unwrap().components.as_ref().unwrap().cpu_headroom.is_some());
        let cost = d.cost.as_ref().expect("every decision carries its cost numbers");
        assert!(cost.benefit > cost.cost && cost.overhead_seconds > 0.0, "{cost:?}");
    }
    // The node is over the 90% threshold now: the first move relieves it,
    // the next ones are micro-migrations whose reasons describe the load left
    // by the earlier moves of the round.
    let first = &round1.decisions[0];
    assert_eq!(first.kind, pb::DecisionKind::Overload as i32);
    assert!(first.reason.starts_with("p0 is overloaded at 97% CPU now"), "{}", first.reason);
    for (d, at) in round1.decisions[1..].iter().zip(["p0 at 85% CPU", "p0 at 73% CPU"]) {
        assert_eq!(d.kind, pb::DecisionKind::MicroMigration as i32);
        assert!(d.gain > 0.1 && d.reason.starts_with(at), "{}", d.reason);
    }
    let seqs: Vec<u64> = round1.decisions.iter().map(|d| d.sequence).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("decision arrives")
            .unwrap()
            .unwrap();
        got.push(d);
    }
    assert_eq!(got, round1.decisions, "the watcher sees exactly what the round returned");
    drop(live);

    // The orchestrator is "disconnected" while round 2 runs.
    let round2 = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert_eq!(round2.decisions.iter().map(|d| d.sequence).collect::<Vec<_>>(), vec![4, 5, 6]);
    // Round 1's virtual nodes have live (proposed) migrations: the round
    // leaves them alone (and they are cooling down as well).
    let mut mig = pb::migrations_client::MigrationsClient::new(ch.clone());
    let live_migrations =
        mig.list_migrations(pb::ListMigrationsRequest { live_only: true, ..Default::default() }).await.unwrap();
    let live_virts: Vec<String> =
        live_migrations.into_inner().migrations.into_iter().map(|m| m.virtual_node_id).collect();
    for d in &round1.decisions {
        assert!(live_virts.contains(&d.virtual_node_id), "{} has a live migration", d.virtual_node_id);
    }
    let moved1: Vec<&str> = round1.decisions.iter().map(|d| d.virtual_node_id.as_str()).collect();
    for d in &round2.decisions {
        assert!(!moved1.contains(&d.virtual_node_id.as_str()), "cooldown: {} decided twice", d.virtual_node_id);
    }

    // Resume from 4: exactly the missed decisions, then nothing more.
    let mut resumed =
        placement.watch_decisions(pb::WatchDecisionsRequest { from_sequence: 4 }).await.unwrap().into_inner();
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(tokio::time::timeout(Duration::from_secs(10), resumed.next()).await.unwrap().unwrap().unwrap());
    }
    assert_eq!(missed, round2.decisions);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), resumed.next()).await.is_err(),
        "no decision beyond the missed ones"
    );

    // A dry run decides without persisting or publishing.
    let dry = placement.run_round(pb::RunRoundRequest { dry_run: true }).await.unwrap().into_inner();
    assert!(dry.dry_run);
    assert!(dry.decisions.iter().all(|d| d.sequence == 0));
    let list =
        placement.list_decisions(pb::ListDecisionsRequest { from_sequence: 1, limit: 0 }).await.unwrap().into_inner();
    assert_eq!(list.last_sequence, 6);
    assert_eq!(list.decisions.len(), 6);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), resumed.next()).await.is_err(),
        "dry-run decisions are not published"
    );

    // The CLI resumes the same way and prints one JSON object per decision.
    let out = server.ctl(&["--output", "json", "decisions", "watch", "--from", "2", "--limit", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|v| v["sequence"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2, 3, 4, 5, 6]);

    // Affinity: the overloaded node ranks below an idle one for its own virtual node.
    let aff = placement
        .get_affinity(pb::GetAffinityRequest { virtual_node_ids: vec![ids[0][0].clone()], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let row = &aff.rows[0];
    assert_eq!(row.current_node_id, "p0");
    let score_of = |p: &str| row.scores[aff.physical_node_ids.iter().position(|x| x == p).unwrap()].score;
    assert!(score_of("p1") > score_of("p0") + 0.1);
    let err = placement
        .get_affinity(pb::GetAffinityRequest { virtual_node_ids: vec!["nope".into()], ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("nope"));
}
