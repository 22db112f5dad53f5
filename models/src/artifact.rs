//! The model artifact: a versioned, self-describing JSON file.
//!
//! It carries everything needed to reproduce a forecast and to judge it:
//! the feature spec and feature names, the horizons, the model, the interval
//! calibration, a summary of the training data, the command that produced
//! it, and the metrics of its own evaluation. Loading checks the format
//! version *first*, so an artifact of another version fails with a message
//! naming the versions this build reads, not with a confusing field error.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::features::{FeatureSpec, Origin, Prepared, SeriesRef};
use crate::model::Model;

/// The artifact format this build writes.
pub const FORMAT_VERSION: u32 = 1;
/// The artifact formats this build reads.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// Prediction-interval calibration: split-conformal quantiles of the scaled
/// residuals (target − prediction) per horizon, from data the model was not
/// fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervals {
    /// Nominal coverage of [lower, upper], e.g. 0.9.
    pub coverage: f64,
    /// Per horizon (artifact order): the lower residual quantile.
    pub lower: Vec<f64>,
    /// Per horizon: the upper residual quantile.
    pub upper: Vec<f64>,
}

/// An upper-quantile model: one head per horizon (artifact order), fitted
/// with the pinball loss at `quantile` on the same features and targets as
/// the point model. Where present its forecast is the served upper bound,
/// instead of the point forecast plus a residual quantile that is the same
/// for every series: a quantile model follows each series' own spikiness
/// (a calm VM gets a tight bound, a spiky one a wide one), which is what a
/// controller guarding against overload needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpperQuantile {
    /// The quantile, in (0.5, 1).
    pub quantile: f64,
    /// Its heads.
    pub model: Model,
}

impl UpperQuantile {
    /// `q` when it can be an upper quantile: above the median (a bound
    /// below the point forecast guards nothing) and below 1 (no finite
    /// bound covers everything). The one check behind the artifact's
    /// validation and every flag that asks for one.
    pub fn check(q: f64) -> Result<f64, String> {
        if q > 0.5 && q < 1.0 { Ok(q) } else { Err(format!("the upper quantile must be in (0.5, 1), got {q}")) }
    }
}

/// What the model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSummary {
    /// The dataset path as given.
    pub dataset: String,
    /// Its format.
    pub format: String,
    /// Series used.
    pub series: usize,
    /// Training rows (origins) per horizon.
    pub rows: usize,
    /// Sampling interval of the series, ms.
    pub interval_ms: i64,
    /// Span of training data (relative or epoch ms, as in the dataset).
    pub from_ms: i64,
    /// End of training data.
    pub to_ms: i64,
}

/// A trained forecasting model and its description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Format version; see [`SUPPORTED_VERSIONS`].
    pub format_version: u32,
    /// The exact command that produced this file.
    pub produced_by: String,
    /// The metric it forecasts (source name, e.g. `avg_cpu`).
    pub metric: String,
    /// Feature pipeline.
    pub features: FeatureSpec,
    /// Names of the features, in model order (checked against `features`).
    pub feature_names: Vec<String>,
    /// Horizons in steps, one model head each.
    pub horizons: Vec<usize>,
    /// The model.
    pub model: Model,
    /// Interval calibration.
    pub intervals: Intervals,
    /// The upper-quantile model, if trained: it then gives the upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<UpperQuantile>,
    /// Training data summary.
    pub training: TrainingSummary,
    /// The metrics of its own evaluation (the backtest report), if evaluated.
    pub evaluation: Option<serde_json::Value>,
}

/// Errors loading an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// IO.
    #[error("cannot read model artifact {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not an artifact.
    #[error("model artifact {path} is not valid: {message}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Another version.
    #[error(
        "model artifact {path} has format version {found}; this build reads version(s) {supported:?}. Retrain it with this build's swarm-train"
    )]
    Version {
        /// File.
        path: String,
        /// Version in the file.
        found: u32,
        /// Versions this build reads.
        supported: &'static [u32],
    },
}

/// One forecast step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ForecastPoint {
    /// Steps ahead.
    pub horizon: usize,
    /// Time forecast for, ms.
    pub timestamp_ms: i64,
    /// Point forecast.
    pub mean: f64,
    /// Lower interval bound.
    pub lower: f64,
    /// Upper bound: the upper-quantile model's forecast where the artifact
    /// has one, else the interval's upper end.
    pub upper: f64,
}

impl Artifact {
    /// Parses an artifact, checking the version before anything else.
    pub fn from_json(text: &str, path: &str) -> Result<Artifact, ArtifactError> {
        let invalid = |message: String| ArtifactError::Invalid { path: path.to_owned(), message };
        let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let found = raw
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| invalid("no format_version field; is this a Swarm model artifact?".into()))?;
        if !SUPPORTED_VERSIONS.contains(&(found as u32)) {
            return Err(ArtifactError::Version {
                path: path.to_owned(),
                found: found as u32,
                supported: SUPPORTED_VERSIONS,
            });
        }
        let a: Artifact = serde_json::from_value(raw).map_err(|e| invalid(e.to_string()))?;
        a.validate().map_err(invalid)?;
        Ok(a)
    }

    /// Reads an artifact file.
    pub fn load(path: &Path) -> Result<Artifact, ArtifactError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ArtifactError::Io { path: path.display().to_string(), source })?;
        Artifact::from_json(&text, &path.display().to_string())
    }

    /// Writes the artifact as compact JSON (tree ensembles are large),
    /// atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string(self).map_err(std::io::Error::other)? + "\n")?;
        std::fs::rename(tmp, path)
    }

    /// Checks internal consistency.
    pub fn validate(&self) -> Result<(), String> {
        self.features.validate()?;
        if self.feature_names != self.features.names() {
            return Err("feature_names do not match the feature spec (written by another pipeline?)".into());
        }
        let n = self.horizons.len();
        if n == 0 || self.model.heads() != n || self.intervals.lower.len() != n || self.intervals.upper.len() != n {
            return Err(format!(
                "{} horizons but {} model heads and {}/{} interval quantiles",
                n,
                self.model.heads(),
                self.intervals.lower.len(),
                self.intervals.upper.len()
            ));
        }
        if let Some(h) = self.features.change_horizons.iter().find(|h| !self.horizons.contains(h)) {
            return Err(format!(
                "the feature spec gives horizon {h} a change target, but the model has no such horizon"
            ));
        }
        // Head i of a model forecasts horizon i of the artifact.
        let heads_follow_horizons =
            |model: &Model, what: &str| match self.horizons.iter().enumerate().find(|&(i, &h)| model.horizon(i) != h) {
                Some((i, h)) => Err(format!("{what} head {i} is for horizon {}, expected {h}", model.horizon(i))),
                None => Ok(()),
            };
        heads_follow_horizons(&self.model, "model")?;
        if let Some(u) = &self.upper {
            UpperQuantile::check(u.quantile)?;
            if u.model.heads() != n {
                return Err(format!(
                    "the upper-quantile model's heads do not match the horizons: {} heads for {n} horizons",
                    u.model.heads()
                ));
            }
            heads_follow_horizons(&u.model, "upper-quantile model")?;
            u.model.validate(self.feature_names.len())?;
        }
        self.model.validate(self.feature_names.len())
    }

    /// Forecasts every horizon from origin `t` of a prepared series; `None`
    /// when the history needed is missing.
    pub fn forecast_at(&self, p: &Prepared, t: usize) -> Option<Vec<ForecastPoint>> {
        self.forecast_at_upto(p, t, usize::MAX)
    }

    /// [`Artifact::forecast_at`] for the horizons up to `max_horizon` only
    /// (the controller looks less far ahead than some models reach).
    pub fn forecast_at_upto(&self, p: &Prepared, t: usize, max_horizon: usize) -> Option<Vec<ForecastPoint>> {
        self.forecast_from(p, &self.features.origin(p, t)?, max_horizon)
    }

    /// [`Artifact::forecast_at_upto`] from an origin already computed
    /// ([`crate::FeatureSpec::origin`]), for a caller that also shows what
    /// the origin found (the series' own period).
    pub fn forecast_from(&self, p: &Prepared, o: &Origin, max_horizon: usize) -> Option<Vec<ForecastPoint>> {
        let t = o.t;
        let s = p.series();
        let mut row = Vec::with_capacity(self.feature_names.len());
        let mut out = Vec::with_capacity(self.horizons.len());
        for (i, &h) in self.horizons.iter().enumerate().filter(|(_, h)| **h <= max_horizon) {
            if !self.features.row(p, o, h, &mut row) {
                return None;
            }
            let (base, scale) = (self.features.base(p, o, h), o.scale);
            let pred = self.model.predict(i, &row) + base;
            // Usage is never negative: clamp, then keep the bounds around the point.
            let mean = (pred * scale).max(0.0);
            let lower = ((pred + self.intervals.lower[i]) * scale).max(0.0).min(mean);
            let upper = match &self.upper {
                Some(u) => (u.model.predict(i, &row) + base) * scale,
                None => (pred + self.intervals.upper[i]) * scale,
            }
            .max(mean);
            out.push(ForecastPoint {
                horizon: h,
                timestamp_ms: s.start_ms + (t + h) as i64 * s.interval_ms,
                mean,
                lower,
                upper,
            });
        }
        Some(out)
    }

    /// The naive forecast (every horizon repeats the last value) as an
    /// artifact with fixed ±`band`-scale intervals: a reference model for
    /// tests and sanity checks of the pipeline.
    pub fn naive(horizons: &[usize], band: f64) -> Artifact {
        let features = FeatureSpec {
            lags: vec![1],
            seasons_ms: vec![],
            rolling: vec![],
            time_of_day: false,
            day_of_week: false,
            scale_window: 1,
            change_horizons: Vec::new(),
            own_period_max_ms: 0,
        };
        let n = horizons.len();
        Artifact {
            format_version: FORMAT_VERSION,
            produced_by: "Artifact::naive".into(),
            metric: String::new(),
            feature_names: features.names(),
            features,
            horizons: horizons.to_vec(),
            model: Model::Linear {
                heads: horizons
                    .iter()
                    .map(|&h| crate::model::LinearHead { horizon: h, intercept: 0.0, coefficients: vec![1.0] })
                    .collect(),
            },
            intervals: Intervals { coverage: 0.9, lower: vec![-band; n], upper: vec![band; n] },
            upper: None,
            training: TrainingSummary {
                dataset: String::new(),
                format: String::new(),
                series: 0,
                rows: 0,
                interval_ms: 300_000,
                from_ms: 0,
                to_ms: 0,
            },
            evaluation: None,
        }
    }

    /// Forecasts from the last point of `series`.
    pub fn forecast(&self, series: SeriesRef) -> Option<Vec<ForecastPoint>> {
        let t = series.values.len().checked_sub(1)?;
        self.forecast_at(&Prepared::new(series), t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive artifact with a wider scale window, an offset second head
    /// and asymmetric intervals, so the tests see each of them applied.
    fn tiny() -> Artifact {
        let mut a = Artifact::naive(&[1, 2], 0.1);
        a.produced_by = "test".into();
        a.metric = "avg_cpu".into();
        a.features.scale_window = 4;
        if let Model::Linear { heads } = &mut a.model {
            heads[1].intercept = 0.5;
        }
        a.intervals = Intervals { coverage: 0.9, lower: vec![-0.1, -0.2], upper: vec![0.1, 0.2] };
        a.training = TrainingSummary {
            dataset: "x".into(),
            format: "long-csv".into(),
            series: 1,
            rows: 1,
            interval_ms: 300_000,
            from_ms: 0,
            to_ms: 1,
        };
        a
    }

    #[test]
    fn round_trip_and_forecast() {
        let a = tiny();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        a.save(&p).unwrap();
        let b = Artifact::load(&p).unwrap();
        assert_eq!(a, b);
        let v = [2.0, 2.0, 2.0, 2.0];
        let f = b.forecast(SeriesRef { values: &v, start_ms: 0, interval_ms: 300_000 }).unwrap();
        assert_eq!(f.len(), 2);
        // scale = 2; lag_1 = 1.0 scaled; h1 = 1.0 * 2 = 2.0; h2 = 1.5 * 2 = 3.0.
        assert_eq!((f[0].mean, f[1].mean), (2.0, 3.0));
        assert!((f[0].lower - 1.8).abs() < 1e-12 && (f[1].upper - 3.4).abs() < 1e-12);
        assert_eq!(f[1].timestamp_ms, 5 * 300_000);
    }

    #[test]
    fn a_change_target_adds_the_last_value_back() {
        let mut a = tiny();
        a.features.change_horizons = vec![2];
        let v = [2.0, 2.0, 2.0, 4.0];
        let f = a.forecast(SeriesRef { values: &v, start_ms: 0, interval_ms: 300_000 }).unwrap();
        // scale = 2.5, lag_1 = 1.6 scaled. h1 (a value target): 1.6 * 2.5;
        // h2 (a change target): (1.6 + 0.5 + 1.6) * 2.5.
        assert!((f[0].mean - 4.0).abs() < 1e-12 && (f[1].mean - 9.25).abs() < 1e-12, "{f:?}");
        // The interval moves with the point.
        assert!((f[1].upper - (1.6 + 0.5 + 1.6 + 0.2) * 2.5).abs() < 1e-12, "{f:?}");
        // A change target for a horizon the model does not have is refused.
        a.features.change_horizons = vec![3];
        let e = Artifact::from_json(&serde_json::to_string(&a).unwrap(), "m.json").unwrap_err().to_string();
        assert!(e.contains("horizon 3") && e.contains("change target"), "{e}");
    }

    #[test]
    fn an_upper_quantile_model_gives_the_upper_bound() {
        let mut a = tiny();
        let mut q = a.model.clone();
        if let Model::Linear { heads } = &mut q {
            heads[0].intercept = 0.3;
            heads[1].intercept = -2.0;
        }
        a.upper = Some(UpperQuantile { quantile: 0.9, model: q });
        a.features.change_horizons = vec![2];
        let v = [2.0, 2.0, 2.0, 4.0];
        let f = a.forecast(SeriesRef { values: &v, start_ms: 0, interval_ms: 300_000 }).unwrap();
        // scale 2.5, lag_1 1.6: h1's bound is (1.6 + 0.3) * 2.5, not the
        // interval's (1.6 + 0.1) * 2.5; h2's quantile model (a change
        // target, like the point model's) is below the point forecast, so
        // the bound is the point forecast.
        assert!((f[0].upper - 4.75).abs() < 1e-12, "{f:?}");
        assert_eq!(f[1].upper, f[1].mean);
        // The lower bound is still the interval's.
        assert!((f[0].lower - (1.6 - 0.1) * 2.5).abs() < 1e-12, "{f:?}");
        let refused =
            |a: &Artifact| Artifact::from_json(&serde_json::to_string(a).unwrap(), "m.json").unwrap_err().to_string();
        let mut bad = a.clone();
        bad.upper.as_mut().unwrap().quantile = 0.4;
        assert!(refused(&bad).contains("must be in (0.5, 1)"), "{}", refused(&bad));
        let mut bad = a.clone();
        if let Model::Linear { heads } = &mut bad.upper.as_mut().unwrap().model {
            heads.pop();
        }
        assert!(refused(&bad).contains("upper-quantile model's heads"), "{}", refused(&bad));
        // An artifact without one reads as before.
        let mut plain = serde_json::to_value(tiny()).unwrap();
        assert!(plain.get("upper").is_none());
        plain.as_object_mut().unwrap().remove("upper");
        assert!(Artifact::from_json(&plain.to_string(), "m.json").unwrap().upper.is_none());
    }

    #[test]
    fn other_versions_and_damage_are_refused_clearly() {
        let mut v = serde_json::to_value(tiny()).unwrap();
        v["format_version"] = 2.into();
        let e = Artifact::from_json(&v.to_string(), "m.json").unwrap_err().to_string();
        assert!(e.contains("format version 2") && e.contains("[1]"), "{e}");
        let e = Artifact::from_json("{}", "m.json").unwrap_err().to_string();
        assert!(e.contains("no format_version"), "{e}");
        let mut bad = tiny();
        bad.horizons = vec![1];
        let e = Artifact::from_json(&serde_json::to_string(&bad).unwrap(), "m.json").unwrap_err().to_string();
        assert!(e.contains("horizons"), "{e}");
        let mut bad = tiny();
        bad.feature_names = vec!["other".into()];
        assert!(Artifact::from_json(&serde_json::to_string(&bad).unwrap(), "m.json").is_err());
    }
}
