//! Failover on etcd, end to end: a real etcd (one member, Debian's
//! etcd-server), a real Prometheus, two swarmd replicas on loopback. Kills
//! the leader N times (restarting it as a standby each time) and reports
//! how long the other took to answer as leader, against the lease TTL (the
//! floor: a standby may not lead before the old lease expires). Then the
//! cost of the etcd writes: a round that commits a decision, on etcd and on
//! the embedded store (both reading the same Prometheus), in the same run.
//!
//! Run: `cargo bench --workspace --profile dev --bench failover`
//! (env `KILLS`, default 10; `TTL_S` lease seconds, default 2).

#[path = "../../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::time::{Duration, Instant};

use swarm_proto::v1 as pb;

async fn answers_as_leader(s: &common::Server) -> bool {
    let Ok(ch) = tonic::transport::Channel::from_shared(s.endpoint()).unwrap().connect().await else { return false };
    let mut p = pb::placement_client::PlacementClient::new(ch);
    p.list_decisions(pb::ListDecisionsRequest { from_sequence: 1, limit: 1 }).await.is_ok()
}

async fn wait_leader(replicas: &[&common::Server]) -> usize {
    loop {
        for (i, r) in replicas.iter().enumerate() {
            if answers_as_leader(r).await {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Median and max of `xs`, seconds.
fn summary(xs: &mut [f64]) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2], xs[xs.len() - 1])
}

/// Rounds that each commit one decision, timed: the median, seconds.
async fn round_cost(ch: tonic::transport::Channel, rounds: usize) -> f64 {
    common::busy_p0(ch.clone(), rounds + 2, 15.5, 1.0).await;
    let mut p = pb::placement_client::PlacementClient::new(ch);
    let mut t = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let r = p.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
        t.push(started.elapsed().as_secs_f64());
        assert_eq!(r.decisions.len(), 1, "each timed round commits one decision");
    }
    summary(&mut t).0
}

fn main() {
    let kills: usize = std::env::var("KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let ttl: u64 = std::env::var("TTL_S").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let etcd = common::etcd::EtcdCluster::start(1);
        let prom = common::prom::Prometheus::start(&[]);
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("swarm.toml");
        std::fs::write(
            &cfg,
            format!("round_interval = \"1h\"\n[store]\nlease_ttl = \"{ttl}s\"\netcd_timeout = \"1s\"\n[controller]\nmax_decisions_per_round = 1\nmax_in_flight_per_node = 100\ncooldown = \"1h\"\n"),
        )
        .unwrap();
        let cfg = cfg.display().to_string();
        let endpoints = etcd.endpoints();
        let args = ["--config", &cfg, "--etcd-endpoints", &endpoints, "--prometheus-url", &prom.url];
        let mut replicas = [common::Server::start(&args), common::Server::start(&args)];
        let mut leader = wait_leader(&[&replicas[0], &replicas[1]]).await;
        println!("failover benchmark: etcd 3.4 (one member), Prometheus 2.42, two swarmd replicas, lease TTL {ttl} s, {kills} SIGKILLs of the leader");
        let mut times = Vec::new();
        for _ in 0..kills {
            let killed = Instant::now();
            replicas[leader].kill();
            let other = 1 - leader;
            while !answers_as_leader(&replicas[other]).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            times.push(killed.elapsed().as_secs_f64());
            replicas[leader] = common::Server::start(&args);
            leader = other;
        }
        let (median, max) = summary(&mut times);
        println!(
            "  SIGKILL -> the standby answers as leader: median {median:.2} s, max {max:.2} s ({:.2}x the lease TTL; goal <= TTL + 2 s)",
            median / ttl as f64
        );
        let ch = replicas[leader].channel().await;
        let etcd_round = round_cost(ch, 10).await;
        std::fs::write(
            cfg.replace("swarm.toml", "embedded.toml"),
            "round_interval = \"1h\"\n[controller]\nmax_decisions_per_round = 1\nmax_in_flight_per_node = 100\ncooldown = \"1h\"\n",
        )
        .unwrap();
        // The same kind of metrics backend (a fresh one: the first holds
        // these series already), so the difference is the metadata store's.
        let prom2 = common::prom::Prometheus::start(&[]);
        let embedded_cfg = cfg.replace("swarm.toml", "embedded.toml");
        let embedded = common::Server::start(&["--config", &embedded_cfg, "--prometheus-url", &prom2.url]);
        let embedded_round = round_cost(embedded.channel().await, 10).await;
        println!(
            "  a round committing one decision (median of 10): etcd {:.1} ms, embedded {:.1} ms, ratio {:.2}x",
            etcd_round * 1000.0,
            embedded_round * 1000.0,
            etcd_round / embedded_round
        );
    });
}
