//! The API from Python: `tests/python/swarm_client.py` builds stubs from
//! `proto/` with grpcio-tools and drives the real `swarmd` through
//! register → ingest → round → watch decisions and the error contract, then
//! sends metrics with the OpenTelemetry SDK's own OTLP exporter. The venv
//! is created under `target/` from `tests/python/requirements.txt` (PyPI)
//! and reused while that file is unchanged. A missing `python3` is a
//! failure, not a skip.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The venv's python, created (or re-created when the requirements changed).
fn venv() -> PathBuf {
    let reqs = root().join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&reqs).unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pyvenv");
    let python = dir.join("bin/python");
    let stamp = dir.join("requirements.done");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let ok = Command::new("python3").args(["-m", "venv"]).arg(&dir).status();
    assert!(
        ok.is_ok_and(|s| s.success()),
        "cannot create a venv: install Python 3 with venv (sudo apt-get install -y python3-venv)"
    );
    let ok = Command::new(dir.join("bin/pip")).args(["install", "--quiet", "-r"]).arg(&reqs).status().unwrap();
    assert!(ok.success(), "pip install -r tests/python/requirements.txt failed (PyPI reachable?)");
    std::fs::write(&stamp, wanted).unwrap();
    python
}

#[test]
fn python_client_drives_the_api_and_otel_exports_metrics() {
    let python = venv();
    let server = Server::start(&["--round-interval", "1h"]);
    let addr = server.endpoint().trim_start_matches("http://").to_owned();
    let out = Command::new(python)
        .arg(root().join("tests/python/swarm_client.py"))
        .arg(&addr)
        .arg(root().join("proto"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["virtual_nodes_created"], 3);
    assert_eq!(seen["ingest"]["accepted"], 4);
    assert_eq!(seen["ingest"]["rejected"], 1);
    assert_eq!(seen["ingest"]["rejection"], "value: is NaN");
    let round = seen["round"].as_array().unwrap();
    assert!(!round.is_empty(), "p0 at 94 % must shed load: {seen}");
    assert!(round.iter().all(|d| d["from"] == "p0" && d["to"] == "p1"), "{seen}");
    assert_eq!(round[0]["kind"], "DECISION_KIND_OVERLOAD");
    let seqs: Vec<u64> = round.iter().map(|d| d["sequence"].as_u64().unwrap()).collect();
    let watched: Vec<u64> = seen["watched"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
    assert_eq!(watched, seqs, "the watch replays the round's decisions in order");
    assert_eq!(seen["unknown_id"]["code"], "NOT_FOUND");
    assert!(seen["unknown_id"]["details"].as_str().unwrap().contains("\"ghost\""));
    assert_eq!(seen["otlp_flushed"], true);
    let points = seen["otlp_points"].as_array().unwrap();
    assert!(!points.is_empty(), "the OTLP exporter's gauge arrived: {seen}");
    assert!(points.iter().all(|p| p.as_f64() == Some(3.0 * (1u64 << 30) as f64)), "{seen}");
}
