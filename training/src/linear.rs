//! Median regression: minimise the sum of absolute errors (the loss MASE
//! judges) by iteratively reweighted least squares. Each step is an ordinary
//! least-squares solve by linfa-linear on rows scaled by √w, with
//! w = row weight / max(|residual|, δ), starting from least squares with
//! the row weights (the design's MASE weights, see [`crate::design::build`]).

use linfa::prelude::*;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};

use crate::design::Design;

/// Errors of the solver.
#[derive(Debug, thiserror::Error)]
pub enum LinearError {
    /// linfa failed (e.g. a singular design).
    #[error("least squares failed: {0}")]
    Solve(String),
    /// No rows.
    #[error("no training rows (is the series long enough for the features?)")]
    Empty,
}

/// Fitted coefficients.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// Intercept.
    pub intercept: f64,
    /// One per feature.
    pub coefficients: Vec<f64>,
}

impl Fitted {
    /// Prediction for one row.
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.intercept + self.coefficients.iter().zip(x).map(|(c, v)| c * v).sum::<f64>()
    }
}

fn weighted_ls(d: &Design, w: &[f64]) -> Result<Fitted, LinearError> {
    let n = d.rows();
    let k = d.n_features + 1;
    let mut x = Array2::<f64>::zeros((n, k));
    let mut y = Array1::<f64>::zeros(n);
    for i in 0..n {
        let s = w[i].sqrt();
        x[[i, 0]] = s;
        for (j, v) in d.row(i).iter().enumerate() {
            x[[i, j + 1]] = v * s;
        }
        y[i] = d.y[i] * s;
    }
    let model = LinearRegression::new()
        .with_intercept(false)
        .fit(&Dataset::new(x, y))
        .map_err(|e| LinearError::Solve(e.to_string()))?;
    let p = model.params();
    Ok(Fitted { intercept: p[0], coefficients: p.iter().skip(1).copied().collect() })
}

/// Least-absolute-deviation fit with `iterations` reweighting steps (0 = OLS).
pub fn fit_median(d: &Design, iterations: usize) -> Result<Fitted, LinearError> {
    if d.rows() == 0 {
        return Err(LinearError::Empty);
    }
    let row_weights = d.weights();
    let mut w = row_weights.clone();
    let mut fit = weighted_ls(d, &w)?;
    for _ in 0..iterations {
        for (i, wi) in w.iter_mut().enumerate() {
            let r = (d.y[i] - fit.predict(d.row(i))).abs();
            // δ bounds the weight of points the line passes through exactly.
            *wi = row_weights[i] / r.max(1e-3);
        }
        fit = weighted_ls(d, &w)?;
    }
    Ok(fit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_regression_ignores_outliers_that_pull_ols() {
        // y = 2x + 1 with 20 % wild outliers above the line.
        let mut d = Design { n_features: 1, ..Default::default() };
        for i in 0..500 {
            let x = i as f64 / 100.0;
            d.x.push(x);
            d.y.push(2.0 * x + 1.0 + if i % 5 == 0 { 50.0 } else { 0.0 });
        }
        let ols = fit_median(&d, 0).unwrap();
        let lad = fit_median(&d, 30).unwrap();
        assert!((ols.intercept - 1.0).abs() > 5.0, "OLS is pulled up: {ols:?}");
        assert!((lad.intercept - 1.0).abs() < 0.05, "{lad:?}");
        assert!((lad.coefficients[0] - 2.0).abs() < 0.02, "{lad:?}");
        assert!(matches!(fit_median(&Design { n_features: 1, ..Default::default() }, 1), Err(LinearError::Empty)));
    }
}
