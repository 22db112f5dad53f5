//! How early the signals a controller can act on warn of host overloads.
//!
//! Why this exists: a proactive controller prevents only the overloads it
//! is warned of early enough to move load away first. A move decided after
//! step t keeps the source loaded during step t + 1 (see [`super::engine`]),
//! so a useful warning comes at least [`Foresight::lead_steps`] steps ahead
//! (and never less than 10 minutes: the lead-time goal of the replay). This
//! module measures that along a replayed trajectory (the reactive
//! baseline's, in `swarmctl replay`: the overloads left there are the ones
//! a proactive controller would have to see coming), so the signals are
//! judged on the same overloads, with the VMs where they were at each step:
//!
//! - **alarms**: host-steps at which the signal says the host will be over
//!   the overload threshold at some step `t + lead ..= t + horizon`;
//! - **precision**: the share of alarms followed by a real overload in that
//!   window (the rest are moves a controller acting on them would waste);
//! - **coverage**: the share of overloaded host-intervals that had an alarm
//!   `lead ..= horizon` steps before them (the most a controller acting on
//!   the signal could prevent, before its budget, cooldowns and targets).
//!
//! Signals: the model's forecast upper bound combined per host exactly as
//! the controller combines it ([`PhysView::fc_upper_at`]), the forecast
//! means alone, and the load now (what a reactive rule sees). Pure: the
//! trace, scenario and forecasts come in, counts come out.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::engine::{Demand, ForecastSource, Forecasts, Params, Snapshot, Trajectory};
use super::scenario::Scenario;
use swarm_core::placement::view::{ClusterView, PhysView};

/// The signals judged: name (the key in [`Foresight::signals`]) and what
/// it is, for people.
pub const SIGNALS: [(&str, &str); 3] = [
    ("forecast_upper", "forecast upper bound (what the controller acts on)"),
    ("forecast_mean", "forecast mean"),
    ("load_now", "load now (what a reactive rule sees)"),
];

/// How one signal warned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalQuality {
    /// Host-steps with an alarm.
    pub alarms: u64,
    /// Alarms followed by an overload in their window.
    pub true_alarms: u64,
    /// `true_alarms / alarms`; none without alarms.
    pub precision: Option<f64>,
    /// Overloaded host-intervals warned of in time.
    pub covered: u64,
    /// `covered / overloads`; none without overloads.
    pub coverage: Option<f64>,
}

/// The signals side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Foresight {
    /// First step judged: every VM has a model forecast from here on.
    pub from_step: usize,
    /// Minimum warning, in steps.
    pub lead_steps: usize,
    /// Longest warning, in steps (the controller's horizon).
    pub horizon_steps: usize,
    /// The policy whose trajectory was judged.
    pub along: String,
    /// Overloaded host-intervals judged.
    pub overloads: u64,
    /// By signal: `forecast_upper`, `forecast_mean`, `load_now`.
    pub signals: BTreeMap<String, SignalQuality>,
}

/// Judges the signals along `trajectory` (of the policy named `along`);
/// `None` when the horizon is shorter than the lead or the forecasts never
/// cover every VM.
#[allow(clippy::needless_range_loop)] // `t` is virtual time; it indexes demand, alarms and overloads alike
pub fn foresight(
    scenario: &Scenario,
    demand: &Demand,
    params: &Params,
    forecasts: &Forecasts,
    trajectory: &Trajectory,
    along: &str,
) -> Option<Foresight> {
    let steps = demand.steps();
    let horizon = params.controller.horizon_steps;
    let lead = 2usize.max(((600_000 + demand.step_ms - 1) / demand.step_ms.max(1)) as usize);
    if horizon < lead || horizon > forecasts.horizon {
        return None;
    }
    let from = (0..steps).find(|&t| {
        forecasts.mean.iter().all(|m| {
            m.get(t * forecasts.horizon..(t + 1) * forecasts.horizon).is_some_and(|w| !w.iter().any(|x| x.is_nan()))
        })
    })?;
    let hosts = &scenario.hosts;
    let thr = params.overload;
    let util = &trajectory.util;
    if util.len() != hosts.len() || trajectory.placement.len() != steps {
        return None;
    }
    let over: Vec<Vec<bool>> = util.iter().map(|u| u.iter().map(|&x| x > thr).collect()).collect();
    // alarms[signal][host][t], in the order of SIGNALS.
    let mut alarms = vec![vec![vec![false; steps]; hosts.len()]; SIGNALS.len()];
    let host_index: HashMap<&str, usize> = hosts.iter().enumerate().map(|(i, h)| (h.id.as_str(), i)).collect();
    let snap = Snapshot::new(scenario, demand, params);
    for t in from..steps.saturating_sub(lead) {
        let (topo, mut inp) = snap.inputs(&trajectory.placement[t], &trajectory.leaving[t], t);
        snap.add_forecasts(&mut inp, t, ForecastSource::Model(Some(forecasts)));
        let view = ClusterView::build_with(&topo, &inp);
        for p in &view.phys {
            let h = host_index[p.id.as_str()];
            let at = |f: &dyn Fn(&PhysView, usize) -> f64| (lead..=horizon).any(|k| f(p, k - 1) / hosts[h].cores > thr);
            alarms[0][h][t] = at(&|p, i| p.fc_upper_at(i, 0.0, 0.0, 0.0));
            alarms[1][h][t] = at(&|p, i| p.fc_mean[i] + p.fc_extra[i]);
            alarms[2][h][t] = over[h][t];
        }
    }
    let overloads = (0..hosts.len()).map(|h| (from + lead..steps).filter(|&s| over[h][s]).count() as u64).sum();
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    let signals = SIGNALS
        .iter()
        .zip(&alarms)
        .map(|((name, _), a)| {
            let (mut n, mut true_n, mut covered) = (0u64, 0u64, 0u64);
            for h in 0..hosts.len() {
                for t in from..steps {
                    if a[h][t] {
                        n += 1;
                        if (t + lead..=(t + horizon).min(steps - 1)).any(|s| over[h][s]) {
                            true_n += 1;
                        }
                    }
                    if t >= from + lead
                        && over[h][t]
                        && (t.saturating_sub(horizon).max(from)..=t - lead).any(|u| a[h][u])
                    {
                        covered += 1;
                    }
                }
            }
            let q = SignalQuality {
                alarms: n,
                true_alarms: true_n,
                precision: ratio(true_n, n),
                covered,
                coverage: ratio(covered, overloads),
            };
            (name.to_string(), q)
        })
        .collect();
    Some(Foresight {
        from_step: from,
        lead_steps: lead,
        horizon_steps: horizon,
        along: along.into(),
        overloads,
        signals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Policy, simulate};

    fn judge(d: &Demand, p: &Params, f: &Forecasts) -> Option<Foresight> {
        let (_, trajectory) = simulate(&scenario(), d, Policy::None, p, None, &mut |_| {});
        foresight(&scenario(), d, p, f, &trajectory, "none")
    }

    fn scenario() -> Scenario {
        crate::engine::tests::scenario(&[("a", 4.0, "h0"), ("b", 8.0, "h0"), ("c", 2.0, "h1")])
    }

    /// Forecasts that know the truth for `knows` and say "flat at the last
    /// value" for the others.
    fn forecasts(d: &Demand, h: usize, knows: &[usize], spread: f32) -> Forecasts {
        let steps = d.steps();
        let mut mean = vec![Vec::new(); d.cores.len()];
        let mut upper = vec![Vec::new(); d.cores.len()];
        for (vm, c) in d.cores.iter().enumerate() {
            for t in 0..steps {
                for k in 1..=h {
                    let x = if knows.contains(&vm) { c[(t + k).min(steps - 1)] } else { c[t] } as f32;
                    mean[vm].push(x);
                    upper[vm].push(x + spread);
                }
            }
        }
        Forecasts { horizon: h, mean, upper }
    }

    #[test]
    fn a_forecast_that_sees_the_spike_covers_it_and_the_load_now_does_not() {
        // h0 carries 2 + 1 cores, then b spikes to 8 at steps 10..12: 10 > 9.
        let mut cores = vec![vec![2.0; 30], vec![1.0; 30], vec![1.0; 30]];
        cores[1][10..12].fill(8.0);
        let d = Demand { start_ms: 0, step_ms: 300_000, cores };
        let p = Params::default();
        let f = judge(&d, &p, &forecasts(&d, 6, &[0, 1, 2], 0.0)).expect("judged");
        assert_eq!((f.from_step, f.lead_steps, f.horizon_steps, f.overloads), (0, 2, 6, 2));
        let up = &f.signals["forecast_upper"];
        // Alarms at steps 4..=9: the spike is 2..=6 steps ahead of them.
        assert_eq!((up.alarms, up.true_alarms, up.covered), (6, 6, 2), "{up:?}");
        assert_eq!(up.precision, Some(1.0));
        assert_eq!(up.coverage, Some(1.0));
        // The load now is over only during the spike: too late for both.
        let now = &f.signals["load_now"];
        assert_eq!((now.alarms, now.covered), (2, 0), "{now:?}");
        assert_eq!(now.coverage, Some(0.0));
    }

    #[test]
    fn wide_bounds_raise_false_alarms_and_blind_forecasts_miss() {
        let mut cores = vec![vec![2.0; 30], vec![1.0; 30], vec![1.0; 30]];
        cores[1][10..12].fill(8.0);
        let d = Demand { start_ms: 0, step_ms: 300_000, cores };
        let p = Params::default();
        // Nobody sees the spike: no alarm before it.
        let blind = judge(&d, &p, &forecasts(&d, 6, &[], 0.0)).expect("judged");
        assert_eq!(blind.signals["forecast_upper"].covered, 0);
        // A bound 7 cores above a flat mean on h0 (3 + sqrt(2) * 7 > 9)
        // alarms at every step; only the few before the spike are true.
        let wide = judge(&d, &p, &forecasts(&d, 6, &[], 7.0)).expect("judged");
        let up = &wide.signals["forecast_upper"];
        assert_eq!(up.covered, 2, "{up:?}");
        assert!(up.alarms >= 20 && up.precision.unwrap() < 0.35, "{up:?}");
        // The mean alone (flat at the load now) alarms only during the spike.
        let mean = &wide.signals["forecast_mean"];
        assert_eq!((mean.alarms, mean.covered), (2, 0), "{mean:?}");
    }

    #[test]
    fn too_short_a_horizon_or_no_forecasts_judges_nothing() {
        let d = Demand { start_ms: 0, step_ms: 300_000, cores: vec![vec![1.0; 10]; 3] };
        let mut p = Params::default();
        p.controller.horizon_steps = 1;
        assert!(judge(&d, &p, &forecasts(&d, 6, &[], 0.0)).is_none());
        p.controller.horizon_steps = 6;
        let nan = Forecasts { horizon: 6, mean: vec![vec![f32::NAN; 60]; 3], upper: vec![vec![f32::NAN; 60]; 3] };
        assert!(judge(&d, &p, &nan).is_none());
    }
}
