//! The IO around the pure planner ([`swarm_core::reconfig`]): a configuration
//! change is validated and applied to a copy of the topology, turned into a
//! planning problem, planned (a dry run kept for a while), and on Apply
//! written in one transaction (topology, group policies, the applied plan);
//! a runner then releases the plan's moves as migrations — each with a
//! decision of kind RECONFIGURATION, so orchestrators see it on
//! WatchDecisions — never more than the plan's concurrency at once, and
//! removes the nodes to remove once they are empty.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{ApiError, Meta, Swarm, Write, blocking, migrations::release};
use crate::store::TopologyChange;
use crate::validate::{self, FieldError};
use swarm_core::decision::{Decision, DecisionKind};
use swarm_core::domain::{NodeId, PhysicalNode, PhysicalState, Topology, VirtualNode};
use swarm_core::locality::{self, Distance};
use swarm_core::migration::book::Book;
use swarm_core::migration::machine::Phase;
use swarm_core::placement::cost::CostModel;
use swarm_core::reconfig::record::{GroupPolicy, Origin, PlannedMove, ReconfigState, Reconfiguration};
use swarm_core::reconfig::{self as planner, Domain, Item, Node, Objective, Problem, Rule};

/// How long a plan can be applied.
const PLAN_TTL_MS: i64 = 15 * 60_000;
/// Moves in flight at once when Apply does not say.
pub const DEFAULT_CONCURRENCY: u32 = 8;
/// Share over the fair load a node may keep when rebalancing.
const REBALANCE_SLACK: f64 = 0.05;

/// A plan made and not applied yet.
#[derive(Debug, Clone)]
pub struct StoredPlan {
    version: u64,
    expires_ms: i64,
    change: Resolved,
    moves: Vec<PlannedMove>,
    placements: Vec<(String, String)>,
}

/// A validated configuration change applied to a copy of the topology.
#[derive(Debug, Clone)]
struct Resolved {
    after: Topology,
    /// What Apply writes before any move (nodes, drains, virtual nodes).
    changes: Vec<TopologyChange>,
    removals: Vec<String>,
    groups_after: BTreeMap<String, GroupPolicy>,
    group_changes: Vec<(String, Option<GroupPolicy>)>,
    rebalance: bool,
}

fn distance(a: &PhysicalNode, b: &PhysicalNode) -> Distance {
    locality::between((a.id.as_str(), &a.labels), (b.id.as_str(), &b.labels))
}

/// Seconds to carry out `moves` on `lanes` parallel lanes (longest first,
/// each on the lane that frees up first).
fn makespan(mut seconds: Vec<f64>, lanes: usize) -> f64 {
    seconds.sort_by(|a, b| b.total_cmp(a));
    let mut lane = vec![0.0f64; lanes.max(1)];
    for s in seconds {
        let i = (0..lane.len()).min_by(|&a, &b| lane[a].total_cmp(&lane[b])).expect("at least one lane");
        lane[i] += s;
    }
    lane.into_iter().fold(0.0, f64::max)
}

/// A plan made (and kept for Apply).
#[derive(Debug, Clone)]
pub struct PlanSummary {
    /// Id to apply it by.
    pub plan_id: String,
    /// Moves of running virtual nodes, in release order.
    pub moves: Vec<PlannedMove>,
    /// New virtual nodes and where they go: (virtual, physical).
    pub placements: Vec<(String, String)>,
    /// Bytes the moves transfer.
    pub total_bytes: u64,
    /// Estimated seconds at the default concurrency.
    pub estimated_seconds: f64,
    /// Proven lower bound of the objective (moves, or bytes).
    pub lower_bound: u64,
    /// The plan meets the bound.
    pub optimal: bool,
    /// The planner that made it.
    pub method: String,
    /// What was minimised.
    pub objective: Objective,
    /// When the plan is forgotten, ms.
    pub expires_at_ms: i64,
}

/// Where an applied plan is.
#[derive(Debug, Clone)]
pub struct ReconfigProgress {
    /// The plan as applied.
    pub reconfiguration: Reconfiguration,
    /// Per move (same order): its migration's id and phase, once released.
    pub migrations: Vec<Option<(String, Phase)>>,
    /// Nodes still to remove.
    pub removals_pending: Vec<String>,
}

/// A configuration change as the state applies it: ids and nodes already
/// validated at the edge (`validate::configuration_change`), checked against
/// the topology here.
#[derive(Debug, Clone, Default)]
pub struct ConfigChange {
    /// Physical nodes to add or update.
    pub upsert_physical: Vec<PhysicalNode>,
    /// Physical nodes to drain (they stay, emptied).
    pub drain: Vec<NodeId>,
    /// Physical nodes to empty and remove.
    pub remove: Vec<NodeId>,
    /// Virtual nodes to remove.
    pub remove_virtual: Vec<NodeId>,
    /// Virtual nodes to add or update (placements unset: kept or planned).
    pub upsert_virtual: Vec<VirtualNode>,
    /// Group spreading rules to set (`None` removes the group's rule).
    pub groups: Vec<(String, Option<GroupPolicy>)>,
    /// Also rebalance load across the accepting nodes.
    pub rebalance: bool,
}

impl Swarm {
    /// Validates `change` against the current topology and applies it to a copy.
    fn resolve(meta: &Meta, change: &ConfigChange) -> Result<Resolved, ApiError> {
        let book = &meta.book;
        let mut after = (*meta.topology).clone();
        let mut changes = Vec::new();
        let mut touched: HashSet<NodeId> = HashSet::new();
        for n in &change.upsert_physical {
            touched.insert(n.id.clone());
            after.physical.insert(n.id.clone(), n.clone());
            changes.push(TopologyChange::PutPhysical(n.clone()));
        }
        let mut removals = Vec::new();
        for (list, field, remove) in
            [(&change.drain, "drain_physical_nodes", false), (&change.remove, "remove_physical_nodes", true)]
        {
            for (i, id) in list.iter().enumerate() {
                if !touched.insert(id.clone()) {
                    return Err(FieldError::new(
                        format!("change.{field}[{i}]"),
                        format!("{id} appears twice in the change"),
                    )
                    .into());
                }
                let Some(n) = after.physical.get_mut(id) else {
                    return Err(ApiError::NotFound(format!("change.{field}[{i}]: unknown physical node {id}")));
                };
                if n.state == PhysicalState::Removed {
                    return Err(ApiError::FailedPrecondition(format!("change.{field}[{i}]: {id} is already removed")));
                }
                n.state = PhysicalState::Draining;
                changes.push(TopologyChange::PutPhysical(n.clone()));
                if remove {
                    removals.push(id.to_string());
                }
            }
        }
        let mut removed_virtual = HashSet::new();
        for (i, id) in change.remove_virtual.iter().enumerate() {
            let field = format!("change.remove_virtual_nodes[{i}]");
            if after.virtual_nodes.remove(id).is_none() {
                return Err(ApiError::NotFound(format!("{field}: unknown virtual node {id}")));
            }
            if let Some(m) = book.live_of(id.as_str()).filter(|m| m.reserves_target()) {
                return Err(ApiError::FailedPrecondition(format!(
                    "{field}: {id} is being moved by migration {}; abort it first",
                    m.id
                )));
            }
            removed_virtual.insert(id.clone());
            changes.push(TopologyChange::DeleteVirtual(id.clone()));
        }
        if !change.upsert_virtual.is_empty() {
            let nodes = validate::virtual_nodes_in(change.upsert_virtual.clone(), &after)
                .map_err(|e| FieldError::new(format!("change.upsert_virtual_{}", e.field), e.reason))?;
            for n in nodes {
                if removed_virtual.contains(&n.id) {
                    return Err(
                        FieldError::new("change.upsert_virtual_nodes", format!("{} is also removed", n.id)).into()
                    );
                }
                after.virtual_nodes.insert(n.id.clone(), n.clone());
                changes.push(TopologyChange::PutVirtual(n));
            }
        }
        let mut groups_after = meta.groups.clone();
        for (name, policy) in &change.groups {
            match policy {
                Some(p) => groups_after.insert(name.clone(), *p),
                None => groups_after.remove(name),
            };
        }
        Ok(Resolved {
            after,
            changes,
            removals,
            groups_after,
            group_changes: change.groups.clone(),
            rebalance: change.rebalance,
        })
    }

    /// The planning problem for a resolved change.
    fn problem(&self, r: &Resolved, book: &Book) -> Result<(Problem, Vec<NodeId>), ApiError> {
        let overcommit = self.inner.cfg.migration.cpu_overcommit;
        let phys: Vec<&PhysicalNode> =
            r.after.physical.values().filter(|n| n.state != PhysicalState::Removed).collect();
        let index: HashMap<&str, usize> = phys.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
        let mut places = locality::Places::default();
        let mut nodes: Vec<Node> = phys
            .iter()
            .map(|n| {
                let locality::Place { zone, rack } = places.intern(&n.labels);
                Node {
                    id: n.id.to_string(),
                    cap: [n.capacity.cpu_cores * overcommit, n.capacity.memory_bytes],
                    accepts: n.state == PhysicalState::Active,
                    zone,
                    rack,
                }
            })
            .collect();
        if r.rebalance {
            let demand: f64 = r.after.virtual_nodes.values().map(|v| v.requested.cpu_cores).sum();
            let cap: f64 = nodes.iter().filter(|n| n.accepts).map(|n| n.cap[0]).sum();
            if cap > 0.0 {
                for n in nodes.iter_mut().filter(|n| n.accepts) {
                    n.cap[0] = n.cap[0].min(demand * n.cap[0] / cap * (1.0 + REBALANCE_SLACK));
                }
            }
        }
        let mut rules: Vec<Rule> = Vec::new();
        let mut rule_of: HashMap<String, usize> = HashMap::new();
        for (name, p) in &r.groups_after {
            rule_of.insert(format!("g:{name}"), rules.len());
            rules.push(Rule { name: name.clone(), domain: p.domain, max_per_domain: p.max_per_domain });
        }
        let mut items = Vec::with_capacity(r.after.virtual_nodes.len());
        for v in r.after.virtual_nodes.values() {
            let policy = v.group.as_ref().and_then(|g| rule_of.get(&format!("g:{g}")).copied());
            let rule = match (policy, &v.anti_affinity_group) {
                (Some(_), Some(a)) => {
                    return Err(ApiError::FailedPrecondition(format!(
                        "virtual node {} has both anti-affinity group {a} and group {} with a spreading policy; \
                         the planner takes one rule per virtual node (a policy of at most 1 per node covers anti-affinity)",
                        v.id,
                        v.group.as_deref().unwrap_or("")
                    )));
                }
                (Some(p), None) => Some(p),
                (None, Some(a)) => Some(*rule_of.entry(format!("a:{a}")).or_insert_with(|| {
                    rules.push(Rule { name: format!("anti-affinity {a}"), domain: Domain::Node, max_per_domain: 1 });
                    rules.len() - 1
                })),
                (None, None) => None,
            };
            // A virtual node held by an accepted migration stays at its target.
            let held = book.live_of(v.id.as_str()).filter(|m| m.reserves_target());
            let current = match held {
                Some(m) => index.get(m.to.as_str()).copied(),
                None => v.placement.as_ref().and_then(|p| index.get(p.as_str()).copied()),
            };
            items.push(Item {
                id: v.id.to_string(),
                demand: [v.requested.cpu_cores, v.requested.memory_bytes],
                bytes: v.state_size_bytes,
                current,
                rule,
                pinned: match &v.pinned {
                    Some(p) => Some(index.get(p.as_str()).copied().ok_or_else(|| {
                        ApiError::FailedPrecondition(format!("virtual node {} is pinned to removed node {p}", v.id))
                    })?),
                    None => None,
                },
                fixed: held.is_some() && current.is_some(),
            });
        }
        let ids = phys.iter().map(|n| n.id.clone()).collect();
        Ok((Problem { nodes, items, rules }, ids))
    }

    /// Plans `change` (a dry run, kept for Apply for 15 minutes).
    pub async fn plan_reconfiguration(&self, change: ConfigChange, obj: Objective) -> Result<PlanSummary, ApiError> {
        let (version, resolved, problem, ids) = {
            let meta = self.meta();
            let resolved = Self::resolve(&meta, &change)?;
            let (problem, ids) = self.problem(&resolved, &meta.book)?;
            (meta.version, resolved, problem, ids)
        };
        let problem2 = problem.clone();
        let plan = blocking(move || planner::plan(&problem2, obj))
            .await?
            .map_err(|e| ApiError::FailedPrecondition(format!("the new configuration cannot be satisfied: {e}")))?;
        let cost: CostModel = self.controller_config().cost;
        let mut moves = Vec::new();
        let mut placements = Vec::new();
        for m in &plan.moves {
            let it = &problem.items[m.item];
            let to = ids[m.to].to_string();
            match m.from {
                None => placements.push((it.id.clone(), to)),
                Some(f) => {
                    let (a, b) = (&resolved.after.physical[&ids[f]], &resolved.after.physical[&ids[m.to]]);
                    let seconds = cost.move_seconds(it.bytes, distance(a, b));
                    moves.push(PlannedMove {
                        virt: it.id.clone(),
                        from: ids[f].to_string(),
                        to,
                        bytes: it.bytes,
                        reason: m.reason.describe().to_owned(),
                        seconds,
                    });
                }
            }
        }
        let plan_id = format!("plan-{}-{}", self.now_ms(), version);
        let expires_ms = self.now_ms() + PLAN_TTL_MS;
        let response = PlanSummary {
            plan_id: plan_id.clone(),
            total_bytes: moves.iter().map(|m| m.bytes).sum(),
            estimated_seconds: makespan(moves.iter().map(|m| m.seconds).collect(), DEFAULT_CONCURRENCY as usize),
            moves: moves.clone(),
            placements: placements.clone(),
            lower_bound: match obj {
                Objective::Moves => plan.lower_bound,
                // Back from the objective's scaled KiB to bytes.
                Objective::Bytes => plan.lower_bound / (problem.items.len() as u64 + 1) * 1024,
            },
            optimal: plan.optimal,
            method: plan.method.into(),
            objective: obj,
            expires_at_ms: expires_ms,
        };
        let stored = StoredPlan { version, expires_ms, change: resolved, moves, placements };
        let mut plans = self.inner.plans.lock().expect("plans lock");
        let now = self.now_ms();
        plans.retain(|_, p| p.expires_ms > now);
        plans.insert(plan_id, stored);
        Ok(response)
    }

    /// Applies a plan: writes the change, then the runner carries its moves
    /// out as migrations. Returns the reconfiguration id.
    pub async fn apply_reconfiguration(&self, plan_id: &str, max_concurrent: u32) -> Result<String, ApiError> {
        let stored = {
            let plans = self.inner.plans.lock().expect("plans lock");
            plans.get(plan_id).cloned()
        };
        let Some(stored) = stored else {
            return Err(ApiError::NotFound(format!(
                "unknown plan {plan_id:?} (plans are kept 15 minutes); plan again"
            )));
        };
        if stored.expires_ms <= self.now_ms() {
            return Err(ApiError::NotFound(format!("plan {plan_id} expired; plan again")));
        }
        let max_concurrent = if max_concurrent == 0 { DEFAULT_CONCURRENCY } else { max_concurrent.min(10_000) };
        let (now, policy) = (self.now_ms(), self.inner.cfg.migration);
        let swarm = self.clone();
        let plan_id = plan_id.to_owned();
        let n_moves = stored.moves.len();
        let id = self
            .write(move |meta| {
                let book = &meta.book;
                if meta.version != stored.version {
                    return Err(ApiError::FailedPrecondition(format!(
                        "the cluster changed since plan {plan_id} was made; plan again"
                    )));
                }
                let mut changes = stored.change.changes.clone();
                // New virtual nodes are placed where the plan says (nothing runs yet).
                for (v, to) in &stored.placements {
                    let mut n: VirtualNode = stored.change.after.virtual_nodes[v.as_str()].clone();
                    n.placement = Some(NodeId::parse(to).map_err(ApiError::Internal)?);
                    changes.push(TopologyChange::PutVirtual(n));
                }
                // Proposed migrations of virtual nodes the plan moves are superseded.
                let mut migrations = Vec::new();
                for m in &stored.moves {
                    migrations.extend(release(book, &m.virt, "a reconfiguration moves it", now, &policy)?);
                }
                let n = meta.reconfigs.len() + 1;
                let rec = Reconfiguration {
                    id: format!("r{n}"),
                    plan_id: plan_id.clone(),
                    applied_at_ms: now,
                    moves: stored.moves.clone(),
                    max_concurrent,
                    removals: stored.change.removals.clone(),
                    state: ReconfigState::Running,
                };
                let id = rec.id.clone();
                swarm.inner.plans.lock().expect("plans lock").remove(&plan_id);
                let mut w = Write::new(changes, migrations, id);
                w.groups = stored.change.group_changes.clone();
                w.reconfigs = vec![rec];
                Ok(w)
            })
            .await?;
        self.inner.plans.lock().expect("plans lock").retain(|_, p| p.expires_ms > now);
        tracing::info!(reconfiguration = %id, moves = n_moves, "reconfiguration applied");
        // Release the first moves now rather than at the next tick.
        self.run_reconfigurations().await?;
        Ok(id)
    }

    /// Progress of an applied plan.
    pub fn reconfiguration(&self, id: &str) -> Result<ReconfigProgress, ApiError> {
        let meta = self.meta();
        let Some(rec) = meta.reconfigs.get(id).cloned() else {
            return Err(ApiError::NotFound(format!("unknown reconfiguration {id:?}")));
        };
        let released = meta.book.of_reconfiguration(&rec.id);
        let topo = &meta.topology;
        let moves = (0..rec.moves.len()).map(|i| released.get(&i).map(|m| (m.id.clone(), m.phase))).collect();
        let removals_pending = rec
            .removals
            .iter()
            .filter(|n| topo.physical.get(n.as_str()).is_some_and(|p| p.state != PhysicalState::Removed))
            .cloned()
            .collect();
        Ok(ReconfigProgress { reconfiguration: rec, migrations: moves, removals_pending })
    }

    /// One step of every running reconfiguration: release moves up to the
    /// concurrency limit, and finish those whose moves have all ended.
    pub async fn run_reconfigurations(&self) -> Result<(), ApiError> {
        let _step = self.inner.reconfig_step.lock().await;
        let running: Vec<Reconfiguration> =
            self.meta().reconfigs.values().filter(|r| r.state == ReconfigState::Running).cloned().collect();
        for rec in running {
            let (release_now, all_ended, failed) = {
                let meta = self.meta();
                let released = meta.book.of_reconfiguration(&rec.id);
                let live = released.values().filter(|m| m.is_live()).count();
                let failed = released.values().filter(|m| m.phase.is_terminal() && m.phase != Phase::Completed).count();
                let mut room = (rec.max_concurrent as usize).saturating_sub(live);
                let topo = &meta.topology;
                let mut release_now = Vec::new();
                let mut waiting = false;
                for (i, m) in rec.moves.iter().enumerate() {
                    if room == 0 {
                        waiting = true;
                        break;
                    }
                    if released.contains_key(&i) {
                        continue;
                    }
                    // Wait while another migration of it runs.
                    if meta.book.live_of(&m.virt).is_some() {
                        waiting = true;
                        continue;
                    }
                    let Some(v) = topo.virtual_nodes.get(m.virt.as_str()) else { continue };
                    let from = v.placement.as_ref().map(|p| p.to_string()).unwrap_or_default();
                    release_now.push((i, from));
                    room -= 1;
                }
                let all_ended = !waiting && release_now.is_empty() && live == 0;
                (release_now, all_ended, failed)
            };
            if !release_now.is_empty() {
                let now = self.now_ms();
                let round_id = self.inner.decisions.next_round_id().saturating_sub(1);
                let id = |s: &str| {
                    NodeId::parse(s)
                        .map_err(|e| ApiError::Internal(format!("reconfiguration {} holds id {s:?}: {e}", rec.id)))
                };
                let decisions = release_now
                    .iter()
                    .map(|(i, from)| {
                        let m = &rec.moves[*i];
                        Ok(Decision {
                            sequence: 0,
                            round_id: 0,
                            decided_at_ms: now,
                            virt: id(&m.virt)?,
                            from: id(from)?,
                            to: id(&m.to)?,
                            from_score: None,
                            to_score: None,
                            gain: 0.0,
                            reason: format!(
                                "reconfiguration {} (move {} of {}): {}",
                                rec.id,
                                i + 1,
                                rec.moves.len(),
                                m.reason
                            ),
                            kind: DecisionKind::Reconfiguration,
                            cost: None,
                            expected_overload_at_ms: None,
                            reverses: None,
                        })
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                let origins = release_now
                    .iter()
                    .map(|(i, _)| Some(Origin { reconfiguration: rec.id.clone(), index: *i }))
                    .collect();
                self.commit_decisions(round_id, decisions, Some(origins)).await?;
            } else if all_ended {
                self.finish_reconfiguration(rec, failed).await?;
            }
        }
        Ok(())
    }

    /// Removes the emptied nodes and records the outcome.
    async fn finish_reconfiguration(&self, mut rec: Reconfiguration, failed: usize) -> Result<(), ApiError> {
        self.write(move |meta| {
            let (topo, book) = (&*meta.topology, &meta.book);
            let mut changes = Vec::new();
            let mut pending = 0;
            for id in &rec.removals {
                let Some(n) = topo.physical.get(id.as_str()) else { continue };
                let busy = topo.placed_on(id).next().is_some() || book.live().any(|m| m.to == *id || m.from == *id);
                if busy {
                    pending += 1;
                } else if n.state != PhysicalState::Removed {
                    let mut n = n.clone();
                    n.state = PhysicalState::Removed;
                    changes.push(TopologyChange::PutPhysical(n));
                }
            }
            rec.state = if failed == 0 && pending == 0 {
                ReconfigState::Completed
            } else {
                ReconfigState::CompletedWithFailures
            };
            tracing::info!(reconfiguration = %rec.id, state = rec.state.name(), failed, "reconfiguration finished");
            let mut w = Write::new(changes, Vec::new(), ());
            w.reconfigs = vec![rec];
            Ok(w)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::makespan;

    #[test]
    fn makespan_schedules_longest_first() {
        assert_eq!(makespan(vec![], 4), 0.0);
        assert_eq!(makespan(vec![10.0, 10.0, 10.0], 1), 30.0);
        assert_eq!(makespan(vec![10.0, 6.0, 5.0, 4.0], 2), 14.0);
    }
}
