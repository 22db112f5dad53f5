//! What one forecast costs with the bundled artifact, and how much of it is
//! finding the series' own period (`crate::period`): serving does both once
//! per virtual node per round, so the forecasts stage of a 100k-node round
//! is this times 100,000 over the cores.
//!
//! Run: `cargo bench -p swarm-models --bench forecast`. Prints the ratio of
//! the period search to the whole forecast, and of the flat tree walk to
//! the node-by-node one over the same feature rows, all timed in this
//! process.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use swarm_models::features::{Prepared, SeriesRef};
use swarm_models::{Artifact, DEFAULT_ARTIFACT};

const STEP: i64 = 300_000;

/// Eight days of a VM: a daily swing, an hourly job and some hashed noise.
fn series() -> Vec<f64> {
    (0..8 * 288)
        .map(|i: usize| {
            let day = (i as f64 / 288.0 * std::f64::consts::TAU).sin();
            let job = if i % 13 < 2 { 30.0 } else { 0.0 };
            let noise = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as f64;
            20.0 + 8.0 * day + job + noise
        })
        .collect()
}

fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() / n as f64
}

fn benches(c: &mut Criterion) {
    let a = Artifact::from_json(DEFAULT_ARTIFACT, "models/default.json").expect("the default artifact");
    let v = series();
    let t = v.len() - 1;
    let s = SeriesRef { values: &v, start_ms: 0, interval_ms: STEP };
    // As serving prepares it: sums from the first point a forecast reads.
    let p = Prepared::from_point(s, t + 1 - a.features.min_history());
    let no_period = swarm_models::FeatureSpec { own_period_max_ms: 0, ..a.features.clone() };
    assert!(a.forecast_at(&p, t).is_some());
    let n = 20_000;
    let forecast = per_call(n, || {
        black_box(a.forecast_at(black_box(&p), t));
    });
    let with = per_call(n, || {
        black_box(a.features.origin(black_box(&p), t));
    });
    let without = per_call(n, || {
        black_box(no_period.origin(black_box(&p), t));
    });
    println!(
        "one forecast (12 horizons, point and upper models) {:.2} us; its origin {:.2} us with the period search, {:.2} us without: the search is {:.1} % of a forecast; {:.0} forecasts a second on one core",
        forecast * 1e6,
        with * 1e6,
        without * 1e6,
        (with - without) / forecast * 100.0,
        1.0 / forecast
    );
    // Every head's feature rows at this origin: the flat walk serving uses
    // against the trees walked node by node, point and upper models.
    let o = a.features.origin(&p, t).expect("an origin");
    let rows: Vec<Vec<f64>> = a
        .horizons
        .iter()
        .map(|&h| {
            let mut row = Vec::new();
            assert!(a.features.row(&p, &o, h, &mut row));
            row
        })
        .collect();
    let models: Vec<&swarm_models::model::Model> =
        std::iter::once(&a.model).chain(a.upper.as_ref().map(|u| &u.model)).collect();
    let walk = |node_by_node: bool| {
        per_call(n, || {
            for m in &models {
                for (i, row) in rows.iter().enumerate() {
                    let x = black_box(row.as_slice());
                    black_box(if node_by_node { m.predict_node_by_node(i, x) } else { m.predict(i, x) });
                }
            }
        })
    };
    let (flat, nodes) = (walk(false), walk(true));
    println!(
        "the trees of one forecast: flat walk {:.2} us, node by node {:.2} us: the flat walk is {:.2}x faster",
        flat * 1e6,
        nodes * 1e6,
        nodes / flat
    );
    let mut g = c.benchmark_group("forecast");
    g.bench_function("one series, 12 horizons", |b| b.iter(|| a.forecast_at(black_box(&p), t)));
    g.bench_function("origin with the period search", |b| b.iter(|| a.features.origin(black_box(&p), t)));
    g.bench_function("origin without it", |b| b.iter(|| no_period.origin(black_box(&p), t)));
    g.finish();
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
}
