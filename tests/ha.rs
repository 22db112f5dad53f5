//! High availability end to end: three swarmd replicas on a real three-member
//! etcd cluster (Debian's etcd-server) and a real Prometheus, all on
//! loopback. One replica leads; the others stand by and name it; a killed
//! leader is replaced with its state and its decision sequence intact; a
//! paused leader that wakes after losing its lease writes nothing.

mod common;

use std::time::{Duration, Instant};

use common::etcd::EtcdCluster;
use common::prom::Prometheus;
use common::*;
use swarm_proto::v1 as pb;
use tokio_stream::StreamExt;

const TTL_S: u64 = 3;

struct Fleet {
    etcd: EtcdCluster,
    prom: Prometheus,
    cfg: tempfile::TempDir,
}

impl Fleet {
    fn start() -> Fleet {
        let etcd = EtcdCluster::start(3);
        let prom = Prometheus::start(&[]);
        let cfg = tempfile::tempdir().unwrap();
        std::fs::write(
            cfg.path().join("swarm.toml"),
            format!(
                "round_interval = \"1h\"\n[store]\nlease_ttl = \"{TTL_S}s\"\netcd_timeout = \"2s\"\nkey_prefix = \"/swarm-test/\"\n[controller]\nmax_decisions_per_round = 1\nmax_in_flight_per_node = 10\ncooldown = \"1h\"\n[migration]\nverify_window = \"1s\"\ntick = \"100ms\"\n"
            ),
        )
        .unwrap();
        Fleet { etcd, prom, cfg }
    }

    fn replica(&self) -> Server {
        self.replica_with(&[])
    }

    fn replica_with(&self, extra: &[&str]) -> Server {
        let cfg = self.cfg.path().join("swarm.toml").display().to_string();
        let endpoints = self.etcd.endpoints();
        let mut args = vec!["--config", &cfg, "--etcd-endpoints", &endpoints, "--prometheus-url", &self.prom.url];
        args.extend_from_slice(extra);
        Server::start(&args)
    }
}

async fn dry_round(s: &Server) -> Result<pb::RunRoundResponse, tonic::Status> {
    let ch = tonic::transport::Channel::from_shared(s.endpoint())
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut p = pb::placement_client::PlacementClient::new(ch);
    p.run_round(pb::RunRoundRequest { dry_run: true }).await.map(|r| r.into_inner())
}

/// Waits until one of `replicas` leads; its index.
async fn leader_of(replicas: &[&Server], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut why = Vec::new();
        for (i, r) in replicas.iter().enumerate() {
            match dry_round(r).await {
                Ok(_) => return i,
                Err(e) => why.push(e.message().to_owned()),
            }
        }
        assert!(Instant::now() < deadline, "no replica became leader within {within:?}: {why:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn round(ch: tonic::transport::Channel) -> pb::RunRoundResponse {
    let mut p = pb::placement_client::PlacementClient::new(ch);
    p.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner()
}

/// p0 runs four busy virtual nodes; p1 and p2 are idle.
async fn overload_p0(ch: tonic::transport::Channel) {
    assert_eq!(busy_p0(ch, 4, 15.5, 1.9).await, 150);
}

async fn decisions(ch: tonic::transport::Channel) -> Vec<u64> {
    let mut p = pb::placement_client::PlacementClient::new(ch);
    let r = p.list_decisions(pb::ListDecisionsRequest { from_sequence: 0, limit: 100 }).await.unwrap().into_inner();
    r.decisions.iter().map(|d| d.sequence).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_with_its_state_and_sequences_intact() {
    let mut fleet = Fleet::start();
    let mut a = fleet.replica();
    // The second starts once the first leads: which one leads is then known.
    let _ = leader_of(&[&a], Duration::from_secs(20)).await;
    // The standby's dashboard (and /metrics) port is chosen here: it opens
    // only once the replica leads, after start-up has been read.
    let b_http = format!("127.0.0.1:{}", common::prom::free_port());
    let b = fleet.replica_with(&["--http", &b_http]);
    let l = leader_of(&[&a, &b], Duration::from_secs(20)).await;
    assert_eq!(l, 0, "the first replica started leads");

    // The standby answers every call UNAVAILABLE, naming the leader.
    let e = dry_round(&b).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(e.message().contains("standby") && e.message().contains(&a.endpoint()), "{}", e.message());
    assert_eq!(e.metadata().get("swarm-leader").and_then(|v| v.to_str().ok()), Some(a.endpoint().as_str()));

    let ch = a.channel().await;
    overload_p0(ch.clone()).await;
    let first = round(ch.clone()).await;
    assert_eq!(first.decisions.len(), 1, "{first:?}");
    // One etcd member down: a majority remains and the leader goes on.
    fleet.etcd.kill(2);
    let second = round(ch.clone()).await;
    assert_eq!(second.decisions.len(), 1);
    assert_eq!(decisions(ch.clone()).await, vec![1, 2]);

    // SIGKILL the leader: the standby takes over once the lease expires.
    let killed = Instant::now();
    a.kill();
    let _ = leader_of(&[&b], Duration::from_secs(TTL_S + 15)).await;
    let failover = killed.elapsed();
    eprintln!("failover after SIGKILL took {failover:?} (lease TTL {TTL_S} s)");
    let ch = b.channel().await;
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    let nodes = topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner().nodes;
    assert_eq!(nodes.len(), 4, "the topology came from etcd");
    assert!(nodes.iter().all(|n| n.placement == "p0"), "every virtual node has its one placement: {nodes:?}");
    assert_eq!(decisions(ch.clone()).await, vec![1, 2], "no decision lost or renumbered");
    let third = round(ch.clone()).await;
    assert_eq!(third.decisions.iter().map(|d| d.sequence).collect::<Vec<_>>(), vec![3], "the sequence goes on");
    // The new leader's /metrics counts the deployment's elections: a's and its own.
    let (_, _, text) = http_get(&format!("http://{b_http}"), "/metrics", "");
    let elections = text.lines().find_map(|l| l.strip_prefix("swarm_leader_elections ")).map(str::trim);
    assert_eq!(elections, Some("2"), "one failover, so two elections:\n{text}");

    // An orchestrator that reconnects to the new leader sees every decision once.
    let mut p = pb::placement_client::PlacementClient::new(ch.clone());
    let mut watch = p.watch_decisions(pb::WatchDecisionsRequest { from_sequence: 1 }).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let d = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("decision").unwrap().unwrap();
        seen.push(d.sequence);
    }
    assert_eq!(seen, vec![1, 2, 3]);

    // The killed replica, restarted, stands by behind the new leader.
    fleet.etcd.restart(2);
    let c = fleet.replica();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = dry_round(&c).await.unwrap_err();
        if e.message().contains(&b.endpoint()) {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted replica never named the leader: {}", e.message());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // swarmctl pointed at the standby follows it to the leader.
    let out = std::process::Command::new(&*SWARMCTL)
        .args(["--server", &c.endpoint(), "--output", "json", "decisions", "list"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("following the leader at {}", b.endpoint())), "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed.as_array().map(|a| a.len()), Some(3), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_fenced_and_steps_down() {
    let fleet = Fleet::start();
    let mut a = fleet.replica();
    // The second starts once the first leads: which one leads is then known.
    let _ = leader_of(&[&a], Duration::from_secs(20)).await;
    let b = fleet.replica();
    assert_eq!(leader_of(&[&a, &b], Duration::from_secs(20)).await, 0);
    let ch_a = a.channel().await;
    overload_p0(ch_a.clone()).await;

    // Pause the leader past its lease; the standby takes over.
    a.signal("STOP");
    let _ = leader_of(&[&b], Duration::from_secs(TTL_S + 15)).await;
    // A write reaches the paused leader and waits in its socket...
    let intruder = tokio::spawn(async move {
        let mut topo = pb::topology_client::TopologyClient::new(ch_a);
        topo.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![physical("intruder", 8.0)] }).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...then it wakes: the fence refuses the write, and it exits.
    a.signal("CONT");
    let r = tokio::time::timeout(Duration::from_secs(15), intruder).await.expect("the call ends").unwrap();
    let e = r.expect_err("a deposed leader acknowledges nothing");
    // UNAVAILABLE from the fence, or the connection reset by its exit.
    assert!(matches!(e.code(), tonic::Code::Unavailable | tonic::Code::Unknown), "{e:?}");
    let status = a.wait_exit(Duration::from_secs(15)).expect("the deposed leader exits");
    assert!(!status.success(), "{status:?}");

    let ch = b.channel().await;
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    let phys = topo.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.unwrap().into_inner().nodes;
    let ids: Vec<&str> = phys.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["p0", "p1", "p2"], "nothing the old leader was asked after losing its lease was written");
    assert_eq!(round(ch).await.decisions[0].sequence, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_of_a_stale_term_is_refused_by_etcd() {
    use swarm_service::store::{MetaStore, StoreError, TopologyChange, etcd};
    let cluster = EtcdCluster::start(1);
    let cfg = swarm_service::store::config::StoreConfig {
        backend: swarm_service::store::config::StoreBackend::Etcd,
        etcd_endpoints: cluster.endpoints().split(',').map(str::to_owned).collect(),
        key_prefix: "/fence-test/".into(),
        ..Default::default()
    };
    let client = swarm_service::ha::connect(&cfg).await.unwrap();
    let (tx, _) = tokio::sync::watch::channel(String::new());
    let lead = swarm_service::ha::campaign(&client, &cfg, "http://127.0.0.1:1", &tx).await.unwrap();
    let node = |id: &str| {
        let p = physical(id, 8.0);
        swarm_core::domain::PhysicalNode {
            id: swarm_core::domain::NodeId::parse(&p.id).unwrap(),
            capacity: swarm_core::domain::Resources { cpu_cores: 8.0, memory_bytes: 1e9, network_bps: 1e9 },
            labels: Default::default(),
            state: swarm_core::domain::PhysicalState::Active,
        }
    };
    let open = |term| {
        let (deposed, seen) = tokio::sync::watch::channel(false);
        let fence = etcd::Fence { key: lead.key.clone(), term };
        let store = etcd::EtcdStore::new(
            client.clone(),
            tokio::runtime::Handle::current(),
            cfg.key_prefix.clone(),
            fence,
            Duration::from_secs(5),
            deposed,
        );
        (store, seen)
    };
    let (current, _) = open(lead.term);
    let (stale, deposed) = open(lead.term - 1);
    tokio::task::spawn_blocking(move || {
        current.apply(&[TopologyChange::PutPhysical(node("kept"))]).unwrap();
        let e = stale.apply(&[TopologyChange::PutPhysical(node("stale"))]).unwrap_err();
        assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
        assert!(e.to_string().contains("leadership"), "{e}");
        assert!(*deposed.borrow(), "a fenced write says leadership is gone");
        let loaded = current.load().unwrap();
        let ids: Vec<&str> = loaded.topology.physical.keys().map(|k| k.as_str()).collect();
        assert_eq!(ids, vec!["kept"]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_etcd_member_down_nothing_is_decided_and_service_resumes_after() {
    let mut fleet = Fleet::start();
    let mut a = fleet.replica();
    // The second starts once the first leads: which one leads is then known.
    let _ = leader_of(&[&a], Duration::from_secs(20)).await;
    let b = fleet.replica();
    assert_eq!(leader_of(&[&a, &b], Duration::from_secs(20)).await, 0);
    let ch = a.channel().await;
    overload_p0(ch.clone()).await;
    assert_eq!(round(ch.clone()).await.decisions[0].sequence, 1);

    fleet.etcd.kill_all();
    // The leader cannot commit a round: UNAVAILABLE, saying the store is unreachable...
    let mut p = pb::placement_client::PlacementClient::new(ch.clone());
    let e = p.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().contains("etcd"), "{}", e.message());
    // ...and once it cannot renew its lease for a whole TTL it steps down.
    let status = a.wait_exit(Duration::from_secs(TTL_S + 10)).expect("the leader steps down without etcd");
    assert!(!status.success());
    // The standby says why no one leads.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = dry_round(&b).await.unwrap_err();
        if e.message().contains("no leader is known: etcd unreachable") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", e.message());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // etcd returns; the supervisor (here, the test) restarts the replica
    // that stepped down; one of them leads with everything intact.
    fleet.etcd.restart_all();
    let a = fleet.replica();
    let l = leader_of(&[&a, &b], Duration::from_secs(TTL_S + 20)).await;
    let ch = [&a, &b][l].channel().await;
    assert_eq!(decisions(ch.clone()).await, vec![1], "nothing lost, nothing half-written");
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    assert_eq!(
        topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner().nodes.len(),
        4
    );
    assert_eq!(round(ch).await.decisions[0].sequence, 2, "the sequence goes on");
}

/// The leader among `replicas`, if one answers within `within`.
async fn try_leader(replicas: &[Server], within: Duration) -> Option<usize> {
    let deadline = Instant::now() + within;
    loop {
        for (i, r) in replicas.iter().enumerate() {
            if dry_round(r).await.is_ok() {
                return Some(i);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_loop_of_kills_keeps_every_decision_once_and_in_order() {
    use rand::{Rng, SeedableRng};
    let mut fleet = Fleet::start();
    let mut replicas: Vec<Server> = (0..3).map(|_| fleet.replica()).collect();
    let l = try_leader(&replicas, Duration::from_secs(20)).await.expect("a leader");
    let ch = replicas[l].channel().await;
    assert_eq!(busy_p0(ch, 24, 15.9, 0.6).await, 30 * 25);

    // 20 random kills (seeded, so a failure replays): a replica (the
    // supervisor restarts it at once) or one etcd member (restarted after
    // the next round, so a majority always remains); a round after each.
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    let mut etcd_down = None;
    for _ in 0..20 {
        if rng.random_bool(0.6) {
            let i = rng.random_range(0..replicas.len());
            replicas[i].kill();
            replicas[i] = fleet.replica();
        } else {
            let m = rng.random_range(0..3);
            fleet.etcd.kill(m);
            etcd_down = Some(m);
        }
        if let Some(l) = try_leader(&replicas, Duration::from_secs(TTL_S + 10)).await {
            let ch = replicas[l].channel().await;
            let mut p = pb::placement_client::PlacementClient::new(ch);
            // A round that answered committed; one that failed may or may not have.
            if let Ok(r) = p.run_round(pb::RunRoundRequest { dry_run: false }).await {
                acknowledged.extend(r.into_inner().decisions.into_iter().map(|d| (d.sequence, d.virtual_node_id)));
            }
        }
        if let Some(m) = etcd_down.take() {
            fleet.etcd.restart(m);
        }
    }

    let l = try_leader(&replicas, Duration::from_secs(TTL_S + 20)).await.expect("a leader after the chaos");
    let ch = replicas[l].channel().await;
    let mut p = pb::placement_client::PlacementClient::new(ch.clone());
    let stored =
        p.list_decisions(pb::ListDecisionsRequest { from_sequence: 1, limit: 1000 }).await.unwrap().into_inner();
    let seqs: Vec<u64> = stored.decisions.iter().map(|d| d.sequence).collect();
    assert!(acknowledged.len() >= 5, "the loop made progress: {acknowledged:?}");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gap-free, in order, none twice");
    for (seq, v) in &acknowledged {
        let d = &stored.decisions[*seq as usize - 1];
        assert_eq!(&d.virtual_node_id, v, "decision {seq} was acknowledged for {v} and kept as such");
    }
    let mut moved: Vec<&str> = stored.decisions.iter().map(|d| d.virtual_node_id.as_str()).collect();
    moved.sort();
    moved.dedup();
    assert_eq!(moved.len(), stored.decisions.len(), "no virtual node decided twice (cooldown survived failovers)");
    let mut watch = p.watch_decisions(pb::WatchDecisionsRequest { from_sequence: 1 }).await.unwrap().into_inner();
    for want in &seqs {
        let d = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("decision").unwrap().unwrap();
        assert_eq!(d.sequence, *want);
    }
    let mut topo = pb::topology_client::TopologyClient::new(ch);
    let nodes = topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner().nodes;
    assert_eq!(nodes.len(), 24);
    assert!(nodes.iter().all(|n| n.placement == "p0"), "recommend mode: every virtual node keeps its one placement");
    eprintln!("chaos: {} decisions acknowledged, {} stored", acknowledged.len(), seqs.len());
}

async fn migrations(ch: tonic::transport::Channel) -> Vec<pb::Migration> {
    let mut m = pb::migrations_client::MigrationsClient::new(ch);
    m.list_migrations(pb::ListMigrationsRequest { limit: 100, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .migrations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_follows_the_leader_and_every_migration_ends() {
    let fleet = Fleet::start();
    let mut a = fleet.replica();
    // The second starts once the first leads: which one leads is then known.
    let _ = leader_of(&[&a], Duration::from_secs(20)).await;
    let b = fleet.replica();
    assert_eq!(leader_of(&[&a, &b], Duration::from_secs(20)).await, 0);
    let ch = a.channel().await;
    overload_p0(ch.clone()).await;
    // The reference orchestrator, given both replicas.
    let servers = format!("{},{}", a.endpoint(), b.endpoint());
    let agent = std::process::Command::new(&*SWARMCTL)
        .args(["--server", &servers, "agent", "--id", "ha-agent", "--report-every", "200ms"])
        .args(["--shadow-start", "300ms", "--exit-when-idle", "6s"])
        .env("SWARM_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first = round(ch.clone()).await.decisions.remove(0);
    // Kill the leader while the migration is under way.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ms = migrations(ch.clone()).await;
        let m = ms.iter().find(|m| m.decision_sequence == first.sequence).expect("the decision's migration");
        if m.phase == pb::MigrationPhase::Shadowing as i32 || m.phase == pb::MigrationPhase::ShadowStarting as i32 {
            break;
        }
        assert!(Instant::now() < deadline, "the agent never took the migration: {m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.kill();
    let _ = leader_of(&[&b], Duration::from_secs(TTL_S + 15)).await;
    let ch = b.channel().await;
    // The new leader decides again; the agent carries both out through it.
    let second = round(ch.clone()).await.decisions.remove(0);
    assert_eq!(second.sequence, first.sequence + 1);
    let s = summary(agent);
    assert_eq!(s["instances_inconsistent"], 0, "{s}");
    let terminal = [
        pb::MigrationPhase::Completed,
        pb::MigrationPhase::RolledBack,
        pb::MigrationPhase::TimedOut,
        pb::MigrationPhase::Rejected,
        pb::MigrationPhase::ShadowUnhealthy,
    ]
    .map(|p| p as i32);
    let ms = migrations(ch.clone()).await;
    assert_eq!(ms.len(), 2, "{ms:?}");
    for m in &ms {
        assert!(terminal.contains(&m.phase), "every migration ends: {m:?}");
    }
    let second_m = ms.iter().find(|m| m.decision_sequence == second.sequence).unwrap();
    assert_eq!(second_m.phase, pb::MigrationPhase::Completed as i32, "{second_m:?}");
    // Epochs carry the term of the leader that handed them out.
    let first_m = ms.iter().find(|m| m.decision_sequence == first.sequence).unwrap();
    let (t1, t2) = (first_m.epoch >> 20, second_m.epoch >> 20);
    assert!(t1 > 0 && t2 > t1, "the second migration was accepted under the newer term: {first_m:?} {second_m:?}");
    let mut topo = pb::topology_client::TopologyClient::new(ch);
    let nodes = topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner().nodes;
    for n in &nodes {
        let done = ms.iter().find(|m| m.virtual_node_id == n.id && m.phase == pb::MigrationPhase::Completed as i32);
        let want = done.map_or("p0", |m| m.to_node_id.as_str());
        assert_eq!(n.placement, want, "{} has exactly its one placement", n.id);
    }
}
