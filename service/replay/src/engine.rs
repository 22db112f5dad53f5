//! The replay loop: a real trace in virtual time through the placement
//! code `swarmd` runs. Pure: the trace, the forecasts and the scenario come
//! in, counts come out.
//!
//! Rules (those of the reference simulator in `shared/reference`, so
//! `none` can be cross-checked exactly):
//! - a VM's demand at step t is its cores × metric(t) / 100; a missing
//!   point counts as 0;
//! - a host's utilisation is the demand of its VMs, plus VMs still
//!   migrating off it, over its cores; a host-interval is overloaded when
//!   utilisation > the overload threshold (0.90);
//! - the controller runs after every step, on what has been observed up to
//!   it; a move decided at step t lasts as many steps as the cost model's
//!   transfer + overhead time (at least one), during which both hosts carry
//!   the VM; afterwards only the destination does.
//!
//! Policies: `none`; `reactive` — [`deschedule`] on the load observed now;
//! `proactive` — [`run_round`] with the model's forecasts; `oracle` — the
//! same round with the true future as a forecast with no spread.

use std::collections::HashMap;

use serde::Serialize;

use super::scenario::Scenario;
use swarm_core::domain::{NodeId, PhysicalNode, PhysicalState, Resources, Topology, VirtualNode};
use swarm_core::locality::{RACK_LABEL, ZONE_LABEL};
use swarm_core::placement::controller::{ControllerConfig, ProposalKind, RoundInput, migration_steps, run_round};
use swarm_core::placement::descheduler::{LowNodeUtilization, deschedule};
use swarm_core::placement::risk;
use swarm_core::placement::tuning::{self, Tunables, Verdict};
use swarm_core::placement::view::{ClusterView, CpuForecast, InFlight, PartialResources, ViewInputs};

/// A policy the replay compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// No migrations.
    None,
    /// LowNodeUtilization on observed load.
    Reactive,
    /// Swarm with forecasts.
    Proactive,
    /// The risk-aware rule (`swarm_core::placement::risk`): separates the
    /// VMs whose joint history overloads their host.
    #[serde(rename = "risk")]
    Risk,
    /// Swarm with the true future over its horizon (6 steps by default):
    /// a bound, not achievable.
    Oracle,
    /// Swarm seeing the true future 1 step ahead only: a bound.
    #[serde(rename = "oracle-1")]
    Oracle1,
    /// Swarm seeing the true future 2 steps ahead only: a bound.
    #[serde(rename = "oracle-2")]
    Oracle2,
    /// The best static placement found with the whole trace in view
    /// ([`crate::hindsight`]), never moved: a bound, not achievable.
    Hindsight,
}

impl Policy {
    /// Name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Reactive => "reactive",
            Policy::Proactive => "proactive",
            Policy::Risk => "risk",
            Policy::Oracle => "oracle",
            Policy::Oracle1 => "oracle-1",
            Policy::Oracle2 => "oracle-2",
            Policy::Hindsight => "hindsight",
        }
    }

    /// How far an oracle that sees less than the controller's horizon sees.
    fn oracle_steps(self) -> Option<usize> {
        match self {
            Policy::Oracle1 => Some(1),
            Policy::Oracle2 => Some(2),
            _ => None,
        }
    }

    /// Every policy, in the order reports list them.
    pub const ALL: [Policy; 8] = [
        Policy::None,
        Policy::Reactive,
        Policy::Proactive,
        Policy::Risk,
        Policy::Oracle1,
        Policy::Oracle2,
        Policy::Oracle,
        Policy::Hindsight,
    ];

    /// Parses a comma-separated list.
    pub fn parse_list(s: &str) -> Result<Selection, String> {
        let mut out = Selection { policies: Vec::new(), frontier: false };
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if p == "reactive-frontier" {
                out.frontier = true;
                continue;
            }
            let Some(p) = Policy::ALL.into_iter().find(|q| q.name() == p) else {
                let names: Vec<&str> = Policy::ALL.iter().map(|q| q.name()).collect();
                return Err(format!("unknown policy {p:?}; use {} or reactive-frontier", names.join(", ")));
            };
            if !out.policies.contains(&p) {
                out.policies.push(p);
            }
        }
        if out.policies.is_empty() && !out.frontier {
            return Err("no policy given".into());
        }
        Ok(out)
    }
}

/// What `--policy` asked for: policies to replay, and whether to sweep the
/// reactive rules for their tuned frontier (not one policy but thousands of
/// settings, see [`frontier`](crate::frontier)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Policies replayed one by one.
    pub policies: Vec<Policy>,
    /// Sweep the reactive settings.
    pub frontier: bool,
}

/// The demand the scenario's VMs put on their hosts, step by step.
#[derive(Debug, Clone)]
pub struct Demand {
    /// Timestamp of step 0, ms.
    pub start_ms: i64,
    /// Step length, ms.
    pub step_ms: i64,
    /// Cores used, `[vm][step]` in scenario order.
    pub cores: Vec<Vec<f64>>,
}

impl Demand {
    /// Steps.
    pub fn steps(&self) -> usize {
        self.cores.first().map_or(0, Vec::len)
    }
}

/// Forecasts of every VM at every origin, in cores.
#[derive(Debug, Clone)]
pub struct Forecasts {
    /// Steps ahead per origin.
    pub horizon: usize,
    /// `[vm][t * horizon + k]`: mean at step t + 1 + k; NaN where the model
    /// had too little history.
    pub mean: Vec<Vec<f32>>,
    /// Upper bounds, same layout.
    pub upper: Vec<Vec<f32>>,
}

/// Fixed parameters of a replay.
#[derive(Debug, Clone)]
pub struct Params {
    /// Swarm's controller (proactive and oracle).
    pub controller: ControllerConfig,
    /// The reactive baseline.
    pub reactive: LowNodeUtilization,
    /// Overload threshold of the count.
    pub overload: f64,
    /// Memory (= state moved) per requested core, bytes.
    pub memory_per_core: f64,
    /// Steps the risk rule's first run waits (0: it first runs at the
    /// first step). Shifting its cadence by a step or two changes which
    /// steps it acts on and nothing else; a result that then moves shows
    /// how much of it the timing decided (paced by runs; paced by moves
    /// it only delays the first look).
    pub risk_phase: usize,
}

/// The replay's defaults differ from `swarmd`'s where the comparison needs
/// it: the same per-run budget (5), cooldown (1 h) and destination limit
/// (70 %) as the reactive baseline, so the policies differ only in *when*
/// and *what* they move; micro-migrations off (the trace carries only CPU,
/// so they could only rebalance CPU, which is what the relief phase does);
/// and a modest error correlation between co-located VMs (0.15; 0 never
/// raised an alarm before the load did, 0.3 and above flagged so much that
/// moves found no target — measured with `swarmctl replay --spread-correlation`).
impl Default for Params {
    fn default() -> Self {
        Params {
            controller: ControllerConfig {
                max_decisions_per_round: 5,
                cooldown_ms: 3_600_000,
                gain_threshold: 1.0,
                max_cpu_utilization: 0.7,
                spread_correlation: 0.15,
                ..ControllerConfig::default()
            },
            reactive: LowNodeUtilization::default(),
            overload: 0.9,
            memory_per_core: 4.0 * 1073741824.0,
            risk_phase: 0,
        }
    }
}

/// One move the replay carried out.
#[derive(Debug, Clone, Copy)]
pub struct MoveRecord {
    /// Step decided at.
    pub step: usize,
    /// VM index.
    pub vm: usize,
    /// Source host index.
    pub from: usize,
    /// Target host index.
    pub to: usize,
    /// Steps the source kept carrying it.
    pub steps: usize,
    /// Made ahead of a forecast overload.
    pub predictive: bool,
}

/// What one policy did.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyResult {
    /// Host-intervals over the threshold.
    pub overload_intervals: u64,
    /// The same in minutes.
    pub overload_minutes: f64,
    /// Migrations.
    pub migrations: u64,
    /// State moved, bytes.
    pub bytes_moved: f64,
    /// Migrations made ahead of a forecast overload (proactive and oracle).
    pub predictive_migrations: u64,
    /// Overloads the predictive migrations prevented: the source would
    /// have been over the threshold with the VM still on it, and was not.
    pub prevented_overloads: u64,
    /// Median time from decision to the first overload it prevented.
    pub lead_time_minutes_median: Option<f64>,
    /// Share of prevented overloads acted on at least 10 minutes ahead.
    pub lead_time_share_ge_10min: Option<f64>,
    /// Overloaded host-intervals each migration avoided with every other
    /// move in place, summed (net: negative when the moves made things
    /// worse). For each migration: the overloads its source and target
    /// would have had with the VM left on the source, less those they had,
    /// from the decision until the VM's next move or the replay's end.
    /// Why: a policy's total says what it reached, not whether its moves
    /// paid one by one, which is what a price per migration is weighed
    /// against. Marginal, so not additive: moves that only together bring
    /// a host under are each credited in full, moves that each alone would
    /// have are credited nothing, so the sum need not be `none`'s
    /// overloads less this policy's (it is, for one move).
    pub marginal_overloads_avoided: i64,
    /// `marginal_overloads_avoided` per migration (none without migrations).
    pub marginal_overloads_avoided_per_migration: Option<f64>,
    /// Mean host utilisation over the replay.
    pub mean_host_utilization: f64,
    /// What the self-tuner did (the risk policy with `self_tuning` on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_tuning: Option<SelfTuning>,
}

/// The self-tuner over a replay: it ran causally, on the trace's past only.
#[derive(Debug, Clone, Serialize)]
pub struct SelfTuning {
    /// Tuning runs with enough history.
    pub runs: usize,
    /// Runs that changed the settings, in order.
    pub changes: Vec<TuningChange>,
    /// The settings at the start and at the end.
    pub initial: Tunables,
    /// See `initial`.
    pub last: Tunables,
}

/// A change the self-tuner made.
#[derive(Debug, Clone, Serialize)]
pub struct TuningChange {
    /// Step it was made at.
    pub step: usize,
    /// The settings it adopted.
    pub settings: Tunables,
    /// Why.
    pub reason: String,
}

/// Where the VMs were at every step of a replay.
#[derive(Debug, Clone, Default)]
pub struct Trajectory {
    /// Host index of every VM, `[step][vm]`.
    pub placement: Vec<Vec<usize>>,
    /// Migrations in flight at every step: (vm, source, last step the
    /// source carries it).
    pub leaving: Vec<Vec<(usize, usize, usize)>>,
    /// Host utilisation, `[host][step]`.
    pub util: Vec<Vec<f64>>,
}

/// Seed of the hindsight search's kicks: fixed, so a report is reproducible.
const HINDSIGHT_SEED: u64 = 1;

/// Replays `policy`: what it did, and where the VMs were at every step.
/// `progress` is called with the number of steps done.
#[allow(clippy::needless_range_loop)] // `t` is virtual time; it indexes demand, utilisation and moves alike
pub fn simulate(
    scenario: &Scenario,
    demand: &Demand,
    policy: Policy,
    params: &Params,
    forecasts: Option<&Forecasts>,
    progress: &mut dyn FnMut(usize),
) -> (PolicyResult, Trajectory) {
    // A shorter-sighted oracle is the oracle with a shorter horizon.
    let shorter;
    let params = match policy.oracle_steps() {
        Some(k) => {
            shorter =
                Params { controller: ControllerConfig { horizon_steps: k, ..params.controller }, ..params.clone() };
            &shorter
        }
        None => params,
    };
    let mut record = Trajectory::default();
    let steps = demand.steps();
    let hosts = &scenario.hosts;
    let cap: Vec<f64> = hosts.iter().map(|h| h.cores).collect();
    let host_index: HashMap<&str, usize> = hosts.iter().enumerate().map(|(i, h)| (h.id.as_str(), i)).collect();
    let mut placement: Vec<usize> = match policy {
        // Placed once with the whole trace in view, then left alone.
        Policy::Hindsight => crate::hindsight::static_placement(scenario, demand, params.overload, HINDSIGHT_SEED),
        _ => scenario.vms.iter().map(|v| host_index[v.host.as_str()]).collect(),
    };
    // (vm, source, last step the source carries it)
    let mut leaving: Vec<(usize, usize, usize)> = Vec::new();
    let mut last_decided: HashMap<NodeId, i64> = HashMap::new();
    // When the risk rule last counted as run (`RiskConfig::ran`), and the
    // settings it runs with (the self-tuner may change them as it goes).
    let mut risk_last: Option<i64> = None;
    let mut controller = params.controller;
    let mut tuned_last: Option<i64> = None;
    let tuner = policy == Policy::Risk && controller.self_tuning;
    let mut self_tuning = tuner.then(|| SelfTuning {
        runs: 0,
        changes: Vec::new(),
        initial: Tunables::of(&controller.risk),
        last: Tunables::of(&controller.risk),
    });
    let mut util = vec![vec![0.0f64; steps]; hosts.len()];
    let mut moves: Vec<MoveRecord> = Vec::new();
    let (mut overloads, mut bytes) = (0u64, 0.0f64);
    let snap = Snapshot::new(scenario, demand, params);
    let h_steps = params.controller.horizon_steps;
    for t in 0..steps {
        let mut load = vec![0.0f64; hosts.len()];
        for (vm, &h) in placement.iter().enumerate() {
            load[h] += demand.cores[vm][t];
        }
        leaving.retain(|&(_, _, until)| until >= t);
        for &(vm, from, _) in &leaving {
            load[from] += demand.cores[vm][t];
        }
        for h in 0..hosts.len() {
            util[h][t] = load[h] / cap[h];
            if util[h][t] > params.overload {
                overloads += 1;
            }
        }
        record.placement.push(placement.clone());
        record.leaving.push(leaving.clone());
        progress(t + 1);
        if matches!(policy, Policy::None | Policy::Hindsight) || t + 1 == steps {
            continue;
        }
        // The reactive rules move nothing while no host is over their
        // threshold: skip building the view (exact, and what makes a sweep
        // of thousands of settings affordable).
        if policy == Policy::Reactive && (0..hosts.len()).all(|h| util[h][t] <= params.reactive.high - 1e-9) {
            continue;
        }
        let now_ms = demand.start_ms + t as i64 * demand.step_ms;
        if policy == Policy::Risk && (t < params.risk_phase || !controller.risk.due(now_ms, risk_last)) {
            continue;
        }
        // The cluster as the controller sees it after step t.
        let (topo, mut inp) = snap.inputs(&placement, &leaving, t);
        let input = RoundInput { now_ms, step_ms: demand.step_ms, last_decided: &last_decided };
        // (vm, to, predictive, seconds)
        let decided: Vec<(usize, usize, bool, f64)> = match policy {
            Policy::None | Policy::Hindsight => Vec::new(),
            Policy::Reactive => {
                let view = ClusterView::build_with(&topo, &inp);
                let cost = &params.controller.cost;
                deschedule(&view, input, &params.reactive)
                    .into_iter()
                    .map(|(vi, from, to)| {
                        let secs = cost.move_seconds(view.virt[vi].state_size_bytes, view.node_distance(from, to));
                        (vm_of(&view, vi, scenario), host_index[view.phys[to].id.as_str()], false, secs)
                    })
                    .collect()
            }
            Policy::Risk => {
                let view = ClusterView::build_with(&topo, &inp);
                let vms: Vec<usize> = (0..view.virt.len()).map(|vi| vm_of(&view, vi, scenario)).collect();
                // The tuner, when due, on the trace's past only.
                if let Some(st) = self_tuning.as_mut().filter(|_| controller.tuning.due(now_ms, tuned_last)) {
                    let reach = controller.tuning.reads_steps(demand.step_ms);
                    let past: Vec<Option<&[f64]>> =
                        vms.iter().map(|&vm| Some(&demand.cores[vm][(t + 1).saturating_sub(reach)..=t])).collect();
                    let run = tuning::tune(&view, &past, now_ms, demand.step_ms, &controller);
                    if run.verdict != Verdict::TooLittleHistory {
                        tuned_last = Some(now_ms);
                        st.runs += 1;
                    }
                    if run.changed() {
                        controller.risk = run.after.apply(&controller.risk);
                        st.last = run.after;
                        st.changes.push(TuningChange { step: t, settings: run.after, reason: run.reason });
                    }
                }
                let len = (t + 1).min(controller.risk.history_steps(demand.step_ms));
                let history: Vec<Option<&[f64]>> =
                    vms.iter().map(|&vm| Some(&demand.cores[vm][t + 1 - len..=t])).collect();
                let proposals = risk::proposals(&view, &risk::Histories::new(&history), input, &controller);
                risk_last = controller.risk.ran(now_ms, risk_last, proposals.len());
                proposals
                    .into_iter()
                    .map(|p| (vms[p.virt], host_index[view.phys[p.to].id.as_str()], false, p.cost.duration_seconds()))
                    .collect()
            }
            Policy::Proactive | Policy::Oracle | Policy::Oracle1 | Policy::Oracle2 => {
                let source = match policy {
                    Policy::Proactive => ForecastSource::Model(forecasts),
                    _ => ForecastSource::TrueFuture,
                };
                snap.add_forecasts(&mut inp, t, source);
                let view = ClusterView::build_with(&topo, &inp);
                let out = run_round(&view, input, &params.controller);
                out.proposals
                    .iter()
                    .map(|p| {
                        (
                            vm_of(&view, p.virt, scenario),
                            host_index[view.phys[p.to].id.as_str()],
                            p.kind == ProposalKind::Predictive,
                            p.cost.duration_seconds(),
                        )
                    })
                    .collect()
            }
        };
        for (vm, to, predictive, secs) in decided {
            let from = placement[vm];
            let k = migration_steps(secs, demand.step_ms);
            leaving.push((vm, from, t + k));
            placement[vm] = to;
            bytes += snap.state_bytes[vm] as f64;
            last_decided.insert(snap.ids[vm].clone(), now_ms);
            moves.push(MoveRecord { step: t, vm, from, to, steps: k, predictive });
        }
    }
    let (prevented, leads) = lead_times(&moves, &util, demand, &cap, params.overload, h_steps);
    let avoided = marginal_overloads_avoided(&moves, &util, demand, &cap, params.overload);
    let step_min = demand.step_ms as f64 / 60_000.0;
    let mean_util = util.iter().flatten().sum::<f64>() / (util.len() * steps).max(1) as f64;
    record.util = util;
    let result = PolicyResult {
        overload_intervals: overloads,
        overload_minutes: overloads as f64 * step_min,
        migrations: moves.len() as u64,
        bytes_moved: bytes,
        predictive_migrations: moves.iter().filter(|m| m.predictive).count() as u64,
        prevented_overloads: prevented,
        lead_time_minutes_median: median(&leads),
        lead_time_share_ge_10min: (!leads.is_empty())
            .then(|| leads.iter().filter(|&&l| l >= 10.0).count() as f64 / leads.len() as f64),
        marginal_overloads_avoided: avoided,
        marginal_overloads_avoided_per_migration: (!moves.is_empty()).then(|| avoided as f64 / moves.len() as f64),
        mean_host_utilization: mean_util,
        self_tuning,
    };
    (result, record)
}

/// Where a replayed controller's forecasts come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ForecastSource<'f> {
    /// The trace itself: the true future, with no spread (the oracle).
    TrueFuture,
    /// A model's forecasts; VMs it has none for (too little history, or no
    /// forecasts at all) get none.
    Model(Option<&'f Forecasts>),
}

/// The scenario as the controller's inputs at any step: ids parsed once,
/// the topology, observed usage and forecasts as `swarmd` would build them.
/// The replay loop and the foresight analysis read the cluster through it.
pub(crate) struct Snapshot<'a> {
    scenario: &'a Scenario,
    demand: &'a Demand,
    params: &'a Params,
    ids: Vec<NodeId>,
    host_ids: Vec<NodeId>,
    state_bytes: Vec<u64>,
}

impl<'a> Snapshot<'a> {
    pub(crate) fn new(scenario: &'a Scenario, demand: &'a Demand, params: &'a Params) -> Snapshot<'a> {
        let parse = |id: &str| NodeId::parse(id).expect("scenario ids are valid node ids");
        Snapshot {
            scenario,
            demand,
            params,
            ids: scenario.vms.iter().map(|v| parse(&v.id)).collect(),
            host_ids: scenario.hosts.iter().map(|h| parse(&h.id)).collect(),
            state_bytes: scenario.vms.iter().map(|v| (v.cores * params.memory_per_core) as u64).collect(),
        }
    }

    /// The topology and observed usage after step `t`, with VMs at
    /// `placement` (host indices) and `leaving` = (vm, source, last step
    /// the source carries it) still in flight.
    pub(crate) fn inputs(
        &self,
        placement: &[usize],
        leaving: &[(usize, usize, usize)],
        t: usize,
    ) -> (Topology, ViewInputs) {
        let (hosts, demand) = (&self.scenario.hosts, self.demand);
        let mut topo = Topology::default();
        for (h, host) in hosts.iter().enumerate() {
            topo.physical.insert(
                self.host_ids[h].clone(),
                PhysicalNode {
                    id: self.host_ids[h].clone(),
                    capacity: Resources { cpu_cores: host.cores, memory_bytes: 0.0, network_bps: 0.0 },
                    labels: [(ZONE_LABEL.to_string(), "z0".to_string()), (RACK_LABEL.to_string(), "r0".to_string())]
                        .into(),
                    state: PhysicalState::Active,
                },
            );
        }
        let mut inp = ViewInputs::default();
        for (vm, v) in self.scenario.vms.iter().enumerate() {
            topo.virtual_nodes.insert(
                self.ids[vm].clone(),
                VirtualNode {
                    id: self.ids[vm].clone(),
                    requested: Resources { cpu_cores: v.cores, memory_bytes: 0.0, network_bps: 0.0 },
                    state_size_bytes: self.state_bytes[vm],
                    group: None,
                    pinned: None,
                    anti_affinity_group: None,
                    placement: Some(self.host_ids[placement[vm]].clone()),
                },
            );
            inp.usage.virtual_nodes.insert(
                v.id.clone(),
                PartialResources { cpu_cores: Some(demand.cores[vm][t]), memory_bytes: None, network_bps: None },
            );
        }
        inp.in_flight = leaving
            .iter()
            .map(|&(vm, from, until)| InFlight {
                virt: self.scenario.vms[vm].id.clone(),
                from: hosts[from].id.clone(),
                to: None,
                remaining_steps: until - t,
            })
            .collect();
        (topo, inp)
    }

    /// Adds every VM's CPU forecast at origin `t` over the controller's
    /// horizon, from `source`.
    pub(crate) fn add_forecasts(&self, inp: &mut ViewInputs, t: usize, source: ForecastSource) {
        let h_steps = self.params.controller.horizon_steps;
        let steps = self.demand.steps();
        inp.horizon = h_steps;
        inp.spread_correlation = self.params.controller.spread_correlation;
        for (vm, v) in self.scenario.vms.iter().enumerate() {
            let f = match source {
                ForecastSource::TrueFuture => {
                    let future: Vec<f64> =
                        (1..=h_steps).map(|k| self.demand.cores[vm][(t + k).min(steps - 1)]).collect();
                    Some(CpuForecast { mean: future.clone(), upper: future })
                }
                ForecastSource::Model(fc) => fc.and_then(|f| forecast_at(f, vm, t, h_steps, v.cores)),
            };
            if let Some(f) = f {
                inp.forecasts.insert(v.id.clone(), f);
            }
        }
    }
}

fn vm_of(view: &ClusterView, vi: usize, scenario: &Scenario) -> usize {
    let id = view.virt[vi].id.as_str();
    scenario.vms.iter().position(|v| v.id == id).expect("the view holds the scenario's VMs")
}

/// The model's forecast of `vm` at origin `t`, clamped to its cores.
fn forecast_at(f: &Forecasts, vm: usize, t: usize, h: usize, cores: f64) -> Option<CpuForecast> {
    if h > f.horizon {
        return None;
    }
    let base = t * f.horizon;
    let m = f.mean[vm].get(base..base + h)?;
    let u = f.upper[vm].get(base..base + h)?;
    if m.iter().chain(u).any(|x| x.is_nan()) {
        return None;
    }
    Some(CpuForecast {
        mean: m.iter().map(|&x| (x as f64).clamp(0.0, cores)).collect(),
        upper: u.iter().map(|&x| (x as f64).clamp(0.0, cores)).collect(),
    })
}

/// For each predictive move, the first later step in its horizon at which
/// the source would have been overloaded with the VM still on it but was
/// not: (count, lead times in minutes).
#[allow(clippy::needless_range_loop)] // `u` is a step in virtual time
fn lead_times(
    moves: &[MoveRecord],
    util: &[Vec<f64>],
    demand: &Demand,
    cap: &[f64],
    thr: f64,
    horizon: usize,
) -> (u64, Vec<f64>) {
    let steps = demand.steps();
    let step_min = demand.step_ms as f64 / 60_000.0;
    let mut leads = Vec::new();
    for m in moves.iter().filter(|m| m.predictive) {
        for u in (m.step + 1 + m.steps)..=(m.step + horizon).min(steps - 1) {
            let actual = util[m.from][u];
            if actual <= thr && actual + demand.cores[m.vm][u] / cap[m.from] > thr {
                leads.push((u - m.step) as f64 * step_min);
                break;
            }
        }
    }
    (leads.len() as u64, leads)
}

/// The overloaded host-intervals each move avoided with the others in
/// place, summed (see [`PolicyResult::marginal_overloads_avoided`]): for each move, from the step after
/// its decision until the step its VM's next move is decided at (or the
/// last step), its source and target with the VM put back. While the
/// source still carries the VM (the migration's steps) only the target's
/// extra load is the move's doing.
#[allow(clippy::needless_range_loop)] // `u` is a step in virtual time
fn marginal_overloads_avoided(moves: &[MoveRecord], util: &[Vec<f64>], demand: &Demand, cap: &[f64], thr: f64) -> i64 {
    let last = demand.steps().saturating_sub(1);
    // In utilisation, as the replay counts overloads and `lead_times` puts
    // a VM back: what the hosts had is read as counted.
    let over = |u: f64| i64::from(u > thr);
    let mut total = 0i64;
    for (i, m) in moves.iter().enumerate() {
        let end = moves[i + 1..].iter().find(|n| n.vm == m.vm).map_or(last, |n| n.step);
        for u in m.step + 1..=end {
            let x = demand.cores[m.vm][u];
            let (from, to) = (util[m.from][u], util[m.to][u]);
            let in_flight = u <= m.step + m.steps;
            let kept_from = if in_flight { from } else { from + x / cap[m.from] };
            total += over(kept_from) + over(to - x / cap[m.to]) - over(from) - over(to);
        }
    }
    total
}

fn median(x: &[f64]) -> Option<f64> {
    if x.is_empty() {
        return None;
    }
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scenario::{Host, Vm};

    /// Two hosts of 10 cores and the VMs `(id, cores, host)`.
    pub(crate) fn scenario(vms: &[(&str, f64, &str)]) -> Scenario {
        Scenario {
            format: String::new(),
            seed: None,
            overcommit: None,
            rule: String::new(),
            hosts: vec![Host { id: "h0".into(), cores: 10.0 }, Host { id: "h1".into(), cores: 10.0 }],
            vms: vms.iter().map(|(i, c, h)| Vm { id: i.to_string(), cores: *c, host: h.to_string() }).collect(),
        }
    }

    #[test]
    fn none_counts_overloads_and_oracle_moves_ahead() {
        // a and b share h0; b spikes to 100% at steps 6..10: h0 = 2 + 8 = 10 cores > 9.
        let s = scenario(&[("a", 4.0, "h0"), ("b", 8.0, "h0"), ("c", 2.0, "h1")]);
        let mut cores = vec![vec![2.0; 20], vec![1.0; 20], vec![1.0; 20]];
        cores[1][6..10].fill(8.0);
        let d = Demand { start_ms: 0, step_ms: 300_000, cores };
        let p = Params::default();
        let none = simulate(&s, &d, Policy::None, &p, None, &mut |_| {}).0;
        assert_eq!(none.overload_intervals, 4);
        assert_eq!(none.overload_minutes, 20.0);
        assert_eq!(none.migrations, 0);
        // Reactive sees the spike only once it happened: it loses the first
        // step and, while the move is in flight, the second.
        let reactive = simulate(&s, &d, Policy::Reactive, &p, None, &mut |_| {}).0;
        assert_eq!(reactive.overload_intervals, 2, "{reactive:?}");
        assert!(reactive.migrations >= 1);
        // The oracle moves before the spike.
        let oracle = simulate(&s, &d, Policy::Oracle, &p, None, &mut |_| {}).0;
        assert_eq!(oracle.overload_intervals, 0, "{oracle:?}");
        assert!(oracle.predictive_migrations >= 1 && oracle.prevented_overloads >= 1);
        assert!(oracle.lead_time_minutes_median.unwrap() >= 10.0);
        // State moved is the moved VMs' memory: whole multiples of a core's worth.
        let per_core = p.memory_per_core.round();
        assert!(oracle.bytes_moved >= 4.0 * per_core && (oracle.bytes_moved / per_core).fract() < 1e-9);
        // One move and nothing else moving: what it avoided is exactly the
        // difference from leaving everything where it was.
        for r in [&reactive, &oracle] {
            assert_eq!(r.migrations, 1, "{r:?}");
            assert_eq!(
                r.marginal_overloads_avoided,
                none.overload_intervals as i64 - r.overload_intervals as i64,
                "{r:?}"
            );
            assert_eq!(r.marginal_overloads_avoided_per_migration, Some(r.marginal_overloads_avoided as f64));
        }
        assert_eq!((none.marginal_overloads_avoided, none.marginal_overloads_avoided_per_migration), (0, None));
    }

    #[test]
    fn a_move_is_credited_what_it_relieved_and_charged_what_it_caused() {
        // Hosts of 10 cores (over above 9). VM 0 (2 cores throughout) is
        // decided off h0 at step 0 and is on both hosts at step 1.
        // Without it, h0 carries 8 at steps 1-2 and h1 8 at steps 3-4.
        let d = Demand { start_ms: 0, step_ms: 300_000, cores: vec![vec![2.0; 6]] };
        let cap = [10.0, 10.0];
        let h0 = [2.0, 10.0, 8.0, 0.0, 0.0, 0.0];
        let h1 = [0.0, 2.0, 2.0, 10.0, 10.0, 2.0];
        let util = vec![h0.map(|l| l / 10.0).to_vec(), h1.map(|l| l / 10.0).to_vec()];
        let away = MoveRecord { step: 0, vm: 0, from: 0, to: 1, steps: 1, predictive: false };
        // Step 1 (in flight) changes nothing; step 2 relieves h0 (+1);
        // steps 3 and 4 overload h1 (-1 each).
        assert_eq!(marginal_overloads_avoided(&[away], &util, &d, &cap, 0.9), -1);
        // Moved back when decided at step 3: the first move answers for
        // steps 1-3 only (+1 - 1), the second for 4-5 (in flight at 4, so
        // h1 keeps its overload; nothing at 5).
        let back = MoveRecord { step: 3, vm: 0, from: 1, to: 0, steps: 1, predictive: false };
        assert_eq!(marginal_overloads_avoided(&[away, back], &util, &d, &cap, 0.9), 0);
    }
}
