//! `swarmctl` against the real `swarmd` on a known topology: each command's
//! output for people (tables, the forecast chart, the readable decision
//! stream) and for scripts (JSON, CSV), the cost function's verdict in
//! `affinity`, shell completions, `--help` examples, and errors that say
//! what to do. (What needs no server — completions, `--help` examples, an
//! unreachable server — is `service/ctl/tests/offline.rs`.)
//!
//! The cluster: p0 and p1 (16 cores each); on p0 "steady" (7 cores) and
//! "spiky" (2 cores, jumping to 8 every day 15 to 75 minutes after the time
//! of day it is now), on p1 "idle" (1 core). A seasonal-naive model makes
//! the forecast exact: p0 is at 9/16 now and will be at 15/16 (94 %, over
//! the 90 % overload threshold) in 15 minutes. A round moves "steady" to p1
//! ahead of it (the one move that brings p0 back under), then "idle" to p0
//! (the emptier node).

use crate::common;

use std::process::Output;

use common::*;
use swarm_proto::v1 as pb;

struct Cluster {
    server: Server,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Runs swarmctl with `args` against the server (no colour, 100 columns).
    fn ctl(&self, args: &[&str]) -> Output {
        self.server.swarmctl().args(args).env("COLUMNS", "100").env_remove("NO_COLOR").output().expect("run swarmctl")
    }

    /// Runs swarmctl and returns stdout, failing with its stderr.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(out.status.success(), "swarmctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    seasonal_naive().save(&model).unwrap();
    let cfg = dir.path().join("swarm.toml");
    std::fs::write(&cfg, "round_interval = \"1h\"\n[controller]\nhorizon_steps = 6\n").unwrap();
    let server = Server::start(&["--config", cfg.to_str().unwrap(), "--model", model.to_str().unwrap()]);
    let ch = server.channel().await;
    place(
        ch.clone(),
        &[("p0", 16.0), ("p1", 16.0)],
        &[("steady", 7.0, "p0"), ("spiky", 8.0, "p0"), ("idle", 2.0, "p1")],
    )
    .await;
    let now = now_ms();
    let spike = |ts: i64| (15 * 60_000..75 * 60_000).contains(&(ts - now).rem_euclid(DAY));
    let mut samples = Vec::new();
    for k in 0..576i64 {
        let ts = now - (575 - k) * STEP;
        let spiky = if spike(ts) { 8.0 } else { 2.0 };
        for (v, cores) in [("steady", 7.0), ("spiky", spiky), ("idle", 1.0)] {
            for m in [pb::Metric::CpuUsage, pb::Metric::CpuPeak] {
                samples.push(sample(pb::EntityKind::Virtual, v, m, ts, cores));
            }
        }
        samples.push(sample(pb::EntityKind::Physical, "p0", pb::Metric::CpuUsage, ts, 7.0 + spiky));
        samples.push(sample(pb::EntityKind::Physical, "p1", pb::Metric::CpuUsage, ts, 1.0));
    }
    assert_eq!(ingest(ch, vec![samples]).await.unwrap().rejected, 0);
    Cluster { server, _dir: dir }
}

fn csv(text: &str) -> Vec<Vec<String>> {
    // The fields these tests read have no quotes or commas.
    text.lines().map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecast_shows_table_chart_csv_and_json() {
    let c = cluster().await;

    // For people: a header, one row per step, the chart with the requested line.
    let text = c.ok(&["forecast", "spiky", "--horizon", "30m", "--history", "1h"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("spiky (virtual) cpu-peak: 90 % interval, 6 steps of 5m"), "{text}");
    let header = lines.iter().position(|l| l.starts_with("AHEAD")).expect("table header");
    let rows: Vec<Vec<&str>> = lines[header + 1..header + 7].iter().map(|l| l.split_whitespace().collect()).collect();
    let ahead: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(ahead, ["+5m", "+10m", "+15m", "+20m", "+25m", "+30m"], "{text}");
    // Seasonal naive: 2 cores for the first two steps, 8 from 15 minutes on.
    // Columns: AHEAD, date, time, LOWER, MEAN, UPPER, [flag].
    let means: Vec<f64> = rows.iter().map(|r| r[4].parse().unwrap()).collect();
    assert_eq!(means, [2.0, 2.0, 8.0, 8.0, 8.0, 8.0], "{text}");
    // The spike's upper bound passes the virtual node's 8 requested cores.
    assert!(lines[header + 3].ends_with("upper > requested"), "{text}");
    assert!(!lines[header + 1].contains("upper >"), "{text}");
    let plot: Vec<&str> = lines[header + 7..].iter().copied().filter(|l| l.contains('┤')).collect();
    assert_eq!(plot.len(), 12, "{text}");
    assert!(plot.iter().any(|l| l.contains('─')), "a threshold line: {text}");
    let dots = plot.iter().map(|l| l.matches('•').count()).sum::<usize>();
    assert!((12..=13).contains(&dots), "one hour of 5-minute history: {text}");
    assert!(text.contains("─ requested 8.00") && text.contains("now") && text.contains("+30m"), "{text}");
    assert!(!text.contains('\x1b'), "no colour when stdout is not a terminal");
    let colour = c.ok(&["--color", "always", "forecast", "spiky", "--horizon", "6"]);
    assert!(colour.contains("\x1b[31m─"), "--color always paints the threshold red");

    // For scripts.
    let rows = csv(&c.ok(&["--output", "csv", "forecast", "spiky", "--horizon", "3", "--history", "30m"]));
    assert_eq!(rows[0], ["timestamp_ms", "kind", "value", "lower", "mean", "upper"]);
    let observed = rows.iter().filter(|r| r[1] == "observed").count();
    let forecast: Vec<&Vec<String>> = rows.iter().filter(|r| r[1] == "forecast").collect();
    assert!((6..=7).contains(&observed), "30 minutes of 5-minute points: {rows:?}");
    assert_eq!(forecast.len(), 3);
    assert_eq!(forecast[2][4], "8");
    let ts: Vec<i64> = rows[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "one time-ordered table");
    let j: serde_json::Value = serde_json::from_str(&c.ok(&["--output", "json", "forecast", "p0"])).unwrap();
    assert_eq!(j["kind"], "physical");
    assert_eq!(j["metric"], "cpu");
    assert_eq!(j["threshold_label"], "overload threshold");
    assert!((j["threshold"].as_f64().unwrap() - 14.4).abs() < 1e-9, "16 cores x 0.9: {j}");
    assert_eq!(j["points"].as_array().unwrap().len(), 6, "the model's longest horizon by default");
    assert!(j["history"].as_array().unwrap().len() >= 24, "2 h of history by default: {j}");
    let p3 = j["points"][3]["mean"].as_f64().unwrap();
    assert!((p3 - 15.0).abs() < 1e-9, "p0 at 15 cores 20 minutes ahead: {j}");

    // Errors say what to do, with the usage exit code.
    let out = c.ctl(&["forecast", "spiky", "--horizon", "2h"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--horizon 2h is beyond the model's longest horizon, 30m (6 steps of 5m)"), "{err}");
    let out = c.ctl(&["forecast", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no virtual or physical node \"nope\"") && err.contains("swarmctl nodes list"), "{err}");
    let out = c.ctl(&["forecast", "spiky", "--horizon", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a duration"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_ranks_and_gives_the_cost_functions_verdict() {
    let c = cluster().await;
    // p0 will be overloaded in 15 minutes: moving steady to p1 relieves it and pays.
    let text = c.ok(&["affinity", "steady"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("steady runs on p0 (affinity "), "{text}");
    assert!(lines[1].starts_with("verdict: move to p1: p0 is at risk of overload"), "{text}");
    assert!(lines[1].ends_with(": pays"), "{text}");
    let header = lines.iter().position(|l| l.starts_with("RANK")).unwrap();
    let ranked: Vec<Vec<&str>> = lines[header + 1..header + 3].iter().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!((ranked[0][1], *ranked[0].last().unwrap()), ("p1", "pays"), "{text}");
    assert_eq!((ranked[1][1], ranked[1][2]), ("p0", "*"), "{text}");
    assert_eq!(*ranked[1].last().unwrap(), "current", "{text}");
    assert!(text.contains("WHY\n  p1: p0 is at risk of overload") && text.contains("  p0: steady runs here"), "{text}");

    // The verdict is what a round does.
    let round: serde_json::Value = serde_json::from_str(&c.ok(&["--output", "json", "round", "--dry-run"])).unwrap();
    let d = round["decisions"].as_array().unwrap();
    let steady = d.iter().find(|d| d["virtual_node_id"] == "steady");
    let j: serde_json::Value = serde_json::from_str(&c.ok(&["--output", "json", "affinity", "steady"])).unwrap();
    assert_eq!(j["would_move_to"], "p1");
    assert_eq!(steady.map(|d| d["to_node_id"].clone()), Some(serde_json::json!("p1")), "{round}");
    let p1 = &j["ranking"][0];
    assert_eq!(p1["verdict"], "pays");
    assert!(p1["cost"]["net"].as_f64().unwrap() > 60.0, "net above min_net_benefit: {p1}");

    // CSV adds the figures and the explanation.
    let rows = csv(&c.ok(&["--output", "csv", "affinity", "idle"]));
    assert_eq!(&rows[0][..3], ["RANK", "NODE", "SCORE"]);
    assert_eq!(rows[0].last().unwrap(), "WHY");
    assert_eq!(rows.len(), 3, "a header and one row per physical node: {rows:?}");

    // After a real round, steady is migrating: every other target says so.
    c.ok(&["round"]);
    let j: serde_json::Value = serde_json::from_str(&c.ok(&["--output", "json", "affinity", "steady"])).unwrap();
    assert!(j["would_move_to"].is_null(), "{j}");
    let verdicts: Vec<&str> = j["ranking"].as_array().unwrap().iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert!(verdicts.contains(&"migrating"), "{j}");

    let out = c.ctl(&["affinity", "ghost"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NOT_FOUND: virtual_node_ids[0]: unknown virtual node \"ghost\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_watch_is_readable_and_tables_have_csv() {
    let c = cluster().await;
    c.ok(&["round"]);
    let text = c.ok(&["decisions", "watch", "--from", "1", "--limit", "1"]);
    let lines: Vec<&str> = text.lines().collect();
    // "12:03:04Z  #1     PREDICTIVE      spiky: p0 → p1  gain +0.12  (round 1)"
    let head: Vec<&str> = lines[0].split_whitespace().collect();
    assert!(head[0].len() == 9 && head[0].ends_with('Z'), "{text}");
    assert_eq!(&head[1..6], ["#1", "PREDICTIVE", "steady:", "p0", "→"], "{text}");
    assert_eq!(head[6], "p1", "{text}");
    assert!(lines[0].ends_with("(round 1)"), "{text}");
    // The reason follows, wrapped to the width and indented under the move.
    assert!(lines.len() >= 3, "a long reason wraps: {text}");
    for l in &lines[1..] {
        assert!(l.starts_with("           ") && l.chars().count() <= 100, "{l:?}");
    }
    let reason: String = lines[1..].iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    assert!(reason.starts_with("p0 is at ") && reason.contains("threshold 90%"), "{reason}");
    let colour = c.ok(&["--color", "always", "decisions", "watch", "--from", "1", "--limit", "1"]);
    assert!(colour.contains("\x1b[1;33mPREDICTIVE"), "{colour}");
    let rows = csv(&c.ok(&["--output", "csv", "decisions", "watch", "--from", "1", "--limit", "1"]));
    assert_eq!(rows[0][..4], ["sequence", "round_id", "decided_at_ms", "virtual_node_id"]);
    assert_eq!((rows[1][0].as_str(), rows[1][3].as_str()), ("1", "steady"));

    // Every table has a CSV form without the sentences around it.
    let rows = csv(&c.ok(&["--output", "csv", "nodes", "list"]));
    assert_eq!(rows[0], ["ID", "STATE", "ZONE", "RACK", "CORES", "MEM_GIB", "VNODES", "REQ_CORES"]);
    assert_eq!(rows[1][..2], ["p0", "active"]);
    let rows = csv(&c.ok(&["--output", "csv", "migrations", "list"]));
    assert_eq!(rows[0][0], "ID");
    assert_eq!(rows.len(), 3, "two proposed migrations: {rows:?}");
    let out = c.ctl(&["--output", "csv", "heatmap"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--output csv is for commands that print a table"));
}
