//! One pruned controller round over 100,000 virtual × 10,000 physical
//! nodes (the `round` bench's large cluster), three times, printing the
//! time, decisions and pairs scored. For profiling (`perf record`) and for
//! comparing two commits quickly, without the bench's minutes-long
//! exhaustive reference run:
//!
//! `cargo run --release -p swarm-core --example round_once`

use std::collections::HashMap;
use std::time::Instant;

use swarm_core::placement::controller::{ControllerConfig, RoundInput, Search, run_round_with};
use swarm_core::placement::synthetic::{SyntheticParams, synthetic_view};

fn main() {
    let params =
        SyntheticParams { virt: 100_000, phys: 10_000, zones: 4, rack_size: 40, seed: 11, ..Default::default() };
    let view = synthetic_view(&params);
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
}
