//! A cost function that calibrates itself from the migrations it priced.
//!
//! Why: the bandwidths and overheads in [`CostModel`] are hand-set, and a
//! cluster whose network is ten times slower than assumed gets moves that
//! never pay. Every completed migration's history times its phases, so the
//! service can learn what moves really cost there:
//!
//! - **start-up**: accepted → shadow starting (the new instance is started);
//! - **transfer**: shadow starting → the first shadowing report (the state
//!   is copied before the shadow can follow), as a rate `state bytes / s`
//!   per distance class of the move (same rack, same zone, remote);
//! - **shut-down**: cutting over → completed (the old instance stops).
//!
//! Each figure is a median (robust to a stalled or re-sent report) over the
//! newest `window` samples, with the configured constant counted as
//! `prior_weight` samples, so it takes over only once the evidence
//! outnumbers the prior; nothing is learned from fewer than `min_samples`;
//! and the result stays within `max_drift` times the configured value, so
//! an orchestrator that reports late cannot make every move look free or
//! unaffordable. A migration taken over by a second orchestrator (two
//! acceptances) is left out: its phases time two instances.

use serde::Deserialize;

use crate::locality::Distance;
use crate::migration::machine::{Migration, Phase};
use crate::placement::cost::CostModel;

/// `[calibration]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalibrationConfig {
    /// Use the learned figures in the cost function (they are computed and
    /// shown either way).
    pub enabled: bool,
    /// Newest samples per figure.
    pub window: usize,
    /// Samples needed before a figure is learned.
    pub min_samples: usize,
    /// How many samples the configured constant counts as.
    pub prior_weight: usize,
    /// A learned figure stays within this factor of the configured one.
    pub max_drift: f64,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        CalibrationConfig { enabled: true, window: 50, min_samples: 3, prior_weight: 1, max_drift: 20.0 }
    }
}

impl CalibrationConfig {
    /// Checks the numbers make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.window == 0 || self.min_samples == 0 {
            return Err("calibration.window and calibration.min_samples must be at least 1".into());
        }
        if self.min_samples > self.window {
            return Err(format!(
                "calibration.min_samples ({}) must not exceed calibration.window ({})",
                self.min_samples, self.window
            ));
        }
        if !(self.max_drift.is_finite() && self.max_drift >= 1.0) {
            return Err(format!("calibration.max_drift must be >= 1, got {}", self.max_drift));
        }
        Ok(())
    }
}

/// One completed migration's phases, with what it moved and how far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Distance class of the move.
    pub distance: Distance,
    /// State moved, bytes.
    pub bytes: u64,
    /// Accepted → shadow starting, s.
    pub startup_s: f64,
    /// Shadow starting → first shadowing report, s.
    pub transfer_s: f64,
    /// Cutting over → completed, s.
    pub shutdown_s: f64,
    /// When it completed, ms (newest samples count).
    pub completed_at_ms: i64,
}

/// The phase timings of a completed migration driven by one orchestrator
/// (`None` otherwise); `distance` and `bytes` come from the topology.
pub fn timing(m: &Migration, distance: Distance, bytes: u64) -> Option<Timing> {
    if m.phase != Phase::Completed {
        return None;
    }
    let h = &m.history;
    if h.iter().filter(|t| t.phase == Phase::Accepted).count() != 1 {
        return None;
    }
    let at = |p: Phase| h.iter().find(|t| t.phase == p).map(|t| t.at_ms);
    let s = |a: i64, b: i64| (b >= a).then(|| (b - a) as f64 / 1000.0);
    let completed = m.cutover_at_ms()?;
    Some(Timing {
        distance,
        bytes,
        startup_s: s(at(Phase::Accepted)?, at(Phase::ShadowStarting)?)?,
        transfer_s: s(at(Phase::ShadowStarting)?, at(Phase::Shadowing)?)?,
        shutdown_s: s(at(Phase::CuttingOver)?, completed)?,
        completed_at_ms: completed,
    })
}

/// One figure: what is configured, what was learned, on how much.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The configured constant (the prior).
    pub configured: f64,
    /// The learned value; `None` below `min_samples`.
    pub learned: Option<f64>,
    /// Samples it was learned from.
    pub samples: usize,
    /// The median was outside `max_drift` and was held at the bound.
    pub bounded: bool,
}

impl Estimate {
    /// What the cost function uses: learned when there is one.
    pub fn value(&self) -> f64 {
        self.learned.unwrap_or(self.configured)
    }
}

/// Every learned figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Transfer rate in one rack, bytes/s.
    pub rate_same_rack: Estimate,
    /// Between racks of one zone.
    pub rate_same_zone: Estimate,
    /// Between zones.
    pub rate_remote: Estimate,
    /// Start-up of the new instance, s.
    pub startup_seconds: Estimate,
    /// Shut-down of the old instance, s.
    pub shutdown_seconds: Estimate,
}

impl Calibration {
    /// `cost` with the learned figures in place of the configured ones.
    pub fn apply(&self, cost: &CostModel) -> CostModel {
        CostModel {
            bandwidth_same_rack: self.rate_same_rack.value(),
            bandwidth_same_zone: self.rate_same_zone.value(),
            bandwidth_remote: self.rate_remote.value(),
            startup_seconds: self.startup_seconds.value(),
            shutdown_seconds: self.shutdown_seconds.value(),
            ..*cost
        }
    }

    /// The figures by name, for reports.
    pub fn named(&self) -> [(&'static str, Estimate); 5] {
        [
            ("transfer_rate_same_rack", self.rate_same_rack),
            ("transfer_rate_same_zone", self.rate_same_zone),
            ("transfer_rate_remote", self.rate_remote),
            ("startup_seconds", self.startup_seconds),
            ("shutdown_seconds", self.shutdown_seconds),
        ]
    }
}

fn estimate(prior: f64, mut samples: Vec<(i64, f64)>, cfg: &CalibrationConfig) -> Estimate {
    samples.retain(|s| s.1.is_finite() && s.1 >= 0.0);
    samples.sort_by_key(|s| std::cmp::Reverse(s.0));
    samples.truncate(cfg.window);
    let n = samples.len();
    if n < cfg.min_samples {
        return Estimate { configured: prior, learned: None, samples: n, bounded: false };
    }
    let mut v: Vec<f64> = samples.into_iter().map(|s| s.1).collect();
    v.extend(std::iter::repeat_n(prior, cfg.prior_weight));
    v.sort_by(f64::total_cmp);
    let k = v.len();
    let median = if k % 2 == 1 { v[k / 2] } else { (v[k / 2 - 1] + v[k / 2]) / 2.0 };
    let (lo, hi) = (prior / cfg.max_drift, prior * cfg.max_drift);
    let learned = median.clamp(lo, hi);
    Estimate { configured: prior, learned: Some(learned), samples: n, bounded: learned != median }
}

/// Learns every figure from `timings`, `cost` being the prior.
pub fn calibrate(cost: &CostModel, timings: &[Timing], cfg: &CalibrationConfig) -> Calibration {
    let rate = |d: Distance, prior: f64| {
        let s = timings
            .iter()
            .filter(|t| t.distance == d && t.bytes > 0 && t.transfer_s > 0.0)
            .map(|t| (t.completed_at_ms, t.bytes as f64 / t.transfer_s))
            .collect();
        estimate(prior, s, cfg)
    };
    let moved: Vec<&Timing> = timings.iter().filter(|t| t.distance != Distance::SameNode).collect();
    Calibration {
        rate_same_rack: rate(Distance::SameRack, cost.bandwidth_same_rack),
        rate_same_zone: rate(Distance::SameZone, cost.bandwidth_same_zone),
        rate_remote: rate(Distance::Remote, cost.bandwidth_remote),
        startup_seconds: estimate(
            cost.startup_seconds,
            moved.iter().map(|t| (t.completed_at_ms, t.startup_s)).collect(),
            cfg,
        ),
        shutdown_seconds: estimate(
            cost.shutdown_seconds,
            moved.iter().map(|t| (t.completed_at_ms, t.shutdown_s)).collect(),
            cfg,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::machine::Transition;

    fn t(distance: Distance, bytes: u64, transfer_s: f64, at: i64) -> Timing {
        Timing { distance, bytes, startup_s: 2.0, transfer_s, shutdown_s: 1.0, completed_at_ms: at }
    }

    #[test]
    fn the_median_takes_over_from_the_prior_once_the_evidence_outnumbers_it() {
        let cost = CostModel::default();
        let cfg = CalibrationConfig::default();
        // 5e8 B/s in one rack, one stalled report (a 10x slower sample).
        let mut ts: Vec<Timing> = (0..6).map(|i| t(Distance::SameRack, 1_000_000_000, 2.0, i)).collect();
        ts.push(t(Distance::SameRack, 1_000_000_000, 20.0, 7));
        let c = calibrate(&cost, &ts, &cfg);
        assert_eq!(c.rate_same_rack.learned, Some(5e8));
        assert_eq!(c.rate_same_rack.samples, 7);
        assert_eq!((c.startup_seconds.learned, c.shutdown_seconds.learned), (Some(2.0), Some(1.0)));
        // Nothing learned for classes without migrations: the configured value holds.
        assert_eq!(c.rate_remote.learned, None);
        assert_eq!(c.apply(&cost).bandwidth_remote, cost.bandwidth_remote);
        assert_eq!(c.apply(&cost).bandwidth_same_rack, 5e8);
        // Below min_samples: nothing learned.
        let c = calibrate(&cost, &ts[..2], &cfg);
        assert_eq!(c.rate_same_rack.learned, None);
    }

    #[test]
    fn drift_is_bounded_and_only_the_newest_samples_count() {
        let cost = CostModel::default();
        let cfg = CalibrationConfig { window: 3, max_drift: 10.0, ..Default::default() };
        // A hundred times slower than configured: held at a tenth.
        let slow: Vec<Timing> = (0..3).map(|i| t(Distance::Remote, 125_000_000, 100.0, i)).collect();
        let c = calibrate(&cost, &slow, &cfg);
        assert_eq!(c.rate_remote.learned, Some(cost.bandwidth_remote / 10.0));
        assert!(c.rate_remote.bounded);
        // Three newer, faster samples push the old ones out of the window.
        let mut all = slow.clone();
        all.extend((10..13).map(|i| t(Distance::Remote, 125_000_000, 2.0, i)));
        let c = calibrate(&cost, &all, &cfg);
        assert_eq!(c.rate_remote.learned, Some(62_500_000.0));
        assert!(!c.rate_remote.bounded);
    }

    #[test]
    fn timings_come_from_a_single_orchestrators_history() {
        let mut m = Migration::propose("m1".into(), 1, "v".into(), "a".into(), "b".into(), 0);
        let push = |m: &mut Migration, phase, at_ms| m.history.push(Transition { phase, at_ms, cause: String::new() });
        push(&mut m, Phase::Accepted, 1000);
        push(&mut m, Phase::ShadowStarting, 1500);
        push(&mut m, Phase::Shadowing, 3500);
        push(&mut m, Phase::Shadowing, 4000);
        push(&mut m, Phase::Verified, 4500);
        push(&mut m, Phase::CuttingOver, 4600);
        push(&mut m, Phase::Completed, 4800);
        assert_eq!(timing(&m, Distance::SameZone, 10), None, "not completed yet");
        m.phase = Phase::Completed;
        let got = timing(&m, Distance::SameZone, 10).unwrap();
        assert_eq!((got.startup_s, got.transfer_s, got.shutdown_s), (0.5, 2.0, 0.2));
        assert_eq!(got.completed_at_ms, 4800);
        m.history.insert(2, Transition { phase: Phase::Accepted, at_ms: 1200, cause: "taken over".into() });
        assert_eq!(timing(&m, Distance::SameZone, 10), None, "two orchestrators");
    }
}
