//! The cost function of a migration, in one currency: *affinity-seconds*
//! (one unit of affinity held for one second).
//!
//! - Transfer time = state size / bandwidth between the two nodes + their
//!   latency; the bandwidth and latency depend on how far apart the nodes
//!   are (same rack, same zone, remote).
//! - Overhead = start-up of the new instance + shut-down of the old one.
//! - Cost = (transfer + overhead) × `migration_penalty` (how much affinity a
//!   virtual node loses per second while it moves).
//! - Benefit = affinity gain × horizon, plus, when the move relieves an
//!   overload, `overload_weight` × the utilisation above the overload
//!   threshold it removes, summed over the forecast steps (× step seconds).
//!
//! A move pays when benefit − cost > `min_net_benefit`.

use serde::{Deserialize, Serialize};

use super::view::Distance;

/// Tuning of the cost function.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostModel {
    /// Bandwidth between nodes in one rack, bytes/s.
    pub bandwidth_same_rack: f64,
    /// Between racks of one zone, bytes/s.
    pub bandwidth_same_zone: f64,
    /// Between zones (or unknown), bytes/s.
    pub bandwidth_remote: f64,
    /// Latency in one rack, seconds.
    pub latency_same_rack: f64,
    /// Latency in one zone, seconds.
    pub latency_same_zone: f64,
    /// Latency between zones, seconds.
    pub latency_remote: f64,
    /// Start-up of the new instance, seconds.
    pub startup_seconds: f64,
    /// Shut-down of the old instance, seconds.
    pub shutdown_seconds: f64,
    /// Affinity lost per second of migration.
    pub migration_penalty: f64,
    /// Value of removing one unit of utilisation above the overload
    /// threshold for one second, in affinity-seconds.
    pub overload_weight: f64,
    /// A move must be worth more than this (affinity-seconds).
    pub min_net_benefit: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            bandwidth_same_rack: 1.25e9,
            bandwidth_same_zone: 6.25e8,
            bandwidth_remote: 1.25e8,
            latency_same_rack: 0.0001,
            latency_same_zone: 0.0005,
            latency_remote: 0.02,
            startup_seconds: 10.0,
            shutdown_seconds: 5.0,
            migration_penalty: 1.0,
            overload_weight: 20.0,
            min_net_benefit: 60.0,
        }
    }
}

/// The numbers behind one decision.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CostEstimate {
    /// State transfer, seconds.
    pub transfer_seconds: f64,
    /// Start-up plus shut-down, seconds.
    pub overhead_seconds: f64,
    /// Expected benefit over the horizon, affinity-seconds.
    pub benefit: f64,
    /// Cost, affinity-seconds.
    pub cost: f64,
}

impl CostEstimate {
    /// Benefit minus cost.
    pub fn net(&self) -> f64 {
        self.benefit - self.cost
    }

    /// Wall time the move takes.
    pub fn duration_seconds(&self) -> f64 {
        self.transfer_seconds + self.overhead_seconds
    }
}

impl CostModel {
    /// Checks every number is finite and non-negative and bandwidths positive.
    pub fn validate(&self) -> Result<(), String> {
        let all = [
            ("bandwidth_same_rack", self.bandwidth_same_rack),
            ("bandwidth_same_zone", self.bandwidth_same_zone),
            ("bandwidth_remote", self.bandwidth_remote),
            ("latency_same_rack", self.latency_same_rack),
            ("latency_same_zone", self.latency_same_zone),
            ("latency_remote", self.latency_remote),
            ("startup_seconds", self.startup_seconds),
            ("shutdown_seconds", self.shutdown_seconds),
            ("migration_penalty", self.migration_penalty),
            ("overload_weight", self.overload_weight),
            ("min_net_benefit", self.min_net_benefit),
        ];
        for (n, v) in all {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("cost.{n} must be a finite number >= 0, got {v}"));
            }
            if n.starts_with("bandwidth") && v == 0.0 {
                return Err(format!("cost.{n} must be > 0"));
            }
        }
        Ok(())
    }

    /// Seconds to move `bytes` across `distance`.
    pub fn transfer_seconds(&self, bytes: u64, distance: Distance) -> f64 {
        let (bw, lat) = match distance {
            Distance::SameNode => return 0.0,
            Distance::SameRack => (self.bandwidth_same_rack, self.latency_same_rack),
            Distance::SameZone => (self.bandwidth_same_zone, self.latency_same_zone),
            Distance::Remote => (self.bandwidth_remote, self.latency_remote),
        };
        bytes as f64 / bw + lat
    }

    /// Seconds a move of `bytes` across `distance` takes from start to end:
    /// the transfer plus starting the new instance and stopping the old. The
    /// controller, the reconfiguration planner and the replay all time
    /// moves with this.
    pub fn move_seconds(&self, bytes: u64, distance: Distance) -> f64 {
        self.transfer_seconds(bytes, distance) + self.startup_seconds + self.shutdown_seconds
    }

    /// Prices a move: `gain` in affinity held for `horizon_seconds`, and
    /// `relief` utilisation-steps of overload removed (each step lasting
    /// `step_seconds`).
    pub fn estimate(
        &self,
        bytes: u64,
        distance: Distance,
        gain: f64,
        horizon_seconds: f64,
        relief: f64,
        step_seconds: f64,
    ) -> CostEstimate {
        let transfer_seconds = self.transfer_seconds(bytes, distance);
        let overhead_seconds = self.startup_seconds + self.shutdown_seconds;
        CostEstimate {
            transfer_seconds,
            overhead_seconds,
            benefit: gain * horizon_seconds + self.overload_weight * relief * step_seconds,
            cost: (transfer_seconds + overhead_seconds) * self.migration_penalty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn farther_and_bigger_costs_more_and_relief_pays() {
        let m = CostModel::default();
        let gib = 1u64 << 30;
        let near = m.estimate(4 * gib, Distance::SameRack, 0.05, 1800.0, 0.0, 300.0);
        let far = m.estimate(4 * gib, Distance::Remote, 0.05, 1800.0, 0.0, 300.0);
        assert!((near.transfer_seconds - (4.0 * gib as f64 / 1.25e9 + 0.0001)).abs() < 1e-9);
        assert!(far.cost > near.cost && far.transfer_seconds > 30.0);
        // A small gain does not pay for a remote 4 GiB move; the same move that
        // relieves an overload does.
        assert!(far.net() < m.min_net_benefit);
        let relieving = m.estimate(4 * gib, Distance::Remote, 0.05, 1800.0, 0.1, 300.0);
        assert!(relieving.net() > m.min_net_benefit);
        assert!(CostModel { bandwidth_remote: 0.0, ..m }.validate().is_err());
        assert!(CostModel { startup_seconds: f64::NAN, ..m }.validate().unwrap_err().contains("startup"));
    }
}
