//! Controller rounds at scale: the pruned target search against exhaustive
//! scoring of every (virtual, physical) pair, on seeded synthetic clusters
//! (`swarm_core::placement::synthetic`: zones, racks, forecasts,
//! history, data reads, draining nodes, pins and anti-affinity groups).
//!
//! Run: `cargo bench -p swarm-service --bench round`. It first prints, for
//! each size, one timed round of each search and the ratio (the exhaustive
//! round at 100,000 x 10,000 scores 10^9 pairs and takes about a minute),
//! then Criterion measures the pruned rounds properly.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use swarm_core::placement::controller::{ControllerConfig, RoundInput, Search, run_round_with};
use swarm_core::placement::synthetic::{SyntheticParams, synthetic_view};
use swarm_core::placement::view::ClusterView;

fn params(virt: usize, phys: usize) -> SyntheticParams {
    SyntheticParams { virt, phys, zones: 4, rack_size: 40, seed: 11, ..Default::default() }
}

fn round(view: &ClusterView, search: Search) -> (usize, u64) {
    let last = HashMap::new();
    // A budget large enough that the micro-migration phase runs, which
    // evaluates every virtual node (a spent budget would skip it).
    let cfg = ControllerConfig { max_decisions_per_round: 1000, ..ControllerConfig::default() };
    let input = RoundInput { now_ms: 0, step_ms: 300_000, last_decided: &last };
    let out = run_round_with(view, input, &cfg, search);
    (out.proposals.len(), out.pairs_scored)
}

fn once(label: &str, view: &ClusterView) {
    let t = Instant::now();
    let (np, sp) = round(view, Search::Pruned);
    let pruned = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (ne, se) = round(view, Search::Exhaustive);
    let exhaustive = t.elapsed().as_secs_f64();
    assert_eq!(np, ne, "both searches must decide the same");
    println!(
        "{label}: pruned {pruned:.3} s ({sp} pairs scored), exhaustive {exhaustive:.3} s ({se} pairs), ratio {:.1}x, {np} decisions",
        exhaustive / pruned
    );
}

fn benches(c: &mut Criterion) {
    let small = synthetic_view(&params(10_000, 1_000));
    let large = synthetic_view(&params(100_000, 10_000));
    once("10,000 x 1,000", &small);
    once("100,000 x 10,000", &large);
    let mut g = c.benchmark_group("round");
    g.sample_size(10);
    g.bench_function("pruned 10k x 1k", |b| b.iter(|| black_box(round(&small, Search::Pruned))));
    g.bench_function("exhaustive 10k x 1k", |b| b.iter(|| black_box(round(&small, Search::Exhaustive))));
    g.bench_function("pruned 100k x 10k", |b| b.iter(|| black_box(round(&large, Search::Pruned))));
    g.finish();
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
}
