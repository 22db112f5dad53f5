//! Forecasting features and model artifacts: the single definition that
//! `swarm-train` writes and `swarmd` reads, so features can never drift
//! between training and serving.
//!
//! Layout:
//! - [`features`]: the feature pipeline (lags, seasonal lags in wall-clock
//!   time, rolling statistics, calendar encodings, per-series scaling);
//! - [`period`]: a series' own period (the lag it best repeats at), one of
//!   the features;
//! - [`model`]: the model types and how they predict;
//! - [`artifact`]: the versioned, self-describing artifact file and the
//!   forecast it produces (point and interval);
//! - [`DEFAULT_ARTIFACT`]: the committed default artifact `swarmd` loads.

#![deny(missing_docs)]

pub mod artifact;
pub mod features;
pub mod model;
pub mod period;

pub use artifact::{Artifact, ArtifactError, ForecastPoint};
pub use features::FeatureSpec;

/// The default artifact committed at `models/default.json`; its
/// `produced_by` field says the command that made it.
pub const DEFAULT_ARTIFACT: &str = include_str!("../default.json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_artifact_loads_and_beats_its_baselines() {
        let a = Artifact::from_json(DEFAULT_ARTIFACT, "models/default.json").unwrap();
        assert_eq!(a.horizons, (1..=12).collect::<Vec<_>>());
        assert!(a.produced_by.starts_with("swarm-train fit "), "{}", a.produced_by);
        let ev = a.evaluation.as_ref().expect("the default artifact records its evaluation");
        let mase = |m: &str| ev["models"][m]["h1-12"]["mase"].as_f64().unwrap();
        assert!(mase("swarm") < mase("naive"));
        assert!(mase("swarm") < mase("seasonal_naive"));
        let cov = ev["coverage90"].as_f64().unwrap();
        assert!((0.85..0.95).contains(&cov), "{cov}");
    }
}
