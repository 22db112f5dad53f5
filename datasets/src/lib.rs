//! Swarm's datasets: importers for public trace formats, the canonical long
//! frame they produce, the policy that turns it into regular series, and a
//! seeded synthetic cluster generator.
//!
//! Layout:
//! - [`import`]: one reader per format (Azure V1 VM CPU readings, Alibaba
//!   2018 machine usage, Swarm's long CSV and Parquet), all built on Polars
//!   and all yielding the canonical frame `(timestamp, entity, metric, value)`;
//! - [`regular`]: canonical frame → one regular series per (entity, metric),
//!   with the documented gap and duplicate policy;
//! - [`synth`]: the synthetic cluster generator used by tests and the demo.
//!
//! Every importer is the only reader of its format in the project: the CLI,
//! the training jobs and the replay all call these.

#![deny(missing_docs)]

pub mod import;
pub mod regular;
pub mod synth;

pub use import::{BadRow, Format, ImportError, Imported, import};
