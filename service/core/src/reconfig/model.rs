//! The planning problem, its answer, and the one check of validity that
//! every planner's output (and every test) goes through.

use std::collections::HashMap;
use std::fmt;

/// What a spreading rule counts members per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// Physical node.
    Node,
    /// Rack (`zone/rack` labels).
    Rack,
    /// Zone.
    Zone,
}

impl Domain {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Domain::Node => "node",
            Domain::Rack => "rack",
            Domain::Zone => "zone",
        }
    }
}

/// Members of a group may share a domain only up to `max_per_domain`
/// (replicas on distinct nodes / racks / zones when 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Group name (for messages).
    pub name: String,
    /// Counted per.
    pub domain: Domain,
    /// At most this many members per domain (>= 1).
    pub max_per_domain: u32,
}

/// A physical node as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Id.
    pub id: String,
    /// Usable capacity per dimension (CPU cores x overcommit, memory bytes).
    pub cap: [f64; 2],
    /// Receives and keeps virtual nodes (false: draining or leaving).
    pub accepts: bool,
    /// Rack id (unique across zones).
    pub rack: Option<u32>,
    /// Zone id.
    pub zone: Option<u32>,
}

/// A virtual node as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Id.
    pub id: String,
    /// Demand per dimension (requested CPU cores, memory bytes).
    pub demand: [f64; 2],
    /// Bytes a move transfers.
    pub bytes: u64,
    /// Where it runs now (index into nodes); `None` for new ones.
    pub current: Option<usize>,
    /// Its spreading rule (index into rules).
    pub rule: Option<usize>,
    /// Only this node may run it.
    pub pinned: Option<usize>,
    /// Held by a live migration: it stays where it is (its reserved target).
    pub fixed: bool,
}

/// The whole problem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Problem {
    /// Physical nodes.
    pub nodes: Vec<Node>,
    /// Virtual nodes.
    pub items: Vec<Item>,
    /// Spreading rules.
    pub rules: Vec<Rule>,
}

/// What a plan minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Objective {
    /// Fewest virtual nodes moved.
    #[default]
    Moves,
    /// Fewest bytes moved (ties: fewest moves).
    Bytes,
}

/// Why a virtual node moves (or is placed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Its node is draining or leaving.
    NodeLeaving,
    /// It is pinned to another node.
    Pinned,
    /// Its group has too many members in its domain.
    Spread,
    /// Its node is over capacity.
    Capacity,
    /// It moves to make room for another one.
    MakesRoom,
    /// It was not placed.
    Unplaced,
}

impl Reason {
    /// A phrase for people.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::NodeLeaving => "its node is draining or leaving",
            Reason::Pinned => "it is pinned elsewhere",
            Reason::Spread => "its group has too many members in one domain",
            Reason::Capacity => "its node is over capacity",
            Reason::MakesRoom => "it makes room for a virtual node that must move",
            Reason::Unplaced => "it was not placed",
        }
    }
}

/// One move.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// Item index.
    pub item: usize,
    /// From (None: a placement of a new virtual node).
    pub from: Option<usize>,
    /// To.
    pub to: usize,
    /// Why.
    pub reason: Reason,
}

/// A plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Node of every item.
    pub assignment: Vec<usize>,
    /// The moves (and placements of new items), in item order.
    pub moves: Vec<Move>,
    /// Its cost under the objective.
    pub cost: u64,
    /// A proven lower bound of any valid plan's cost.
    pub lower_bound: u64,
    /// Whether the plan is proven optimal (cost == lower bound, or exact method).
    pub optimal: bool,
    /// Virtual nodes moved (placements of new ones not counted).
    pub moved: usize,
    /// Bytes moved.
    pub bytes_moved: u64,
    /// Which method made it.
    pub method: &'static str,
}

/// Why no valid placement exists; says which constraint and by how much.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Infeasible {
    /// Not enough capacity in total.
    #[error(
        "not enough capacity: the virtual nodes need {needed:.2} {unit} in total, the nodes that accept them have {available:.2} (short by {:.2})",
        needed - available
    )]
    Capacity {
        /// Unit (cores, bytes).
        unit: &'static str,
        /// Needed.
        needed: f64,
        /// Available.
        available: f64,
    },
    /// A group cannot be spread as asked.
    #[error(
        "group {group} has {members} members to place, but at most {max} per {} leaves room for {room} on the {domains} {}s that accept virtual nodes (short by {})",
        domain.name(), domain.name(), members - room
    )]
    Spread {
        /// Group.
        group: String,
        /// Domain.
        domain: Domain,
        /// Max per domain.
        max: u32,
        /// Members to place (not held by migrations).
        members: usize,
        /// Places left under the rule.
        room: usize,
        /// Accepting domains.
        domains: usize,
    },
    /// A virtual node is pinned to a node that cannot run it.
    #[error("virtual node {item} is pinned to {node}, which {why}")]
    Pinned {
        /// Item.
        item: String,
        /// Node.
        node: String,
        /// Why.
        why: String,
    },
    /// A virtual node fits on no node at all.
    #[error("virtual node {item} needs {need:.2} {unit}; the largest node that accepts it has {largest:.2}")]
    TooLarge {
        /// Item.
        item: String,
        /// Unit.
        unit: &'static str,
        /// Need.
        need: f64,
        /// Largest.
        largest: f64,
    },
    /// The rest did not fit together (fragmentation or constraints).
    #[error(
        "{count} virtual node(s) could not be placed (e.g. {example}): the free room left is {free_cpu:.2} cores in total, the largest piece {largest_cpu:.2}"
    )]
    Unplaceable {
        /// How many.
        count: usize,
        /// One of them.
        example: String,
        /// Free CPU left.
        free_cpu: f64,
        /// Largest free piece.
        largest_cpu: f64,
    },
}

/// Units of the two dimensions.
pub const UNITS: [&str; 2] = ["cores", "bytes of memory"];
/// Slack on capacity comparisons.
pub const EPS: f64 = 1e-9;

impl Problem {
    /// Domain key of node `p` for domain `d` (None: the node has no such label).
    pub fn domain_of(&self, p: usize, d: Domain) -> Option<u64> {
        let n = &self.nodes[p];
        match d {
            Domain::Node => Some(p as u64),
            Domain::Rack => n.rack.map(u64::from),
            Domain::Zone => n.zone.map(u64::from),
        }
    }

    /// The cost of moving item `i` (0 for placing a new one).
    pub fn weight(&self, i: usize, obj: Objective) -> u64 {
        let it = &self.items[i];
        if it.current.is_none() {
            return 0;
        }
        match obj {
            Objective::Moves => 1,
            // KiB, scaled so that bytes dominate and fewer moves break ties.
            Objective::Bytes => it.bytes.div_ceil(1024).saturating_mul(self.items.len() as u64 + 1) + 1,
        }
    }

    /// Whether item `i` may stay on its current node, ignoring capacity
    /// and spreading (which depend on the others).
    pub fn may_stay(&self, i: usize) -> Result<usize, Reason> {
        let it = &self.items[i];
        let Some(cur) = it.current else { return Err(Reason::Unplaced) };
        if it.fixed {
            return Ok(cur);
        }
        if it.pinned.is_some_and(|p| p != cur) {
            return Err(Reason::Pinned);
        }
        if !self.nodes[cur].accepts {
            return Err(Reason::NodeLeaving);
        }
        Ok(cur)
    }

    /// Whether item `i` may be placed on node `p` by itself (acceptance, pin).
    pub fn allowed(&self, i: usize, p: usize) -> bool {
        let it = &self.items[i];
        self.nodes[p].accepts && it.pinned.is_none_or(|q| q == p)
    }

    /// Checks what no placement can get around; the message says which
    /// constraint fails and by how much.
    pub fn precheck(&self) -> Result<(), Infeasible> {
        // Held items stay where they are; the others need room beside them.
        let mut held = vec![[0.0f64; 2]; self.nodes.len()];
        for it in self.items.iter().filter(|i| i.fixed) {
            if let Some(c) = it.current {
                for d in 0..2 {
                    held[c][d] += it.demand[d];
                }
            }
        }
        for d in 0..2 {
            let needed: f64 = self.items.iter().filter(|i| !i.fixed).map(|i| i.demand[d]).sum();
            let available: f64 = (0..self.nodes.len())
                .filter(|&p| self.nodes[p].accepts)
                .map(|p| (self.nodes[p].cap[d] - held[p][d]).max(0.0))
                .sum();
            if needed > available + EPS {
                return Err(Infeasible::Capacity { unit: UNITS[d], needed, available });
            }
        }
        for it in &self.items {
            if let Some(p) = it.pinned {
                let n = &self.nodes[p];
                if !(n.accepts || it.fixed && it.current == Some(p)) {
                    return Err(Infeasible::Pinned {
                        item: it.id.clone(),
                        node: n.id.clone(),
                        why: "does not accept virtual nodes (draining or leaving)".into(),
                    });
                }
                for d in 0..2 {
                    if it.demand[d] > n.cap[d] + EPS {
                        return Err(Infeasible::Pinned {
                            item: it.id.clone(),
                            node: n.id.clone(),
                            why: format!("has {:.2} {} in all, {:.2} needed", n.cap[d], UNITS[d], it.demand[d]),
                        });
                    }
                }
            }
            if it.fixed {
                continue;
            }
            for d in 0..2 {
                let largest = self.nodes.iter().filter(|n| n.accepts).map(|n| n.cap[d]).fold(0.0, f64::max);
                if it.demand[d] > largest + EPS {
                    return Err(Infeasible::TooLarge {
                        item: it.id.clone(),
                        unit: UNITS[d],
                        need: it.demand[d],
                        largest,
                    });
                }
            }
        }
        // Items with one possible place (held by a migration, or pinned) must fit there together.
        let mut preset: HashMap<usize, ([f64; 2], usize)> = HashMap::new();
        let mut preset_rule: HashMap<(usize, u64), (u32, bool)> = HashMap::new();
        for it in &self.items {
            let Some(p) = (if it.fixed { it.current } else { it.pinned }) else { continue };
            let e = preset.entry(p).or_default();
            for d in 0..2 {
                e.0[d] += it.demand[d];
            }
            e.1 += usize::from(!it.fixed);
            if let Some(r) = it.rule
                && let Some(k) = self.domain_of(p, self.rules[r].domain)
            {
                let c = preset_rule.entry((r, k)).or_default();
                c.0 += 1;
                c.1 |= !it.fixed;
            }
        }
        for (&p, &(need, pinned)) in &preset {
            let n = &self.nodes[p];
            for d in 0..2 {
                if pinned > 0 && need[d] > n.cap[d] + EPS {
                    return Err(Infeasible::Pinned {
                        item: format!("{pinned} virtual node(s)"),
                        node: n.id.clone(),
                        why: format!(
                            "has {:.2} {} for the {:.2} they and the migrations held there need (short by {:.2})",
                            n.cap[d],
                            UNITS[d],
                            need[d],
                            need[d] - n.cap[d]
                        ),
                    });
                }
            }
        }
        for (&(r, _), &(count, pinned)) in &preset_rule {
            let rule = &self.rules[r];
            if pinned && count > rule.max_per_domain {
                return Err(Infeasible::Pinned {
                    item: format!("{count} members of group {}", rule.name),
                    node: format!("one {}", rule.domain.name()),
                    why: format!("allows at most {} of them", rule.max_per_domain),
                });
            }
        }
        for (r, rule) in self.rules.iter().enumerate() {
            // Nodes without the label are not limited by the rule.
            if (0..self.nodes.len()).any(|p| self.nodes[p].accepts && self.domain_of(p, rule.domain).is_none()) {
                continue;
            }
            let members = self.items.iter().filter(|i| i.rule == Some(r) && !i.fixed).count();
            let mut fixed: HashMap<u64, usize> = HashMap::new();
            for it in self.items.iter().filter(|i| i.rule == Some(r) && i.fixed) {
                if let Some(k) = it.current.and_then(|c| self.domain_of(c, rule.domain)) {
                    *fixed.entry(k).or_default() += 1;
                }
            }
            let mut domains: Vec<u64> = (0..self.nodes.len())
                .filter(|&p| self.nodes[p].accepts)
                .filter_map(|p| self.domain_of(p, rule.domain))
                .collect();
            domains.sort_unstable();
            domains.dedup();
            let room: usize = domains
                .iter()
                .map(|k| (rule.max_per_domain as usize).saturating_sub(fixed.get(k).copied().unwrap_or(0)))
                .sum();
            if members > room {
                return Err(Infeasible::Spread {
                    group: rule.name.clone(),
                    domain: rule.domain,
                    max: rule.max_per_domain,
                    members,
                    room,
                    domains: domains.len(),
                });
            }
        }
        Ok(())
    }

    /// Whether `assignment` is a valid placement; the first violation otherwise.
    pub fn check(&self, assignment: &[usize]) -> Result<(), String> {
        if assignment.len() != self.items.len() {
            return Err("assignment has the wrong length".into());
        }
        let mut used = vec![[0.0f64; 2]; self.nodes.len()];
        // (rule, domain) -> (members, movable members)
        let mut per: HashMap<(usize, u64), (u32, u32)> = HashMap::new();
        for (i, &p) in assignment.iter().enumerate() {
            let it = &self.items[i];
            if p >= self.nodes.len() {
                return Err(format!("{} assigned to no node", it.id));
            }
            if it.fixed && Some(p) != it.current {
                return Err(format!("{} is held by a migration and moved", it.id));
            }
            if !it.fixed && !self.nodes[p].accepts {
                return Err(format!("{} on {}, which does not accept virtual nodes", it.id, self.nodes[p].id));
            }
            if it.pinned.is_some_and(|q| q != p) && !it.fixed {
                return Err(format!("{} is pinned elsewhere", it.id));
            }
            for d in 0..2 {
                used[p][d] += it.demand[d];
            }
            if let Some(r) = it.rule
                && let Some(k) = self.domain_of(p, self.rules[r].domain)
            {
                let c = per.entry((r, k)).or_default();
                c.0 += 1;
                c.1 += u32::from(!it.fixed);
            }
        }
        for (&(r, _), &(members, movable)) in &per {
            let rule = &self.rules[r];
            // Fixed members alone may exceed the limit (nothing can be done); no movable one may join them.
            if members > rule.max_per_domain && movable > 0 {
                return Err(format!(
                    "group {} has more than {} per {}",
                    rule.name,
                    rule.max_per_domain,
                    rule.domain.name()
                ));
            }
        }
        let mut movable_on = vec![false; self.nodes.len()];
        for (i, &p) in assignment.iter().enumerate() {
            movable_on[p] |= !self.items[i].fixed;
        }
        for (p, u) in used.iter().enumerate() {
            for d in 0..2 {
                // Items held by migrations alone may exceed it (nothing to do
                // about them); no movable item may be added to such a node.
                if movable_on[p] && u[d] > self.nodes[p].cap[d] + 1e-6 {
                    return Err(format!(
                        "{} over capacity: {:.2} of {:.2} {}",
                        self.nodes[p].id, u[d], self.nodes[p].cap[d], UNITS[d]
                    ));
                }
            }
        }
        Ok(())
    }

    /// The moves of an assignment, each with its reason.
    pub fn moves(&self, assignment: &[usize]) -> Vec<Move> {
        let pb = self;
        let mut load = vec![[0.0f64; 2]; pb.nodes.len()];
        let mut per: HashMap<(usize, u64), u32> = HashMap::new();
        for it in &pb.items {
            if let Some(c) = it.current {
                for d in 0..2 {
                    load[c][d] += it.demand[d];
                }
                if let Some(r) = it.rule
                    && let Some(k) = pb.domain_of(c, pb.rules[r].domain)
                {
                    *per.entry((r, k)).or_default() += 1;
                }
            }
        }
        let reason = |i: usize, it: &Item| -> Reason {
            match pb.may_stay(i) {
                Err(r) => r,
                Ok(cur) => {
                    if let Some(r) = it.rule
                        && let Some(k) = pb.domain_of(cur, pb.rules[r].domain)
                        && per[&(r, k)] > pb.rules[r].max_per_domain
                    {
                        return Reason::Spread;
                    }
                    if (0..2).any(|d| load[cur][d] > pb.nodes[cur].cap[d] + 1e-6) {
                        Reason::Capacity
                    } else {
                        Reason::MakesRoom
                    }
                }
            }
        };
        pb.items
            .iter()
            .enumerate()
            .filter(|(i, it)| it.current != Some(assignment[*i]))
            .map(|(i, it)| Move { item: i, from: it.current, to: assignment[i], reason: reason(i, it) })
            .collect()
    }

    /// Describes virtual nodes that could not be placed.
    pub fn unplaceable(&self, left: &[usize]) -> Infeasible {
        let pb = self;
        let mut free: Vec<f64> = pb.nodes.iter().map(|n| if n.accepts { n.cap[0] } else { 0.0 }).collect();
        for it in &pb.items {
            if let Some(c) = it.current {
                free[c] -= it.demand[0];
            }
        }
        let free_cpu: f64 = free.iter().map(|f| f.max(0.0)).sum();
        let largest_cpu = free.iter().copied().fold(0.0, f64::max);
        let it = &pb.items[left[0]];
        Infeasible::Unplaceable {
            count: left.len(),
            example: format!("{} ({:.2} cores)", it.id, it.demand[0]),
            free_cpu,
            largest_cpu,
        }
    }

    /// Cost of an assignment under the objective.
    pub fn cost_of(&self, assignment: &[usize], obj: Objective) -> u64 {
        (0..self.items.len())
            .filter(|&i| self.items[i].current.is_some_and(|c| c != assignment[i]))
            .map(|i| self.weight(i, obj))
            .sum()
    }
}

impl Plan {
    /// A plan from an assignment; derives the moves, their reasons and totals.
    pub fn new(pb: &Problem, assignment: Vec<usize>, obj: Objective, lower_bound: u64, method: &'static str) -> Plan {
        let moves = pb.moves(&assignment);
        let cost = pb.cost_of(&assignment, obj);
        let moved: Vec<&Move> = moves.iter().filter(|m| m.from.is_some()).collect();
        Plan {
            moved: moved.len(),
            bytes_moved: moved.iter().map(|m| pb.items[m.item].bytes).sum(),
            moves,
            assignment,
            cost,
            lower_bound: lower_bound.min(cost),
            optimal: cost <= lower_bound,
            method,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} move(s), {:.1} GiB, {} ({})",
            self.moved,
            self.bytes_moved as f64 / (1u64 << 30) as f64,
            if self.optimal {
                "optimal".to_string()
            } else {
                format!(
                    "cost at most {:.1} % above the optimum",
                    (self.cost - self.lower_bound) as f64 * 100.0 / self.lower_bound.max(1) as f64
                )
            },
            self.method
        )
    }
}
