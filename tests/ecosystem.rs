//! swarmd in the operator's ecosystem, against the real binary: gRPC health
//! checking (SERVING, then NOT_SERVING while draining), server reflection
//! (what grpcurl uses to list and call everything), the OTLP metrics
//! receiver (gauges, delta sums, partial success for what it cannot take),
//! and Prometheus `/metrics` on the HTTP port.

use crate::common;

use common::otlp::{gauge, kv, point};
use common::*;
use swarm_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use swarm_proto::otlp::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use swarm_proto::otlp::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
};
use swarm_proto::otlp::resource::v1::Resource;
use swarm_proto::v1 as pb;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection() {
    let mut server = Server::start(&["--round-interval", "1h"]);
    let ch = server.channel().await;
    let mut health = HealthClient::new(ch.clone());
    for svc in ["", "swarm.v1.Placement", "swarm.v1.Metrics", "opentelemetry.proto.collector.metrics.v1.MetricsService"]
    {
        let r = health.check(HealthCheckRequest { service: svc.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{svc:?}");
    }
    let e = health.check(HealthCheckRequest { service: "swarm.v1.Nope".into() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Reflection lists every service and serves the file that defines one.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut refl = ServerReflectionClient::new(ch.clone());
    let ask = |m: MessageRequest| ServerReflectionRequest { host: String::new(), message_request: Some(m) };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol("swarm.v1.Placement".into())),
        ]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "swarm.v1.Topology",
        "swarm.v1.Metrics",
        "swarm.v1.Placement",
        "swarm.v1.Migrations",
        "swarm.v1.Reconfiguration",
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not listed: {names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors");
    };
    let file: prost_types::FileDescriptorProto =
        prost::Message::decode(files.file_descriptor_proto[0].as_slice()).unwrap();
    assert_eq!(file.name(), "swarm/v1/placement.proto");
    assert!(file.service.iter().any(|s| s.name() == "Placement" && s.method.iter().any(|m| m.name() == "GetAffinity")));

    // While draining, the health service says NOT_SERVING (the watch sees it).
    let mut watch =
        health.watch(HealthCheckRequest { service: "swarm.v1.Placement".into() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);
    server.terminate_nowait();
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), watch.message()).await.expect("an update");
    if let Ok(Some(m)) = next {
        assert_eq!(m.status, ServingStatus::NotServing as i32);
    } else {
        panic!("the watch ended without NOT_SERVING: {next:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_metrics_arrive_and_prometheus_counts_them() {
    let server = Server::start(&["--round-interval", "1h", "--http", "127.0.0.1:0"]);
    let ch = server.channel().await;
    register_cluster(ch.clone(), 2, &[1, 1]).await;
    let now = now_ms();
    let node = |id: &str| vec![kv("swarm.node.id", id)];
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![
            // A VM's own exporter: the resource names it.
            ResourceMetrics {
                resource: Some(Resource { attributes: node("v0-0"), ..Default::default() }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        gauge("swarm.cpu", vec![point(vec![], now - 60_000, 1.5), point(vec![], now, 2.5)]),
                        // Unknown to Swarm, and a cumulative counter: refused, named.
                        gauge("disk_iops", vec![point(vec![], now, 7.0)]),
                        Metric {
                            name: "throughput_rps".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![point(vec![], now, 100.0)],
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                        // A delta counter becomes a rate: 3,000 requests in 60 s.
                        Metric {
                            name: "throughput_rps".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint {
                                    start_time_unix_nano: (now - 60_000) as u64 * 1_000_000,
                                    ..point(vec![], now, 3000.0)
                                }],
                                aggregation_temporality: AggregationTemporality::Delta as i32,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            // A collector scraping hosts: each point names its node; p0 is
            // registered as physical, so no kind is needed; "ghost" is unknown.
            ResourceMetrics {
                resource: Some(Resource::default()),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![gauge(
                        "cpu",
                        vec![point(node("p0"), now, 9.0), point(node("ghost"), now, 1.0), point(vec![], now, 1.0)],
                    )],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    };
    let mut otlp = MetricsServiceClient::new(ch.clone());
    let r = otlp.export(req).await.unwrap().into_inner();
    let partial = r.partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 4, "{partial:?}");
    let msg = partial.error_message;
    assert!(msg.contains("disk_iops: unknown metric"), "{msg}");
    assert!(msg.contains("throughput_rps: cumulative counters are not supported"), "{msg}");
    assert!(msg.contains("unknown virtual node \"ghost\""), "{msg}");
    assert!(msg.contains("no swarm.node.id"), "{msg}");
    let cpu = query(ch.clone(), pb::EntityKind::Virtual, "v0-0", pb::Metric::CpuUsage).await;
    let got: Vec<(i64, f64)> = cpu.iter().map(|p| (p.timestamp_ms, p.value)).collect();
    assert_eq!(got, vec![(now - 60_000, 1.5), (now, 2.5)]);
    let rps = query(ch.clone(), pb::EntityKind::Virtual, "v0-0", pb::Metric::ThroughputRps).await;
    assert_eq!(rps.iter().map(|p| p.value).collect::<Vec<_>>(), vec![50.0]);
    let p0 = query(ch.clone(), pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage).await;
    assert_eq!(p0.iter().map(|p| p.value).collect::<Vec<_>>(), vec![9.0]);
    // All good: no partial success at all.
    let ok = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: node("v1-0"), ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![gauge("memory", vec![point(vec![], now, 1e9)])],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    assert!(otlp.export(ok).await.unwrap().into_inner().partial_success.is_none());

    // Prometheus: the intake counters, nodes, migrations by phase, store size.
    let mut p = pb::placement_client::PlacementClient::new(ch.clone());
    p.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap();
    let ingested =
        ingest(ch.clone(), vec![vec![sample(pb::EntityKind::Virtual, "v1-0", pb::Metric::CpuUsage, now, 1.0)]])
            .await
            .unwrap();
    assert_eq!(ingested.accepted, 1);
    let base = server.http.clone().unwrap();
    let (status, head, text) = http_get(&base, "/metrics", "");
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("content-type: application/openmetrics-text"), "{head}");
    let value = |line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("swarm_ingest_samples_total{source=\"otlp\",result=\"accepted\"}"), 5.0);
    assert_eq!(value("swarm_ingest_samples_total{source=\"otlp\",result=\"rejected\"}"), 4.0);
    assert_eq!(value("swarm_ingest_samples_total{source=\"grpc\",result=\"accepted\"}"), 1.0);
    assert_eq!(value("swarm_rounds_total"), 1.0);
    assert_eq!(value("swarm_round_duration_seconds_count"), 1.0);
    // The round's stages, each timed, in the order they run.
    let stages: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("swarm_round_stage_seconds{stage=\""))
        .filter_map(|l| l.split('"').next())
        .collect();
    for stage in ["metrics_backend", "usage", "forecasts", "view", "decide", "commit"] {
        assert!(stages.contains(&stage), "no stage {stage} in {stages:?}");
        assert!(value(&format!("swarm_round_stage_seconds{{stage=\"{stage}\"}}")) >= 0.0);
    }
    assert_eq!(value("swarm_nodes{kind=\"physical\"}"), 2.0);
    assert_eq!(value("swarm_nodes{kind=\"virtual\"}"), 2.0);
    assert_eq!(value("swarm_migrations{phase=\"completed\"}"), 0.0);
    assert!(value("swarm_store_bytes{store=\"metadata\"}") > 0.0);
    assert!(value("swarm_store_bytes{store=\"series\"}") > 0.0);
    assert_eq!(value("swarm_series_rows"), 6.0, "2 + 1 + 1 + 1 by OTLP, 1 by Ingest");
    // Registering the cluster committed nodes and placements: each commit is timed.
    assert!(value("swarm_metadata_store_seconds_count{op=\"commit\"}") >= 3.0);
    assert!(text.ends_with("# EOF\n"));
}
