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
use pb::MigrationPhase as P;
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

    /// A leading replica and a standby behind it, `extra` the standby's
    /// flags. The second starts once the first leads, so which one leads
    /// is known.
    async fn leader_and_standby(&self, extra: &[&str]) -> (Server, Server) {
        let a = self.replica();
        let _ = leader_of(&[&a], Duration::from_secs(20)).await;
        let b = self.replica_with(extra);
        assert_eq!(leader_of(&[&a, &b], Duration::from_secs(20)).await, 0, "the first replica started leads");
        (a, b)
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
    // The standby's dashboard (and /metrics) port is chosen here: it opens
    // only once the replica leads, after start-up has been read.
    let b_http = format!("127.0.0.1:{}", common::prom::free_port());
    let (mut a, b) = fleet.leader_and_standby(&["--http", &b_http]).await;

    // The standby answers a write UNAVAILABLE, naming the leader (once its
    // first campaign attempt has seen who leads).
    let e = eventually(Duration::from_secs(5), "the standby names the leader", || async {
        let e = dry_round(&b).await.unwrap_err();
        e.message().contains(&a.endpoint()).then_some(e)
    })
    .await;
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(e.message().contains("standby"), "{}", e.message());
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

/// Polls `f` until it returns `Some`, for at most `within`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    what: &str,
    f: impl Fn() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_serves_reads_from_its_etcd_fed_copy_while_members_die() {
    let mut fleet = Fleet::start();
    let (a, b) = fleet.leader_and_standby(&[]).await;
    let ch = a.channel().await;
    overload_p0(ch.clone()).await;
    let sb = b.channel().await;

    // The topology the leader wrote reaches the standby, which answers from
    // its copy and says so.
    let listed = eventually(Duration::from_secs(10), "the standby lists the leader's virtual nodes", || {
        let sb = sb.clone();
        async move {
            let mut t = pb::topology_client::TopologyClient::new(sb);
            let r = t.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.ok()?;
            (r.get_ref().nodes.len() == 4).then_some(r)
        }
    })
    .await;
    let md = listed.metadata();
    assert_eq!(md.get("swarm-role").and_then(|v| v.to_str().ok()), Some("standby"));
    assert_eq!(md.get("swarm-leader").and_then(|v| v.to_str().ok()), Some(a.endpoint().as_str()));
    let revision: i64 = md.get("swarm-revision").and_then(|v| v.to_str().ok()).unwrap().parse().unwrap();
    assert!(revision > 0);
    assert!(listed.get_ref().nodes.iter().all(|n| n.placement == "p0"));

    // A decision watch on the standby sees every decision the leader
    // commits, once and in order, while each etcd member in turn dies
    // (one of them is the member the standby's watch runs on).
    let mut p = pb::placement_client::PlacementClient::new(sb.clone());
    let mut watch = p.watch_decisions(pb::WatchDecisionsRequest { from_sequence: 1 }).await.unwrap().into_inner();
    for m in 0..3 {
        fleet.etcd.kill(m);
        let d = round(ch.clone()).await.decisions.remove(0);
        let seen = tokio::time::timeout(Duration::from_secs(15), watch.next())
            .await
            .unwrap_or_else(|_| {
                panic!("decision {} did not reach the standby's watch with member {m} down", d.sequence)
            })
            .unwrap()
            .unwrap();
        assert_eq!((seen.sequence, &seen.virtual_node_id), (d.sequence, &d.virtual_node_id));
        fleet.etcd.restart(m);
    }
    assert_eq!(decisions(sb.clone()).await, vec![1, 2, 3]);
    assert_eq!(decisions(ch.clone()).await, vec![1, 2, 3]);

    // Migrations as the leader has them, one by id, and an unknown id refused.
    let (on_leader, on_standby) = (migrations(ch.clone()).await, migrations(sb.clone()).await);
    let key = |ms: &[pb::Migration]| ms.iter().map(|m| (m.id.clone(), m.phase, m.epoch)).collect::<Vec<_>>();
    assert_eq!(key(&on_standby), key(&on_leader));
    assert_eq!(on_standby.len(), 3);
    let mut mig = pb::migrations_client::MigrationsClient::new(sb.clone());
    let one = mig.get_migration(pb::GetMigrationRequest { id: on_leader[0].id.clone() }).await.unwrap().into_inner();
    assert_eq!(one.migration.unwrap().decision_sequence, on_leader[0].decision_sequence);
    let e = mig.get_migration(pb::GetMigrationRequest { id: "m999".into() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    // Writes, and the reads that need the leader's series, still go there.
    let mut topo = pb::topology_client::TopologyClient::new(sb.clone());
    let e = topo.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![physical("p9", 8.0)] }).await;
    let e = e.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert_eq!(e.metadata().get("swarm-leader").and_then(|v| v.to_str().ok()), Some(a.endpoint().as_str()));
    let e = p.get_affinity(pb::GetAffinityRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_fenced_and_steps_down() {
    let fleet = Fleet::start();
    let (mut a, b) = fleet.leader_and_standby(&[]).await;
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
    let (mut a, b) = fleet.leader_and_standby(&[]).await;
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
async fn a_chaos_loop_of_kills_keeps_every_decision_once_and_every_migration_ends() {
    use rand::{Rng, SeedableRng};
    let mut fleet = Fleet::start();
    let mut replicas: Vec<Server> = (0..3).map(|_| fleet.replica()).collect();
    let l = try_leader(&replicas, Duration::from_secs(20)).await.expect("a leader");
    let ch = replicas[l].channel().await;
    assert_eq!(busy_p0(ch, 24, 15.9, 0.6).await, 30 * 25);
    // The reference orchestrator carries out every decision throughout.
    let servers = replicas.iter().map(|r| r.endpoint()).collect::<Vec<_>>().join(",");
    let agent = |extra: &[&str]| {
        std::process::Command::new(&*SWARMCTL)
            .args(["--server", &servers, "agent", "--id", "chaos-agent", "--report-every", "200ms"])
            .args(["--shadow-start", "300ms"])
            .args(extra)
            .env("SWARM_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first_agent = agent(&[]);

    // 20 random kills (seeded, so a failure replays): a replica (the
    // supervisor restarts it at once, on its port) or one etcd member
    // (restarted after the next round, so a majority always remains); a
    // round after each.
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    let mut etcd_down = None;
    for _ in 0..20 {
        if rng.random_bool(0.6) {
            let i = rng.random_range(0..replicas.len());
            replicas[i].kill_and_restart_same_port();
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
    // The orchestrator dies too (SIGKILL) and comes back under the same
    // id: it adopts every live migration and ends it.
    let _ = first_agent.kill();
    let _ = first_agent.wait();
    let s = summary_within(agent(&["--exit-when-idle", "5s"]), Duration::from_secs(90));
    assert_eq!(s["instances_inconsistent"], 0, "{s}");

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
    // Every migration ended: completed (the virtual node is on its
    // target) or not (it is still on p0); each has exactly one placement.
    let ms = migrations(ch.clone()).await;
    assert_eq!(ms.len(), seqs.len(), "one migration per decision");
    let nodes = topo_of(&ch).await;
    assert_eq!(nodes.len(), 24);
    let mut completed = 0;
    for m in &ms {
        let ended = [P::Completed, P::RolledBack, P::Rejected].map(|p| p as i32);
        assert!(ended.contains(&m.phase), "every migration completes or rolls back: {m:?}");
        let n = nodes.iter().find(|n| n.id == m.virtual_node_id).unwrap();
        let want = if m.phase == P::Completed as i32 { &m.to_node_id } else { &m.from_node_id };
        assert_eq!(&n.placement, want, "{m:?}");
        completed += usize::from(m.phase == P::Completed as i32);
    }
    let decided: std::collections::HashSet<&str> = ms.iter().map(|m| m.virtual_node_id.as_str()).collect();
    assert!(nodes.iter().filter(|n| !decided.contains(n.id.as_str())).all(|n| n.placement == "p0"));
    assert!(completed >= 1, "the agent completed migrations through the chaos: {ms:?}");
    eprintln!(
        "chaos: {} decisions acknowledged, {} stored, {completed} migrations completed, agent {s}",
        acknowledged.len(),
        seqs.len()
    );
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
    let (mut a, b) = fleet.leader_and_standby(&[]).await;
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
    let s = summary_within(agent, Duration::from_secs(90));
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

/// A progress report to `ch` for migration `id` under `epoch`; the
/// migration after it.
async fn report(
    ch: &tonic::transport::Channel,
    id: &str,
    epoch: u64,
    phase: pb::MigrationPhase,
    sick: bool,
) -> pb::Migration {
    let n = request_number();
    let health = (phase == pb::MigrationPhase::Shadowing).then_some(pb::ShadowHealth {
        latency_ms: 10.0,
        original_latency_ms: 10.0,
        error_rate: if sick { 0.9 } else { 0.0 },
        lag_ms: 0.0,
    });
    let mut m = pb::migrations_client::MigrationsClient::new(ch.clone());
    let r = m.report_progress(pb::ReportProgressRequest {
        migration_id: id.into(),
        epoch,
        phase: phase as i32,
        health,
        request_id: format!("r{n}"),
    });
    r.await.unwrap_or_else(|e| panic!("report {phase:?} for {id}: {e:?}")).into_inner().migration.unwrap()
}

/// Accepts the migration of decision `seq` on `ch`; its epoch.
async fn accept(ch: &tonic::transport::Channel, seq: u64) -> u64 {
    let mut m = pb::migrations_client::MigrationsClient::new(ch.clone());
    let req = pb::AcceptMigrationRequest {
        decision_sequence: seq,
        orchestrator_id: "phase-test".into(),
        request_id: format!("accept-{}", request_number()),
    };
    m.accept_migration(req).await.unwrap().into_inner().epoch
}

/// The agent's summary once it exits, which must be within `within`.
fn summary_within(mut agent: std::process::Child, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    while agent.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = agent.kill();
            panic!("the agent did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    summary(agent)
}

/// A fresh idempotency key suffix.
fn request_number() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_with_a_migration_in_every_phase_hands_each_on_intact() {
    let fleet = Fleet::start();
    let (mut a, b) = fleet.leader_and_standby(&[]).await;
    let ch = a.channel().await;
    // Eight virtual nodes on p0; draining p0 moves them, one per round.
    register_cluster(ch.clone(), 3, &[8, 0, 0]).await;
    let mut p0 = physical("p0", 16.0);
    p0.state = pb::PhysicalNodeState::Draining as i32;
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    topo.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![p0] }).await.unwrap();
    for k in 1..=8u64 {
        let r = round(ch.clone()).await;
        assert_eq!(r.decisions.iter().map(|d| d.sequence).collect::<Vec<_>>(), vec![k], "{r:?}");
    }
    let mut ms = migrations(ch.clone()).await;
    ms.sort_by_key(|m| m.decision_sequence);
    assert_eq!(ms.len(), 8);

    // As an orchestrator, hold one migration in each live phase:
    // proposed, accepted, shadow-starting, shadowing, verified,
    // cutting-over, and two rolling back (shadow unhealthy, aborted).
    let mut epoch = [0u64; 8];
    for (i, m) in ms.iter().enumerate().skip(1) {
        epoch[i] = accept(&ch, m.decision_sequence).await;
    }
    report(&ch, &ms[2].id, epoch[2], P::ShadowStarting, false).await;
    for i in [3, 4, 5] {
        report(&ch, &ms[i].id, epoch[i], P::Shadowing, false).await;
    }
    report(&ch, &ms[6].id, epoch[6], P::Shadowing, true).await;
    let mut mig = pb::migrations_client::MigrationsClient::new(ch.clone());
    mig.abort_migration(pb::AbortMigrationRequest { id: ms[7].id.clone(), reason: "operator".into() }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // the verify window
    for i in [4, 5] {
        assert_eq!(report(&ch, &ms[i].id, epoch[i], P::Shadowing, false).await.phase, P::Verified as i32);
    }
    report(&ch, &ms[5].id, epoch[5], P::CuttingOver, false).await;
    let held = [
        P::Proposed,
        P::Accepted,
        P::ShadowStarting,
        P::Shadowing,
        P::Verified,
        P::CuttingOver,
        P::ShadowUnhealthy,
        P::Aborted,
    ]
    .map(|p| p as i32);
    let mut before = migrations(ch.clone()).await;
    before.sort_by_key(|m| m.decision_sequence);
    assert_eq!(before.iter().map(|m| m.phase).collect::<Vec<_>>(), held, "{before:?}");

    // SIGKILL the leader: a new one within the lease TTL + 2 s, holding
    // every migration in its phase under the epoch the orchestrator has.
    let killed = Instant::now();
    a.kill();
    let _ = leader_of(&[&b], Duration::from_secs(TTL_S + 15)).await;
    let failover = killed.elapsed();
    assert!(failover <= Duration::from_secs(TTL_S + 2), "failover took {failover:?} with a {TTL_S} s lease");
    let ch = b.channel().await;
    let mut after = migrations(ch.clone()).await;
    after.sort_by_key(|m| m.decision_sequence);
    let key = |ms: &[pb::Migration]| {
        ms.iter().map(|m| (m.id.clone(), m.phase, m.epoch, m.to_node_id.clone())).collect::<Vec<_>>()
    };
    assert_eq!(key(&after), key(&before), "every migration kept its phase, epoch and target");

    // The orchestrator carries each on through the new leader.
    epoch[0] = accept(&ch, ms[0].decision_sequence).await;
    assert!(epoch[0] >> 20 > epoch[1] >> 20, "accepted under the newer term: {epoch:?}");
    for i in 0..4 {
        report(&ch, &ms[i].id, epoch[i], P::Shadowing, false).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..4 {
        let m = report(&ch, &ms[i].id, epoch[i], P::Shadowing, false).await;
        assert_eq!(m.phase, P::Verified as i32, "{m:?}");
    }
    for i in 0..5 {
        report(&ch, &ms[i].id, epoch[i], P::CuttingOver, false).await;
    }
    for i in 0..6 {
        assert_eq!(report(&ch, &ms[i].id, epoch[i], P::Completed, false).await.phase, P::Completed as i32);
    }
    for i in [6, 7] {
        assert_eq!(report(&ch, &ms[i].id, epoch[i], P::RolledBack, false).await.phase, P::RolledBack as i32);
    }

    // Every virtual node has exactly one placement: the target of a
    // completed move, p0 for the two rolled back; the decisions intact.
    let nodes = topo_of(&ch).await;
    assert_eq!(nodes.len(), 8);
    for (i, m) in ms.iter().enumerate() {
        let want = if i < 6 { m.to_node_id.as_str() } else { "p0" };
        let n = nodes.iter().find(|n| n.id == m.virtual_node_id).expect("the virtual node");
        assert_eq!(n.placement, want, "{} after migration {} ({:?})", n.id, m.id, held[i]);
    }
    assert_eq!(decisions(ch).await, (1..=8).collect::<Vec<u64>>());
}

async fn topo_of(ch: &tonic::transport::Channel) -> Vec<pb::VirtualNode> {
    let mut t = pb::topology_client::TopologyClient::new(ch.clone());
    t.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner().nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_checks_bearer_tokens_as_the_leader_does() {
    const ADMIN: &str = "admin-3e8a61c07b59d214";
    const READ: &str = "read-9f24d1b6e0c7a358";
    let fleet = Fleet::start();
    let dir = tempfile::tempdir().unwrap();
    let (admin, read) = (dir.path().join("admin.token"), dir.path().join("read.token"));
    std::fs::write(&admin, format!("{ADMIN}\n")).unwrap();
    std::fs::write(&read, format!("{READ}\n")).unwrap();
    let (admin, read) = (admin.display().to_string(), read.display().to_string());
    let flags = ["--admin-token-file", admin.as_str(), "--read-token-file", read.as_str()];
    let with = |token: &str, ch: tonic::transport::Channel| swarm_client::with_token(ch, Some(token)).unwrap();

    let a = fleet.replica_with(&flags);
    let ch_a = a.channel().await;
    eventually(Duration::from_secs(20), "the first replica leads", || {
        let mut p = pb::placement_client::PlacementClient::new(with(ADMIN, ch_a.clone()));
        async move { p.run_round(pb::RunRoundRequest { dry_run: true }).await.ok() }
    })
    .await;
    let b = fleet.replica_with(&flags);
    let ch_b = b.channel().await;
    // Once its copy is loaded the standby answers a read token's read...
    let listed = eventually(Duration::from_secs(20), "the standby serves a read", || {
        let mut t = pb::topology_client::TopologyClient::new(with(READ, ch_b.clone()));
        async move { t.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.ok() }
    })
    .await;
    assert_eq!(listed.metadata().get("swarm-role").and_then(|v| v.to_str().ok()), Some("standby"));
    // ...refuses a call without a token, and a read token's write, before
    // anything else...
    let mut anon = pb::topology_client::TopologyClient::new(ch_b.clone());
    let e = anon.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let node = || pb::UpsertPhysicalNodesRequest { nodes: vec![physical("p9", 8.0)] };
    let mut reader = pb::topology_client::TopologyClient::new(with(READ, ch_b.clone()));
    let e = reader.upsert_physical_nodes(node()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // ...and sends an admin's write to the leader, once it has seen the
    // leader's election key (its copy of the state can be loaded first: the
    // two come from different etcd reads).
    let e = eventually(Duration::from_secs(20), "the standby names the leader", || {
        let mut admin = pb::topology_client::TopologyClient::new(with(ADMIN, ch_b.clone()));
        async move {
            let e = admin.upsert_physical_nodes(node()).await.unwrap_err();
            let named =
                e.metadata().get("swarm-leader").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("http"));
            named.then_some(e)
        }
    })
    .await;
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert_eq!(e.metadata().get("swarm-leader").and_then(|v| v.to_str().ok()), Some(a.endpoint().as_str()));
}
