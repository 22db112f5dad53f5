//! A data directory written by the first release opens with this one and
//! says the same: topology, decisions, migrations, the reconfiguration and
//! every stored sample (`tests/fixtures/datadir-v1/README.md` says how the
//! fixture was made). Guards the store's record formats.

use crate::common;

use std::path::Path;

use common::Server;
use swarm_proto::v1 as pb;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/datadir-v1");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn ctl_json(server: &Server, args: &[&str]) -> serde_json::Value {
    let out = server.swarmctl().args(["--output", "json"]).args(args).output().expect("run swarmctl");
    assert!(out.status.success(), "swarmctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("swarmctl {args:?} printed no JSON: {e}"))
}

fn expected(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(FIXTURE).join("expected").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_release_data_dir_opens_and_reads_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_dir(&Path::new(FIXTURE).join("data"), &dir);
    // No rounds during the test, and the fixture's samples stay retained
    // however old they are when the test runs.
    let server = Server::start_in(&dir, &["--round-interval", "24h", "--retention", "36500d"]);

    for (args, file) in [
        (&["decisions", "list", "--limit", "10000"][..], "decisions.json"),
        (&["migrations", "list", "--limit", "1000"][..], "migrations.json"),
        (&["nodes", "list"][..], "physical.json"),
        (&["nodes", "list", "--virtual"][..], "virtual.json"),
        (&["reconfigure", "status", "r1"][..], "reconfiguration-r1.json"),
        (&["migrations", "show", "m28"][..], "m28.json"),
    ] {
        let mut got = ctl_json(&server, args);
        if file == "decisions.json" {
            // Outcomes came after the first release: each decision now has
            // one (completed moves pending or measured, the rejected one
            // not moved), and the rest of it reads the same.
            for d in got.as_array_mut().unwrap() {
                let o = d.as_object_mut().unwrap().remove("outcome").expect("every listed decision has an outcome");
                let verdict = o["verdict"].as_str().unwrap();
                assert!(["pending", "helped", "neutral", "hurt", "not moved"].contains(&verdict), "{o}");
            }
        }
        assert_eq!(got, expected(file), "swarmctl {} differs from {file}", args.join(" "));
    }

    // Every sample the old release replayed is there.
    let want: usize =
        std::fs::read_to_string(Path::new(FIXTURE).join("expected/samples.txt")).unwrap().trim().parse().unwrap();
    let mut topo = pb::topology_client::TopologyClient::new(server.channel().await);
    let physical = topo.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.unwrap().into_inner().nodes;
    let virtual_nodes =
        topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner().nodes;
    let mut metrics = pb::metrics_client::MetricsClient::new(server.channel().await);
    let entities = physical
        .iter()
        .map(|n| (pb::EntityKind::Physical, n.id.clone()))
        .chain(virtual_nodes.iter().map(|n| (pb::EntityKind::Virtual, n.id.clone())));
    let mut total = 0;
    for (kind, id) in entities {
        for metric in [
            pb::Metric::CpuUsage,
            pb::Metric::MemoryBytes,
            pb::Metric::NetworkRxBytesPerSec,
            pb::Metric::NetworkTxBytesPerSec,
            pb::Metric::LatencyMs,
            pb::Metric::ThroughputRps,
            pb::Metric::CpuPeak,
        ] {
            if kind == pb::EntityKind::Physical && matches!(metric, pb::Metric::LatencyMs | pb::Metric::ThroughputRps) {
                continue;
            }
            let r = metrics
                .query_series(pb::QuerySeriesRequest {
                    entity_kind: kind as i32,
                    entity_id: id.clone(),
                    metric: metric as i32,
                    limit: 100_000,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("QuerySeries {id} {metric:?}: {e}"))
                .into_inner();
            total += r.points.len();
        }
    }
    assert_eq!(total, want, "samples read back from the first release's write-ahead log");
}
