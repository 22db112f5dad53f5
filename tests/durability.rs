//! End to end: SIGKILL swarmd after acknowledged writes; after a restart
//! samples, topology, placement and decisions are all there.

use crate::common;

use common::*;
use swarm_proto::v1 as pb;

async fn cpu(ch: tonic::transport::Channel, id: &str, kind: pb::EntityKind) -> Vec<pb::Point> {
    query(ch, kind, id, pb::Metric::CpuUsage).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_acknowledged() {
    let mut server = Server::start(&["--round-interval", "1h"]);
    let ch = server.channel().await;
    let ids = register_cluster(ch.clone(), 3, &[6, 1, 1]).await;
    let now = now_ms();
    // Several streams, so several group commits and WAL records.
    let mut expected = 0;
    for s in 0..5i64 {
        let mut batch = Vec::new();
        for k in 0..2000i64 {
            let ts = now - 600_000 + (s * 2000 + k) * 50;
            for v in &ids[0] {
                batch.push(sample(pb::EntityKind::Virtual, v, pb::Metric::CpuUsage, ts, 2.5));
            }
            batch.push(sample(pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage, ts, 15.0 + (k % 7) as f64 * 0.01));
        }
        expected += batch.len() as u64;
        let r = ingest(ch.clone(), vec![batch]).await.unwrap();
        assert_eq!(r.rejected, 0);
    }
    let before = cpu(ch.clone(), "p0", pb::EntityKind::Physical).await;
    assert_eq!(before.len(), 10_000);
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    let round = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert!(!round.decisions.is_empty());
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    // Move one virtual node as an orchestrator would after a decision.
    let d = &round.decisions[0];
    topo.set_placements(pb::SetPlacementsRequest {
        placements: vec![pb::PlacementAssignment {
            virtual_node_id: d.virtual_node_id.clone(),
            physical_node_id: d.to_node_id.clone(),
        }],
    })
    .await
    .unwrap();
    let vnodes_before = topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner();
    drop((ch, placement, topo));

    server.kill_and_restart();
    let ch = server.channel().await;
    let after = cpu(ch.clone(), "p0", pb::EntityKind::Physical).await;
    assert_eq!(after, before, "every acknowledged sample survives SIGKILL");
    let mut total = 0;
    for v in ids.iter().flatten() {
        total += cpu(ch.clone(), v, pb::EntityKind::Virtual).await.len() as u64;
    }
    assert_eq!(total + after.len() as u64, expected);
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    let vnodes_after = topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner();
    assert_eq!(vnodes_after, vnodes_before, "topology and placements survive");
    let phys = topo.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.unwrap().into_inner();
    assert_eq!(phys.nodes.len(), 3);
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    let list = placement.list_decisions(pb::ListDecisionsRequest::default()).await.unwrap().into_inner();
    // Listed decisions also say where their outcome stands: nothing has
    // completed a move yet.
    let unmoved = [pb::Verdict::Pending as i32, pb::Verdict::NotMoved as i32];
    assert!(list.decisions.iter().all(|d| d.outcome.as_ref().is_some_and(|o| unmoved.contains(&o.verdict))));
    let listed: Vec<pb::Decision> =
        list.decisions.iter().map(|d| pb::Decision { outcome: None, ..d.clone() }).collect();
    assert_eq!(listed, round.decisions, "decisions survive");
    // Sequences and rounds continue after the restart; cooldowns survive too.
    let round2 = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert_eq!(round2.round_id, round.round_id + 1);
    if let Some(first) = round2.decisions.first() {
        assert_eq!(first.sequence, list.last_sequence + 1);
    }
    for d in &round2.decisions {
        assert!(
            !round.decisions.iter().any(|o| o.virtual_node_id == d.virtual_node_id),
            "{} decided again within its cooldown after a restart",
            d.virtual_node_id
        );
    }

    // A second crash right after more writes, then a graceful stop: still nothing lost.
    let more: Vec<pb::Sample> =
        (0..500).map(|k| sample(pb::EntityKind::Physical, "p1", pb::Metric::CpuUsage, now - 1000 + k, 1.0)).collect();
    ingest(ch.clone(), vec![more]).await.unwrap();
    drop((ch, placement, topo));
    server.kill_and_restart();
    let ch = server.channel().await;
    assert_eq!(cpu(ch.clone(), "p1", pb::EntityKind::Physical).await.len(), 500);
    drop(ch);
    assert!(server.terminate(), "SIGTERM exits cleanly");
    let server = Server::start_in(&server.data_dir.clone(), &[]);
    let ch = server.channel().await;
    assert_eq!(cpu(ch.clone(), "p1", pb::EntityKind::Physical).await.len(), 500);
    assert_eq!(cpu(ch, "p0", pb::EntityKind::Physical).await.len(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_wal_tail_is_cut_and_corrupt_store_is_refused() {
    let mut server = Server::start(&[]);
    let ch = server.channel().await;
    register_cluster(ch.clone(), 1, &[1]).await;
    let now = now_ms();
    let s: Vec<pb::Sample> =
        (0..100).map(|k| sample(pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage, now - 1000 + k, 1.0)).collect();
    ingest(ch.clone(), vec![s]).await.unwrap();
    drop(ch);
    server.kill();
    // Half a record at the end of the newest segment, as a crash mid-write leaves it.
    let series = server.data_dir.join("series");
    let mut segs: Vec<_> = std::fs::read_dir(&series)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let mut data = std::fs::read(last).unwrap();
    data.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9]);
    std::fs::write(last, data).unwrap();
    server.kill_and_restart();
    let ch = server.channel().await;
    assert_eq!(cpu(ch.clone(), "p0", pb::EntityKind::Physical).await.len(), 100);
    drop(ch);
    server.kill();

    // A damaged metadata store: swarmd refuses to start and says which file.
    let meta = server.data_dir.join("meta.redb");
    std::fs::write(&meta, vec![0x42u8; 4096]).unwrap();
    let out = std::process::Command::new(SWARMD)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("meta.redb"), "{err}");
}

/// A metadata store damaged inside (pages of the fixture's real store
/// overwritten at the offsets where redb used to panic with "entered
/// unreachable code") is refused at start with the file and what to do: an
/// exit code, never a crash.
#[test]
fn a_store_damaged_inside_is_refused_not_a_crash() {
    for offset in [8192usize, 139_264] {
        let (code, err) = start_on_damaged_fixture(|dir| {
            let p = dir.join("meta.redb");
            let mut bytes = std::fs::read(&p).unwrap();
            assert!(bytes.len() > offset + 4096, "the fixture store is large enough");
            for (i, b) in bytes[offset..offset + 4096].iter_mut().enumerate() {
                *b = [0xde, 0xad, 0xbe, 0xef][i % 4];
            }
            std::fs::write(&p, &bytes).unwrap();
        });
        assert_ne!(code, Some(101), "offset {offset}: swarmd panicked:\n{err}");
        assert_eq!(code, Some(1), "offset {offset}: damaged store accepted or odd exit:\n{err}");
        assert!(
            err.contains("meta.redb") && err.contains("restore meta.redb from a backup"),
            "offset {offset}:\n{err}"
        );
    }
}

/// A copy of the first release's data directory (`tests/fixtures/datadir-v1`).
fn fixture_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/datadir-v1/data");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(dir.join("series")).unwrap();
    std::fs::copy(fixture.join("meta.redb"), dir.join("meta.redb")).unwrap();
    for e in std::fs::read_dir(fixture.join("series")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("series").join(e.file_name())).unwrap();
    }
    (tmp, dir)
}

/// Starts swarmd on a copy of the fixture that `damage` changed; returns
/// its exit code and stderr.
fn start_on_damaged_fixture(damage: impl FnOnce(&std::path::Path)) -> (Option<i32>, String) {
    let (_tmp, dir) = fixture_copy();
    damage(&dir);
    let out = std::process::Command::new(SWARMD)
        .args(["--listen", "127.0.0.1:0", "--round-interval", "24h", "--retention", "36500d", "--data-dir"])
        .arg(&dir)
        .env("SWARM_LOG", "warn")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Damage a crash cannot cause stops start-up, naming the file (and the
/// offset), instead of starting with acknowledged samples silently gone:
/// bit rot in the middle of the newest segment, a deleted older segment, a
/// deleted metadata store beside its samples.
#[test]
fn damage_a_crash_cannot_cause_stops_start_up() {
    // The fixture's newest segment is empty (wal-2); without it wal-1, with
    // 28,980 acknowledged samples, is the newest. Flip 4 bytes in its middle.
    let (code, err) = start_on_damaged_fixture(|dir| {
        std::fs::remove_file(dir.join("series/wal-0000000000000002.log")).unwrap();
        let p = dir.join("series/wal-0000000000000001.log");
        let mut data = std::fs::read(&p).unwrap();
        let mid = data.len() / 2;
        data[mid..mid + 4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        std::fs::write(&p, data).unwrap();
    });
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("wal-0000000000000001.log is corrupt at byte") && err.contains("not a torn tail"), "{err}");

    let (code, err) = start_on_damaged_fixture(|dir| {
        std::fs::remove_file(dir.join("series/wal-0000000000000001.log")).unwrap();
    });
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("wal-0000000000000001.log is missing (segments present: 2)"), "{err}");

    let (code, err) = start_on_damaged_fixture(|dir| std::fs::remove_file(dir.join("meta.redb")).unwrap());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("meta.redb is missing but") && err.contains("holds samples"), "{err}");

    // Undamaged, it starts (so the refusals above are the damage's).
    let (_tmp, dir) = fixture_copy();
    drop(Server::start_in(&dir, &["--round-interval", "24h", "--retention", "36500d"]));
}
