//! Loading a trace as regular series of one metric.

use std::path::Path;

use swarm_datasets::import::{self, Format};
use swarm_datasets::regular::{self, Series};

/// Gaps of up to this many points are interpolated (see `swarm_datasets::regular`).
pub const MAX_FILL: usize = 3;

/// Regular series of one metric from one file.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file as given.
    pub path: String,
    /// Its format.
    pub format: Format,
    /// The metric.
    pub metric: String,
    /// The series, in file order.
    pub series: Vec<Series>,
    /// Rows that could not be parsed.
    pub bad_rows: u64,
    /// What regularisation did.
    pub regular: regular::Report,
}

/// Errors loading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The importer failed.
    #[error(transparent)]
    Import(#[from] import::ImportError),
    /// Polars failed.
    #[error("{0}")]
    Polars(#[from] polars::error::PolarsError),
    /// The metric is not in the file.
    #[error("{path} has no metric {metric:?}; it has: {available}")]
    NoMetric {
        /// File.
        path: String,
        /// Asked for.
        metric: String,
        /// What exists.
        available: String,
    },
}

/// Loads `metric` from `path`, keeping the first `limit` series (file order).
pub fn load(path: &Path, format: Option<Format>, metric: &str, limit: Option<usize>) -> Result<Loaded, DataError> {
    let imported = import::import(path, format)?;
    let (mut series, report) = regular::regularize(&imported.frame, metric, MAX_FILL)?;
    if series.is_empty() {
        use polars::prelude::*;
        let names = imported.frame.clone().lazy().select([col("metric").unique_stable()]).collect()?;
        let available: Vec<String> = names.column("metric")?.str()?.iter().flatten().map(|s| s.to_owned()).collect();
        return Err(DataError::NoMetric {
            path: path.display().to_string(),
            metric: metric.to_owned(),
            available: available.join(", "),
        });
    }
    if let Some(n) = limit {
        series.truncate(n);
    }
    Ok(Loaded {
        path: path.display().to_string(),
        format: imported.format,
        metric: metric.to_owned(),
        series,
        bad_rows: imported.bad_rows,
        regular: report,
    })
}
