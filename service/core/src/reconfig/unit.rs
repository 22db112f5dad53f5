//! The planner for equal-sized virtual nodes (shards, partitions, slots of
//! one size): a min-cost flow.
//!
//! Virtual nodes with only one possible place are placed first: those held
//! by a live migration (they stay) and pinned ones (they go to their pin).
//! Every other virtual node is one unit of supply. It can *stay* (an edge
//! towards its node, cost 0) or *move* (an edge to its group's hub, cost =
//! its weight), and the hub reaches every node it may go to. A node takes as
//! many units as fit beside what is already placed; a group spread per node
//! passes through a per-(group, node) vertex whose capacity is the group's
//! limit. The cheapest flow that places every unit is the plan with the
//! fewest moves (or bytes): exact.
//!
//! A group spread per rack or zone passes through a per-(group, domain)
//! vertex instead, shared by its members that stay and those that move in,
//! which then reaches every node of the domain. That keeps feasibility exact
//! but lets a member change node inside its domain without paying, so the
//! flow's cost is a lower bound; the read-back puts members back on their own
//! node wherever the flow allows, and the plan is proven optimal when its
//! real cost equals that bound.

use std::collections::HashMap;

use super::flow::Network;
use super::model::{EPS, Infeasible, Item, Objective, Plan, Problem};

/// Whether every movable virtual node has the same demand.
pub fn is_uniform(pb: &Problem) -> Option<[f64; 2]> {
    let mut it = pb.items.iter().filter(|i| !i.fixed);
    let first = it.next()?.demand;
    it.all(|i| i.demand == first).then_some(first)
}

/// The one place of an item that has no choice: held by a migration, or pinned.
fn preset(it: &Item) -> Option<usize> {
    if it.fixed { it.current } else { it.pinned }
}

const UNBOUNDED: i64 = i64::MAX / 4;

struct Graph {
    net: Network,
    sink: usize,
    /// Node of a node vertex.
    node_of: HashMap<usize, usize>,
    /// Per item: its vertex (usize::MAX when preset).
    item: Vec<usize>,
    /// Per item that may stay: the edges of its zero-cost path home.
    home: Vec<Vec<usize>>,
}

impl Graph {
    /// Sends one unit along `path` if every edge has room.
    fn try_path(&mut self, path: &[usize]) -> bool {
        if !path.is_empty() && path.iter().all(|&e| self.net.residual(e) > 0) {
            path.iter().for_each(|&e| self.net.push(e, 1));
            true
        } else {
            false
        }
    }
}

impl Graph {
    /// Follows one unit of flow from `v` to a node, consuming it in `rem`;
    /// goes to `prefer` when the flow allows.
    fn walk(&self, mut v: usize, prefer: Option<usize>, rem: &mut HashMap<usize, i64>) -> usize {
        loop {
            if let Some(&p) = self.node_of.get(&v) {
                return p;
            }
            let mut left = |e: usize| *rem.entry(e).or_insert_with(|| self.net.flow(e));
            let edges: Vec<usize> = self.net.out_edges(v).collect();
            let e = edges
                .iter()
                .copied()
                .find(|&e| prefer.is_some_and(|p| self.node_of.get(&self.net.head(e)) == Some(&p)) && left(e) > 0)
                .or_else(|| edges.iter().copied().find(|&e| left(e) > 0))
                .expect("flow is conserved: a vertex with inflow has outflow");
            *rem.get_mut(&e).expect("seen") -= 1;
            v = self.net.head(e);
        }
    }
}

fn build(pb: &Problem, obj: Objective, size: [f64; 2]) -> Graph {
    // Room left per node, and per rule and domain, after the preset items.
    let mut room: Vec<[f64; 2]> = pb.nodes.iter().map(|n| n.cap).collect();
    let mut taken: HashMap<(usize, u64), i64> = HashMap::new();
    for it in &pb.items {
        let Some(p) = preset(it) else { continue };
        for (d, r) in room[p].iter_mut().enumerate() {
            *r -= it.demand[d];
        }
        if let Some(r) = it.rule
            && let Some(k) = pb.domain_of(p, pb.rules[r].domain)
        {
            *taken.entry((r, k)).or_default() += 1;
        }
    }
    let mut net = Network::new(0);
    let sink = net.vertex();
    let mut node = Vec::with_capacity(pb.nodes.len());
    let mut sink_edge = Vec::with_capacity(pb.nodes.len());
    let mut node_of = HashMap::new();
    for (p, n) in pb.nodes.iter().enumerate() {
        let mut units = if n.accepts { pb.items.len() as i64 } else { 0 };
        for d in 0..2 {
            if size[d] > 0.0 {
                units = units.min(((room[p][d] + EPS) / size[d]).floor().max(0.0) as i64);
            }
        }
        let v = net.vertex();
        sink_edge.push(net.edge(v, sink, units, 0));
        node.push(v);
        node_of.insert(v, p);
    }
    let accepting: Vec<usize> = (0..pb.nodes.len()).filter(|&p| pb.nodes[p].accepts).collect();
    // Where a member of `rule` enters node p: the node itself, its
    // per-(rule, node) vertex, or its per-(rule, domain) vertex.
    let mut gate: HashMap<(usize, u64), usize> = HashMap::new();
    // (gate, node) -> the gate's edges to that node: (gate -> fan-out, fan-out -> node).
    let gate_edges: std::cell::RefCell<HashMap<(usize, usize), (usize, usize)>> = Default::default();
    let mut enter = |net: &mut Network, rule: Option<usize>, p: usize| -> usize {
        let Some(r) = rule else { return node[p] };
        let Some(k) = pb.domain_of(p, pb.rules[r].domain) else { return node[p] };
        *gate.entry((r, k)).or_insert_with(|| {
            let v = net.vertex();
            let cap = (pb.rules[r].max_per_domain as i64 - taken.get(&(r, k)).copied().unwrap_or(0)).max(0);
            let w = net.vertex();
            let gw = net.edge(v, w, cap, 0);
            for &q in &accepting {
                if pb.domain_of(q, pb.rules[r].domain) == Some(k) {
                    let wn = net.edge(w, node[q], UNBOUNDED, 0);
                    gate_edges.borrow_mut().insert((v, q), (gw, wn));
                }
            }
            v
        })
    };
    let mut hubs: HashMap<Option<usize>, usize> = HashMap::new();
    let mut item = Vec::with_capacity(pb.items.len());
    let mut home = Vec::with_capacity(pb.items.len());
    for (i, it) in pb.items.iter().enumerate() {
        if preset(it).is_some() {
            item.push(usize::MAX);
            home.push(Vec::new());
            continue;
        }
        let v = net.vertex();
        let mut path = Vec::new();
        if let Ok(cur) = pb.may_stay(i) {
            let to = enter(&mut net, it.rule, cur);
            path.push(net.edge(v, to, 1, 0));
            if to != node[cur] {
                let (gw, wn) = gate_edges.borrow()[&(to, cur)];
                path.extend([gw, wn]);
            }
            path.push(sink_edge[cur]);
        }
        home.push(path);
        let h = match hubs.get(&it.rule) {
            Some(&h) => h,
            None => {
                let h = net.vertex();
                hubs.insert(it.rule, h);
                let mut seen = std::collections::HashSet::new();
                for &p in &accepting {
                    let to = enter(&mut net, it.rule, p);
                    if seen.insert(to) {
                        net.edge(h, to, UNBOUNDED, 0);
                    }
                }
                h
            }
        };
        net.edge(v, h, 1, pb.weight(i, obj) as i64);
        item.push(v);
    }
    Graph { net, sink, node_of, item, home }
}

/// Solves the flow; returns the assignment and the flow's cost (a lower
/// bound), or the items that found no place.
fn solve(pb: &Problem, obj: Objective, size: [f64; 2]) -> Result<(Vec<usize>, u64), Vec<usize>> {
    let mut g = build(pb, obj, size);
    // Every item on its own: stays are zero-cost paths, taken first (a
    // zero-cost flow is of minimum cost for its value); then the others
    // along cheapest paths, which may push a stayer out, paying its weight.
    let mut flow_cost = 0i64;
    let mut left = Vec::new();
    let mut rest = Vec::new();
    for i in 0..pb.items.len() {
        if g.item[i] == usize::MAX {
            continue;
        }
        let path = std::mem::take(&mut g.home[i]);
        if !g.try_path(&path) {
            rest.push(i);
        }
    }
    for i in rest {
        let (sent, cost) = g.net.augment(g.item[i], g.sink, 1);
        if sent == 0 {
            left.push(i);
        }
        flow_cost += cost;
    }
    if !left.is_empty() {
        return Err(left);
    }
    let mut rem = HashMap::new();
    let mut assignment = vec![usize::MAX; pb.items.len()];
    for (i, it) in pb.items.iter().enumerate() {
        if let Some(p) = preset(it) {
            assignment[i] = p;
        }
    }
    // Stayers first, so that they get their own node back wherever the flow allows.
    let mut order: Vec<usize> = (0..pb.items.len()).filter(|&i| assignment[i] == usize::MAX).collect();
    order.sort_by_key(|&i| pb.may_stay(i).is_err());
    for i in order {
        assignment[i] = g.walk(g.item[i], pb.items[i].current, &mut rem);
    }
    unshuffle(pb, &mut assignment);
    Ok((assignment, flow_cost.max(0) as u64))
}

/// The flow may move a member of a domain-spread group to another node of
/// its domain for free (see the module doc) and fill its node with an item
/// that had to move anyway. Swapping the two back (same size, so no node's
/// load changes) saves a real move whenever the groups' limits allow it.
fn unshuffle(pb: &Problem, assignment: &mut [usize]) {
    let key = |i: usize, p: usize| pb.items[i].rule.and_then(|r| pb.domain_of(p, pb.rules[r].domain).map(|k| (r, k)));
    let mut count: HashMap<(usize, u64), u32> = HashMap::new();
    let mut movers_into: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, &p) in assignment.iter().enumerate() {
        if let Some(k) = key(i, p) {
            *count.entry(k).or_default() += 1;
        }
        if preset(&pb.items[i]).is_none() && pb.items[i].current != Some(p) {
            movers_into.entry(p).or_default().push(i);
        }
    }
    for x in 0..pb.items.len() {
        if preset(&pb.items[x]).is_some() {
            continue;
        }
        let (Ok(q), a) = (pb.may_stay(x), assignment[x]) else { continue };
        if a == q {
            continue;
        }
        let Some(list) = movers_into.get(&q) else { continue };
        let found = list.iter().position(|&y| {
            if !pb.allowed(y, a) {
                return false;
            }
            // Apply the swap to the group counts and check what grew.
            let changes = [(key(x, a), -1i64), (key(x, q), 1), (key(y, q), -1), (key(y, a), 1)];
            let mut delta: HashMap<(usize, u64), i64> = HashMap::new();
            for (k, d) in changes {
                if let Some(k) = k {
                    *delta.entry(k).or_default() += d;
                }
            }
            delta.iter().all(|(k, &d)| {
                d <= 0 || i64::from(count.get(k).copied().unwrap_or(0)) + d <= i64::from(pb.rules[k.0].max_per_domain)
            })
        });
        let Some(idx) = found else { continue };
        let y = movers_into.get_mut(&q).expect("present").swap_remove(idx);
        for (k, d) in [(key(x, a), -1i64), (key(x, q), 1), (key(y, q), -1), (key(y, a), 1)] {
            if let Some(k) = k {
                let c = count.entry(k).or_default();
                *c = (i64::from(*c) + d) as u32;
            }
        }
        assignment[x] = q;
        assignment[y] = a;
        if let Some(l) = movers_into.get_mut(&a)
            && let Some(k) = l.iter().position(|&i| i == x)
        {
            l.swap_remove(k);
        }
        if pb.items[y].current != Some(a) {
            movers_into.entry(a).or_default().push(y);
        }
    }
}

/// The plan for equal-sized virtual nodes.
pub fn plan(pb: &Problem, obj: Objective, size: [f64; 2]) -> Result<Plan, Infeasible> {
    let (assignment, flow_cost) = solve(pb, obj, size).map_err(|left| pb.unplaceable(&left))?;
    // Pinned items that must move pay outside the flow.
    let preset_cost: u64 = (0..pb.items.len())
        .filter(|&i| !pb.items[i].fixed && pb.items[i].pinned.is_some() && pb.items[i].current != pb.items[i].pinned)
        .map(|i| pb.weight(i, obj))
        .sum();
    Ok(Plan::new(pb, assignment, obj, flow_cost + preset_cost, "min-cost flow (equal sizes)"))
}
