//! The reactive baseline the replay compares Swarm against: a rebalancer in
//! the manner of the Kubernetes descheduler's `LowNodeUtilization`, acting
//! only on load observed now.
//!
//! Rules (the ones the reference simulator in `shared/reference` describes):
//! nodes above `high` are sources, highest first; at most `max_moves` per
//! run; a virtual node moves at most once per run and not again within the
//! cooldown; a destination must stay below `low` with the virtual node added,
//! least loaded first; the virtual node chosen is the smallest whose move
//! alone brings the source to `high` or below, else the one that lowers it
//! most.

use serde::{Deserialize, Serialize};

use super::controller::RoundInput;
use super::view::{ClusterView, VirtView};
use crate::domain::PhysicalState;

/// Thresholds of the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LowNodeUtilization {
    /// Nodes above this utilisation are sources.
    pub high: f64,
    /// Destinations must stay below this with the moved node.
    pub low: f64,
    /// Moves per run.
    pub max_moves: usize,
    /// A moved virtual node stays put this long, ms.
    pub cooldown_ms: i64,
}

impl Default for LowNodeUtilization {
    fn default() -> Self {
        LowNodeUtilization { high: 0.9, low: 0.7, max_moves: 5, cooldown_ms: crate::duration::HOUR_MS }
    }
}

/// Whether a rebalancing rule may move `v` now: not pinned, no migration
/// in flight, and not decided within `cooldown_ms` (the anti-flapping
/// rules the reactive baseline and the risk-aware rule share).
pub(crate) fn may_move(v: &VirtView, input: &RoundInput<'_>, cooldown_ms: i64) -> bool {
    !v.migrating && v.pinned.is_none() && input.last_decided.get(&v.id).is_none_or(|t| input.now_ms - t >= cooldown_ms)
}

/// A baseline move: (virtual index, from, to).
pub type Move = (usize, usize, usize);

/// One run of the baseline.
pub fn deschedule(view: &ClusterView, input: RoundInput<'_>, cfg: &LowNodeUtilization) -> Vec<Move> {
    let n = view.phys.len();
    let mut load: Vec<f64> = view.phys.iter().map(|p| p.load.cpu_cores).collect();
    let cap: Vec<f64> = view.phys.iter().map(|p| p.capacity.cpu_cores).collect();
    let mut on: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (vi, v) in view.virt.iter().enumerate() {
        if let Some(p) = v.placement {
            on[p].push(vi);
        }
    }
    let mut sources: Vec<usize> = (0..n).filter(|&p| load[p] / cap[p] > cfg.high).collect();
    sources.sort_by(|&a, &b| (load[b] / cap[b]).total_cmp(&(load[a] / cap[a])).then(a.cmp(&b)));
    let mut moved = vec![false; view.virt.len()];
    let mut out = Vec::new();
    for s in sources {
        while load[s] / cap[s] > cfg.high && out.len() < cfg.max_moves {
            let dest = (0..n)
                .filter(|&d| d != s && view.phys[d].state == PhysicalState::Active)
                .min_by(|&a, &b| (load[a] / cap[a]).total_cmp(&(load[b] / cap[b])).then(a.cmp(&b)));
            let Some(d) = dest else { break };
            let mut fix: Option<(f64, usize)> = None;
            let mut most: Option<(f64, usize)> = None;
            for &vi in &on[s] {
                let v = &view.virt[vi];
                if moved[vi] || !may_move(v, &input, cfg.cooldown_ms) {
                    continue;
                }
                let c = v.demand.cpu_cores;
                if (load[d] + c) / cap[d] >= cfg.low {
                    continue;
                }
                if (load[s] - c) / cap[s] <= cfg.high {
                    if fix.is_none_or(|(fc, fi)| c < fc || (c == fc && vi < fi)) {
                        fix = Some((c, vi));
                    }
                } else if most.is_none_or(|(mc, mi)| c > mc || (c == mc && vi < mi)) {
                    most = Some((c, vi));
                }
            }
            let Some((c, vi)) = fix.or(most) else { break };
            moved[vi] = true;
            load[s] -= c;
            load[d] += c;
            on[s].retain(|&x| x != vi);
            out.push((vi, s, d));
        }
    }
    out
}
