//! End to end: reconfiguration plans over real gRPC against the real
//! `swarmd`, carried out by the reference orchestrator (`swarmctl agent`)
//! through the migration protocol; infeasible changes refused with the
//! constraint and the shortfall; stale plans refused; the CLI.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use swarm_proto::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

type Rc = pb::reconfiguration_client::ReconfigurationClient<Channel>;

fn node(id: &str, zone: &str) -> pb::PhysicalNode {
    let mut n = physical(id, 16.0);
    n.labels.insert("zone".into(), zone.into());
    n.labels.insert("rack".into(), format!("{zone}-r"));
    n
}

/// p0..p3 (zones z1, z1, z2, z2), three 2-core virtual nodes on each; the
/// ones on p0 carry 1, 2 and 3 GiB of state.
async fn cluster(ch: Channel) {
    let mut t = pb::topology_client::TopologyClient::new(ch);
    let nodes = vec![node("p0", "z1"), node("p1", "z1"), node("p2", "z2"), node("p3", "z2")];
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes }).await.unwrap();
    let mut vs = Vec::new();
    let mut placements = Vec::new();
    for p in 0..4 {
        for k in 0..3 {
            let id = format!("v{p}{k}");
            let mut v = virt(&id, 2.0);
            v.state_size_bytes = (k as u64 + 1) << 30;
            if k == 0 {
                v.group = "db".into();
            }
            vs.push(v);
            placements.push(pb::PlacementAssignment { virtual_node_id: id, physical_node_id: format!("p{p}") });
        }
    }
    t.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: vs }).await.unwrap();
    t.set_placements(pb::SetPlacementsRequest { placements }).await.unwrap();
}

async fn placements(ch: Channel) -> HashMap<String, String> {
    let mut t = pb::topology_client::TopologyClient::new(ch);
    let vs = t.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner().nodes;
    vs.into_iter().map(|v| (v.id, v.placement)).collect()
}

async fn plan(rc: &mut Rc, change: pb::ConfigurationChange) -> Result<pb::PlanResponse, tonic::Status> {
    rc.plan(pb::PlanRequest { change: Some(change), objective: 0 }).await.map(|r| r.into_inner())
}

fn start(extra: &[&str]) -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("swarm.toml");
    std::fs::write(&cfg, "[migration]\nverify_window = \"300ms\"\ntick = \"100ms\"\n").unwrap();
    let mut args = vec!["--round-interval", "1h", "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Server::start(&args), tmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_move_the_minimum_and_refuse_what_cannot_be_done() {
    let (server, _tmp) = start(&[]);
    let ch = server.channel().await;
    cluster(ch.clone()).await;
    let before = placements(ch.clone()).await;
    let mut rc = Rc::new(ch.clone());

    // Draining p0 while p4 joins: exactly p0's three virtual nodes move.
    let change = pb::ConfigurationChange {
        upsert_physical_nodes: vec![node("p4", "z2")],
        drain_physical_nodes: vec!["p0".into()],
        ..Default::default()
    };
    let p = plan(&mut rc, change.clone()).await.unwrap();
    let mut moved: Vec<&str> = p.moves.iter().map(|m| m.virtual_node_id.as_str()).collect();
    moved.sort();
    assert_eq!(moved, vec!["v00", "v01", "v02"]);
    assert!(p.optimal && p.lower_bound == 3, "{p:?}");
    assert_eq!(p.total_bytes, 6 << 30);
    assert!(p.moves.iter().all(|m| m.from_node_id == "p0" && m.to_node_id != "p0" && m.reason.contains("draining")));
    assert!(p.estimated_seconds >= 15.0, "start-up + shut-down at least: {}", p.estimated_seconds);
    assert_eq!(placements(ch.clone()).await, before, "a plan is a dry run");

    // A group spread over zones: two of the db replicas share z1, one must move to z2.
    let spread = pb::ConfigurationChange {
        group_policies: vec![pb::GroupPolicy {
            group: "db".into(),
            spread: pb::SpreadDomain::Zone as i32,
            max_per_domain: 2,
        }],
        ..Default::default()
    };
    let p = plan(&mut rc, spread).await.unwrap();
    assert!(p.moves.is_empty(), "2 per zone already holds: {p:?}");
    let strict = pb::ConfigurationChange {
        group_policies: vec![pb::GroupPolicy {
            group: "db".into(),
            spread: pb::SpreadDomain::Rack as i32,
            max_per_domain: 1,
        }],
        upsert_physical_nodes: vec![node("p4", "z3"), node("p5", "z4")],
        ..Default::default()
    };
    let p = plan(&mut rc, strict).await.unwrap();
    assert_eq!(p.moves.len(), 2, "{p:?}");
    assert!(p.moves.iter().all(|m| m.reason.contains("group")), "{p:?}");

    // Infeasible: the message names the constraint and the shortfall.
    let e = plan(
        &mut rc,
        pb::ConfigurationChange {
            remove_physical_nodes: vec!["p0".into(), "p1".into(), "p2".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("need 24.00 cores") && e.message().contains("short by 8.00"), "{}", e.message());
    let e = plan(
        &mut rc,
        pb::ConfigurationChange {
            group_policies: vec![pb::GroupPolicy {
                group: "db".into(),
                spread: pb::SpreadDomain::Zone as i32,
                max_per_domain: 1,
            }],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        e.message().contains("group db has 4 members to place") && e.message().contains("short by 2"),
        "{}",
        e.message()
    );
    // Bad input.
    let e = plan(&mut rc, pb::ConfigurationChange { drain_physical_nodes: vec!["nope".into()], ..Default::default() })
        .await
        .unwrap_err();
    assert!(e.code() == Code::NotFound && e.message().contains("drain_physical_nodes[0]"), "{e:?}");
    let e = rc.apply(pb::ApplyRequest { plan_id: "plan-0".into(), max_concurrent: 0 }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // A plan made before the cluster changed is refused.
    let p = plan(&mut rc, change).await.unwrap();
    let mut t = pb::topology_client::TopologyClient::new(ch.clone());
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![node("p9", "z1")] }).await.unwrap();
    let e = rc.apply(pb::ApplyRequest { plan_id: p.plan_id, max_concurrent: 0 }).await.unwrap_err();
    assert!(e.code() == Code::FailedPrecondition && e.message().contains("changed since"), "{e:?}");
    assert_eq!(placements(ch.clone()).await, before, "nothing moved");

    // The CLI: a file plus flags, a readable summary.
    let file = _tmp.path().join("new-config.toml");
    std::fs::write(
        &file,
        "objective = \"bytes\"\ndrain = [\"p1\"]\n[[add_node]]\nid = \"p7\"\ncores = 32\nmemory_gib = 128\nzone = \"z2\"\n",
    )
    .unwrap();
    let out = server
        .swarmctl()
        .args(["reconfigure", "plan", "--from-file"])
        .arg(&file)
        .args(["--drain-node", "p2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("6 move(s)") && text.contains("6 because its node is draining or leaving"), "{text}");
    assert!(text.contains("v10") && text.contains("p1 -> "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_carries_moves_out_through_migrations_and_removes_the_node() {
    let (server, _tmp) = start(&[]);
    let ch = server.channel().await;
    cluster(ch.clone()).await;
    let mut rc = Rc::new(ch.clone());
    let p = plan(
        &mut rc,
        pb::ConfigurationChange {
            upsert_physical_nodes: vec![node("p4", "z2")],
            remove_physical_nodes: vec!["p0".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(p.moves.len(), 3);
    let id = rc.apply(pb::ApplyRequest { plan_id: p.plan_id.clone(), max_concurrent: 2 }).await.unwrap().into_inner();
    let id = id.reconfiguration_id;
    // The orchestrator starts after Apply (it stops once idle, so it must find work).
    let agent = agent(
        &server,
        &["--id", "reconf-agent", "--report-every", "100ms", "--shadow-start", "50ms", "--exit-when-idle", "3s"],
    );
    // Never more than 2 in flight; it finishes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = rc
            .get_reconfiguration(pb::GetReconfigurationRequest { reconfiguration_id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert!(s.in_flight_moves <= 2, "{s:?}");
        if s.state != "running" {
            break s;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((status.state.as_str(), status.completed_moves, status.failed_moves), ("completed", 3, 0), "{status:?}");
    assert!(status.removals_pending.is_empty());
    let summary = summary(agent);
    assert_eq!(summary["completed"], 3, "{summary}");
    // Every move went through a migration, reported on WatchDecisions as a reconfiguration.
    let mut pl = pb::placement_client::PlacementClient::new(ch.clone());
    let log = pl.list_decisions(pb::ListDecisionsRequest { from_sequence: 1, limit: 100 }).await.unwrap().into_inner();
    assert_eq!(log.decisions.len(), 3);
    assert!(log.decisions.iter().all(|d| d.kind == pb::DecisionKind::Reconfiguration as i32 && d.reason.contains(&id)));
    let now = placements(ch.clone()).await;
    for m in &p.moves {
        assert_eq!(now[&m.virtual_node_id], m.to_node_id);
    }
    let mut t = pb::topology_client::TopologyClient::new(ch.clone());
    let phys =
        t.list_physical_nodes(pb::ListPhysicalNodesRequest { include_removed: true }).await.unwrap().into_inner();
    let p0 = phys.nodes.iter().find(|n| n.id == "p0").unwrap();
    assert_eq!(p0.state, pb::PhysicalNodeState::Removed as i32, "emptied, then removed");
    // The controller does not undo the moves right away.
    let r = pl.run_round(pb::RunRoundRequest { dry_run: true }).await.unwrap().into_inner();
    for d in &r.decisions {
        assert!(!p.moves.iter().any(|m| m.virtual_node_id == d.virtual_node_id), "{d:?} undoes a planned move");
    }
    // Status from the CLI.
    let out = server.ctl(&["reconfigure", "status", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("completed; 3 of 3 moves completed, 0 failed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_plan_survives_sigkill_and_finishes_after_restart() {
    let (mut server, _tmp) = start(&[]);
    let ch = server.channel().await;
    cluster(ch.clone()).await;
    let mut rc = Rc::new(ch.clone());
    // Drain p0 and add a new virtual node; nobody carries migrations out yet.
    let p = plan(
        &mut rc,
        pb::ConfigurationChange {
            drain_physical_nodes: vec!["p0".into()],
            upsert_virtual_nodes: vec![virt("new-1", 1.0)],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((p.moves.len(), p.placements.len()), (3, 1), "{p:?}");
    let id = rc.apply(pb::ApplyRequest { plan_id: p.plan_id, max_concurrent: 2 }).await.unwrap().into_inner();
    let id = id.reconfiguration_id;
    let get = |mut rc: Rc, id: String| async move {
        rc.get_reconfiguration(pb::GetReconfigurationRequest { reconfiguration_id: id }).await.unwrap().into_inner()
    };
    let s = get(rc.clone(), id.clone()).await;
    assert_eq!((s.state.as_str(), s.in_flight_moves, s.pending_moves), ("running", 2, 1), "{s:?}");
    // The new virtual node is placed at once (nothing to move).
    assert!(!placements(ch.clone()).await["new-1"].is_empty());
    drop((rc, ch));

    server.kill_and_restart();
    let ch = server.channel().await;
    let rc = Rc::new(ch.clone());
    let after = get(rc.clone(), id.clone()).await;
    assert_eq!(after, s, "the applied plan and its migrations survive SIGKILL");
    let agent = agent(
        &server,
        &["--id", "after-restart", "--report-every", "100ms", "--shadow-start", "50ms", "--exit-when-idle", "3s"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = get(rc.clone(), id.clone()).await;
        if s.state != "running" {
            assert_eq!((s.state.as_str(), s.completed_moves), ("completed", 3), "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    summary(agent);
    let now = placements(ch).await;
    assert!(["v00", "v01", "v02"].iter().all(|v| now[*v] != "p0" && !now[*v].is_empty()), "{now:?}");
}
