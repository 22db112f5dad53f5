//! End to end: the cost function learns the transfer rate, start-up and
//! shut-down of the migrations the reference agent carries out (with a
//! simulated transfer rate), and shows them beside the configured figures
//! in GetAffinity, `swarmctl affinity` and `/metrics`.

use crate::common;

use common::*;
use swarm_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_learned_transfer_rate_converges_to_the_agents() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("swarm.toml");
    std::fs::write(
        &cfg,
        "[migration]\nverify_window = \"200ms\"\ntick = \"100ms\"\n[controller]\nmax_in_flight_per_node = 20\n",
    )
    .unwrap();
    let server = Server::start(&["--round-interval", "1h", "--http", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let ch = server.channel().await;
    // One rack (the helpers label every node z1/r1): twelve virtual nodes
    // of 0.1 to 0.3 GB of state leave a draining node.
    let mut t = pb::topology_client::TopologyClient::new(ch.clone());
    let nodes = vec![physical("src", 64.0), physical("t0", 64.0), physical("t1", 64.0)];
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes }).await.unwrap();
    let vnodes: Vec<pb::VirtualNode> = (0..12)
        .map(|i| pb::VirtualNode { state_size_bytes: 100_000_000 * (1 + i % 3), ..virt(&format!("v{i:02}"), 1.0) })
        .collect();
    t.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: vnodes.clone() }).await.unwrap();
    let placements = vnodes
        .iter()
        .map(|v| pb::PlacementAssignment { virtual_node_id: v.id.clone(), physical_node_id: "src".into() })
        .collect();
    t.set_placements(pb::SetPlacementsRequest { placements }).await.unwrap();
    let mut src = physical("src", 64.0);
    src.state = pb::PhysicalNodeState::Draining as i32;
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![src] }).await.unwrap();
    let mut p = pb::placement_client::PlacementClient::new(ch.clone());
    let ds = p.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner().decisions;
    assert_eq!(ds.len(), 12, "{ds:?}");

    // Before any migration: nothing learned, the configured figures in use.
    let figures =
        |r: &pb::GetAffinityResponse, name: &str| r.cost_figures.iter().find(|f| f.name == name).unwrap().clone();
    let affinity = |ch| async move {
        let mut p = pb::placement_client::PlacementClient::new(ch);
        let req = pb::GetAffinityRequest { virtual_node_ids: vec!["v00".into()], ..Default::default() };
        p.get_affinity(req).await.unwrap().into_inner()
    };
    let before = affinity(ch.clone()).await;
    let rack = figures(&before, "transfer_rate_same_rack");
    assert_eq!((rack.learned, rack.samples, rack.in_use), (None, 0, 1.25e9), "{rack:?}");

    // The agent copies state at 500 MB/s, starts a shadow in 1 s and cuts over in 300 ms.
    let rate = 5e8;
    let agent = agent(
        &server,
        &[
            "--transfer-rate",
            "5e8",
            "--shadow-start",
            "1s",
            "--cutover",
            "300ms",
            "--report-every",
            "100ms",
            "--exit-when-idle",
            "2s",
        ],
    );
    let s = summary(agent);
    assert_eq!(s["completed"], 12, "{s}");

    let after = affinity(ch.clone()).await;
    let rack = figures(&after, "transfer_rate_same_rack");
    assert_eq!(rack.samples, 12, "{rack:?}");
    let learned = rack.learned.expect("learned from 12 migrations");
    assert!((learned - rate).abs() / rate < 0.10, "learned {learned} vs the agent's {rate}");
    assert_eq!(rack.in_use, learned, "rounds price with the learned rate");
    let startup = figures(&after, "startup_seconds").learned.unwrap();
    assert!((startup - 1.0).abs() < 0.1, "start-up {startup}");
    let shutdown = figures(&after, "shutdown_seconds").learned.unwrap();
    assert!((shutdown - 0.3).abs() < 0.1, "shut-down {shutdown}");
    eprintln!(
        "learned: transfer {learned:.3e} B/s (agent {rate:.1e}), start-up {startup:.3} s, shut-down {shutdown:.3} s"
    );
    // No migration crossed racks or zones: those stay as configured.
    assert_eq!(figures(&after, "transfer_rate_remote").learned, None);

    // swarmctl affinity and /metrics show learned beside configured.
    let out = server.ctl(&["affinity", "v00"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.trim_start().starts_with("transfer_rate_same_rack")).expect(&text);
    assert!(line.contains("configured 1250.0 MB/s") && line.contains("from 12 migration(s)"), "{line}");
    let (_, _, metrics) = http_get(server.http.as_ref().unwrap(), "/metrics", "");
    let learned_metric: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("swarm_cost_figure{figure=\"transfer_rate_same_rack\",source=\"learned\"} "))
        .expect(&metrics)
        .parse()
        .unwrap();
    assert!((learned_metric - rate).abs() / rate < 0.10, "{learned_metric}");
    assert!(
        metrics
            .lines()
            .any(|l| l == "swarm_cost_figure{figure=\"transfer_rate_same_rack\",source=\"configured\"} 1250000000.0"),
        "{metrics}"
    );
}
