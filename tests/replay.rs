//! End to end on the real trace: `swarmctl replay` over the 100 Azure VMs
//! (`max_cpu`), every policy, through the same controller code swarmd runs.
//! Needs the shared datasets (a failure, not a skip, when
//! SWARM_REQUIRE_DATASETS=1).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;

fn replay(trace: &Path, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = Command::new(&*SWARMCTL)
        .args(["replay", "--quiet", "--trace"])
        .arg(trace)
        .arg("--report")
        .arg(&report)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
}

fn n(v: &serde_json::Value, policy: &str, key: &str) -> f64 {
    v["policies"][policy][key].as_f64().unwrap_or_else(|| panic!("{policy}.{key} missing in {v}"))
}

#[test]
fn proactive_beats_reactive_on_the_azure_trace_and_scenarios_round_trip() {
    let Some(data) = datasets() else {
        eprintln!("skipped: shared datasets not found (set SWARM_DATASETS)");
        return;
    };
    let trace = data.join("azure-vm-cpu-2017/vm_cpu_readings.csv");
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.json");
    let md = dir.path().join("r.md");
    let r = replay(&trace, &["--scenario-out", scenario.to_str().unwrap(), "--report", md.to_str().unwrap()]);
    // The report's shape.
    assert_eq!(r["scenario"]["vms"], 100);
    assert_eq!(r["scenario"]["hosts"], 6);
    for p in ["none", "reactive", "proactive", "oracle"] {
        for k in ["overload_intervals", "overload_minutes", "migrations", "bytes_moved"] {
            n(&r, p, k);
        }
    }
    let mean_load = r["scenario"]["mean_host_load"].as_f64().unwrap();
    assert!((0.45..0.65).contains(&mean_load), "a realistic packing: {mean_load}");
    // Moving anything at all beats not moving; foresight beats hindsight.
    let (none, reactive, proactive, oracle) = (
        n(&r, "none", "overload_intervals"),
        n(&r, "reactive", "overload_intervals"),
        n(&r, "proactive", "overload_intervals"),
        n(&r, "oracle", "overload_intervals"),
    );
    assert_eq!(n(&r, "none", "migrations"), 0.0);
    assert!(reactive < none && oracle < reactive, "{r}");
    // The goal this test holds Swarm to: fewer overloads than the reactive
    // baseline with no more migrations.
    assert!(proactive < reactive, "proactive {proactive} vs reactive {reactive}");
    assert!(n(&r, "proactive", "migrations") <= n(&r, "reactive", "migrations"), "{r}");
    assert!(n(&r, "proactive", "predictive_migrations") > 0.0);
    let gap = r["gap_captured"].as_f64().unwrap();
    assert!((gap - (reactive - proactive) / (reactive - oracle)).abs() < 1e-12);
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("| overload host-intervals |") && text.contains("| none | reactive | proactive | oracle |"));

    // How early the forecasts warned of the overloads reactive left: judged
    // from the first day on (cross-fitted forecasts need one), so at most
    // reactive's count; counts consistent with their ratios.
    let f = &r["foresight"];
    assert_eq!(f["along"], "reactive");
    assert_eq!((f["lead_steps"].as_u64(), f["horizon_steps"].as_u64()), (Some(2), Some(6)));
    let overloads = f["overloads"].as_f64().unwrap();
    assert!(overloads > 0.0 && overloads <= reactive, "{f}");
    for signal in ["forecast_upper", "forecast_mean", "load_now"] {
        let q = &f["signals"][signal];
        let (alarms, hits, covered) =
            (q["alarms"].as_f64().unwrap(), q["true_alarms"].as_f64().unwrap(), q["covered"].as_f64().unwrap());
        assert!(hits <= alarms && covered <= overloads, "{signal}: {q}");
        assert!((q["coverage"].as_f64().unwrap() - covered / overloads).abs() < 1e-12, "{signal}: {q}");
    }
    // The load now alarms exactly at the overloaded steps it sees.
    assert!(f["signals"]["load_now"]["alarms"].as_f64().unwrap() <= reactive, "{f}");
    assert!(text.contains("## Foresight") && text.contains("| forecast upper bound (what the controller acts on) |"));

    // The scenario written replays identically from the file (any other tool
    // can replay the same setup).
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&scenario).unwrap()).unwrap();
    assert_eq!(s["hosts"][0]["id"], "h0");
    assert_eq!(s["vms"].as_array().unwrap().len(), 100);
    let again = replay(&trace, &["--scenario", scenario.to_str().unwrap(), "--policy", "none,reactive"]);
    for p in ["none", "reactive"] {
        assert_eq!(again["policies"][p], r["policies"][p], "{p} differs when replayed from the scenario file");
    }
}

#[test]
fn the_reference_scenario_without_migrations_has_exactly_275_overloads() {
    let Some(data) = datasets() else {
        eprintln!("skipped: shared datasets not found (set SWARM_DATASETS)");
        return;
    };
    let trace = data.join("azure-vm-cpu-2017/vm_cpu_readings.csv");
    let reference = data.join("../reference/replay-scenario-dev-max_cpu.json");
    let r = replay(&trace, &["--scenario", reference.to_str().unwrap(), "--policy", "none,reactive,oracle,hindsight"]);
    // The independent simulator's figure, which depends only on scenario and trace.
    assert_eq!(n(&r, "none", "overload_intervals"), 275.0);
    assert!(r["policies"].get("proactive").is_none());
    // The others are a yardstick (reference: reactive 157 / 175 migrations, oracle 16 / 141).
    assert!((100.0..200.0).contains(&n(&r, "reactive", "overload_intervals")), "{r}");
    assert!(n(&r, "oracle", "overload_intervals") < 40.0, "{r}");
    // The best static placement with hindsight (the study's: 14 with no
    // migrations) avoids most of what the initial packing suffers, and never moves.
    assert_eq!(n(&r, "hindsight", "migrations"), 0.0);
    assert!(n(&r, "hindsight", "overload_intervals") < 40.0, "{r}");
}

#[test]
fn bad_arguments_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&*SWARMCTL)
        .args(["replay", "--quiet", "--policy", "sometimes", "--trace"])
        .arg(dir.path().join("nope.csv"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown policy \"sometimes\""));
    let bad = dir.path().join("s.json");
    std::fs::write(&bad, r#"{"hosts":[],"vms":[]}"#).unwrap();
    let trace = dir.path().join("t.csv");
    std::fs::write(&trace, "timestamp,vmid,max_cpu,avg_cpu\n0,a,10,5\n300,a,20,6\n").unwrap();
    let out = Command::new(&*SWARMCTL)
        .args(["replay", "--quiet", "--format", "azure-v1", "--trace"])
        .arg(&trace)
        .arg("--scenario")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one host"));
    for (flag, value, message) in [
        ("--upper-quantile", "1.5", "--upper-quantile: the upper quantile must be in (0.5, 1), got 1.5"),
        ("--cooldown-minutes", "-5", "--cooldown-minutes must be >= 0, got -5"),
        ("--risk-phase", "3", "--risk-phase must be fewer steps than the rule's interval (3), got 3"),
    ] {
        let out = Command::new(&*SWARMCTL)
            .args(["replay", "--quiet", "--format", "azure-v1", "--trace"])
            .arg(&trace)
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains(message), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A Parquet file on which Polars' reader aborts its process (a 2^61-byte
/// allocation, `fuzz/known-aborts/`): swarmctl reads Parquet in a child
/// copy of itself first, so it exits with an input error naming the file,
/// not on a signal. A sound file reads on (and fails later for its content).
#[test]
fn a_parquet_file_that_crashes_the_reader_is_an_input_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let crash = root.join("fuzz/known-aborts/import_parquet/page-validity-length-underflow.parquet");
    let out = Command::new(&*SWARMCTL)
        .args(["replay", "--quiet", "--format", "parquet", "--trace"])
        .arg(&crash)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("page-validity-length-underflow.parquet: the parquet file is corrupt"), "{stderr}");
    let sound = root.join("fuzz/corpus/import_parquet/canonical.parquet");
    let out = Command::new(&*SWARMCTL)
        .args(["replay", "--quiet", "--format", "parquet", "--trace"])
        .arg(&sound)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has no series of metric \"max_cpu\"") && !stderr.contains("corrupt"), "{stderr}");
}

/// The yardstick: the reactive rules swept over a grid (a small one here;
/// the default is 3,960 settings), each policy placed against the best of
/// them at its own migrations, the bounds of short-sighted oracles, and the
/// risk-aware rule on the reference scenario.
#[test]
fn the_tuned_reactive_frontier_places_every_policy_and_bounds_are_reported() {
    let Some(data) = datasets() else {
        eprintln!("skipped: shared datasets not found (set SWARM_DATASETS)");
        return;
    };
    let trace = data.join("azure-vm-cpu-2017/vm_cpu_readings.csv");
    let reference = data.join("../reference/replay-scenario-dev-max_cpu.json");
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("f.md");
    let svg = dir.path().join("plot.svg");
    // The grid holds the default reactive setting (0.9, 0.7, 5 moves, 12 steps = 1 h).
    let grid = "threshold=0.85,0.9,1.0;target=0.45,0.7;budget=1,5;cooldown=12,288";
    let r = replay(
        &trace,
        &[
            "--scenario",
            reference.to_str().unwrap(),
            "--policy",
            "none,reactive,risk,oracle-1,oracle-2,reactive-frontier",
            "--frontier-grid",
            grid,
            "--report",
            md.to_str().unwrap(),
            "--report",
            svg.to_str().unwrap(),
        ],
    );
    assert_eq!(r["frontier_grid"]["settings"], 24, "{}", r["frontier_grid"]);
    let points = r["reactive_frontier"].as_array().unwrap();
    assert!(!points.is_empty());
    let pairs: Vec<(f64, f64)> =
        points.iter().map(|p| (p["overload_intervals"].as_f64().unwrap(), p["migrations"].as_f64().unwrap())).collect();
    // Non-dominated: migrations rise while overloads fall, strictly.
    for w in pairs.windows(2) {
        assert!(w[1].1 > w[0].1 && w[1].0 < w[0].0, "{pairs:?}");
    }
    for p in points {
        let s = &p["params"];
        assert!([0.85, 0.9, 1.0].contains(&s["threshold"].as_f64().unwrap()), "{p}");
        assert!([12, 288].contains(&s["cooldown_steps"].as_u64().unwrap()), "{p}");
    }
    // The default reactive setting is one of those swept, so the frontier
    // at its migrations is at least as good as it.
    let reactive = &r["against_frontier"]["reactive"];
    assert_eq!(reactive["migrations"].as_f64().unwrap(), n(&r, "reactive", "migrations"));
    assert!(reactive["frontier_overload_intervals"].as_f64().unwrap() <= n(&r, "reactive", "overload_intervals"));
    assert!(reactive["fewer_than_frontier"].as_f64().unwrap() <= 0.0, "{reactive}");
    // F(0) is never moving: 275 on this scenario, unless a setting that never moved did better (none can).
    let none = &r["against_frontier"]["none"];
    assert!(none["frontier_overload_intervals"].is_null() || none["frontier_overload_intervals"] == 275, "{none}");
    // Seeing one step ahead gains little, two steps nearly everything (a
    // move takes load off its source from the second step).
    let (o1, o2) = (n(&r, "oracle-1", "overload_intervals"), n(&r, "oracle-2", "overload_intervals"));
    assert!(o2 < o1 / 2.0, "oracle-1 {o1}, oracle-2 {o2}");
    // The risk-aware rule moves, and fewer overloads remain than with none.
    assert!(n(&r, "risk", "migrations") > 0.0 && n(&r, "risk", "overload_intervals") < 275.0, "{r}");
    assert!(r["against_frontier"]["risk"]["fewer_than_frontier"].is_number(), "{}", r["against_frontier"]);
    // The issue's floor for the shipped defaults on this trace: at least
    // 10 % fewer overloads than F(m), the fewest the independent study's
    // 1,340 tuned reactive settings reach with at most the rule's own
    // migrations (its CSV, not this test's 24-setting grid). Measured: 97
    // overloads with 11 migrations against F(11) = 156, 37.8 % under (the
    // issue's 25 % reached here), on a chaotic yardstick (F steps from 156
    // to 129 between 15 and 16 migrations); BENCHMARKS.md "Acting from the
    // first hour" and "Breaking ties by headroom".
    let csv = std::fs::read_to_string(data.join("../reference/reactive-frontier-dev-max_cpu.csv")).unwrap();
    let (risk_o, risk_m) = (n(&r, "risk", "overload_intervals"), n(&r, "risk", "migrations"));
    let f = csv
        .lines()
        .skip(1)
        .map(|l| {
            let mut c = l.split(',').map(|x| x.parse::<f64>().unwrap());
            (c.next().unwrap(), c.next().unwrap())
        })
        .filter(|&(_, m)| m <= risk_m)
        .map(|(o, _)| o)
        .fold(275.0, f64::min);
    assert!(risk_o <= 0.9 * f, "risk {risk_o} overloads / {risk_m} migrations against F({risk_m}) = {f}");
    // Each of the rule's moves bought more than each of reactive's: the
    // overloads a move avoided with every other move in place, per
    // migration (measured, with the configured settings: 27.4 against
    // 7.2). Never moving bought nothing and has no per-migration figure.
    let per = |p: &str| n(&r, p, "marginal_overloads_avoided_per_migration");
    assert!(per("risk") > per("reactive"), "risk {} against reactive {}", per("risk"), per("reactive"));
    assert_eq!(r["policies"]["none"]["marginal_overloads_avoided"], 0, "{}", r["policies"]["none"]);
    assert!(r["policies"]["none"]["marginal_overloads_avoided_per_migration"].is_null());
    // It tuned itself as the replay advanced, on the trace's past only,
    // and tuning made it no worse by the objective it tunes for (overloads
    // plus the price, 1, per migration) than the configured settings held
    // throughout. (On this trace the tuner keeps the configured settings:
    // no candidate beats them by more than the noise guard asks.)
    let tuning = &r["policies"]["risk"]["self_tuning"];
    assert!(tuning["runs"].as_u64().unwrap() >= 20, "{tuning}");
    // The rule on the reference with its configured settings held, and
    // `extra` arguments.
    let configured = |extra: &[&str]| {
        let mut args = vec!["--scenario", reference.to_str().unwrap(), "--policy", "risk", "--self-tuning", "false"];
        args.extend_from_slice(extra);
        replay(&trace, &args)
    };
    let fixed = configured(&[]);
    assert!(fixed["policies"]["risk"]["self_tuning"].is_null(), "{fixed}");
    // Names decide nothing: with the VMs' names shuffled among them, the
    // rule makes the same moves (before ties were broken by headroom, six
    // shuffles gave 118 to 140 overloads with 12 to 17 migrations).
    let same_moves_as_fixed = |other: &serde_json::Value| {
        for field in ["overload_intervals", "migrations", "marginal_overloads_avoided"] {
            assert_eq!(other["policies"]["risk"][field], fixed["policies"]["risk"][field], "{field}");
        }
    };
    let shuffled = configured(&["--shuffle-names", "1"]);
    assert!(shuffled["scenario"]["source"].as_str().unwrap().ends_with("VM names shuffled (seed 1)"), "{shuffled}");
    same_moves_as_fixed(&shuffled);
    // Nor does the clock: paced by its moves (the default), the rule whose
    // first look waits two steps makes the same moves (paced by its runs,
    // one look every 15 minutes, it made 150 overloads with 16 migrations
    // instead of 97 with 11).
    same_moves_as_fixed(&configured(&["--risk-phase", "2"]));
    let objective = |r: &serde_json::Value| n(r, "risk", "overload_intervals") + n(r, "risk", "migrations");
    assert!(
        objective(&r) <= objective(&fixed),
        "tuned {} against configured {}",
        r["policies"]["risk"],
        fixed["policies"]["risk"]
    );
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("## Against the tuned-reactive frontier"), "{text}");
    assert!(text.contains("bounds, not achievable"), "{text}");
    assert!(text.contains("| overloads each migration avoided, the others in place (sum) |"), "{text}");
    assert!(text.contains("![Overloads against migrations](f.svg)"), "{text}");
    for plot in [svg, dir.path().join("f.svg")] {
        let plot = std::fs::read_to_string(&plot).unwrap();
        assert!(plot.starts_with("<svg") && plot.contains(">reactive (") && plot.contains(">risk ("), "{plot}");
    }
    // An SVG without a frontier, and a grid without the sweep, are refused.
    for extra in [&["--report", "x.svg"][..], &["--frontier-grid", "budget=1"][..]] {
        let out = Command::new(&*SWARMCTL)
            .args(["replay", "--quiet", "--policy", "none", "--trace"])
            .arg(&trace)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("reactive-frontier"));
    }
}
