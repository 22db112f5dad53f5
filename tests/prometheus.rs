//! The Prometheus metrics backend end to end, against a real Prometheus
//! (Debian's package) on loopback: samples written over gRPC reach it by
//! remote-write and are read back by PromQL; an outage skips rounds with
//! the reason and loses nothing; exporter metrics scraped by Prometheus
//! feed forecasts and decisions; TLS and basic auth in front of it are
//! honoured, and wrong credentials are an outage that says so.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::prom::Prometheus;
use common::*;
use swarm_proto::v1 as pb;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn swarmd_on(prom: &Prometheus, extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    seasonal_naive().save(&model).unwrap();
    let model = model.display().to_string();
    let mut args = vec!["--prometheus-url", &prom.url, "--model", &model, "--round-interval", "1h"];
    args.extend_from_slice(extra);
    (Server::start(&args), dir)
}

async fn metrics_health(ch: tonic::transport::Channel) -> i32 {
    let mut h = HealthClient::new(ch);
    h.check(HealthCheckRequest { service: "swarm.v1.Metrics".into() }).await.unwrap().into_inner().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_go_to_prometheus_by_remote_write_and_come_back_by_promql() {
    let prom = Prometheus::start(&[]);
    let (server, _dir) = swarmd_on(&prom, &[]);
    let ch = server.channel().await;
    place(ch.clone(), &[("p1", 16.0), ("p2", 16.0)], &[("v1", 2.0, "p1"), ("v2", 2.0, "p1"), ("v3", 4.0, "p2")]).await;

    // Two hours of 5-minute samples, on the step grid, oldest first.
    let now = now_ms();
    let last = now.div_euclid(STEP) * STEP;
    let value = |v: usize, k: i64| 0.25 * (v as f64 + 1.0) + 0.01 * k as f64;
    let mut batch = Vec::new();
    for k in 0..24i64 {
        let ts = last - (23 - k) * STEP;
        for v in 0..3 {
            batch.push(sample(pb::EntityKind::Virtual, &format!("v{}", v + 1), pb::Metric::CpuUsage, ts, value(v, k)));
        }
        batch.push(sample(pb::EntityKind::Physical, "p1", pb::Metric::CpuUsage, ts, 3.5));
    }
    let r = ingest(ch.clone(), vec![batch[..48].to_vec(), batch[48..].to_vec()]).await.unwrap();
    assert_eq!((r.accepted, r.rejected), (96, 0));

    // They are in Prometheus itself, under Swarm's names...
    let answer = prom.query("count(swarm_cpu)");
    assert_eq!(answer["data"]["result"][0]["value"][1], "4", "{answer}");
    let answer = prom.query(r#"swarm_cpu{swarm_node="v2",swarm_kind="virtual"}"#);
    assert_eq!(answer["data"]["result"][0]["value"][1], format!("{}", value(1, 23)), "{answer}");

    // ...and swarmd reads them back through PromQL with the same values.
    for v in 0..3 {
        let pts = query(ch.clone(), pb::EntityKind::Virtual, &format!("v{}", v + 1), pb::Metric::CpuUsage).await;
        // The cache also holds the steps up to now that Prometheus still
        // answers from the newest sample (its 5-minute lookback).
        // Values are kept as f32 in swarmd's frames (README "Series storage").
        let mine: Vec<(i64, f32)> =
            pts.iter().filter(|p| p.timestamp_ms <= last).map(|p| (p.timestamp_ms, p.value as f32)).collect();
        let expected: Vec<(i64, f32)> = (0..24).map(|k| (last - (23 - k) * STEP, value(v, k) as f32)).collect();
        assert_eq!(mine, expected, "v{}", v + 1);
    }

    // The OTLP receiver forwards the same way.
    {
        use swarm_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
        use swarm_proto::otlp::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
        use swarm_proto::otlp::metrics::v1::{ResourceMetrics, ScopeMetrics};
        use swarm_proto::otlp::resource::v1::Resource;
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![common::otlp::kv("swarm.node.id", "v3")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![common::otlp::gauge(
                        "swarm.latency_ms",
                        vec![common::otlp::point(vec![], last - STEP, 12.5), common::otlp::point(vec![], last, 13.5)],
                    )],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let r = MetricsServiceClient::new(ch.clone()).export(req).await.unwrap().into_inner();
        assert!(r.partial_success.is_none(), "{r:?}");
        let answer = prom.query(r#"swarm_latency_ms{swarm_node="v3",swarm_kind="virtual"}"#);
        assert_eq!(answer["data"]["result"][0]["value"][1], "13.5", "{answer}");
        let pts = query(ch.clone(), pb::EntityKind::Virtual, "v3", pb::Metric::LatencyMs).await;
        let mine: Vec<(i64, f64)> =
            pts.iter().filter(|p| p.timestamp_ms <= last).map(|p| (p.timestamp_ms, p.value)).collect();
        assert_eq!(mine, vec![(last - STEP, 12.5), (last, 13.5)]);
    }

    // A sample older than what Prometheus holds for its series is refused
    // by the backend: INVALID_ARGUMENT with its reason, nothing else lost.
    let stale = vec![sample(pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage, last - 30 * 60_000 + 1, 9.0)];
    let e = ingest(ch.clone(), vec![stale]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("out of order") && e.message().contains(&prom.url), "{}", e.message());
    // Swarm's own validation still runs first: unknown ids and NaN are refused per sample.
    let r = ingest(
        ch.clone(),
        vec![vec![
            sample(pb::EntityKind::Virtual, "ghost", pb::Metric::CpuUsage, now, 1.0),
            sample(pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage, now, f64::NAN),
        ]],
    )
    .await
    .unwrap();
    assert_eq!((r.accepted, r.rejected), (0, 2));
    let pts = query(ch.clone(), pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage).await;
    assert!(pts.iter().all(|p| p.value != 9.0 && p.value.is_finite()));
    assert_eq!(metrics_health(ch.clone()).await, 1, "SERVING");
    // The controller reads the same data: p1 is placed with 0.75 cores of v1+v2 and reports 3.5.
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    let round = placement.run_round(pb::RunRoundRequest { dry_run: true }).await.unwrap().into_inner();
    assert_eq!(round.virtual_nodes_evaluated, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_skips_rounds_with_the_reason_and_loses_nothing() {
    let mut prom = Prometheus::start(&[]);
    let (server, _dir) = swarmd_on(&prom, &["--http", "127.0.0.1:0"]);
    let ch = server.channel().await;
    place(ch.clone(), &[("p1", 16.0), ("p2", 16.0)], &[("v1", 2.0, "p1")]).await;
    let last = now_ms().div_euclid(STEP) * STEP;
    let before: Vec<_> = (0..6)
        .map(|k| sample(pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage, last - (5 - k) * STEP, 1.0 + k as f64))
        .collect();
    assert_eq!(ingest(ch.clone(), vec![before]).await.unwrap().accepted, 6);
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap();

    prom.stop();
    let e = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message().starts_with("round skipped: the metrics backend") && e.message().contains(&prom.url),
        "{}",
        e.message()
    );
    // swarmctl says the same, as an unreachable-service failure (exit 3).
    let out = server.ctl(&["round"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("round skipped"), "{stderr}");
    // Writes are not acknowledged while nothing can store them...
    let during = vec![sample(pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage, last + 1000, 42.0)];
    let e = ingest(ch.clone(), vec![during]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    // ...health says so, other calls still answer, and /metrics counts it.
    assert_eq!(metrics_health(ch.clone()).await, 2, "NOT_SERVING");
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    assert_eq!(
        topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner().nodes.len(),
        1
    );
    let (_, _, metrics) = http_get(server.http.as_ref().unwrap(), "/metrics", "");
    for line in [
        "swarm_rounds_skipped_total{reason=\"metrics_backend\"} 2",
        "swarm_metrics_backend_up{backend=\"prometheus\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }

    prom.restart();
    let round = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match placement.run_round(pb::RunRoundRequest { dry_run: false }).await {
                Ok(r) => break r.into_inner(),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .expect("rounds resume once Prometheus is back");
    assert_eq!(round.virtual_nodes_evaluated, 1);
    assert_eq!(metrics_health(ch.clone()).await, 1, "SERVING again");
    let pts = query(ch.clone(), pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage).await;
    let kept: Vec<f64> = pts.iter().filter(|p| p.timestamp_ms <= last).map(|p| p.value).collect();
    assert_eq!(kept, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "what was acknowledged before the outage is all there");
    assert!(pts.iter().all(|p| p.value != 42.0), "the refused write did not land");
}

/// swarmd with a config file's `[metrics]` section, `extra` flags and the test model.
fn swarmd_with_metrics(metrics_toml: &str, extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    seasonal_naive().save(&model).unwrap();
    let cfg = dir.path().join("swarm.toml");
    std::fs::write(&cfg, format!("[metrics]\n{metrics_toml}")).unwrap();
    let mut args =
        vec!["--config", cfg.to_str().unwrap(), "--model", model.to_str().unwrap(), "--round-interval", "1h"];
    args.extend_from_slice(extra);
    (Server::start(&args), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_are_used_and_wrong_credentials_are_an_outage_that_says_why() {
    let (prom, sec) = Prometheus::start_secured("swarm", "correct horse");
    assert!(prom.url.starts_with("https://"), "{}", prom.url);
    let secrets = tempfile::tempdir().unwrap();
    let (good, bad) = (secrets.path().join("good.pw"), secrets.path().join("bad.pw"));
    std::fs::write(&good, format!("{}\n", sec.password)).unwrap();
    std::fs::write(&bad, "battery staple\n").unwrap();
    let settings = |password: &std::path::Path, ca: bool| {
        let mut t = format!(
            "backend = \"prometheus\"\nurl = \"{}\"\nbasic_auth_user = \"{}\"\nbasic_auth_password_file = \"{}\"\nretries = 0\n",
            prom.url,
            sec.user,
            password.display()
        );
        if ca {
            t.push_str(&format!("ca_file = \"{}\"\n", sec.ca_file.display()));
        }
        t
    };
    let last = now_ms().div_euclid(STEP) * STEP;
    let batch = |v: f64| {
        (0..3)
            .map(|k| sample(pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage, last - (2 - k) * STEP, v + k as f64))
            .collect::<Vec<_>>()
    };

    // The right password over TLS trusted through the CA file, given by
    // flags this time (the file's settings in the other cases): written and read back.
    {
        let (ca, pw) = (sec.ca_file.display().to_string(), good.display().to_string());
        let flags = ["--prometheus-url", &prom.url, "--prometheus-user", &sec.user, "--prometheus-password-file", &pw];
        let (server, _dir) = swarmd_with_metrics("", &[&flags[..], &["--prometheus-ca-file", &ca]].concat());
        let ch = server.channel().await;
        place(ch.clone(), &[("p1", 16.0)], &[("v1", 2.0, "p1")]).await;
        let r = ingest(ch.clone(), vec![batch(1.0)]).await.unwrap();
        assert_eq!((r.accepted, r.rejected), (3, 0));
        let pts = query(ch.clone(), pb::EntityKind::Virtual, "v1", pb::Metric::CpuUsage).await;
        let mine: Vec<f64> = pts.iter().filter(|p| p.timestamp_ms <= last).map(|p| p.value).collect();
        assert_eq!(mine, vec![1.0, 2.0, 3.0]);
        assert_eq!(metrics_health(ch.clone()).await, 1, "SERVING");
    }

    // A wrong password: nothing acknowledged, UNAVAILABLE (the samples were
    // fine; swarmd's credentials are not) with the status and what to check,
    // rounds skipped with the same reason, health NOT_SERVING.
    {
        let (server, _dir) = swarmd_with_metrics(&settings(&bad, true), &[]);
        let ch = server.channel().await;
        place(ch.clone(), &[("p1", 16.0)], &[("v1", 2.0, "p1")]).await;
        let e = ingest(ch.clone(), vec![batch(10.0)]).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(e.message().contains("HTTP 401") && e.message().contains("basic_auth"), "{}", e.message());
        let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
        let e = placement.run_round(pb::RunRoundRequest { dry_run: true }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(e.message().starts_with("round skipped") && e.message().contains("HTTP 401"), "{}", e.message());
        assert_eq!(metrics_health(ch.clone()).await, 2, "NOT_SERVING");
    }

    // Without ca_file the self-signed certificate is not trusted: the round
    // says it is a certificate problem.
    {
        let (server, _dir) = swarmd_with_metrics(&settings(&good, false), &[]);
        let ch = server.channel().await;
        place(ch.clone(), &[("p1", 16.0)], &[("v1", 2.0, "p1")]).await;
        let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
        let e = placement.run_round(pb::RunRoundRequest { dry_run: true }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(e.message().to_ascii_lowercase().contains("certificate"), "{}", e.message());
    }

    // The refused writes never reached Prometheus: only the first three are there.
    let out = std::process::Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&sec.ca_file)
        .arg("-u")
        .arg(format!("{}:{}", sec.user, sec.password))
        .arg(format!("{}/api/v1/query?query=max_over_time(swarm_cpu%5B1h%5D)", prom.url))
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["data"]["result"][0]["value"][1], "3", "{answer}");
}

/// CPU in use (cores) of one node at `t` seconds: a daily wave.
#[derive(Clone, Copy)]
struct Wave {
    base: f64,
    amp: f64,
}

impl Wave {
    fn at(self, t: f64) -> f64 {
        self.base + self.amp * (std::f64::consts::TAU * t / 86_400.0).sin()
    }
    /// CPU seconds used since the epoch: the counter an exporter reports.
    fn counter(self, t: f64) -> f64 {
        let p = 86_400.0;
        self.base * t - self.amp * p / std::f64::consts::TAU * (std::f64::consts::TAU * t / p).cos() + self.amp * p
    }
}

/// The series a node_exporter and a cAdvisor would report for the cluster:
/// (metric, labels, wave). Physical nodes: busy (`user`) and `idle` CPU.
fn exporter_series(cores: f64, phys: &[(&str, Wave)], virt: &[(&str, Wave)]) -> Vec<(String, String, Wave)> {
    let mut out = Vec::new();
    for &(p, w) in phys {
        let instance = format!("instance=\"{p}:9100\"");
        out.push(("node_cpu_seconds_total".into(), format!("cpu=\"0\",{instance},mode=\"user\""), w));
        let idle = Wave { base: cores - w.base, amp: -w.amp };
        out.push(("node_cpu_seconds_total".into(), format!("cpu=\"0\",{instance},mode=\"idle\""), idle));
    }
    for &(v, w) in virt {
        out.push(("container_cpu_usage_seconds_total".into(), format!("name=\"{v}\""), w));
    }
    out
}

/// Serves the exposition text of `series` at the wall-clock time of each scrape.
fn serve_exporter(series: Vec<(String, String, Wave)>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let t = now_ms() as f64 / 1000.0;
            let mut body = String::new();
            for (name, labels, w) in &series {
                body.push_str(&format!("# TYPE {name} counter\n{name}{{{labels}}} {}\n", w.counter(t)));
            }
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// The same counters over the `hours` before now, one sample a minute, as
/// OpenMetrics for `promtool tsdb create-blocks-from openmetrics`: the
/// history a Prometheus that had been scraping all along would hold.
fn backfill(data: &std::path::Path, series: &[(String, String, Wave)], hours: i64) {
    let end = now_ms() / 1000 - 5;
    let mut text = String::new();
    let mut families: Vec<&str> = series.iter().map(|s| s.0.as_str()).collect();
    families.dedup();
    for family in families {
        text.push_str(&format!("# TYPE {} counter\n", family.trim_end_matches("_total")));
        for (name, labels, w) in series.iter().filter(|s| s.0 == family) {
            for t in (end - hours * 3600..=end).step_by(60) {
                text.push_str(&format!("{name}{{{labels},job=\"exporter\"}} {} {t}\n", w.counter(t as f64)));
            }
        }
    }
    text.push_str("# EOF\n");
    let input = data.with_file_name("backfill.om");
    std::fs::write(&input, text).unwrap();
    let out = Command::new(common::prom::promtool())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "promtool: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_metrics_scraped_by_prometheus_feed_forecasts_and_decisions() {
    // p1 (8 cores) runs v1 and v2, together over 90% all day; p2 runs v3.
    let (v1, v2, v3) = (Wave { base: 3.8, amp: 0.15 }, Wave { base: 3.7, amp: 0.15 }, Wave { base: 1.0, amp: 0.5 });
    let p1 = Wave { base: v1.base + v2.base + 0.1, amp: 0.3 };
    let p2 = Wave { base: v3.base + 0.1, amp: 0.5 };
    let series = exporter_series(8.0, &[("p1", p1), ("p2", p2)], &[("v1", v1), ("v2", v2), ("v3", v3)]);
    let exporter = serve_exporter(series.clone());
    let prom = Prometheus::start_with(&[exporter], |data| backfill(data, &series, 27));
    let (server, _dir) = swarmd_on(&prom, &["--http", "127.0.0.1:0"]);
    let ch = server.channel().await;
    place(ch.clone(), &[("p1", 8.0), ("p2", 8.0)], &[("v1", 4.0, "p1"), ("v2", 4.0, "p1"), ("v3", 4.0, "p2")]).await;
    // Let Prometheus scrape a few times past the backfill.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Usage read through the default node_exporter and cAdvisor queries.
    let now = now_ms();
    for (kind, id, w) in [(pb::EntityKind::Physical, "p1", p1), (pb::EntityKind::Virtual, "v3", v3)] {
        let pts = query(ch.clone(), kind, id, pb::Metric::CpuUsage).await;
        assert!(pts.len() >= 12 * 24, "{id}: a day of 5-minute points, got {}", pts.len());
        // The history's first step has a partial rate window (Prometheus
        // extrapolates rate() only so far at a series' start): skip it.
        for p in pts.iter().skip(1).filter(|p| p.timestamp_ms < now - 600_000) {
            let want = w.at(p.timestamp_ms as f64 / 1000.0);

            assert!((p.value - want).abs() < 0.05, "{id} at {}: {} vs {want}", p.timestamp_ms, p.value);
        }
    }

    // Forecasts from that history (the seasonal-naive model repeats the
    // day before, so they follow the wave).
    let f = forecast(ch.clone(), pb::EntityKind::Virtual, "v3", pb::Metric::CpuUsage, 6)
        .await
        .expect("a day of scraped history is enough for the model");
    assert_eq!(f.points.len(), 6);
    for p in &f.points {
        let want = v3.at(p.timestamp_ms as f64 / 1000.0);
        assert!((p.mean - want).abs() < 0.1, "forecast at {}: {} vs {want}", p.timestamp_ms, p.mean);
    }

    // The dashboard's API works unchanged on top.
    let http = server.http.as_ref().unwrap();
    let (status, _, body) = http_get(http, "/api/forecast?node=v3", "");
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(page["history"].as_array().is_some_and(|h| h.len() > 12), "{body}");
    assert_eq!(page["forecast"].as_array().map(|f| f.len()), Some(6), "{body}");
    let (status, _, body) = http_get(http, "/api/heatmap", "");
    assert!(status == 200 && body.contains("\"v1\"") && body.contains("\"p2\""), "{status} {body}");

    // p1 is over the threshold: the round moves one of its virtual nodes to p2.
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    let round = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    let d = round.decisions.first().unwrap_or_else(|| panic!("a decision for the overloaded p1: {round:?}"));
    assert_eq!((d.from_node_id.as_str(), d.to_node_id.as_str()), ("p1", "p2"), "{d:?}");
    assert!(d.virtual_node_id == "v1" || d.virtual_node_id == "v2", "{d:?}");
    assert!(d.reason.starts_with("p1 is overloaded"), "{}", d.reason);
}
