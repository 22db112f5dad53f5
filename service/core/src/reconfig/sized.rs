//! The planner for virtual nodes of different sizes.
//!
//! Deciding whether differently sized virtual nodes fit at all is bin
//! packing (NP-hard), so no polynomial method is exact here. This one keeps
//! the shape of the exact one and proves what it can:
//!
//! 1. every virtual node that may stay, stays (fixed ones first, then the
//!    costliest to move), as long as its node has room and its group's
//!    spreading allows — the rest must move;
//! 2. those are placed largest first, each on the node where it fits most
//!    tightly; a virtual node that fits nowhere makes room by moving the
//!    cheapest set of others off one node (which are placed in turn);
//! 3. the **lower bound** is what any plan must pay: every virtual node
//!    that cannot stay (its node leaves, it is pinned elsewhere), plus, per
//!    over-full node, the cheapest set whose removal makes it fit (by count:
//!    largest first, exact; by bytes: the fractional knapsack bound) —
//!    when the plan costs exactly that, it is optimal, and says so.

use std::collections::HashMap;

use super::model::{EPS, Infeasible, Objective, Plan, Problem};

struct State<'a> {
    pb: &'a Problem,
    obj: Objective,
    at: Vec<Option<usize>>,
    used: Vec<[f64; 2]>,
    per: HashMap<(usize, u64), u32>,
}

impl<'a> State<'a> {
    fn fits(&self, i: usize, p: usize) -> bool {
        let it = &self.pb.items[i];
        if !(self.pb.allowed(i, p) || it.fixed && it.current == Some(p)) {
            return false;
        }
        if !it.fixed && (0..2).any(|d| self.used[p][d] + it.demand[d] > self.pb.nodes[p].cap[d] + EPS) {
            return false;
        }
        if let Some(r) = it.rule
            && !it.fixed
            && let Some(k) = self.pb.domain_of(p, self.pb.rules[r].domain)
            && self.per.get(&(r, k)).copied().unwrap_or(0) >= self.pb.rules[r].max_per_domain
        {
            return false;
        }
        true
    }

    fn put(&mut self, i: usize, p: usize) {
        let it = &self.pb.items[i];
        for d in 0..2 {
            self.used[p][d] += it.demand[d];
        }
        if let Some(r) = it.rule
            && let Some(k) = self.pb.domain_of(p, self.pb.rules[r].domain)
        {
            *self.per.entry((r, k)).or_default() += 1;
        }
        self.at[i] = Some(p);
    }

    fn take(&mut self, i: usize) {
        let Some(p) = self.at[i].take() else { return };
        let it = &self.pb.items[i];
        for d in 0..2 {
            self.used[p][d] -= it.demand[d];
        }
        if let Some(r) = it.rule
            && let Some(k) = self.pb.domain_of(p, self.pb.rules[r].domain)
            && let Some(c) = self.per.get_mut(&(r, k))
        {
            *c -= 1;
        }
    }

    /// Dominant share of item `i` on node `p`.
    fn share(&self, i: usize, p: usize) -> f64 {
        let c = self.pb.nodes[p].cap;
        (0..2).map(|d| if c[d] > 0.0 { self.pb.items[i].demand[d] / c[d] } else { 0.0 }).fold(0.0, f64::max)
    }

    /// The node where `i` fits most tightly (least room left after).
    fn best_fit(&self, i: usize) -> Option<usize> {
        (0..self.pb.nodes.len())
            .filter(|&p| self.fits(i, p))
            .map(|p| {
                let c = self.pb.nodes[p].cap;
                let left = (0..2)
                    .filter(|&d| c[d] > 0.0)
                    .map(|d| (c[d] - self.used[p][d] - self.pb.items[i].demand[d]) / c[d])
                    .fold(f64::INFINITY, f64::min);
                // Prefer the node it came from, then the tightest fit.
                let home = self.pb.items[i].current == Some(p);
                (p, (!home, left))
            })
            .min_by(|a, b| a.1.0.cmp(&b.1.0).then(a.1.1.total_cmp(&b.1.1)).then(a.0.cmp(&b.0)))
            .map(|x| x.0)
    }
}

/// Plans with differently sized virtual nodes.
pub fn plan(pb: &Problem, obj: Objective) -> Result<Plan, Infeasible> {
    let n = pb.items.len();
    let mut st = State { pb, obj, at: vec![None; n], used: vec![[0.0; 2]; pb.nodes.len()], per: HashMap::new() };
    // 1. Stays: fixed first, then the costliest to move, largest first.
    let mut order: Vec<usize> = (0..n).filter(|&i| pb.may_stay(i).is_ok()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&pb.items[a], &pb.items[b]);
        y.fixed
            .cmp(&x.fixed)
            .then(pb.weight(b, obj).cmp(&pb.weight(a, obj)))
            .then(y.demand[0].total_cmp(&x.demand[0]))
            .then(a.cmp(&b))
    });
    let mut must: Vec<usize> = (0..n).filter(|&i| pb.may_stay(i).is_err()).collect();
    for i in order {
        let cur = pb.items[i].current.expect("may stay");
        if pb.items[i].fixed || st.fits(i, cur) {
            st.put(i, cur);
        } else {
            must.push(i);
        }
    }
    // 2. Place the rest, largest first; make room where nothing fits.
    let mut queue = must;
    let mut rounds = 0;
    while !queue.is_empty() {
        rounds += 1;
        queue.sort_by(|&a, &b| pb.items[b].demand[0].total_cmp(&pb.items[a].demand[0]).then(a.cmp(&b)));
        let mut next = Vec::new();
        for i in queue {
            if let Some(p) = st.best_fit(i) {
                st.put(i, p);
            } else if rounds < 4
                && let Some(evicted) = make_room(&mut st, i)
            {
                next.extend(evicted);
            } else {
                let left: Vec<usize> = (0..n).filter(|&j| st.at[j].is_none()).collect();
                return Err(pb.unplaceable(&left));
            }
        }
        queue = next;
    }
    let assignment: Vec<usize> = st.at.iter().map(|a| a.expect("all placed")).collect();
    Ok(Plan::new(pb, assignment, obj, lower_bound(pb, obj), "best fit with a lower bound (mixed sizes)"))
}

/// Places `i` on the node where moving the cheapest others off makes room;
/// returns those others (now unplaced).
fn make_room(st: &mut State, i: usize) -> Option<Vec<usize>> {
    let pb = st.pb;
    let mut best: Option<(u64, usize, Vec<usize>)> = None;
    for p in 0..pb.nodes.len() {
        if !pb.allowed(i, p) {
            continue;
        }
        // Candidates to leave: movable items on p, cheapest per size first.
        let mut cands: Vec<usize> = (0..pb.items.len())
            .filter(|&j| st.at[j] == Some(p) && !pb.items[j].fixed && pb.items[j].pinned.is_none() && j != i)
            .collect();
        cands.sort_by(|&a, &b| {
            let ka = pb.weight(a, st.obj) as f64 / st.share(a, p).max(1e-12);
            let kb = pb.weight(b, st.obj) as f64 / st.share(b, p).max(1e-12);
            ka.total_cmp(&kb).then(a.cmp(&b))
        });
        let mut out = Vec::new();
        let mut cost = 0;
        for j in cands {
            if st.fits(i, p) {
                break;
            }
            st.take(j);
            out.push(j);
            cost += pb.weight(j, st.obj);
        }
        let ok = st.fits(i, p);
        for &j in &out {
            st.put(j, p);
        }
        if ok && best.as_ref().is_none_or(|b| cost < b.0) {
            best = Some((cost, p, out));
        }
    }
    let (_, p, out) = best?;
    for &j in &out {
        st.take(j);
    }
    st.put(i, p);
    Some(out)
}

/// What every valid plan must pay (see the module doc).
pub fn lower_bound(pb: &Problem, obj: Objective) -> u64 {
    let mut total = 0u64;
    let mut on: Vec<Vec<usize>> = vec![Vec::new(); pb.nodes.len()];
    for i in 0..pb.items.len() {
        match pb.may_stay(i) {
            Ok(cur) => on[cur].push(i),
            Err(_) => total += pb.weight(i, obj),
        }
    }
    for (p, items) in on.iter().enumerate() {
        let node = &pb.nodes[p];
        let mut need = 0u64;
        for d in 0..2 {
            let load: f64 = items.iter().map(|&i| pb.items[i].demand[d]).sum();
            let excess = load - node.cap[d];
            if excess <= EPS {
                continue;
            }
            let mut movable: Vec<usize> = items.iter().copied().filter(|&i| !pb.items[i].fixed).collect();
            let bound = match obj {
                // Fewest items whose sizes reach the excess: largest first.
                crate::reconfig::model::Objective::Moves => {
                    movable.sort_by(|&a, &b| pb.items[b].demand[d].total_cmp(&pb.items[a].demand[d]));
                    let mut freed = 0.0;
                    let mut k = 0u64;
                    for i in movable {
                        if freed >= excess - EPS {
                            break;
                        }
                        freed += pb.items[i].demand[d];
                        k += pb.weight(i, obj);
                    }
                    k
                }
                // Fractional knapsack: cheapest per unit of size, the last one in part.
                crate::reconfig::model::Objective::Bytes => {
                    movable.retain(|&i| pb.items[i].demand[d] > 0.0);
                    movable.sort_by(|&a, &b| {
                        let ka = pb.weight(a, obj) as f64 / pb.items[a].demand[d];
                        let kb = pb.weight(b, obj) as f64 / pb.items[b].demand[d];
                        ka.total_cmp(&kb)
                    });
                    let mut freed = 0.0;
                    let mut c = 0.0;
                    for i in movable {
                        if freed >= excess - EPS {
                            break;
                        }
                        let s = pb.items[i].demand[d];
                        let part = ((excess - freed) / s).min(1.0);
                        c += part * pb.weight(i, obj) as f64;
                        freed += s;
                    }
                    (c - 1e-6).ceil().max(0.0) as u64
                }
            };
            need = need.max(bound);
        }
        total += need;
    }
    total
}
