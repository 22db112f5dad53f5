//! A seeded synthetic cluster and its load.
//!
//! Used by unit tests (small, known data), by `swarmd --demo` (in real
//! time, with a week of history) and by anyone who wants a cluster without
//! a trace. Everything is a
//! pure function of the parameters and the seed: the load of virtual node
//! `v` at time `t` is the same whoever asks and in whatever order.
//!
//! Load of a virtual node, as a fraction of its requested cores:
//! `base × daily(t) × weekly(t) × trend(t) × regime(t) × group_burst(t) × scheduled(t) × (1 + noise)`,
//! clamped to [0, 1.5], where
//! - `daily` = 1 + `daily_amplitude`·sin(2π(t − phase)) with a per-node phase
//!   jitter of ±2 h around a common peak;
//! - `weekly` = 1 − `weekend_dip` on Saturdays and Sundays (day 5 and 6 of each week);
//! - `trend` = 1 + `trend_per_day`·t;
//! - `regime`: at seeded random times (`regime_shifts_per_week` per node on
//!   average) the level jumps by a factor in [0.5, 2];
//! - `group_burst`: nodes of a group share bursts (correlated load):
//!   `bursts_per_day` per group on average, each lasting 15–90 minutes at
//!   `burst_scale`× load;
//! - `scheduled_peak` (off by default): one group's load multiplied at the
//!   same time every day, as a nightly batch or a daily report does — the
//!   kind of peak history foretells;
//! - `noise`: uniform in ±`noise`, a hash of (seed, node, 5-minute step).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Parameters of the generator.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthParams {
    /// Seed of everything random.
    pub seed: u64,
    /// Physical nodes.
    pub physical: usize,
    /// Virtual nodes.
    pub virtual_nodes: usize,
    /// Groups of correlated virtual nodes.
    pub groups: usize,
    /// Cores of each physical node.
    pub physical_cores: f64,
    /// Relative amplitude of the daily cycle, [0, 1).
    pub daily_amplitude: f64,
    /// Relative load drop on weekends, [0, 1).
    pub weekend_dip: f64,
    /// Relative load growth per day.
    pub trend_per_day: f64,
    /// Average group bursts per group per day.
    pub bursts_per_day: f64,
    /// Load multiplier during a burst.
    pub burst_scale: f64,
    /// Average level shifts per node per week.
    pub regime_shifts_per_week: f64,
    /// Relative noise amplitude.
    pub noise: f64,
    /// Length of the generated history (bursts and regimes are drawn for it), days.
    pub horizon_days: f64,
    /// A daily peak of one group at a fixed time of day.
    #[serde(default)]
    pub scheduled_peak: Option<ScheduledPeak>,
}

/// A group's load multiplied every day in the same window.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScheduledPeak {
    /// The group.
    pub group: usize,
    /// Start, as a fraction of the day in [0, 1).
    pub at_day: f64,
    /// Length, hours.
    pub hours: f64,
    /// Load multiplier.
    pub scale: f64,
}

impl ScheduledPeak {
    /// Whether `t_days` falls in a day's window (which may wrap past midnight).
    pub fn active(&self, t_days: f64) -> bool {
        let into = (t_days - self.at_day).rem_euclid(1.0);
        into < self.hours / 24.0
    }
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams {
            seed: 42,
            physical: 20,
            virtual_nodes: 200,
            groups: 10,
            physical_cores: 16.0,
            daily_amplitude: 0.35,
            weekend_dip: 0.2,
            trend_per_day: 0.005,
            bursts_per_day: 2.0,
            burst_scale: 2.5,
            regime_shifts_per_week: 0.5,
            noise: 0.1,
            horizon_days: 28.0,
            scheduled_peak: None,
        }
    }
}

/// A generated physical node.
#[derive(Debug, Clone, PartialEq)]
pub struct PhysicalSpec {
    /// Id, `p00`…
    pub id: String,
    /// Cores.
    pub cores: f64,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Zone label.
    pub zone: String,
    /// Rack label.
    pub rack: String,
}

/// A generated virtual node.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualSpec {
    /// Id, `v000`…
    pub id: String,
    /// Requested cores (1, 2 or 4).
    pub cores: f64,
    /// Requested memory, bytes (2 GiB per core).
    pub memory_bytes: u64,
    /// State a migration moves, bytes.
    pub state_size_bytes: u64,
    /// Group index.
    pub group: usize,
    /// Index of its physical node in the initial placement.
    pub placement: usize,
}

#[derive(Debug, Clone)]
struct Profile {
    base: f64,
    phase: f64,
    regimes: Vec<(f64, f64)>,
}

/// A generated cluster and its load model.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Parameters.
    pub params: SynthParams,
    /// Physical nodes.
    pub physical: Vec<PhysicalSpec>,
    /// Virtual nodes.
    pub virtual_nodes: Vec<VirtualSpec>,
    profiles: Vec<Profile>,
    group_bursts: Vec<Vec<(f64, f64)>>,
}

const GIB: u64 = 1 << 30;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Cluster {
    /// Generates a cluster. The initial placement is deliberately uneven:
    /// 60 % of virtual nodes go to the first third of the physical nodes
    /// (up to 1.5× overcommit of requested cores), so hotspots exist from the start.
    pub fn generate(p: SynthParams) -> Cluster {
        let mut rng = StdRng::seed_from_u64(p.seed);
        let physical: Vec<PhysicalSpec> = (0..p.physical)
            .map(|i| PhysicalSpec {
                id: format!("p{i:02}"),
                cores: p.physical_cores,
                memory_bytes: (p.physical_cores as u64) * 4 * GIB,
                zone: format!("z{}", i % 2 + 1),
                rack: format!("r{}", i % 4 + 1),
            })
            .collect();
        let crowded = (p.physical / 3).max(1);
        let limit = p.physical_cores * 1.5;
        let mut used = vec![0.0; p.physical.max(1)];
        let mut virtual_nodes = Vec::new();
        let mut profiles = Vec::new();
        for i in 0..p.virtual_nodes {
            let cores = [1.0, 2.0, 4.0][rng.random_range(0..3)];
            let mut at = if rng.random_bool(0.6) {
                rng.random_range(0..crowded)
            } else {
                rng.random_range(0..p.physical.max(1))
            };
            for _ in 0..p.physical {
                if used[at] + cores <= limit {
                    break;
                }
                at = (at + 1) % p.physical;
            }
            used[at] += cores;
            virtual_nodes.push(VirtualSpec {
                id: format!("v{i:03}"),
                cores,
                memory_bytes: cores as u64 * 2 * GIB,
                state_size_bytes: rng.random_range(1..20) * GIB,
                group: i % p.groups.max(1),
                placement: at,
            });
            let weeks = p.horizon_days / 7.0;
            let shifts = (p.regime_shifts_per_week * weeks).round() as usize;
            let mut regimes: Vec<(f64, f64)> =
                (0..shifts).map(|_| (rng.random_range(0.0..p.horizon_days), rng.random_range(0.5..2.0))).collect();
            regimes.sort_by(|a, b| a.0.total_cmp(&b.0));
            profiles.push(Profile {
                base: rng.random_range(0.2..0.5),
                phase: rng.random_range(-2.0..2.0) / 24.0,
                regimes,
            });
        }
        let group_bursts = (0..p.groups.max(1))
            .map(|_| {
                let n = (p.bursts_per_day * p.horizon_days).round() as usize;
                let mut b: Vec<(f64, f64)> = (0..n)
                    .map(|_| {
                        let start = rng.random_range(0.0..p.horizon_days);
                        (start, start + rng.random_range(15.0..90.0) / 1440.0)
                    })
                    .collect();
                b.sort_by(|a, b| a.0.total_cmp(&b.0));
                b
            })
            .collect();
        Cluster { params: p, physical, virtual_nodes, profiles, group_bursts }
    }

    /// Load of virtual node `v` at `t_days`, as a fraction of its requested cores.
    pub fn utilization(&self, v: usize, t_days: f64) -> f64 {
        let p = &self.params;
        let prof = &self.profiles[v];
        let daily = 1.0 + p.daily_amplitude * (std::f64::consts::TAU * (t_days - 0.25 - prof.phase)).sin();
        let weekday = (t_days.floor() as i64).rem_euclid(7);
        let weekly = if weekday >= 5 { 1.0 - p.weekend_dip } else { 1.0 };
        let trend = 1.0 + p.trend_per_day * t_days;
        let regime: f64 = prof.regimes.iter().filter(|(at, _)| *at <= t_days).map(|(_, f)| f).product();
        let g = self.virtual_nodes[v].group;
        let burst =
            if self.group_bursts[g].iter().any(|(a, b)| *a <= t_days && t_days < *b) { p.burst_scale } else { 1.0 };
        let scheduled = match p.scheduled_peak {
            Some(s) if s.group == g && s.active(t_days) => s.scale,
            _ => 1.0,
        };
        let step = (t_days * 288.0).floor() as i64 as u64;
        let h = splitmix(p.seed ^ splitmix((v as u64) << 32 ^ step));
        let noise = ((h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * p.noise;
        (prof.base * daily * weekly * trend * regime.min(4.0) * burst * scheduled * (1.0 + noise)).clamp(0.0, 1.5)
    }

    /// CPU use of virtual node `v` at `t_days`, cores.
    pub fn cpu_cores(&self, v: usize, t_days: f64) -> f64 {
        self.utilization(v, t_days) * self.virtual_nodes[v].cores
    }

    /// The canonical long frame of `avg_cpu` (percent of requested cores) for
    /// every virtual node, every `interval_ms` over `[0, days)`; timestamps
    /// relative to the start, like the public traces.
    pub fn frame(&self, days: f64, interval_ms: i64) -> polars::prelude::PolarsResult<polars::prelude::DataFrame> {
        use polars::prelude::*;
        let steps = (days * 86_400_000.0 / interval_ms as f64) as i64;
        let n = self.virtual_nodes.len() * steps as usize;
        let (mut ts, mut ent, mut val) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for (v, spec) in self.virtual_nodes.iter().enumerate() {
            for k in 0..steps {
                let t = k * interval_ms;
                ts.push(t);
                ent.push(spec.id.as_str());
                val.push(self.utilization(v, t as f64 / 86_400_000.0) * 100.0);
            }
        }
        df!("timestamp" => ts, "entity" => ent, "metric" => vec!["avg_cpu"; n], "value" => val)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_peak_repeats_daily_for_its_group_only() {
        let peak = ScheduledPeak { group: 3, at_day: 0.95, hours: 2.0, scale: 3.0 };
        let calm = SynthParams { noise: 0.0, bursts_per_day: 0.0, regime_shifts_per_week: 0.0, ..Default::default() };
        let a = Cluster::generate(calm);
        let b = Cluster::generate(SynthParams { scheduled_peak: Some(peak), ..calm });
        let (member, other) = (3, 4); // groups are i % 10
        for day in [0.0, 1.0, 5.0] {
            // 23:31 and, past midnight, 00:30: inside; 02:00: outside.
            for (t, inside) in [(0.98, true), (1.02, true), (1.09, false)] {
                let t = day + t;
                let want = if inside { 3.0 } else { 1.0 };
                let got = b.utilization(member, t) / a.utilization(member, t);
                assert!((got - want).abs() < 1e-9 || b.utilization(member, t) == 1.5, "{t}: {got}");
                assert_eq!(b.utilization(other, t), a.utilization(other, t));
            }
        }
    }

    #[test]
    fn seeded_and_deterministic() {
        let a = Cluster::generate(SynthParams::default());
        let b = Cluster::generate(SynthParams::default());
        assert_eq!(a.virtual_nodes, b.virtual_nodes);
        assert_eq!(a.utilization(7, 3.3), b.utilization(7, 3.3));
        let c = Cluster::generate(SynthParams { seed: 7, ..SynthParams::default() });
        assert_ne!(a.virtual_nodes, c.virtual_nodes);
    }

    #[test]
    fn has_daily_and_weekly_shape_and_bursts() {
        let c = Cluster::generate(SynthParams {
            noise: 0.0,
            regime_shifts_per_week: 0.0,
            bursts_per_day: 0.0,
            ..Default::default()
        });
        let mean = |t: f64| (0..c.virtual_nodes.len()).map(|v| c.utilization(v, t)).sum::<f64>();
        // Peak around 12:00, trough around 00:00 on a weekday.
        assert!(mean(1.5) > 1.5 * mean(1.0));
        // Saturday is lower than Friday at the same hour.
        assert!(mean(5.5) < mean(4.5));
        let bursty = Cluster::generate(SynthParams { noise: 0.0, bursts_per_day: 6.0, ..Default::default() });
        let g0: Vec<usize> = (0..bursty.virtual_nodes.len()).filter(|&v| bursty.virtual_nodes[v].group == 0).collect();
        let (a, b) = bursty.group_bursts[0][0];
        let mid = (a + b) / 2.0;
        // Every member of the group bursts at the same time: correlated.
        for &v in &g0 {
            let calm = Cluster::generate(SynthParams { noise: 0.0, bursts_per_day: 0.0, ..bursty.params });
            assert!(
                bursty.utilization(v, mid) >= calm.utilization(v, mid) * 2.0 - 1e-9
                    || bursty.utilization(v, mid) == 1.5
            );
        }
    }

    #[test]
    fn placement_is_uneven_but_bounded() {
        let c = Cluster::generate(SynthParams::default());
        let mut used = vec![0.0; c.physical.len()];
        for v in &c.virtual_nodes {
            used[v.placement] += v.cores;
        }
        let max = used.iter().cloned().fold(0.0, f64::max);
        let min = used.iter().cloned().fold(f64::MAX, f64::min);
        assert!(max <= 24.0);
        assert!(max > 2.0 * min);
        let f = c.frame(1.0, 300_000).unwrap();
        assert_eq!(f.height(), 200 * 288);
    }
}
