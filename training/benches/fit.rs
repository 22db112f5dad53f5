//! Fit speed on the shared 100-VM Azure trace: the default learner (trees)
//! against the linear median regression, in the same run.
//!
//! Run: `cargo bench -p swarm-training --bench fit` (reads `SWARM_DATASETS`
//! or `../shared/datasets`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use swarm_training::backtest::{self, Protocol};
use swarm_training::data;
use swarm_training::fit::{self, FitOptions, Learner};
use swarm_training::gbt::GbtParams;

fn main() {
    let dir = std::env::var_os("SWARM_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"));
    let csv = dir.join("azure-vm-cpu-2017/vm_cpu_readings.csv");
    let t = Instant::now();
    let loaded = data::load(&csv, None, "avg_cpu", None).expect("the shared dataset");
    println!("load + regularise {} series: {:.2}s", loaded.series.len(), t.elapsed().as_secs_f64());
    let ends = backtest::train_ends(&loaded.series, &Protocol::default());
    let mut times = Vec::new();
    for (name, learner) in
        [("trees", Learner::Trees(GbtParams::default())), ("linear", Learner::Linear { iterations: 8 })]
    {
        let t = Instant::now();
        let f = fit::fit(&loaded.series, &ends, &FitOptions { learner, ..FitOptions::default() }).expect("fit");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "fit {name:<6}: 12 horizons x 3 models (two calibration models, one per target, and the final one; {} rows a horizon in the final): {secs:.2}s",
            f.rows
        );
        times.push(secs);
    }
    println!("ratio linear / trees: {:.2}", times[1] / times[0]);
}
