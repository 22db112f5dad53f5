//! The web dashboard in a real browser: headless Chromium loads the page
//! from the real `swarmd` (`--http`), with a known topology; the test checks
//! the heatmap cells, the placement marks and the proposed migrations in the
//! DOM the page built, and saves a screenshot as a test artifact
//! (`target/tmp/dashboard.png`). Also the JSON API behind it, the event
//! stream, and `swarmctl heatmap` (ANSI and SVG) on the same cluster.

use crate::common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;

use common::*;
use swarm_proto::v1 as pb;

/// The browser: `$CHROMIUM`, else `chromium` on the PATH. Missing is a
/// failure, not a skip (`.ci/run` installs it).
fn chromium() -> String {
    let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let ok = Command::new(&bin).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "headless Chromium not found ({bin}); install it: sudo apt-get install -y chromium (.ci/run does)");
    bin
}

/// A plain HTTP GET; returns (status, body).
fn get(base: &str, path: &str) -> (u16, String) {
    let (status, _, body) = http_get(base, path, "");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heatmap_page_shows_cells_placements_and_proposed_migrations() {
    let browser = chromium();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("swarm.toml");
    std::fs::write(&cfg, "[controller]\nmax_in_flight_per_node = 10\n").unwrap();
    let server = Server::start(&["--round-interval", "1h", "--http", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    let base = server.http.clone().expect("dashboard address printed");
    let ch = server.channel().await;
    // p0 drains: its two virtual nodes get evacuation decisions (proposed migrations).
    register_cluster(ch.clone(), 4, &[2, 2, 2, 2]).await;
    let mut t = pb::topology_client::TopologyClient::new(ch.clone());
    let mut p0 = physical("p0", 16.0);
    p0.state = pb::PhysicalNodeState::Draining as i32;
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![p0] }).await.unwrap();
    let mut p = pb::placement_client::PlacementClient::new(ch.clone());
    let round = p.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert_eq!(round.decisions.len(), 2);

    // The JSON behind the page.
    let (status, body) = get(&base, "/api/heatmap");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let h = &v["heatmap"];
    assert_eq!(h["columns"].as_array().unwrap().len(), 4);
    assert_eq!(h["rows"].as_array().unwrap().len(), 8);
    let marked: Vec<&serde_json::Value> =
        h["rows"].as_array().unwrap().iter().filter(|r| !r["migration"].is_null()).collect();
    assert_eq!(marked.len(), 2);
    assert!(marked.iter().all(|r| r["migration"]["phase"] == "proposed"));
    let (status, body) = get(&base, "/api/forecast?node=nope");
    assert!(status == 404 && body.contains("unknown virtual node"), "{status} {body}");
    let (status, body) = get(&base, "/api/affinity?virtual=v1-0");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"current\":\"p1\"") && body.contains("cpu_headroom"), "{body}");

    // The page, rendered by a real browser as users open it: live events on,
    // the DOM taken within 5 s (`--timeout`: at most 5 s, then stop loading
    // and dump what is there). With the event stream open the network never
    // goes quiet, so the first paint must not wait on it.
    let started = std::time::Instant::now();
    let out = Command::new("timeout")
        .args(["60", &browser, "--headless", "--no-sandbox", "--disable-gpu", "--timeout=5000", "--dump-dom"])
        .arg(format!("{base}/"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the browser hung: {:?}", started.elapsed());
    let dom = String::from_utf8_lossy(&out.stdout);
    let count = |needle: &str| dom.matches(needle).count();
    assert_eq!(count("class=\"cell"), 32, "4 columns x 8 rows:\n{dom}");
    assert_eq!(count(" placed"), 8, "every row marks where it runs");
    assert_eq!(count(" proposed"), 2, "both evacuations are marked as proposed migrations");
    assert!(dom.contains("8 of 8 virtual nodes"), "{dom}");
    assert!(dom.contains("hdr draining"), "the draining node's column is marked");
    // Decisions and migrations tables filled.
    assert!(dom.contains("evacuation") || dom.contains("p0 is draining"), "{dom}");
    assert_eq!(dom.matches("<td>proposed</td>").count(), 2, "both proposed migrations listed:\n{dom}");
    assert_eq!(dom.matches("class=\"outcome-pending\"").count(), 2, "both decisions' outcomes are pending:\n{dom}");
    assert_eq!(dom.matches("class=\"kind-evacuation\"").count(), 2, "{dom}");

    // The same heatmap from the CLI: coloured text and an SVG file.
    let out = server.ctl(&["heatmap"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("8 of 8 virtual nodes"), "{text}");
    assert_eq!(text.matches("0mP ").count(), 2, "{text}");
    assert_eq!(text.matches("0m● ").count(), 8, "{text}");
    // ...and as JSON: the same four columns and eight rows, both proposed migrations.
    let out = server.ctl(&["--output", "json", "heatmap"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["columns"].as_array().unwrap().len(), 4, "{j}");
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{j}");
    assert_eq!(rows.iter().filter(|r| r["migration_phase"] == "proposed").count(), 2, "{j}");
    assert!(rows.iter().all(|r| r["cells"].as_array().unwrap().iter().all(|c| c.is_null() || c.is_f64())), "{j}");
    let svg_path = tmp.path().join("heatmap.svg");
    let out = server.swarmctl().args(["heatmap", "--format", "svg", "--out"]).arg(&svg_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert_eq!(svg.matches(r#"class="cell""#).count(), 32);
    assert_eq!(svg.matches(r#"class="placed""#).count(), 8);
    assert_eq!(svg.matches(r#"class="migration""#).count(), 2);

    // A screenshot for people.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let out = Command::new("timeout")
        .args(["60", &browser, "--headless", "--no-sandbox", "--disable-gpu", "--timeout=5000"])
        .arg("--window-size=1400,900")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("{base}/"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.len() > 10_000 && png.starts_with(b"\x89PNG"), "screenshot at {}", shot.display());
    println!("screenshot: {}", shot.display());

    // Live updates: a new decision arrives on the event stream.
    let host = base.trim_start_matches("http://").to_owned();
    let sse = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        write!(s, "GET /api/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n").unwrap();
        let mut got = String::new();
        let mut buf = [0u8; 4096];
        while !got.contains("event: decision") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "stream closed: {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        got
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut p2 = physical("p1", 16.0);
    p2.state = pb::PhysicalNodeState::Draining as i32;
    t.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes: vec![p2] }).await.unwrap();
    let r2 = p.run_round(pb::RunRoundRequest { dry_run: false }).await.unwrap().into_inner();
    assert!(!r2.decisions.is_empty());
    let events = sse.join().unwrap();
    assert!(events.contains(&format!("\"sequence\":{}", r2.decisions[0].sequence)), "{events}");
}
