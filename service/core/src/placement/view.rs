//! The cluster as the placement math sees it: a detached, index-based copy of
//! the topology with observed load, CPU forecasts, performance history, data
//! locations and migrations in flight. Built once per round; pure.
//!
//! Forecasts are per virtual node, in cores, for steps `1..=horizon` after
//! now: a point (`mean`) and an upper interval bound (`upper`). A physical
//! node's forecast is the sum of its virtual nodes' means plus the square
//! root of the sum of their squared spreads (`upper - mean`): independent
//! errors add in quadrature, so the node's bound is not the (much too
//! pessimistic) sum of every member's worst case. A virtual node without a
//! forecast contributes its current demand, flat, with no spread.

use std::collections::{BTreeMap, HashMap};

use crate::domain::{NodeId, PhysicalState, Resources, Topology};
use crate::locality::{Place, Places, RACK_LABEL, ZONE_LABEL};

/// A CPU forecast in cores for steps `1..=horizon` after now.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuForecast {
    /// Point forecast per step.
    pub mean: Vec<f64>,
    /// Upper interval bound per step (>= mean).
    pub upper: Vec<f64>,
}

impl CpuForecast {
    /// A flat forecast with no spread (what "no model" means).
    pub fn flat(cores: f64, horizon: usize) -> CpuForecast {
        CpuForecast { mean: vec![cores; horizon], upper: vec![cores; horizon] }
    }

    fn spread(&self, h: usize) -> f64 {
        (self.upper[h] - self.mean[h]).max(0.0)
    }
}

/// Where a piece of data lives, resolved against the topology's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataPlace {
    /// Zone id (index into [`ClusterView::zones`]).
    pub zone: Option<u32>,
    /// Rack id (unique across zones).
    pub rack: Option<u32>,
    /// The physical node holding it.
    pub node: Option<usize>,
}

pub use crate::locality::Distance;

/// A physical node as the placement math sees it.
#[derive(Debug, Clone)]
pub struct PhysView {
    /// Id.
    pub id: NodeId,
    /// Capacity.
    pub capacity: Resources,
    /// Lifecycle state.
    pub state: PhysicalState,
    /// Load now, including every virtual node placed on it and migrations
    /// still leaving it.
    pub load: Resources,
    /// Anti-affinity groups present, with member counts.
    pub groups: HashMap<String, u32>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Zone id, from the `zone` label.
    pub zone: Option<u32>,
    /// Rack id, from the `zone` and `rack` labels.
    pub rack: Option<u32>,
    /// Sum of forecast means per step (placed virtual nodes only).
    pub fc_mean: Vec<f64>,
    /// Sum of squared forecast spreads (`upper - mean`) per step.
    pub fc_s2: Vec<f64>,
    /// Sum of forecast spreads per step.
    pub fc_s1: Vec<f64>,
    /// Assumed correlation of the members' forecast errors (see [`ViewInputs::spread_correlation`]).
    pub rho: f64,
    /// Load per step that is not a placed virtual node's: unattributed
    /// overhead plus migrations still leaving the node.
    pub fc_extra: Vec<f64>,
    /// Historical-performance prior for virtual nodes never seen here.
    pub history_prior: f64,
    /// Migrations in flight that touch this node (either end).
    pub in_flight: u32,
}

impl PhysView {
    /// Forecast CPU (upper bound) at step `h` (0-based) with a virtual node
    /// of forecast `(mean, spread)` joining (`sign` 1), leaving (-1) or
    /// neither (0). The members' spreads combine as
    /// `sqrt((1 - rho) * sum(s^2) + rho * sum(s)^2)`: in quadrature when
    /// independent (rho = 0), added up when perfectly correlated (rho = 1).
    #[inline]
    pub fn fc_upper_at(&self, h: usize, sign: f64, mean: f64, spread: f64) -> f64 {
        let s2 = (self.fc_s2[h] + sign * spread * spread).max(0.0);
        let s1 = (self.fc_s1[h] + sign * spread).max(0.0);
        self.fc_mean[h] + sign * mean + self.fc_extra[h] + ((1.0 - self.rho) * s2 + self.rho * s1 * s1).sqrt()
    }

    /// Highest forecast utilisation over the horizon and the (0-based) step
    /// it happens at, with virtual node `v` joining (`sign` 1), leaving (-1)
    /// or neither (0). `None` without a horizon.
    pub fn fc_peak(&self, v: Option<&VirtView>, sign: f64) -> Option<(f64, usize)> {
        let mut best: Option<(f64, usize)> = None;
        for h in 0..self.fc_mean.len() {
            let (m, sp) = v.map(|v| v.fc_at(h)).unwrap_or((0.0, 0.0));
            let u = self.fc_upper_at(h, sign, m, sp) / self.capacity.cpu_cores;
            if best.is_none_or(|(b, _)| u > b) {
                best = Some((u, h));
            }
        }
        best
    }

    /// Utilisation now.
    pub fn cpu_util(&self) -> f64 {
        self.load.cpu_cores / self.capacity.cpu_cores
    }
}

/// A virtual node as the placement math sees it.
#[derive(Debug, Clone)]
pub struct VirtView {
    /// Id.
    pub id: NodeId,
    /// What it uses now (observed where known, else requested).
    pub demand: Resources,
    /// Index into [`ClusterView::phys`] of where it runs.
    pub placement: Option<usize>,
    /// Pinned node id.
    pub pinned: Option<NodeId>,
    /// Anti-affinity group.
    pub anti_affinity_group: Option<String>,
    /// Bytes a move transfers.
    pub state_size_bytes: u64,
    /// CPU forecast (cores), when a model could make one.
    pub forecast: Option<CpuForecast>,
    /// Observed performance in [0, 1] on physical nodes it has run on
    /// (physical index, value), decayed; unsorted, short.
    pub history: Vec<(usize, f64)>,
    /// Data it reads: where, and at what rate (bytes/s).
    pub data: Vec<(DataPlace, f64)>,
    /// A migration of it is in flight.
    pub migrating: bool,
}

impl VirtView {
    /// (mean, spread) of its forecast at step `h`; its current demand with
    /// no spread when it has none.
    #[inline]
    pub fn fc_at(&self, h: usize) -> (f64, f64) {
        match &self.forecast {
            Some(f) => (f.mean[h], f.spread(h)),
            None => (self.demand.cpu_cores, 0.0),
        }
    }

    /// Its highest forecast upper bound over the horizon, cores (at least
    /// its current demand): the room a target must have.
    pub fn peak_demand(&self) -> f64 {
        let f = self.forecast.as_ref().map(|f| f.upper.iter().copied().fold(0.0, f64::max)).unwrap_or(0.0);
        f.max(self.demand.cpu_cores)
    }
}

/// A migration still running: `virt` has been placed on its target, but
/// still loads `from` now and for `remaining_steps` more steps. With 0 it
/// ends with the current step: it loads the source now but no longer
/// counts as in flight.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// Virtual node id.
    pub virt: String,
    /// Source physical node id.
    pub from: String,
    /// Target physical node id, when the topology still places the virtual
    /// node on `from` (a migration not yet committed): the view places it
    /// here, which reserves the target's room.
    pub to: Option<String>,
    /// Steps after now the source still carries it.
    pub remaining_steps: usize,
}

/// Observed usage from metrics: mean over the controller's window.
#[derive(Debug, Clone, Default)]
pub struct ObservedUsage {
    /// Per physical node (only metrics that were reported are set).
    pub physical: HashMap<String, PartialResources>,
    /// Per virtual node.
    pub virtual_nodes: HashMap<String, PartialResources>,
}

/// Resources where each dimension may be unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PartialResources {
    /// Cores.
    pub cpu_cores: Option<f64>,
    /// Bytes.
    pub memory_bytes: Option<f64>,
    /// Bytes/s (rx + tx).
    pub network_bps: Option<f64>,
}

/// Everything besides the topology that goes into a view.
#[derive(Debug, Clone, Default)]
pub struct ViewInputs {
    /// Observed usage.
    pub usage: ObservedUsage,
    /// Steps of forecast the controller looks ahead (0: no forecasting).
    pub horizon: usize,
    /// CPU forecasts per virtual node id (cores), `horizon` steps each.
    pub forecasts: HashMap<String, CpuForecast>,
    /// Performance in [0, 1] per (virtual id, physical id).
    pub history: HashMap<(String, String), f64>,
    /// Data read per virtual node id: (location, bytes/s). A location is a
    /// physical node id, `zone/rack` or `zone`.
    pub data_access: HashMap<String, Vec<(String, f64)>>,
    /// Migrations in flight.
    pub in_flight: Vec<InFlight>,
    /// Assumed correlation (0..=1) of forecast errors of virtual nodes on
    /// one physical node, used to combine their upper bounds (0: they add
    /// in quadrature, 1: they add up). Co-located workloads peak together
    /// more often than independence suggests.
    pub spread_correlation: f64,
}

/// Everything the placement math needs, detached from storage.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Non-removed physical nodes, by id.
    pub phys: Vec<PhysView>,
    /// Virtual nodes, by id.
    pub virt: Vec<VirtView>,
    /// Index of a physical id in `phys`.
    pub phys_index: HashMap<NodeId, usize>,
    /// Zone names by id.
    pub zones: Vec<String>,
    /// Forecast steps (0: forecasting off).
    pub horizon: usize,
}

/// Neutral historical performance when nothing is known.
pub const NEUTRAL_HISTORY: f64 = 0.5;

impl ClusterView {
    /// A view from the topology alone with observed usage (no forecasts,
    /// history, data or migrations).
    pub fn build(topo: &Topology, usage: &ObservedUsage) -> ClusterView {
        ClusterView::build_with(topo, &ViewInputs { usage: usage.clone(), ..ViewInputs::default() })
    }

    /// Builds the view. A virtual node's demand is its observed usage where
    /// reported, else its request; a physical node's load is its own observed
    /// usage where reported (it includes overhead Swarm cannot attribute),
    /// else the sum of its virtual nodes' demand and migrations leaving it.
    pub fn build_with(topo: &Topology, inp: &ViewInputs) -> ClusterView {
        let h = inp.horizon;
        let mut places = Places::default();
        let mut phys: Vec<PhysView> = Vec::new();
        for p in topo.physical.values().filter(|p| p.state != PhysicalState::Removed) {
            let Place { zone, rack } = places.intern(&p.labels);
            phys.push(PhysView {
                id: p.id.clone(),
                capacity: p.capacity,
                state: p.state,
                load: Resources::default(),
                groups: HashMap::new(),
                labels: p.labels.clone(),
                zone,
                rack,
                fc_mean: vec![0.0; h],
                fc_s2: vec![0.0; h],
                fc_s1: vec![0.0; h],
                rho: inp.spread_correlation.clamp(0.0, 1.0),
                fc_extra: vec![0.0; h],
                history_prior: NEUTRAL_HISTORY,
                in_flight: 0,
            });
        }
        let phys_index: HashMap<NodeId, usize> = phys.iter().enumerate().map(|(i, p)| (p.id.clone(), i)).collect();
        let resolve = |loc: &str| -> DataPlace {
            if let Some(&n) = phys_index.get(loc) {
                return DataPlace { zone: phys[n].zone, rack: phys[n].rack, node: Some(n) };
            }
            let (z, r) = match loc.split_once('/') {
                Some((z, r)) => (z, Some(r)),
                None => (loc, None),
            };
            let Place { zone, rack } = places.lookup(z, r);
            DataPlace { zone, rack, node: None }
        };
        let mut history_by_virt: HashMap<&str, Vec<(usize, f64)>> = HashMap::new();
        for ((v, p), &x) in &inp.history {
            if let Some(&pi) = phys_index.get(p.as_str())
                && x.is_finite()
            {
                history_by_virt.entry(v.as_str()).or_default().push((pi, x.clamp(0.0, 1.0)));
            }
        }
        history_by_virt.values_mut().for_each(|h| h.sort_by_key(|x| x.0));
        let migrating: HashMap<&str, &InFlight> =
            inp.in_flight.iter().filter(|m| m.remaining_steps > 0).map(|m| (m.virt.as_str(), m)).collect();
        let mut virt = Vec::with_capacity(topo.virtual_nodes.len());
        for v in topo.virtual_nodes.values() {
            let obs = inp.usage.virtual_nodes.get(v.id.as_str()).copied().unwrap_or_default();
            let demand = Resources {
                cpu_cores: obs.cpu_cores.unwrap_or(v.requested.cpu_cores),
                memory_bytes: obs.memory_bytes.unwrap_or(v.requested.memory_bytes),
                network_bps: obs.network_bps.unwrap_or(v.requested.network_bps),
            };
            let placement = match migrating.get(v.id.as_str()).and_then(|m| m.to.as_deref()) {
                Some(to) => phys_index.get(to).copied(),
                None => v.placement.as_ref().and_then(|p| phys_index.get(p).copied()),
            };
            let forecast =
                inp.forecasts.get(v.id.as_str()).filter(|f| f.mean.len() == h && f.upper.len() == h).cloned();
            let history = history_by_virt.remove(v.id.as_str()).unwrap_or_default();
            let data = inp
                .data_access
                .get(v.id.as_str())
                .map(|d| d.iter().filter(|(_, r)| *r > 0.0).map(|(l, r)| (resolve(l), *r)).collect())
                .unwrap_or_default();
            virt.push(VirtView {
                id: v.id.clone(),
                demand,
                placement,
                pinned: v.pinned.clone(),
                anti_affinity_group: v.anti_affinity_group.clone(),
                state_size_bytes: v.state_size_bytes,
                forecast,
                history,
                data,
                migrating: migrating.contains_key(v.id.as_str()),
            });
        }
        for v in &virt {
            let Some(i) = v.placement else { continue };
            let p = &mut phys[i];
            p.load = p.load.plus(v.demand);
            if let Some(g) = &v.anti_affinity_group {
                *p.groups.entry(g.clone()).or_default() += 1;
            }
            for k in 0..h {
                let (m, sp) = v.fc_at(k);
                p.fc_mean[k] += m;
                p.fc_s2[k] += sp * sp;
                p.fc_s1[k] += sp;
            }
        }
        // Migrations still leaving a node load it now and for their remaining steps.
        let vindex: HashMap<&str, usize> = virt.iter().enumerate().map(|(i, v)| (v.id.as_str(), i)).collect();
        for m in &inp.in_flight {
            let (Some(&vi), Some(&from)) = (vindex.get(m.virt.as_str()), phys_index.get(m.from.as_str())) else {
                continue;
            };
            let v = &virt[vi];
            if v.placement == Some(from) {
                continue;
            }
            let p = &mut phys[from];
            p.load = p.load.plus(v.demand);
            for k in 0..h.min(m.remaining_steps) {
                p.fc_extra[k] += v.fc_at(k).0;
            }
            if m.remaining_steps > 0 {
                p.in_flight += 1;
                if let Some(to) = v.placement {
                    phys[to].in_flight += 1;
                }
            }
        }
        for p in &mut phys {
            if let Some(obs) = inp.usage.physical.get(p.id.as_str()) {
                if let Some(c) = obs.cpu_cores {
                    // What the node reports beyond its virtual nodes is overhead that persists.
                    let overhead = (c - p.load.cpu_cores).max(0.0);
                    p.fc_extra.iter_mut().for_each(|x| *x += overhead);
                    p.load.cpu_cores = c;
                }
                if let Some(m) = obs.memory_bytes {
                    p.load.memory_bytes = m;
                }
                if let Some(n) = obs.network_bps {
                    p.load.network_bps = n;
                }
            }
        }
        // History prior: the mean performance observed on nodes of the same
        // hardware (same labels other than placement ones), else neutral.
        let class_of = |p: &PhysView| -> Vec<(String, String)> {
            p.labels
                .iter()
                .filter(|(k, _)| *k != ZONE_LABEL && *k != RACK_LABEL)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let mut by_class: HashMap<Vec<(String, String)>, (f64, f64)> = HashMap::new();
        for v in &virt {
            for &(pi, x) in &v.history {
                let e = by_class.entry(class_of(&phys[pi])).or_default();
                e.0 += x;
                e.1 += 1.0;
            }
        }
        if !by_class.is_empty() {
            for p in &mut phys {
                if let Some((s, n)) = by_class.get(&class_of(p)) {
                    p.history_prior = s / n;
                }
            }
        }
        ClusterView { phys, virt, phys_index, zones: places.into_zones(), horizon: h }
    }

    /// Distance between a physical node and a data place.
    pub fn distance(&self, p: usize, d: &DataPlace) -> Distance {
        let n = &self.phys[p];
        if d.node == Some(p) {
            Distance::SameNode
        } else {
            Place { zone: n.zone, rack: n.rack }.distance_to(Place { zone: d.zone, rack: d.rack })
        }
    }

    /// Distance between two physical nodes.
    pub fn node_distance(&self, a: usize, b: usize) -> Distance {
        let n = &self.phys[b];
        self.distance(a, &DataPlace { zone: n.zone, rack: n.rack, node: Some(b) })
    }

    /// Moves virtual node `vi` to `to` in the view (updates loads, forecasts
    /// and groups), as the round does for the moves it has taken.
    pub fn apply_move(&mut self, vi: usize, to: usize) {
        let v = self.virt[vi].clone();
        let h = self.horizon;
        if let Some(from) = v.placement {
            let p = &mut self.phys[from];
            p.load = p.load.minus(v.demand);
            for k in 0..h {
                let (m, sp) = v.fc_at(k);
                p.fc_mean[k] = (p.fc_mean[k] - m).max(0.0);
                p.fc_s2[k] = (p.fc_s2[k] - sp * sp).max(0.0);
                p.fc_s1[k] = (p.fc_s1[k] - sp).max(0.0);
            }
            if let Some(g) = &v.anti_affinity_group
                && let Some(c) = p.groups.get_mut(g)
            {
                *c = c.saturating_sub(1);
            }
            p.in_flight += 1;
        }
        let p = &mut self.phys[to];
        p.load = p.load.plus(v.demand);
        for k in 0..h {
            let (m, sp) = v.fc_at(k);
            p.fc_mean[k] += m;
            p.fc_s2[k] += sp * sp;
            p.fc_s1[k] += sp;
        }
        if let Some(g) = &v.anti_affinity_group {
            *p.groups.entry(g.clone()).or_default() += 1;
        }
        p.in_flight += 1;
        self.virt[vi].placement = Some(to);
        self.virt[vi].migrating = true;
    }
}
