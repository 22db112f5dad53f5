//! End to end: swarmd forecasts every virtual node with the loaded model and
//! moves load off a node *before* its forecast overload, at automation level
//! `apply`; GetForecast serves the same forecasts.
//!
//! The model is a seasonal-naive artifact (tomorrow repeats today), written
//! by the test, so the expected forecast is exact and the test checks the
//! pipeline — samples → grid → model → view → decision — not model quality
//! (the training tests do that).

use crate::common;

use common::*;
use swarm_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecast_overload_is_relieved_ahead_and_applied() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    seasonal_naive().save(&model).unwrap();
    let cfg = dir.path().join("swarm.toml");
    std::fs::write(&cfg, "round_interval = \"1h\"\n[controller]\nhorizon_steps = 6\n").unwrap();
    let server = Server::start(&[
        "--config",
        cfg.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--automation",
        "apply",
    ]);
    let ch = server.channel().await;
    place(
        ch.clone(),
        &[("p0", 16.0), ("p1", 16.0)],
        &[("steady", 8.0, "p0"), ("spiky", 8.0, "p0"), ("idle", 2.0, "p1"), ("fresh", 1.0, "p1")],
    )
    .await;

    // Two days of 5-minute samples ending now. "spiky" jumps from 2 to 8
    // cores every day from 15 to 75 minutes after the time of day it is now:
    // p0 is at 9/16 cores now and will be at 15/16 (94 %) in 15 minutes.
    let now = now_ms();
    let spike = |ts: i64| {
        let since = (ts - now).rem_euclid(DAY);
        (15 * 60_000..75 * 60_000).contains(&since)
    };
    let mut samples = Vec::new();
    for k in 0..576i64 {
        let ts = now - (575 - k) * STEP;
        for (v, cores) in [("steady", 7.0), ("spiky", if spike(ts) { 8.0 } else { 2.0 }), ("idle", 1.0)] {
            for m in [pb::Metric::CpuUsage, pb::Metric::CpuPeak] {
                samples.push(sample(pb::EntityKind::Virtual, v, m, ts, cores));
            }
        }
    }
    samples.push(sample(pb::EntityKind::Virtual, "fresh", pb::Metric::CpuPeak, now, 0.5));
    let r = ingest(ch.clone(), vec![samples]).await.unwrap();
    assert_eq!(r.rejected, 0);

    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    // GetForecast: the model's view of "spiky".
    let f = forecast(ch.clone(), pb::EntityKind::Virtual, "spiky", pb::Metric::CpuPeak, 6).await.unwrap();
    let means: Vec<f64> = f.points.iter().map(|p| p.mean).collect();
    assert_eq!(means.len(), 6);
    assert!(means[0] < 2.5 && means[1] < 2.5 && means[2..].iter().all(|m| (m - 8.0).abs() < 0.5), "{means:?}");
    assert!(f.points.iter().all(|p| p.lower <= p.mean && p.mean <= p.upper));
    let last_ts = now;
    assert_eq!(f.points[0].timestamp_ms, last_ts + STEP);
    assert_eq!(f.interval_coverage, 0.9);
    assert!(f.model.contains("seasonal naive"), "{}", f.model);
    assert_eq!((f.period_steps, f.period_strength), (0, 0.0), "this model has no own-period features");
    // Bad requests say what is wrong, with the right code.
    let ask = |id: &str, h: u32| pb::GetForecastRequest {
        entity_kind: pb::EntityKind::Virtual as i32,
        entity_id: id.into(),
        metric: pb::Metric::CpuPeak as i32,
        horizon_steps: h,
        ..Default::default()
    };
    let e = placement.get_forecast(ask("nope", 3)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    // 0 asks for the model's longest horizon.
    let longest = placement.get_forecast(ask("spiky", 0)).await.unwrap().into_inner();
    assert_eq!(longest.points.len(), 6);
    assert_eq!(longest.step_ms, STEP);
    let e = placement.get_forecast(ask("spiky", 7)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("horizon_steps") && e.message().contains("1..=6"), "{}", e.message());
    let e = placement.get_forecast(ask("fresh", 3)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("needs 288 points"), "{}", e.message());

    // The CLI shows the same forecast.
    let out = server.ctl(&["--output", "json", "forecast", "spiky", "--horizon", "6"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cli_means: Vec<f64> = cli["points"].as_array().unwrap().iter().map(|p| p["mean"].as_f64().unwrap()).collect();
    assert_eq!(cli_means, means);
    let out = server.ctl(&["forecast", "fresh", "--metric", "cpu-peak"]);
    assert_eq!(out.status.code(), Some(1), "FAILED_PRECONDITION is not a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs 288 points"));
    let out = server.ctl(&["forecast", "spiky", "--metric", "disk"]);
    assert_eq!(out.status.code(), Some(2));

    // Affinity shows the forecast component.
    let aff = placement
        .get_affinity(pb::GetAffinityRequest { virtual_node_ids: vec!["steady".into()], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    for s in &aff.rows[0].scores {
        assert!(s.components.as_ref().unwrap().forecast_headroom.is_some(), "{s:?}");
    }

    // The round moves load off p0 now, ahead of the overload in 15 minutes.
    let round = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    // (Micro-migrations may follow in the same round; the relief comes first.)
    let d = &round.decisions[0];
    let predictive = round.decisions.iter().filter(|d| d.kind == pb::DecisionKind::Predictive as i32).count();
    assert_eq!(predictive, 1, "{:?}", round.decisions);
    assert_eq!(d.kind, pb::DecisionKind::Predictive as i32, "{}", d.reason);
    assert_eq!((d.from_node_id.as_str(), d.to_node_id.as_str()), ("p0", "p1"));
    assert!(
        (d.expected_overload_at_ms - (d.decided_at_ms + 3 * STEP)).abs() <= 1,
        "overload expected 15 minutes ahead: {d:?}"
    );
    assert!(d.reason.contains("in 15 min"), "{}", d.reason);
    let cost = d.cost.as_ref().unwrap();
    assert!(cost.benefit > cost.cost && cost.transfer_seconds > 0.0);
    // Automation level `apply`: the move is the new placement.
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    let vs = topo.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await.unwrap().into_inner().nodes;
    let moved = vs.iter().find(|v| v.id == d.virtual_node_id).unwrap();
    assert_eq!(moved.placement, "p1");
    // And the next round leaves things be: p0 is no longer at risk.
    let again = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert!(again.decisions.iter().all(|d| d.kind != pb::DecisionKind::Predictive as i32), "{:?}", again.decisions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_locality_reach_affinity_and_history_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), &["--round-interval", "1h"]);
    let ch = server.channel().await;
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    let mut p0 = physical("p0", 16.0);
    p0.labels.insert("class".into(), "fast".into());
    let mut p1 = physical("p1", 16.0);
    p1.labels.insert("class".into(), "slow".into());
    let mut p2 = physical("p2", 16.0);
    p2.labels.insert("zone".into(), "z2".into());
    topo.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![p0, p1, p2] }).await.unwrap();
    topo.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: vec![virt("web", 1.0), virt("reader", 1.0)] })
        .await
        .unwrap();
    let placements = ["web", "reader"]
        .iter()
        .map(|v| pb::PlacementAssignment { virtual_node_id: v.to_string(), physical_node_id: "p0".into() })
        .collect();
    topo.set_placements(pb::SetPlacementsRequest { placements }).await.unwrap();
    let now = now_ms();
    let mut samples = vec![
        sample(pb::EntityKind::Virtual, "web", pb::Metric::LatencyMs, now - 60_000, 40.0),
        sample(pb::EntityKind::Virtual, "web", pb::Metric::ThroughputRps, now - 60_000, 900.0),
    ];
    // "reader" reads 3 MB/s held on p2 (zone z2) and 1 MB/s from zone z1.
    let mut read = |loc: &str, rate: f64| {
        let mut s = sample(pb::EntityKind::Virtual, "reader", pb::Metric::DataAccessBytesPerSec, now - 30_000, rate);
        s.location = loc.into();
        samples.push(s);
    };
    read("p2", 3e6);
    read("z1", 1e6);
    assert_eq!(ingest(ch.clone(), vec![samples]).await.unwrap().rejected, 0);
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    // A round folds the window's latency/throughput into the history of where "web" runs.
    placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap();

    async fn components(ch: tonic::transport::Channel, v: &str) -> Vec<(String, pb::AffinityComponents)> {
        let mut placement = pb::placement_client::PlacementClient::new(ch);
        let r = placement
            .get_affinity(pb::GetAffinityRequest { virtual_node_ids: vec![v.into()], ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        r.physical_node_ids.into_iter().zip(r.rows[0].scores.iter().map(|s| s.components.unwrap())).collect()
    }
    let of = |c: &[(String, pb::AffinityComponents)], p: &str| c.iter().find(|(id, _)| id == p).unwrap().1;
    let web = components(ch.clone(), "web").await;
    assert_eq!(of(&web, "p0").history, Some(1.0), "its best (only) node");
    assert_eq!(of(&web, "p1").history, Some(0.5), "another hardware class: the neutral prior");
    let reader = components(ch.clone(), "reader").await;
    // p2 holds 3/4 of the reads (1.0) and is remote for the rest; p0 and p1
    // are in z1: the zone-level 1/4 at 0.5, the p2 part remote.
    assert_eq!(of(&reader, "p2").locality, Some(0.75));
    assert_eq!(of(&reader, "p0").locality, Some(0.125));
    assert_eq!(of(&web, "p0").locality, None, "web reads nothing");

    // The history is durable: after SIGKILL and restart it is still there.
    server.kill_and_restart();
    let ch = server.channel().await;
    let web = components(ch.clone(), "web").await;
    assert_eq!(of(&web, "p0").history, Some(1.0));
    assert_eq!(of(&web, "p1").history, Some(0.5));
}

/// Two hosts of 16 cores; a and b (8 requested cores each) on p0, c on
/// p1, with two days of 5-minute samples (usage and peak) ending `now`: 1 core each, with
/// spikes to 7.5 — a and b together every tenth step (15 of p0's 16 cores,
/// over 90 %), c five steps later (alone, p1 stays calm). Not at the last
/// step: no rule that looks at the load now has a reason to move.
async fn co_spiking_cluster(ch: tonic::transport::Channel, now: i64) {
    place(ch.clone(), &[("p0", 16.0), ("p1", 16.0)], &[("a", 8.0, "p0"), ("b", 8.0, "p0"), ("c", 8.0, "p1")]).await;
    let mut samples = Vec::new();
    for back in 0..576i64 {
        for (v, offset) in [("a", 3), ("b", 3), ("c", 8)] {
            let cores = if back % 10 == offset { 7.5 } else { 1.0 };
            for m in [pb::Metric::CpuUsage, pb::Metric::CpuPeak] {
                samples.push(sample(pb::EntityKind::Virtual, v, m, now - back * STEP, cores));
            }
        }
    }
    samples.reverse();
    let r = ingest(ch, vec![samples]).await.unwrap();
    assert_eq!(r.rejected, 0);
}

/// The risk-aware rule in swarmd: virtual nodes whose spikes come together
/// overloaded their host in the history; a round separates them, as a
/// decision of its own kind that says why, and the next round within the
/// rule's interval leaves things be. Off, the same history moves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_nodes_that_spike_together_are_separated_on_their_history() {
    let server = Server::start(&["--automation", "apply"]);
    let ch = server.channel().await;
    co_spiking_cluster(ch.clone(), now_ms()).await;
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    let round = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert_eq!(round.decisions.len(), 1, "{:?}", round.decisions);
    let d = &round.decisions[0];
    assert_eq!(d.kind, pb::DecisionKind::Risk as i32, "{d:?}");
    assert!(
        ["a", "b"].contains(&d.virtual_node_id.as_str()) && d.from_node_id == "p0" && d.to_node_id == "p1",
        "{d:?}"
    );
    assert!(
        d.reason.contains("together passed 90%")
            && d.reason.contains("sign test")
            && d.reason.contains("of its limit at its 99th-percentile step"),
        "{}",
        d.reason
    );
    // Priced like any move: the expected saving (about 58 overloaded
    // intervals over the two days) is its benefit.
    let cost = d.cost.as_ref().expect("priced");
    assert!(cost.benefit > cost.cost && cost.transfer_seconds > 0.0, "{cost:?}");
    // Applied; the rule does not run again within its interval (1 h), and
    // the risk it acted on is gone anyway.
    let again = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert!(again.decisions.iter().all(|d| d.kind != pb::DecisionKind::Risk as i32), "{:?}", again.decisions);
    let list = placement.list_decisions(pb::ListDecisionsRequest { from_sequence: 1, limit: 0 }).await.unwrap();
    assert_eq!(list.into_inner().decisions.len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("swarm.toml");
    std::fs::write(&cfg, "[controller.risk]\nenabled = false\n").unwrap();
    let off = Server::start(&["--config", cfg.to_str().unwrap()]);
    let ch = off.channel().await;
    co_spiking_cluster(ch.clone(), now_ms()).await;
    let mut placement = pb::placement_client::PlacementClient::new(ch);
    let round = placement.run_round(pb::RunRoundRequest { dry_run: true }).await.unwrap().into_inner();
    assert!(round.decisions.is_empty(), "{:?}", round.decisions);
}

/// An artifact with an upper-quantile model: GetForecast's upper bound is
/// that model's forecast (here 1.5 times the seasonal-naive value), not the
/// point forecast plus the interval's residual quantile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upper_quantile_model_is_the_served_upper_bound() {
    use swarm_models::artifact::UpperQuantile;
    use swarm_models::model::{LinearHead, Model};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    let mut a = seasonal_naive();
    a.upper = Some(UpperQuantile {
        quantile: 0.95,
        model: Model::Linear {
            heads: (1..=6).map(|h| LinearHead { horizon: h, intercept: 0.0, coefficients: vec![0.0, 1.5] }).collect(),
        },
    });
    a.save(&model).unwrap();
    let server = Server::start(&["--model", model.to_str().unwrap()]);
    let ch = server.channel().await;
    place(ch.clone(), &[("p0", 16.0)], &[("steady", 8.0, "p0")]).await;
    let now = now_ms();
    let samples: Vec<_> = (0..576i64)
        .map(|k| sample(pb::EntityKind::Virtual, "steady", pb::Metric::CpuPeak, now - (575 - k) * STEP, 4.0))
        .collect();
    assert_eq!(ingest(ch.clone(), vec![samples]).await.unwrap().rejected, 0);
    let f = forecast(ch.clone(), pb::EntityKind::Virtual, "steady", pb::Metric::CpuPeak, 6).await.unwrap();
    assert_eq!(f.points.len(), 6);
    for p in &f.points {
        assert!((p.mean - 4.0).abs() < 1e-9 && (p.upper - 6.0).abs() < 1e-9, "{p:?}");
        // The lower bound is still the interval's: 5 % of the scale below.
        assert!((p.lower - 3.8).abs() < 1e-9, "{p:?}");
    }
}

/// A model with own-period features: GetForecast and `swarmctl forecast`
/// say which period swarmd found in each series' last points (here a job
/// busy one step in three, and a flat series that has none to speak of),
/// and a model without them says 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_forecast_shows_the_own_period_the_model_found() {
    use swarm_models::model::{LinearHead, Model};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    let mut a = seasonal_naive();
    a.features.own_period_max_ms = 3_600_000;
    a.feature_names = a.features.names();
    a.model = Model::Linear {
        heads: (1..=6)
            .map(|h| LinearHead { horizon: h, intercept: 0.0, coefficients: vec![0.0, 1.0, 0.0, 0.0] })
            .collect(),
    };
    a.save(&model).unwrap();
    let server = Server::start(&["--model", model.to_str().unwrap()]);
    let ch = server.channel().await;
    place(ch.clone(), &[("p0", 16.0)], &[("timer", 2.0, "p0"), ("flat", 2.0, "p0")]).await;
    let now = now_ms();
    let mut samples = Vec::new();
    for k in 0..576i64 {
        let ts = now - (575 - k) * STEP;
        let busy = if ts.div_euclid(STEP).rem_euclid(3) == 0 { 1.8 } else { 0.3 };
        samples.push(sample(pb::EntityKind::Virtual, "timer", pb::Metric::CpuPeak, ts, busy));
        samples.push(sample(pb::EntityKind::Virtual, "flat", pb::Metric::CpuPeak, ts, 1.0));
    }
    assert_eq!(ingest(ch.clone(), vec![samples]).await.unwrap().rejected, 0);
    let f = forecast(ch.clone(), pb::EntityKind::Virtual, "timer", pb::Metric::CpuPeak, 6).await.unwrap();
    assert_eq!(f.period_steps, 3, "{f:?}");
    assert!(f.period_strength < 1e-3, "it repeats exactly: {}", f.period_strength);
    // The forecast is still the model's: tomorrow repeats today.
    for p in &f.points {
        let day_ago = p.timestamp_ms - DAY;
        let want = if day_ago.div_euclid(STEP).rem_euclid(3) == 0 { 1.8 } else { 0.3 };
        assert!((p.mean - want).abs() < 1e-9, "{p:?}");
    }
    let f = forecast(ch.clone(), pb::EntityKind::Virtual, "flat", pb::Metric::CpuPeak, 6).await.unwrap();
    assert_eq!((f.period_steps, f.period_strength), (2, 1.0), "no lag beats the last value");
    let out = server.ctl(&["--output", "json", "forecast", "timer", "--metric", "cpu-peak"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["own_period"]["steps"], 3, "{cli}");
    let out = server.ctl(&["forecast", "timer", "--metric", "cpu-peak", "--no-chart"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("own period: 3 steps (15m)"), "{text}");
}

/// Two hosts of 10 cores (over 90 % above 9); a and b (4 cores) on p0, c
/// on p1; `days` of 5-minute history ending now. Every 20 steps a and b
/// spike together twice (p0 over), a with c once and b with c once: moving
/// a or b relieves two overloaded steps and adds one. A day of that is too
/// little evidence for a sign test at z = 3, three days are enough.
async fn mixed_evidence_cluster(ch: tonic::transport::Channel, now: i64, days: i64) {
    place(ch.clone(), &[("p0", 10.0), ("p1", 10.0)], &[("a", 4.0, "p0"), ("b", 4.0, "p0"), ("c", 4.0, "p1")]).await;
    let mut samples = Vec::new();
    for back in (0..days * 288).rev() {
        for (v, at) in [("a", [0, 10, 5]), ("b", [0, 10, 15]), ("c", [5, 15, 5])] {
            let cores = if at.contains(&(back % 20)) { 5.0 } else { 1.0 };
            for m in [pb::Metric::CpuUsage, pb::Metric::CpuPeak] {
                samples.push(sample(pb::EntityKind::Virtual, v, m, now - back * STEP, cores));
            }
        }
    }
    let r = ingest(ch, vec![samples]).await.unwrap();
    assert_eq!(r.rejected, 0);
}

/// Self-tuning in swarmd: configured with settings that never move on this
/// history (a one-day window at z = 3), the first real round starts the
/// tuner, which replays the last days through the rule over the candidates
/// within the bounds and adopts one that was better on both the choose day
/// and the later confirm day; the next round moves with it. `swarmctl policy` shows the change, why, and the
/// table; `/metrics` shows the settings and the run. With `self_tuning =
/// false` the same history moves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_risk_rule_tunes_itself_on_the_cluster_history_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("swarm.toml");
    let settings = "[controller.risk]\nwindow = \"1d\"\nconfidence_z = 3.0\n\n[controller.tuning]\nchoose = \"1d\"\n";
    std::fs::write(&cfg, settings).unwrap();
    let server = Server::start(&["--config", cfg.to_str().unwrap(), "--automation", "apply", "--http", "127.0.0.1:0"]);
    let ch = server.channel().await;
    mixed_evidence_cluster(ch.clone(), now_ms(), 3).await;
    let mut placement = pb::placement_client::PlacementClient::new(ch.clone());
    let before = placement.get_policy(pb::GetPolicyRequest {}).await.unwrap().into_inner();
    assert!(before.self_tuning && before.last_run.is_none() && before.changes.is_empty(), "{before:?}");
    assert_eq!(before.current, before.configured);
    // The first real round starts the tuner in the background and decides
    // with the configured settings: nothing moves.
    let round = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert!(round.decisions.is_empty(), "{:?}", round.decisions);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while placement.get_policy(pb::GetPolicyRequest {}).await.unwrap().into_inner().last_run.is_none() {
        assert!(std::time::Instant::now() < deadline, "the self-tuner did not run within 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Once it adopted other settings, the next round runs the rule with them.
    let round = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert_eq!(round.decisions.len(), 1, "{:?}", round.decisions);
    assert_eq!(round.decisions[0].kind, pb::DecisionKind::Risk as i32);

    let out = server.ctl(&["policy", "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &p["last_run"];
    assert_eq!(run["verdict"], "adopted", "{p:#}");
    assert!(run["reason"].as_str().unwrap().contains("better on the 1.0 confirm days"), "{run:#}");
    // The current settings first, then the rest of the 3 windows x 4 confidences x 2 focuses.
    let rows = run["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 24, "{run:#}");
    assert_eq!(rows[0]["settings"], p["configured"]);
    assert_eq!(rows[0]["choose_migrations"], 0);
    assert_eq!(p["current"], run["after"]);
    assert_ne!(p["current"], p["configured"]);
    assert!(p["current"]["confidence_z"].as_f64().unwrap() <= p["upper_bounds"]["confidence_z"].as_f64().unwrap());
    assert_eq!(p["changes"].as_array().unwrap().len(), 1);
    let text = server.ctl(&["policy"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("self-tuning: on") && text.contains("adopted") && text.contains("CONFIRM_OBJECTIVE"),
        "{text}"
    );

    let (_, _, metrics) = http_get(server.http.as_ref().unwrap(), "/metrics", "");
    assert!(metrics.contains("swarm_self_tuning_runs{verdict=\"adopted\"} 1"), "{metrics}");
    assert!(metrics.contains("swarm_risk_setting{setting=\"confidence_z\",source=\"configured\"} 3"), "{metrics}");
    assert!(metrics.contains("swarm_self_tuning_last_run_timestamp_seconds"), "{metrics}");

    // Off, the configured settings stay, and on this history they do not move.
    std::fs::write(&cfg, format!("[controller]\nself_tuning = false\n\n{settings}")).unwrap();
    let off = Server::start(&["--config", cfg.to_str().unwrap()]);
    let ch = off.channel().await;
    mixed_evidence_cluster(ch.clone(), now_ms(), 3).await;
    let mut placement = pb::placement_client::PlacementClient::new(ch);
    let round = placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert!(round.decisions.is_empty(), "{:?}", round.decisions);
    let p = placement.get_policy(pb::GetPolicyRequest {}).await.unwrap().into_inner();
    assert!(!p.self_tuning && p.last_run.is_none() && p.current == p.configured, "{p:?}");

    // With the default guards (1 + 3 + 1 days) three days of history are
    // too little, however far back the tuner reads: nothing changes.
    std::fs::write(&cfg, "[controller.risk]\nwindow = \"1d\"\nconfidence_z = 3.0\n").unwrap();
    let short = Server::start(&["--config", cfg.to_str().unwrap()]);
    let ch = short.channel().await;
    mixed_evidence_cluster(ch.clone(), now_ms(), 3).await;
    let mut placement = pb::placement_client::PlacementClient::new(ch);
    placement.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let run = loop {
        if let Some(run) = placement.get_policy(pb::GetPolicyRequest {}).await.unwrap().into_inner().last_run {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "the self-tuner did not run within 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(run.verdict, "too_little_history", "{run:?}");
    assert!(run.reason.ends_with("1440 needed (warm-up, choose and confirm)") && run.rows.is_empty(), "{run:?}");
}
