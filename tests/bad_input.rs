//! End to end: every kind of bad input gets the right status code, a message
//! naming the field, and changes nothing.

use crate::common;

use common::*;
use swarm_proto::v1 as pb;
use tonic::Code;

fn start_small_batches() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("swarm.toml");
    std::fs::write(&cfg, "max_batch_samples = 1000\nround_interval = \"1h\"\n").unwrap();
    (Server::start(&["--config", cfg.to_str().unwrap()]), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_input_is_validated_all_or_nothing() {
    let (server, _d) = start_small_batches();
    let ch = server.channel().await;
    let mut t = pb::topology_client::TopologyClient::new(ch.clone());
    let mut bad = physical("p-bad", 4.0);
    bad.capacity.as_mut().unwrap().cpu_cores = f64::NAN;
    let e = t
        .upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![physical("p-ok", 4.0), bad] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "nodes[1].capacity.cpu_cores: is NaN");
    let mut neg = physical("p-neg", 4.0);
    neg.capacity.as_mut().unwrap().cpu_cores = -2.0;
    let e = t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![neg] }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("cpu_cores: is negative"), "{}", e.message());
    let e =
        t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![physical("", 4.0)] }).await.unwrap_err();
    assert_eq!(e.message(), "nodes[0].id: id must not be empty");
    let listed = t.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.unwrap().into_inner();
    assert!(listed.nodes.is_empty(), "a rejected request writes nothing: {listed:?}");

    register_cluster(ch.clone(), 2, &[1, 0]).await;
    let e = t
        .upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: vec![virt("v-new", 1.0), virt("bad id", 1.0)] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("nodes[1].id: "), "{}", e.message());
    let mut pinned = virt("v-pin", 1.0);
    pinned.constraints = Some(pb::Constraints { pinned_node: "p-missing".into(), anti_affinity_group: String::new() });
    let e = t.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: vec![pinned] }).await.unwrap_err();
    assert!(e.message().contains("constraints.pinned_node: unknown physical node p-missing"), "{}", e.message());
    let e = t
        .set_placements(pb::SetPlacementsRequest {
            placements: vec![pb::PlacementAssignment { virtual_node_id: "v0-0".into(), physical_node_id: "p9".into() }],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "placements[0].physical_node_id: unknown physical node p9");
    let e = t.remove_physical_node(pb::RemovePhysicalNodeRequest { id: "p7".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = t.remove_physical_node(pb::RemovePhysicalNodeRequest { id: "p0".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("still runs 1 virtual node"), "{}", e.message());
    t.remove_physical_node(pb::RemovePhysicalNodeRequest { id: "p1".into() }).await.unwrap();
    let listed = t.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), vec!["p0"]);
    let vn = t.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner();
    assert_eq!(vn.nodes.len(), 1, "no virtual node was created by the failed calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_are_validated_per_sample_and_batches_are_bounded() {
    let (server, _d) = start_small_batches();
    let ch = server.channel().await;
    register_cluster(ch.clone(), 1, &[1]).await;
    let now = now_ms();
    let good = |ts: i64, v: f64| sample(pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage, ts, v);
    let mut empty_id = good(now, 1.0);
    empty_id.entity_id.clear();
    let mut unknown = good(now, 1.0);
    unknown.entity_id = "p42".into();
    let mut latency_on_physical = good(now, 1.0);
    latency_on_physical.metric = pb::Metric::LatencyMs as i32;
    let mut access_without_location =
        sample(pb::EntityKind::Virtual, "v0-0", pb::Metric::DataAccessBytesPerSec, now, 5.0);
    access_without_location.location.clear();
    let batch = vec![
        good(now - 3000, 1.0),
        good(now - 2000, f64::NAN),
        good(now - 2000, f64::INFINITY),
        good(now - 2000, -1.0),
        unknown,
        empty_id,
        good(now + 3_600_000, 1.0),
        latency_on_physical,
        access_without_location,
        good(now - 1000, 2.0),
    ];
    let r = ingest(ch.clone(), vec![batch]).await.unwrap();
    assert_eq!((r.accepted, r.rejected), (2, 8));
    let fields: Vec<(u32, &str)> = r.rejections.iter().map(|x| (x.sample_index, x.field.as_str())).collect();
    assert_eq!(
        fields,
        vec![
            (1, "value"),
            (2, "value"),
            (3, "value"),
            (4, "entity_id"),
            (5, "entity_id"),
            (6, "timestamp_ms"),
            (7, "metric"),
            (8, "location")
        ]
    );
    assert!(r.rejections[0].reason.contains("NaN"));
    assert!(r.rejections[3].reason.contains("unknown physical node \"p42\""));
    assert!(r.rejections[5].reason.contains("future"));

    // Out of order and duplicates: accepted, de-duplicated, last write wins.
    let r = ingest(ch.clone(), vec![vec![good(now - 500, 5.0), good(now - 900, 6.0)], vec![good(now - 500, 7.0)]])
        .await
        .unwrap();
    assert_eq!((r.accepted, r.rejected), (3, 0));
    let mut m = pb::metrics_client::MetricsClient::new(ch.clone());
    let q = |from_ms: i64| pb::QuerySeriesRequest {
        entity_kind: pb::EntityKind::Physical as i32,
        entity_id: "p0".into(),
        metric: pb::Metric::CpuUsage as i32,
        from_ms,
        ..Default::default()
    };
    let pts = m.query_series(q(0)).await.unwrap().into_inner().points;
    let got: Vec<(i64, f64)> = pts.iter().map(|p| (p.timestamp_ms, p.value)).collect();
    assert_eq!(got, vec![(now - 3000, 1.0), (now - 1000, 2.0), (now - 900, 6.0), (now - 500, 7.0)]);

    // A batch over the limit fails the stream with INVALID_ARGUMENT and stores nothing of it.
    let big: Vec<pb::Sample> = (0..1001).map(|k| good(now - 100_000 + k, 9.0)).collect();
    let e = ingest(ch.clone(), vec![big]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("has 1001 samples; the limit is 1000"), "{}", e.message());
    assert_eq!(m.query_series(q(0)).await.unwrap().into_inner().points.len(), 4);

    let mut bad_q = q(0);
    bad_q.entity_id = "ghost".into();
    assert_eq!(m.query_series(bad_q).await.unwrap_err().code(), Code::NotFound);
    let mut bad_q = q(10);
    bad_q.to_ms = 5;
    assert_eq!(m.query_series(bad_q).await.unwrap_err().code(), Code::InvalidArgument);

    // A forecast request with nothing set names the field at fault.
    let mut p = pb::placement_client::PlacementClient::new(ch.clone());
    let e = p.get_forecast(pb::GetForecastRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("entity_kind"), "{}", e.message());
    // Unknown ids are NOT_FOUND and say which.
    let mut rc = pb::reconfiguration_client::ReconfigurationClient::new(ch.clone());
    let e = rc.get_reconfiguration(pb::GetReconfigurationRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("unknown reconfiguration"), "{}", e.message());
    let e = p.watch_decisions(pb::WatchDecisionsRequest { from_sequence: 1 }).await;
    assert!(e.is_ok(), "resuming from 1 on an empty log waits for decision 1");
}

#[test]
fn cli_errors_say_what_to_do() {
    let out = std::process::Command::new(&*SWARMCTL)
        .args(["--server", "http://127.0.0.1:9", "nodes", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server not reachable at http://127.0.0.1:9") && err.contains("Is swarmd running?"), "{err}");
    // No scheme is bad input (exit 2), not an unreachable server.
    let out =
        std::process::Command::new(&*SWARMCTL).args(["--server", "localhost:9", "nodes", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no scheme: write http://localhost:9"), "{err}");
    let out = std::process::Command::new(SWARMD).args(["--retention", "soon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"));
    // A model artifact that does not load stops the start with the reason.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    std::fs::write(&model, "{\"format_version\": 7}").unwrap();
    let out = std::process::Command::new(SWARMD)
        .args(["--listen", "127.0.0.1:0", "--model", model.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("format version 7"), "{err}");
}

/// Finite but absurd values are refused with the bound they break, and the
/// round that follows decides nothing on them (a CPU sample of 1.7e308
/// cores used to become an OVERLOAD decision reading "inf%" and "benefit
/// NaN"); a capacity outside the API's range is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_values_are_refused_with_the_bound() {
    let server = Server::start(&["--round-interval", "1h"]);
    let ch = server.channel().await;
    register_cluster(ch.clone(), 2, &[2, 0]).await;
    let now = now_ms();
    let batch = vec![
        sample(pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage, now - 1000, 1.7e308),
        sample(pb::EntityKind::Virtual, "v0-0", pb::Metric::CpuUsage, now - 1000, 1e9),
        sample(pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage, now - 1000, 3.0),
    ];
    let r = ingest(ch.clone(), vec![batch]).await.unwrap();
    assert_eq!((r.accepted, r.rejected), (1, 2), "{:?}", r.rejections);
    for x in &r.rejections {
        assert_eq!(x.field, "value");
        assert!(x.reason.contains("implausible") && x.reason.contains("limits.max_cpu_multiple"), "{}", x.reason);
    }
    let mut p = pb::placement_client::PlacementClient::new(ch.clone());
    let round = p.run_round(pb::RunRoundRequest { dry_run: true }).await.unwrap().into_inner();
    for d in &round.decisions {
        assert!(!d.reason.contains("inf") && !d.reason.contains("NaN"), "{}", d.reason);
    }
    let mut t = pb::topology_client::TopologyClient::new(ch);
    let mut huge = physical("p9", 8.0);
    huge.capacity.as_mut().unwrap().memory_bytes = u64::MAX;
    let e = t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![huge] }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("nodes[0].capacity.memory_bytes") && e.message().contains("2^63"), "{}", e.message());
}

/// Control characters in any text field are refused (a label with ESC used
/// to reach `swarmctl nodes list` raw); the field is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_in_every_text_field() {
    let server = Server::start(&["--round-interval", "1h"]);
    let mut t = pb::topology_client::TopologyClient::new(server.channel().await);
    let mut escape = physical("p0", 8.0);
    escape.labels.insert("zone".into(), "z1\u{1b}[31m".into());
    let e = t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![escape] }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("labels") && e.message().contains("control character"), "{}", e.message());
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![physical("p0", 8.0)] }).await.unwrap();
    for (group, anti) in [("db\0", ""), ("db", "a\u{7}")] {
        let mut v = virt("v0", 1.0);
        v.group = group.into();
        v.constraints = Some(pb::Constraints { pinned_node: String::new(), anti_affinity_group: anti.into() });
        let e = t.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: vec![v] }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("control character"), "{}", e.message());
    }
    let listed = t.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner();
    assert!(listed.nodes.is_empty(), "nothing was stored");
}

/// `swarmctl ingest-csv` (with `extra` flags) of a file holding `contents`,
/// against a fresh swarmd with one physical and one virtual node (`v0-0`).
async fn ingest_csv_file(contents: &str, extra: &[&str]) -> std::process::Output {
    let server = Server::start(&["--round-interval", "1h"]);
    register_cluster(server.channel().await, 1, &[1]).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("input.csv");
    std::fs::write(&csv, contents).unwrap();
    server.swarmctl().args(["ingest-csv"]).args(extra).arg(&csv).output().unwrap()
}

/// A trace whose timestamps are in seconds (1970 as milliseconds) is read
/// but every sample falls outside retention: storing nothing from a
/// non-empty file is a failure (exit 2) that names the likely cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_that_stores_nothing_fails_with_the_likely_cause() {
    let now_s = now_ms() / 1000;
    let out = ingest_csv_file(
        &format!("timestamp,entity,metric,value\n{},v0-0,cpu,1.5\n{},v0-0,cpu,1.0\n", now_s - 60, now_s),
        &["--format", "long-csv"],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing from") && err.contains("all rejected"), "{err}");
    assert!(err.contains("timestamps in seconds"), "{err}");
}

/// Sends raw bytes as a request body: what a broken encoder would send.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct Raw;

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = prost::bytes::Buf::remaining(buf);
        Ok(Some(prost::bytes::Buf::copy_to_bytes(buf, n).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_invalid_argument() {
    let (server, _d) = start_small_batches();
    let ch = server.channel().await;
    // Field 1 (nodes) as a length-delimited record claiming 100 bytes, with 2.
    let garbage = vec![0x0a, 0x64, 0x01, 0x02];
    let path = |p: &'static str| http::uri::PathAndQuery::from_static(p);
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.unwrap();
    let e = grpc
        .unary(tonic::Request::new(garbage.clone()), path("/swarm.v1.Topology/UpsertPhysicalNodes"), RawCodec)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("not a valid protobuf message"), "{}", e.message());
    // The same inside a stream.
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.unwrap();
    let e = grpc
        .client_streaming(
            tonic::Request::new(tokio_stream::iter(vec![garbage])),
            path("/swarm.v1.Metrics/Ingest"),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // Nothing was registered, and the server still answers.
    let mut t = pb::topology_client::TopologyClient::new(ch);
    let listed = t.list_physical_nodes(pb::ListPhysicalNodesRequest::default()).await.unwrap().into_inner();
    assert!(listed.nodes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_locations_must_be_known_and_are_bounded_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("swarm.toml");
    std::fs::write(&cfg, "round_interval = \"1h\"\n[limits]\nmax_locations_per_node = 3\n").unwrap();
    let server = Server::start(&["--config", cfg.to_str().unwrap()]);
    let ch = server.channel().await;
    let mut t = pb::topology_client::TopologyClient::new(ch.clone());
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![in_rack("p0", "eu-1", "r7")] }).await.unwrap();
    t.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: vec![virt("v0", 1.0)] }).await.unwrap();
    let at = |loc: &str, ts: i64| pb::Sample {
        location: loc.to_string(),
        ..sample(pb::EntityKind::Virtual, "v0", pb::Metric::DataAccessBytesPerSec, ts, 1e6)
    };
    let now = now_ms() - 60_000;
    let r = ingest(
        ch.clone(),
        vec![vec![
            at("p0", now),
            at("eu-1", now),
            at("eu-1/r7", now),
            at("eu-1/r7", now + 1),
            at("eu-2", now),
            at("p9", now),
        ]],
    )
    .await
    .unwrap();
    assert_eq!((r.accepted, r.rejected), (4, 2), "{:?}", r.rejections);
    assert!(r.rejections.iter().all(|x| x.field == "location" && x.reason.contains("neither a registered")));
    // Three known locations held; a fourth is refused with the limit named,
    // the three keep being accepted.
    // A second node in another rack makes `eu-1/r8` a known location.
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![in_rack("p1", "eu-1", "r8")] }).await.unwrap();
    let r = ingest(ch.clone(), vec![vec![at("eu-1/r8", now + 2), at("p0", now + 2)]]).await.unwrap();
    assert_eq!((r.accepted, r.rejected), (1, 1), "{:?}", r.rejections);
    assert!(r.rejections[0].reason.contains("limits.max_locations_per_node"), "{:?}", r.rejections);
}

/// An 8-core physical node in `zone`/`rack`.
fn in_rack(id: &str, zone: &str, rack: &str) -> pb::PhysicalNode {
    pb::PhysicalNode {
        labels: [("zone".to_string(), zone.to_string()), ("rack".to_string(), rack.to_string())].into(),
        ..physical(id, 8.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spreadsheet_csv_is_ingested_and_unread_columns_are_named() {
    let now = now_ms() - 60_000;
    let out = ingest_csv_file(
        &format!(
            "\u{feff}\"timestamp\",\"entity\",\"metric\",\"value\",\"owner\"\n{},\"v0-0\",cpu,1.5,ops\n{},\"v0-0\",cpu,1.0,ops\n",
            now - 300_000,
            now
        ),
        &[],
    )
    .await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("2 accepted"), "{stdout}");
    assert!(stdout.contains("columns not read") && stdout.contains("owner"), "{stdout}");
}
