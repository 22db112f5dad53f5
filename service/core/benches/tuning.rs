//! The self-tuner's cost: one tuning run (24 candidates replayed over the
//! default 1 + 3 + 1 days, with up to 7 days of window before) on the
//! sample swarmd tunes on at any fleet size (64 physical nodes, here with
//! 10 virtual nodes each and 12 days of 5-minute history), against one
//! round of the risk-aware rule on the same sample — the ratio says how
//! many of the rule's rounds a daily tuning run costs.
//!
//! Run: `cargo bench -p swarm-core --bench tuning`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use swarm_core::placement::controller::{ControllerConfig, RoundInput};
use swarm_core::placement::risk::{self, Histories};
use swarm_core::placement::synthetic::{SyntheticParams, synthetic_view};
use swarm_core::placement::tuning;
use swarm_core::placement::view::ClusterView;

const STEP: i64 = 300_000;
const DAY: usize = 288;

/// Every virtual node's CPU: its demand, a daily swing, and a spike to
/// three times it at hashed steps (some nodes share spike times, so hosts
/// overload together).
fn loads(view: &ClusterView, steps: usize) -> Vec<Vec<f64>> {
    let hash = |a: u64, b: u64| (a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 33;
    view.virt
        .iter()
        .enumerate()
        .map(|(vi, v)| {
            let base = v.demand.cpu_cores;
            let group = (vi % 7) as u64;
            (0..steps)
                .map(|s| {
                    let day = ((s % DAY) as f64 / DAY as f64 * std::f64::consts::TAU).sin();
                    let spike = hash(group, s as u64 / 3) % 40 == 0;
                    base * (0.6 + 0.2 * day) * if spike { 3.0 } else { 1.0 }
                })
                .collect()
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let view = synthetic_view(&SyntheticParams {
        virt: 640,
        phys: 64,
        zones: 2,
        rack_size: 16,
        seed: 5,
        ..Default::default()
    });
    let cfg = ControllerConfig::default();
    let steps = 12 * DAY;
    let loads = loads(&view, steps);
    let rows: Vec<Option<&[f64]>> = loads.iter().map(|l| Some(l.as_slice())).collect();
    let now = steps as i64 * STEP;
    let last = HashMap::new();
    let round = || {
        let input = RoundInput { now_ms: now, step_ms: STEP, last_decided: &last };
        risk::propose(&view, &Histories::new(&rows), input, &cfg.risk).len()
    };
    let tune = || tuning::tune(&view, &rows, now, STEP, &cfg);
    let t = Instant::now();
    let moves = round();
    let one_round = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let run = tune();
    let one_tuning = t.elapsed().as_secs_f64();
    println!(
        "64 hosts x 640 virtual nodes, 12 days: one risk round {:.4} s ({moves} moves), one tuning run {:.3} s ({} candidates, {}: {}), ratio {:.0}x",
        one_round,
        one_tuning,
        run.rows.len(),
        run.verdict.name(),
        run.after,
        one_tuning / one_round
    );
    let mut g = c.benchmark_group("tuning");
    g.sample_size(10);
    g.bench_function("risk round, 64 hosts", |b| b.iter(|| black_box(round())));
    g.bench_function("tuning run, 64 hosts", |b| b.iter(|| black_box(tune().rows.len())));
    g.finish();
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
}
