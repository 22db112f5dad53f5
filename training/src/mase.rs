//! The MASE scale of a series: the in-sample mean absolute error of the
//! seasonal naive forecast. One definition, used by the backtest to score
//! and by the fit to weight its loss, so what training minimises is what the
//! backtest judges.

/// Mean of `|v[i] - v[i - season]|` over `i` in `season..values.len()`,
/// skipping pairs with a missing point; `None` when there is no pair or the
/// series repeats itself exactly (a zero scale would make every error
/// infinite).
pub fn seasonal_naive_mae(values: &[f64], season: usize) -> Option<f64> {
    let season = season.max(1);
    let (mut sum, mut n) = (0.0, 0usize);
    for i in season..values.len() {
        let e = (values[i] - values[i - season]).abs();
        if !e.is_nan() {
            sum += e;
            n += 1;
        }
    }
    (n > 0 && sum > 0.0).then(|| sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_missing_pairs_and_refuses_a_zero_scale() {
        let v = [1.0, 2.0, f64::NAN, 5.0, 2.0];
        // Pairs (0,2) NaN, (1,3) 3, (2,4) NaN.
        assert_eq!(seasonal_naive_mae(&v, 2), Some(3.0));
        assert_eq!(seasonal_naive_mae(&[4.0, 4.0, 4.0], 1), None);
        assert_eq!(seasonal_naive_mae(&[4.0], 1), None);
    }
}
