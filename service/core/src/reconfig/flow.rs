//! Min-cost flow by successive shortest paths with Johnson potentials
//! (Dijkstra on reduced costs). Small and exact: integer capacities and
//! non-negative integer costs, so a flow of value k found this way is the
//! cheapest flow of value k.
//!
//! The planner starts from a zero-cost flow (every virtual node that may
//! stay where it is, stays): with non-negative costs that flow is already
//! of minimum cost for its value, so the potentials start at zero and only
//! the virtual nodes that must find a place are augmented, which is what
//! makes 100,000-node plans fast.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Edge index.
pub type EdgeId = usize;

#[derive(Debug, Clone)]
struct Edge {
    to: usize,
    cap: i64,
    cost: i64,
}

/// A flow network; edges are stored in pairs (forward, residual).
#[derive(Debug, Clone, Default)]
pub struct Network {
    edges: Vec<Edge>,
    adj: Vec<Vec<EdgeId>>,
    potential: Vec<i64>,
}

impl Network {
    /// An empty network of `n` vertices.
    pub fn new(n: usize) -> Self {
        Network { edges: Vec::new(), adj: vec![Vec::new(); n], potential: vec![0; n] }
    }

    /// Adds a vertex; returns its index.
    pub fn vertex(&mut self) -> usize {
        self.adj.push(Vec::new());
        self.potential.push(0);
        self.adj.len() - 1
    }

    /// Number of vertices.
    pub fn len(&self) -> usize {
        self.adj.len()
    }

    /// No vertices.
    pub fn is_empty(&self) -> bool {
        self.adj.is_empty()
    }

    /// Adds an edge `from → to` with a capacity and a non-negative cost.
    pub fn edge(&mut self, from: usize, to: usize, cap: i64, cost: i64) -> EdgeId {
        debug_assert!(cost >= 0 && cap >= 0);
        let id = self.edges.len();
        self.edges.push(Edge { to, cap, cost });
        self.edges.push(Edge { to: from, cap: 0, cost: -cost });
        self.adj[from].push(id);
        self.adj[to].push(id + 1);
        id
    }

    /// Flow on edge `e`.
    pub fn flow(&self, e: EdgeId) -> i64 {
        self.edges[e ^ 1].cap
    }

    /// Capacity left on edge `e`.
    pub fn residual(&self, e: EdgeId) -> i64 {
        self.edges[e].cap
    }

    /// Where edge `e` leads.
    pub fn head(&self, e: EdgeId) -> usize {
        self.edges[e].to
    }

    /// The edges added leaving `v` (not residual ones).
    pub fn out_edges(&self, v: usize) -> impl Iterator<Item = EdgeId> + '_ {
        self.adj[v].iter().copied().filter(|e| e % 2 == 0)
    }

    /// Pushes `amount` along edge `e` (to set up an initial flow). The
    /// caller keeps the initial flow of minimum cost for its value (for
    /// instance, only zero-cost edges).
    pub fn push(&mut self, e: EdgeId, amount: i64) {
        debug_assert!(self.edges[e].cap >= amount);
        self.edges[e].cap -= amount;
        self.edges[e ^ 1].cap += amount;
    }

    /// Sends up to `want` units from `s` to `t` along cheapest paths;
    /// returns (units sent, their cost).
    pub fn augment(&mut self, s: usize, t: usize, want: i64) -> (i64, i64) {
        let n = self.adj.len();
        let (mut sent, mut cost) = (0i64, 0i64);
        let mut dist = vec![i64::MAX; n];
        let mut prev: Vec<EdgeId> = vec![usize::MAX; n];
        let mut done = vec![false; n];
        let mut touched: Vec<usize> = Vec::new();
        while sent < want {
            // Dijkstra on reduced costs; stops once `t` is settled.
            for &v in &touched {
                dist[v] = i64::MAX;
                prev[v] = usize::MAX;
                done[v] = false;
            }
            touched.clear();
            dist[s] = 0;
            touched.push(s);
            let mut heap = BinaryHeap::new();
            heap.push(Reverse((0i64, s)));
            while let Some(Reverse((d, u))) = heap.pop() {
                if done[u] {
                    continue;
                }
                done[u] = true;
                if u == t {
                    break;
                }
                for &e in &self.adj[u] {
                    let ed = &self.edges[e];
                    if ed.cap <= 0 {
                        continue;
                    }
                    let nd = d + ed.cost + self.potential[u] - self.potential[ed.to];
                    if nd < dist[ed.to] {
                        if dist[ed.to] == i64::MAX {
                            touched.push(ed.to);
                        }
                        dist[ed.to] = nd;
                        prev[ed.to] = e;
                        heap.push(Reverse((nd, ed.to)));
                    }
                }
            }
            if dist[t] == i64::MAX {
                break;
            }
            // New potentials: p(v) + min(dist(v), dist(t)) for every v.
            // Adding dist(t) to all of them changes no reduced cost, so only
            // the settled ones move, by dist(v) - dist(t) (<= 0).
            let dt = dist[t];
            for &v in &touched {
                if done[v] {
                    self.potential[v] += dist[v] - dt;
                }
            }
            let mut f = want - sent;
            let mut v = t;
            while v != s {
                let e = prev[v];
                f = f.min(self.edges[e].cap);
                v = self.edges[e ^ 1].to;
            }
            let mut v = t;
            while v != s {
                let e = prev[v];
                self.edges[e].cap -= f;
                self.edges[e ^ 1].cap += f;
                cost += f * self.edges[e].cost;
                v = self.edges[e ^ 1].to;
            }
            sent += f;
        }
        (sent, cost)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Brute-force min-cost flow of value k on a tiny bipartite instance.
    fn brute(caps: &[i64], costs: &[Vec<Option<i64>>], k: usize) -> Option<i64> {
        // Assign each of the first k items to one of its allowed bins.
        let n = costs.len().min(k);
        let mut best: Option<i64> = None;
        let m = caps.len();
        let mut choice = vec![0usize; n];
        loop {
            let mut used = vec![0i64; m];
            let mut total = 0;
            let mut ok = true;
            for (i, &c) in choice.iter().enumerate() {
                match costs[i][c] {
                    Some(x) => {
                        used[c] += 1;
                        total += x;
                    }
                    None => ok = false,
                }
            }
            if ok && used.iter().zip(caps).all(|(u, c)| u <= c) {
                best = Some(best.map_or(total, |b: i64| b.min(total)));
            }
            let mut i = 0;
            while i < n {
                choice[i] += 1;
                if choice[i] < m {
                    break;
                }
                choice[i] = 0;
                i += 1;
            }
            if i == n {
                return best;
            }
        }
    }

    proptest! {
        /// Assigning every item (value = item count) costs what brute force says.
        #[test]
        fn matches_brute_force_assignment(
            caps in prop::collection::vec(0i64..3, 1..4),
            costs in prop::collection::vec(prop::collection::vec(prop::option::weighted(0.8, 0i64..5), 3), 1..6),
        ) {
            let m = caps.len();
            let costs: Vec<Vec<Option<i64>>> = costs.into_iter().map(|r| r.into_iter().take(m).chain(std::iter::repeat(None)).take(m).collect()).collect();
            let n = costs.len();
            let mut net = Network::new(n + m + 2);
            let (s, t) = (n + m, n + m + 1);
            for (i, row) in costs.iter().enumerate() {
                net.edge(s, i, 1, 0);
                for (j, c) in row.iter().enumerate() {
                    if let Some(c) = c {
                        net.edge(i, n + j, 1, *c);
                    }
                }
            }
            for (j, &c) in caps.iter().enumerate() {
                net.edge(n + j, t, c, 0);
            }
            let (sent, cost) = net.augment(s, t, n as i64);
            match brute(&caps, &costs, n) {
                Some(b) => prop_assert_eq!((sent, cost), (n as i64, b)),
                None => prop_assert!(sent < n as i64),
            }
        }
    }
}
