//! Reconfiguration plans: how much they move against consistent and
//! rendezvous hashing (and the theoretical minimum), and how long a plan for
//! 100,000 virtual x 1,000 physical nodes takes.
//!
//! Run: `cargo bench -p swarm-service --bench reconfig`. It first prints the
//! comparison as a Markdown table (10,000 equal-sized items on 100 nodes),
//! then one timed plan per instance with its moves and lower bound, then
//! Criterion measures the plans.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use swarm_core::reconfig::compare::{self, Scenario};
use swarm_core::reconfig::{Objective, Problem, plan, synthetic};

fn once(label: &str, pb: &Problem, obj: Objective) {
    let t = Instant::now();
    let p = plan(pb, obj).expect("the synthetic instances are feasible");
    let s = t.elapsed().as_secs_f64();
    println!("{label}: {s:.3} s, {p}");
}

fn benches(c: &mut Criterion) {
    let rows: Vec<_> = Scenario::ALL.iter().map(|&s| compare::run(s, 10_000, 100.0)).collect();
    println!("{}", compare::markdown(&rows, 10_000, 100.0));
    let uniform = synthetic::drain_and_join(7, 100_000, 1_000, true);
    let mixed = synthetic::drain_and_join(7, 100_000, 1_000, false);
    once("100,000 x 1,000, equal sizes, fewest moves", &uniform, Objective::Moves);
    once("100,000 x 1,000, equal sizes, fewest bytes", &uniform, Objective::Bytes);
    once("100,000 x 1,000, mixed sizes, fewest moves", &mixed, Objective::Moves);
    once("100,000 x 1,000, mixed sizes, fewest bytes", &mixed, Objective::Bytes);
    let mut g = c.benchmark_group("reconfig");
    g.sample_size(10);
    g.bench_function("plan 100k x 1k equal sizes", |b| b.iter(|| black_box(plan(&uniform, Objective::Moves))));
    g.bench_function("plan 100k x 1k mixed sizes", |b| b.iter(|| black_box(plan(&mixed, Objective::Moves))));
    g.finish();
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
}
