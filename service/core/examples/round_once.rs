//! One pruned controller round over 100,000 virtual × 10,000 physical
//! nodes (the `round` bench's large cluster), three times, printing the
//! time, decisions and pairs scored, and the controller's own memory: the
//! cluster view it decides on and what a round allocates above it (read
//! from the process's resident set, so it counts whatever the code holds,
//! not an estimate). For profiling (`perf record`) and for comparing two
//! commits quickly, without the bench's minutes-long exhaustive reference
//! run:
//!
//! `cargo run --release -p swarm-core --example round_once`

use std::collections::HashMap;
use std::time::Instant;

use swarm_core::placement::controller::{ControllerConfig, RoundInput, Search, run_round_with};
use swarm_core::placement::synthetic::{SyntheticParams, synthetic_view};

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`), 0 where there is none.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn main() {
    let params =
        SyntheticParams { virt: 100_000, phys: 10_000, zones: 4, rack_size: 40, seed: 11, ..Default::default() };
    let before = status_bytes("VmRSS");
    let view = synthetic_view(&params);
    let with_view = status_bytes("VmRSS");
    let last = HashMap::new();
    // The bench's budget: large enough that the micro-migration phase runs.
    let cfg = ControllerConfig { max_decisions_per_round: 1000, ..ControllerConfig::default() };
    let input = RoundInput { now_ms: 0, step_ms: 300_000, last_decided: &last };
    for _ in 0..3 {
        let t = Instant::now();
        let out = run_round_with(&view, input, &cfg, Search::Pruned);
        println!(
            "100,000 x 10,000 pruned round: {:.3} s, {} decisions, {} pairs scored",
            t.elapsed().as_secs_f64(),
            out.proposals.len(),
            out.pairs_scored
        );
    }
    let peak = status_bytes("VmHWM");
    let view_bytes = with_view.saturating_sub(before);
    println!(
        "memory: the view {:.1} MB ({:.0} B per virtual node, with forecasts of {} steps); a round's peak above it {:.1} MB",
        mb(view_bytes),
        view_bytes as f64 / params.virt as f64,
        params.horizon,
        mb(peak.saturating_sub(with_view)),
    );
}
