//! On the shared Azure trace: the committed default artifact reproduces the
//! metrics it records, a freshly trained model beats the baselines, and the
//! `swarm-train` binary works end to end. Requires the datasets when
//! `SWARM_REQUIRE_DATASETS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use swarm_models::{Artifact, DEFAULT_ARTIFACT};
use swarm_training::backtest::{self, Protocol};
use swarm_training::data;
use swarm_training::fit::{self, FitOptions};

fn datasets() -> Option<PathBuf> {
    swarm_datasets::shared_datasets(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

fn azure(d: &Path) -> PathBuf {
    d.join("azure-vm-cpu-2017/vm_cpu_readings.csv")
}

#[test]
fn default_artifact_reproduces_its_recorded_metrics() {
    let Some(d) = datasets() else { return };
    let a = Artifact::from_json(DEFAULT_ARTIFACT, "default.json").unwrap();
    let loaded = data::load(&azure(&d), None, &a.metric, None).unwrap();
    let report = backtest::evaluate(&loaded.series, &a, &Protocol::default());
    let recorded = a.evaluation.clone().unwrap();
    assert_eq!(serde_json::to_value(&report).unwrap(), recorded, "evaluation differs from the recorded one");
}

#[test]
fn a_model_trained_on_real_data_beats_naive_and_seasonal_naive() {
    let Some(d) = datasets() else { return };
    for metric in ["avg_cpu", "max_cpu"] {
        let loaded = data::load(&azure(&d), None, metric, Some(10)).unwrap();
        assert_eq!(loaded.series.len(), 10);
        assert!(loaded.series.iter().all(|s| s.values.len() == 8004 && s.interval_ms == 300_000));
        let p = Protocol::default();
        let ends = backtest::train_ends(&loaded.series, &p);
        let options = FitOptions::default();
        let fitted = fit::fit(&loaded.series, &ends, &options).unwrap();
        let provenance = fit::Provenance {
            produced_by: "test".into(),
            metric: metric.into(),
            dataset: "azure".into(),
            format: "azure-v1".into(),
        };
        let a = fit::to_artifact(fitted, &options, &loaded.series, &ends, provenance);
        let r = backtest::evaluate(&loaded.series, &a, &p);
        let (m, n, s) = (
            r.mase("swarm", "h1-12").unwrap(),
            r.mase("naive", "h1-12").unwrap(),
            r.mase("seasonal_naive", "h1-12").unwrap(),
        );
        assert!(m < n && m < s, "{metric}: swarm {m:.3}, naive {n:.3}, seasonal naive {s:.3}");
        // The baselines match the figures of an independent implementation (statsforecast) on avg_cpu.
        if metric == "avg_cpu" {
            assert!((n - 0.88).abs() < 0.01 && (s - 1.11).abs() < 0.01, "naive {n:.3}, seasonal naive {s:.3}");
        }
        assert!((0.85..=0.95).contains(&r.coverage90), "{metric}: coverage {}", r.coverage90);
    }
}

#[test]
fn swarm_train_binary_fits_evaluates_and_reports_errors() {
    let Some(d) = datasets() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.json");
    let bin = env!("CARGO_BIN_EXE_swarm-train");
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let csv = azure(&d);
    let csv = csv.to_str().unwrap();
    let o = run(&[
        "fit",
        "--dataset",
        csv,
        "--metric",
        "avg_cpu",
        "--entities",
        "4",
        "--learner",
        "linear",
        "--horizons",
        "1,3,6,12",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = Artifact::load(&out).unwrap();
    assert_eq!(a.horizons, vec![1, 3, 6, 12]);
    assert!(a.produced_by.contains("--horizons 1,3,6,12"));
    let report = tmp.path().join("r.json");
    let o = run(&[
        "evaluate",
        "--dataset",
        csv,
        "--metric",
        "avg_cpu",
        "--entities",
        "4",
        "--model",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for m in ["swarm", "naive", "seasonal_naive", "moving_average"] {
        assert!(r["models"][m]["h1-12"]["mase"].as_f64().unwrap() > 0.0, "{m}");
    }
    assert!(r["coverage90"].as_f64().is_some() && r["series"] == 4);
    assert_eq!(r, a.evaluation.clone().unwrap(), "evaluating the artifact as is reproduces what fit recorded");
    assert!(std::fs::read_to_string(report.with_extension("md")).unwrap().contains("| seasonal_naive |"));
    // Bad input: a metric that is not there, an artifact of another version.
    let o = run(&["evaluate", "--dataset", csv, "--metric", "gpu", "--report", report.to_str().unwrap(), "--quiet"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no metric \"gpu\"; it has: max_cpu, avg_cpu"));
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    v["format_version"] = 9.into();
    std::fs::write(&out, v.to_string()).unwrap();
    let o = run(&[
        "evaluate",
        "--dataset",
        csv,
        "--metric",
        "avg_cpu",
        "--model",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("format version 9"), "{}", String::from_utf8_lossy(&o.stderr));
}
