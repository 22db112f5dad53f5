//! A series' own period: the lag at which it best repeats itself.
//!
//! Why: many virtual nodes run jobs on a timer (every hour, every 65
//! minutes, every 2 hours), so the best guess of the value at a target time
//! is often the value one such period earlier. The daily and weekly
//! seasonal lags miss any period that does not divide a day, and a pooled
//! model cannot learn each series' timer from lags 1–12 without far more
//! trees than serving can afford. Measured on the shared trace
//! (`models/README.md`, "A series' own period"): repeating the value one
//! own period back, alone, beat the model without this feature on 20 of the
//! 100 VMs; with it as a feature the model's error fell on both metrics and
//! on every test window tried.
//!
//! The search is the mean absolute difference between the series and
//! itself shifted by each candidate lag, over the same last points of one
//! window for every lag; the smallest wins, the shortest lag on a tie. Its
//! ratio to the lag-1 difference says how much the period is worth (near 0:
//! the series repeats exactly; near 1 or above: no better than the last
//! value), so the model can tell a timer from noise.

/// The period found in a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    /// The lag in steps, at least 1.
    pub steps: usize,
    /// Mean `|x[i] - x[i - steps]|` over the window's last points, divided by
    /// the same at lag 1 (both floored by `floor`, so a flat window gives 1).
    pub strength: f64,
}

/// Shortest lag searched: lag 1 is the last value, which the lags carry.
pub const MIN_PERIOD: usize = 2;

/// How many of the window's last points every lag is judged on: as many as
/// the longest lag leaves, rounded down to whole vectors of lanes when
/// there are that many. The same points for every lag, so no lag is judged
/// on more (or older) evidence than another.
fn pairs(len: usize, max: usize) -> usize {
    let room = len - max;
    if room >= LANES { room / LANES * LANES } else { room }
}

/// The period of `window` among lags `MIN_PERIOD..=max_steps` (and at most
/// half the window, so at least about half of it is left to judge every lag
/// on: `pairs`).
/// When no lag can be searched (a window of fewer than 4 points, or
/// `max_steps < 2`) the period is 1 with strength 1: the last value, worth
/// nothing beyond it. `floor` (> 0) keeps the ratio finite on a flat window;
/// pass something small on the window's scale. Every value must be finite.
pub fn detect(window: &[f64], max_steps: usize, floor: f64) -> Period {
    let max = max_steps.min(window.len() / 2);
    if max < MIN_PERIOD {
        return Period { steps: 1, strength: 1.0 };
    }
    // Single precision: the search ranks lags, and seven digits rank them
    // as well as sixteen, while a vector register holds twice as many.
    let x: Vec<f32> = window.iter().map(|&v| v as f32).collect();
    let mut diffs = vec![0.0; max + 1];
    all_diffs(&x, pairs(window.len(), max), &mut diffs);
    let mut best = (MIN_PERIOD, f64::INFINITY);
    for (lag, &d) in diffs.iter().enumerate().skip(MIN_PERIOD) {
        if d < best.1 {
            best = (lag, d);
        }
    }
    Period { steps: best.0, strength: (best.1 + floor) / (diffs[1] + floor) }
}

/// `out[lag]` = the mean of `|x[i] - x[i - lag]|` over the last `pairs`
/// points, at every lag from 1 to `out.len() - 1`, with the processor's
/// widest vectors: the same operations in the same order whichever path
/// runs, so the same bits.
fn all_diffs(x: &[f32], pairs: usize, out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2, checked just above.
        unsafe { all_diffs_avx2(x, pairs, out) };
        return;
    }
    all_diffs_portable(x, pairs, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn all_diffs_avx2(x: &[f32], pairs: usize, out: &mut [f64]) {
    all_diffs_portable(x, pairs, out);
}

/// Lanes of a lag's sum: four vectors of eight, so four additions are in
/// flight at a time instead of each waiting on the last.
const LANES: usize = 32;

#[inline(always)]
fn all_diffs_portable(x: &[f32], pairs: usize, out: &mut [f64]) {
    let late = &x[x.len() - pairs..];
    for (lag, o) in out.iter_mut().enumerate().skip(1) {
        let early = &x[x.len() - pairs - lag..x.len() - lag];
        let mut lanes = [0.0f32; LANES];
        let (mut a, mut b) = (late.chunks_exact(LANES), early.chunks_exact(LANES));
        for (u, w) in (&mut a).zip(&mut b) {
            for k in 0..LANES {
                lanes[k] += (u[k] - w[k]).abs();
            }
        }
        let mut rest = 0.0f32;
        for (u, w) in a.remainder().iter().zip(b.remainder()) {
            rest += (u - w).abs();
        }
        // Fold the lanes pairwise, vector against vector, not one by one.
        let mut v = [0.0f32; 8];
        for k in 0..8 {
            v[k] = (lanes[k] + lanes[k + 8]) + (lanes[k + 16] + lanes[k + 24]);
        }
        let sum = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
        *o = (sum as f64 + rest as f64) / pairs as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_timer_is_found_with_its_strength() {
        // A 13-step job: two busy steps, then eleven idle ones.
        let w: Vec<f64> = (0..288).map(|i| if i % 13 < 2 { 40.0 } else { 3.0 }).collect();
        let p = detect(&w, 48, 1e-9);
        assert_eq!(p.steps, 13);
        assert!(p.strength < 1e-6, "{p:?}");
    }

    #[test]
    fn the_shortest_of_equal_lags_wins_and_a_flat_window_is_worth_nothing() {
        let w: Vec<f64> = (0..100).map(|i| (i % 3) as f64).collect();
        assert_eq!(detect(&w, 40, 1e-9).steps, 3, "not 6, 9, …");
        let flat = detect(&[5.0; 50], 20, 1e-9);
        assert_eq!((flat.steps, flat.strength), (2, 1.0));
    }

    #[test]
    fn no_search_without_room() {
        assert_eq!(detect(&[1.0, 2.0, 3.0], 48, 1e-9), Period { steps: 1, strength: 1.0 });
        assert_eq!(detect(&[1.0; 100], 1, 1e-9), Period { steps: 1, strength: 1.0 });
        // At most half the window.
        let w: Vec<f64> = (0..20).map(|i| if i % 12 == 0 { 9.0 } else { 0.0 }).collect();
        assert!(detect(&w, 48, 1e-9).steps <= 10);
    }

    proptest! {
        /// The lane sum is the plain one up to single-precision rounding, and the found lag
        /// is one whose difference no other searched lag beats.
        #[test]
        fn the_found_lag_is_the_best(x in proptest::collection::vec(0.0f64..100.0, 4..300), max in 2usize..150) {
            let p = detect(&x, max, 1e-9);
            let top = max.min(x.len() / 2);
            let n = pairs(x.len(), top);
            prop_assert!(n >= 1 && n <= x.len() - top);
            let plain = |lag: usize| (x.len() - n..x.len()).map(|i| (x[i] - x[i - lag]).abs()).sum::<f64>() / n as f64;
            let single: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            prop_assert!((MIN_PERIOD..=top).contains(&p.steps));
            let (mut fast, mut portable) = (vec![0.0; top + 1], vec![0.0; top + 1]);
            all_diffs(&single, n, &mut fast);
            all_diffs_portable(&single, n, &mut portable);
            // Whichever path runs, the same bits.
            prop_assert_eq!(fast.iter().map(|d| d.to_bits()).collect::<Vec<_>>(), portable.iter().map(|d| d.to_bits()).collect::<Vec<_>>());
            // Single precision: within a few parts in a million.
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * (1.0 + b);
            for (lag, &d) in fast.iter().enumerate().skip(1) {
                prop_assert!(close(d, plain(lag)), "lag {}: {} against {}", lag, d, plain(lag));
            }
            for lag in MIN_PERIOD..=top {
                prop_assert!(plain(p.steps) <= plain(lag) + 2e-5 * (1.0 + plain(lag)));
            }
        }
    }
}
