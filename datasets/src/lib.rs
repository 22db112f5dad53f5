//! Swarm's datasets: importers for public trace formats, the canonical long
//! frame they produce, the policy that turns it into regular series, and a
//! seeded synthetic cluster generator.
//!
//! Layout:
//! - [`import`]: one reader per format (Azure V1 VM CPU readings, Alibaba
//!   2018 machine usage, Swarm's long CSV and Parquet), all built on Polars
//!   and all yielding the canonical frame `(timestamp, entity, metric, value)`;
//! - [`parquet_footer`]: the bounds check a Parquet footer passes before
//!   Polars decodes it (Polars aborts the process on some corrupt files);
//! - [`isolate`]: reading Parquet in a child process first, for programs
//!   that opt in, so what the footer checks miss cannot abort them;
//! - [`regular`]: canonical frame → one regular series per (entity, metric),
//!   with the documented gap and duplicate policy;
//! - [`synth`]: the synthetic cluster generator used by tests and the demo;
//! - [`fuzzing`]: the importers' fuzz harnesses (targets in `fuzz/`).
//!
//! Every importer is the only reader of its format in the project: the CLI,
//! the training jobs and the replay all call these.

#![deny(missing_docs)]

pub mod fuzzing;
pub mod import;
pub mod isolate;
pub mod parquet_footer;
pub mod regular;
pub mod synth;

/// Where the shared public traces live: `$SWARM_DATASETS`, else
/// `../shared/datasets` beside the repository (given the repository root).
/// `None` means "skip", unless `SWARM_REQUIRE_DATASETS=1`, which turns a
/// missing directory into a panic, so CI cannot pass by skipping.
pub fn shared_datasets(repo_root: &std::path::Path) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("SWARM_DATASETS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root.join("../shared/datasets"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("SWARM_REQUIRE_DATASETS").as_deref() == Ok("1") {
        panic!("SWARM_REQUIRE_DATASETS=1 but the datasets are not at {}; set SWARM_DATASETS", dir.display());
    }
    eprintln!("SKIPPED: datasets not found at {} (set SWARM_DATASETS)", dir.display());
    None
}

pub use import::{BadRow, Format, ImportError, Imported, import};
