//! The tuned-reactive frontier: the yardstick a proactive policy is judged
//! against. An operator unhappy with the reactive baseline tunes its
//! thresholds before buying prediction, so the fair comparison is not the
//! default reactive settings but the best any setting reaches: F(m), the
//! fewest overload intervals the reactive rules reach with at most m
//! migrations.
//!
//! [`sweep`] replays the reactive rules ([`deschedule`](swarm_core::placement::descheduler::deschedule))
//! over every point of a [`Grid`] — the same engine, scenario and trace as
//! the other policies — on all cores, and keeps the non-dominated
//! (overloads, migrations) points.

use serde::Serialize;

use super::engine::{Demand, Params, Policy, simulate};
use super::scenario::Scenario;
use swarm_core::placement::descheduler::LowNodeUtilization;

/// One reactive setting, in the units the study used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReactiveSetting {
    /// A host whose observed utilisation passes this is a source.
    pub threshold: f64,
    /// A destination must stay below this with the VM added.
    pub target: f64,
    /// Moves per run.
    pub budget: usize,
    /// A moved VM stays put this many steps.
    pub cooldown_steps: u32,
}

impl ReactiveSetting {
    /// The baseline's configuration for steps of `step_ms`.
    pub fn rules(&self, step_ms: i64) -> LowNodeUtilization {
        LowNodeUtilization {
            high: self.threshold,
            low: self.target,
            max_moves: self.budget,
            cooldown_ms: i64::from(self.cooldown_steps) * step_ms,
        }
    }
}

/// The settings swept: every combination of the four lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grid {
    /// Source thresholds.
    pub threshold: Vec<f64>,
    /// Destination limits.
    pub target: Vec<f64>,
    /// Moves per run.
    pub budget: Vec<usize>,
    /// Cooldowns, steps.
    pub cooldown_steps: Vec<u32>,
}

impl Default for Grid {
    /// At least as wide and as fine as the reference study's 1,340 settings:
    /// threshold 0.60–1.10 and target 0.40–0.75 in steps of 0.05, budget
    /// 1–5, cooldown 3 steps (15 min at 5-minute steps) to 576 (2 days),
    /// roughly doubling: 11 × 8 × 5 × 9 = 3,960 settings.
    fn default() -> Self {
        let steps = |from: f64, to: f64| {
            let n = ((to - from) / 0.05).round() as usize;
            (0..=n).map(|i| ((from + 0.05 * i as f64) * 100.0).round() / 100.0).collect()
        };
        Grid {
            threshold: steps(0.6, 1.1),
            target: steps(0.4, 0.75),
            budget: (1..=5).collect(),
            cooldown_steps: vec![3, 6, 12, 24, 48, 96, 144, 288, 576],
        }
    }
}

impl std::str::FromStr for Grid {
    type Err = String;

    /// `threshold=0.8,0.9;target=0.5,0.7;budget=1,5;cooldown=12,288`: any
    /// of the four keys, each a comma-separated list; a key left out keeps
    /// the default grid's values.
    fn from_str(s: &str) -> Result<Grid, String> {
        fn list<T: std::str::FromStr>(key: &str, v: &str) -> Result<Vec<T>, String> {
            let out: Result<Vec<T>, _> = v.split(',').map(|x| x.trim().parse::<T>()).collect();
            match out {
                Ok(out) if !out.is_empty() => Ok(out),
                _ => Err(format!("{key}: expected a comma-separated list of numbers, got {v:?}")),
            }
        }
        let mut g = Grid::default();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, v)) = part.split_once('=') else {
                return Err(format!("{part:?}: expected key=values (threshold, target, budget or cooldown)"));
            };
            match key.trim() {
                "threshold" => g.threshold = list(key, v)?,
                "target" => g.target = list(key, v)?,
                "budget" => g.budget = list(key, v)?,
                "cooldown" => g.cooldown_steps = list(key, v)?,
                k => return Err(format!("unknown key {k:?}; use threshold, target, budget or cooldown")),
            }
        }
        let fraction = |name: &str, xs: &[f64]| match xs.iter().find(|x| !(**x > 0.0 && **x <= 2.0)) {
            Some(x) => Err(format!("{name} {x} is not a utilisation in (0, 2]")),
            None => Ok(()),
        };
        fraction("threshold", &g.threshold)?;
        fraction("target", &g.target)?;
        if g.budget.contains(&0) {
            return Err("budget 0 moves nothing; use none for that".into());
        }
        Ok(g)
    }
}

impl Grid {
    /// Every setting, in a fixed order.
    pub fn settings(&self) -> Vec<ReactiveSetting> {
        let mut out = Vec::new();
        for &threshold in &self.threshold {
            for &target in &self.target {
                for &budget in &self.budget {
                    for &cooldown_steps in &self.cooldown_steps {
                        out.push(ReactiveSetting { threshold, target, budget, cooldown_steps });
                    }
                }
            }
        }
        out
    }
}

/// A non-dominated point of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrontierPoint {
    /// Host-intervals over the overload threshold.
    pub overload_intervals: u64,
    /// Migrations.
    pub migrations: u64,
    /// The setting that reached it (the first in grid order among equals).
    pub params: ReactiveSetting,
}

/// The frontier and how it was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Frontier {
    /// Settings replayed.
    pub settings: usize,
    /// The grid.
    pub grid: Grid,
    /// Non-dominated points, fewest migrations first.
    pub points: Vec<FrontierPoint>,
}

impl Frontier {
    /// F(m): the fewest overload intervals a swept setting reached with at
    /// most `m` migrations (`None` when every setting moved more).
    pub fn best_within(&self, m: u64) -> Option<&FrontierPoint> {
        self.points.iter().filter(|p| p.migrations <= m).min_by_key(|p| (p.overload_intervals, p.migrations))
    }
}

/// Replays every setting of `grid` on `threads` threads and keeps the
/// non-dominated points. `progress` is called with the settings done.
pub fn sweep(
    scenario: &Scenario,
    demand: &Demand,
    params: &Params,
    grid: &Grid,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Frontier {
    let settings = grid.settings();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let threads = threads.clamp(1, settings.len().max(1));
    let chunk = settings.len().div_ceil(threads);
    let mut results: Vec<(u64, u64)> = Vec::with_capacity(settings.len());
    std::thread::scope(|s| {
        let workers: Vec<_> = settings
            .chunks(chunk.max(1))
            .map(|part| {
                let done = &done;
                s.spawn(move || {
                    part.iter()
                        .map(|setting| {
                            let mut p = params.clone();
                            p.reactive = setting.rules(demand.step_ms);
                            let (r, _) = simulate(scenario, demand, Policy::Reactive, &p, None, &mut |_| {});
                            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
                            (r.overload_intervals, r.migrations)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for w in workers {
            results.extend(w.join().expect("a sweep worker panicked"));
        }
    });
    let points = non_dominated(settings.iter().zip(&results).map(|(s, &(o, m))| FrontierPoint {
        overload_intervals: o,
        migrations: m,
        params: *s,
    }));
    Frontier { settings: settings.len(), grid: grid.clone(), points }
}

/// The points no other point beats on both counts (fewer or equal
/// overloads *and* migrations, one of them strictly), fewest migrations
/// first; of equal points the first seen is kept.
fn non_dominated(points: impl Iterator<Item = FrontierPoint>) -> Vec<FrontierPoint> {
    let mut all: Vec<(usize, FrontierPoint)> = points.enumerate().collect();
    all.sort_by_key(|(i, p)| (p.migrations, p.overload_intervals, *i));
    let mut out: Vec<FrontierPoint> = Vec::new();
    for (_, p) in all {
        if out.last().is_none_or(|q| p.overload_intervals < q.overload_intervals) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::scenario;

    fn point(o: u64, m: u64) -> FrontierPoint {
        let params = ReactiveSetting { threshold: 0.9, target: 0.7, budget: 1, cooldown_steps: 12 };
        FrontierPoint { overload_intervals: o, migrations: m, params }
    }

    #[test]
    fn only_non_dominated_points_are_kept_and_f_reads_them() {
        let pts = non_dominated([point(10, 5), point(12, 3), point(10, 7), point(20, 0), point(9, 9)].into_iter());
        let pairs: Vec<(u64, u64)> = pts.iter().map(|p| (p.overload_intervals, p.migrations)).collect();
        assert_eq!(pairs, vec![(20, 0), (12, 3), (10, 5), (9, 9)]);
        let f = Frontier { settings: 5, grid: Grid::default(), points: pts };
        assert_eq!(f.best_within(4).unwrap().overload_intervals, 12);
        assert_eq!(f.best_within(8).unwrap().overload_intervals, 10);
        assert_eq!(f.best_within(100).unwrap().overload_intervals, 9);
    }

    #[test]
    fn the_default_grid_is_at_least_as_wide_as_the_study() {
        let g = Grid::default();
        assert_eq!((g.threshold[0], *g.threshold.last().unwrap()), (0.6, 1.1));
        assert_eq!((g.target[0], *g.target.last().unwrap()), (0.4, 0.75));
        assert_eq!((g.cooldown_steps[0], *g.cooldown_steps.last().unwrap()), (3, 576));
        assert_eq!(g.settings().len(), 11 * 8 * 5 * 9);
    }

    #[test]
    fn a_grid_spec_replaces_the_keys_it_names() {
        let g: Grid = "threshold=0.8, 0.9; cooldown=12".parse().unwrap();
        assert_eq!((g.threshold, g.cooldown_steps), (vec![0.8, 0.9], vec![12]));
        assert_eq!(g.target, Grid::default().target);
        for (bad, msg) in [
            ("threshold=x", "threshold: expected a comma-separated list"),
            ("speed=1", "unknown key \"speed\""),
            ("target=0", "target 0 is not a utilisation"),
            ("budget=0,1", "budget 0 moves nothing"),
            ("threshold", "expected key=values"),
        ] {
            let e = bad.parse::<Grid>().unwrap_err();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }

    #[test]
    fn the_sweep_finds_each_setting_s_own_replay() {
        // b spikes on h0 twice; a low threshold moves, a high one never does.
        let s = scenario(&[("a", 4.0, "h0"), ("b", 8.0, "h0"), ("c", 2.0, "h1")]);
        let mut cores = vec![vec![2.0; 40], vec![1.0; 40], vec![1.0; 40]];
        cores[1][6..10].fill(8.0);
        cores[1][26..30].fill(8.0);
        let d = Demand { start_ms: 0, step_ms: 300_000, cores };
        let p = Params::default();
        let grid =
            Grid { threshold: vec![0.85, 1.1], target: vec![0.7], budget: vec![1], cooldown_steps: vec![3, 576] };
        let f = sweep(&s, &d, &p, &grid, 2, &|_| {});
        assert_eq!(f.settings, 4);
        // Never moving is on the frontier (threshold 1.1: utilisation never passes it).
        let none = simulate(&s, &d, Policy::None, &p, None, &mut |_| {}).0;
        assert_eq!((f.points[0].overload_intervals, f.points[0].migrations), (none.overload_intervals, 0));
        // Every point is some setting's own replay.
        for pt in &f.points {
            let mut q = p.clone();
            q.reactive = pt.params.rules(d.step_ms);
            let r = simulate(&s, &d, Policy::Reactive, &q, None, &mut |_| {}).0;
            assert_eq!((r.overload_intervals, r.migrations), (pt.overload_intervals, pt.migrations));
        }
        assert!(f.points.len() >= 2 && f.points.last().unwrap().overload_intervals < none.overload_intervals);
    }
}
