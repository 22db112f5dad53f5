//! The affinity heatmap operators look at: virtual nodes x physical nodes,
//! ordered so structure shows. Pure, like the rest of [`crate::placement`];
//! the web page and `swarmctl heatmap` draw what this returns.
//!
//! - Rows are the `top` virtual nodes with the most to gain by moving (best
//!   feasible score minus current score, found with the exact pruned
//!   search), plus every virtual node with a live migration so its marks
//!   show; ordered by the column they run in, then by gain — so each
//!   physical node's residents form a block.
//! - Columns are physical nodes ordered by zone, rack and id. Past
//!   `max_columns` they are grouped by rack (or by zone when racks are too
//!   many): a group's cell is the best score of its members.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::affinity::{self, Limits, Weights};
use super::search::{Penalty, TargetIndex};
use super::view::ClusterView;
use crate::domain::PhysicalState;

/// What a column stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One physical node per column.
    Node,
    /// One rack per column.
    Rack,
    /// One zone per column.
    Zone,
}

/// A column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    /// Node id, or `zone/rack`, or zone.
    pub label: String,
    /// Zone label, if any.
    pub zone: Option<String>,
    /// Physical node ids in it.
    pub members: Vec<String>,
    /// Every member drains (or is removed): nothing may move there.
    pub draining: bool,
}

/// A live migration as the heatmap marks it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mark {
    /// Target column.
    pub to: usize,
    /// `proposed` (decided, not accepted) or the in-flight phase.
    pub phase: String,
    /// Migration id.
    pub id: String,
}

/// A row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Virtual node id.
    pub id: String,
    /// Column it runs in (authoritative placement).
    pub current: Option<usize>,
    /// Column of its best feasible target, if better than where it is.
    pub best: Option<usize>,
    /// Best feasible score minus current score (0 when nothing is better).
    pub gain: f64,
    /// Score per column; `None` where it may not go (infeasible).
    pub cells: Vec<Option<f64>>,
    /// Its live migration, if any.
    pub migration: Option<Mark>,
}

/// The whole heatmap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heatmap {
    /// What columns stand for.
    pub group_by: GroupBy,
    /// Columns.
    pub columns: Vec<Column>,
    /// Rows.
    pub rows: Vec<Row>,
    /// Virtual nodes in the cluster (rows are the top of them).
    pub virtual_nodes: usize,
}

/// Inputs besides the view.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Rows to show (by gain).
    pub top: usize,
    /// Columns before grouping by rack or zone.
    pub max_columns: usize,
    /// Authoritative placement per virtual node id (the view places a
    /// migrating node at its target).
    pub placement: HashMap<String, String>,
    /// Live migrations per virtual node id: (target id, phase, migration id).
    pub migrations: HashMap<String, (String, String, String)>,
}

/// A column before it becomes one: label, zone, member indices.
type Group = (String, Option<String>, Vec<usize>);

/// Builds the heatmap.
pub fn build(view: &ClusterView, w: &Weights, limits: &Limits, inp: &Inputs) -> Heatmap {
    // Columns: physical nodes by zone, rack, id; grouped when too many.
    let mut order: Vec<usize> =
        (0..view.phys.len()).filter(|&p| view.phys[p].state != PhysicalState::Removed).collect();
    let key = |p: usize| {
        let n = &view.phys[p];
        (
            crate::locality::zone_of(&n.labels).unwrap_or_default().to_owned(),
            crate::locality::rack_of(&n.labels).unwrap_or_default().to_owned(),
            n.id.to_string(),
        )
    };
    order.sort_by_key(|&p| key(p));
    let racks: BTreeMap<(String, String), Vec<usize>> = order.iter().fold(BTreeMap::new(), |mut m, &p| {
        let (z, r, _) = key(p);
        m.entry((z, r)).or_insert_with(Vec::new).push(p);
        m
    });
    let (group_by, groups): (GroupBy, Vec<Group>) = if order.len() <= inp.max_columns.max(1) {
        (
            GroupBy::Node,
            order
                .iter()
                .map(|&p| {
                    (
                        view.phys[p].id.to_string(),
                        crate::locality::zone_of(&view.phys[p].labels).map(str::to_owned),
                        vec![p],
                    )
                })
                .collect(),
        )
    } else if racks.len() <= inp.max_columns.max(1) {
        (GroupBy::Rack, racks.into_iter().map(|((z, r), ps)| (format!("{z}/{r}"), Some(z), ps)).collect())
    } else {
        let zones: BTreeMap<String, Vec<usize>> = order.iter().fold(BTreeMap::new(), |mut m, &p| {
            m.entry(key(p).0).or_insert_with(Vec::new).push(p);
            m
        });
        (GroupBy::Zone, zones.into_iter().map(|(z, ps)| (z.clone(), Some(z), ps)).collect())
    };
    let mut col_of = vec![usize::MAX; view.phys.len()];
    for (c, (_, _, ps)) in groups.iter().enumerate() {
        for &p in ps {
            col_of[p] = c;
        }
    }
    let by_id: HashMap<&str, usize> = view.phys.iter().enumerate().map(|(i, p)| (p.id.as_str(), i)).collect();
    let col_by_id = |id: &str| by_id.get(id).map(|&p| col_of[p]).filter(|&c| c != usize::MAX);
    // Gains with the exact pruned search.
    let index = TargetIndex::build(view, w);
    let mut gains: Vec<(usize, f64, Option<usize>)> = (0..view.virt.len())
        .map(|vi| {
            let cur = view.virt[vi].placement.map(|p| affinity::score(view, vi, p, w, limits).score);
            match index.best(view, vi, w, limits, cur.unwrap_or(f64::NEG_INFINITY), &Penalty::NONE) {
                Some((p, s)) => (vi, s.score - cur.unwrap_or(0.0), Some(p)),
                None => (vi, 0.0, None),
            }
        })
        .collect();
    gains.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut chosen: Vec<(usize, f64, Option<usize>)> = gains.iter().take(inp.top).copied().collect();
    for g in gains.iter().skip(inp.top) {
        if inp.migrations.contains_key(view.virt[g.0].id.as_str()) {
            chosen.push(*g);
        }
    }
    let mut rows: Vec<Row> = chosen
        .into_iter()
        .map(|(vi, gain, best)| {
            let v = &view.virt[vi];
            let current = inp.placement.get(v.id.as_str()).and_then(|p| col_by_id(p));
            let cells = groups
                .iter()
                .map(|(_, _, ps)| {
                    ps.iter()
                        .map(|&p| affinity::score(view, vi, p, w, limits))
                        .filter(|s| s.infeasible.is_none())
                        .map(|s| s.score)
                        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
                })
                .collect();
            let migration = inp.migrations.get(v.id.as_str()).and_then(|(to, phase, id)| {
                col_by_id(to).map(|c| Mark { to: c, phase: phase.clone(), id: id.clone() })
            });
            Row {
                id: v.id.to_string(),
                current,
                best: best.map(|p| col_of[p]).filter(|&c| c != usize::MAX && gain > 0.0),
                gain: gain.max(0.0),
                cells,
                migration,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.current.cmp(&b.current).then(b.gain.total_cmp(&a.gain)).then(a.id.cmp(&b.id)));
    let columns = groups
        .into_iter()
        .map(|(label, zone, ps)| Column {
            label,
            zone,
            draining: ps.iter().all(|&p| view.phys[p].state != PhysicalState::Active),
            members: ps.iter().map(|&p| view.phys[p].id.to_string()).collect(),
        })
        .collect();
    Heatmap { group_by, columns, rows, virtual_nodes: view.virt.len() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::synthetic::{SyntheticParams, synthetic_view};

    #[test]
    fn rows_are_the_top_gains_grouped_by_where_they_run() {
        let view = synthetic_view(&SyntheticParams {
            virt: 300,
            phys: 30,
            zones: 3,
            rack_size: 5,
            seed: 3,
            ..Default::default()
        });
        let w = Weights::default();
        let limits = Limits { max_cpu_utilization: 0.8 };
        let placement: HashMap<String, String> = view
            .virt
            .iter()
            .filter_map(|v| v.placement.map(|p| (v.id.to_string(), view.phys[p].id.to_string())))
            .collect();
        let inp = Inputs { top: 20, max_columns: 40, placement: placement.clone(), ..Default::default() };
        let h = build(&view, &w, &limits, &inp);
        assert_eq!((h.group_by, h.columns.len(), h.rows.len()), (GroupBy::Node, 30, 20));
        assert!(h.rows.iter().all(|r| r.cells.len() == 30 && r.current.is_some()));
        // Grouped by where they run, then by gain.
        for w2 in h.rows.windows(2) {
            assert!(w2[0].current < w2[1].current || (w2[0].current == w2[1].current && w2[0].gain >= w2[1].gain));
        }
        // They are the largest gains: every row's gain is at least the 20th largest overall.
        let mut all: Vec<f64> = (0..view.virt.len())
            .map(|vi| {
                let cur = affinity::score(&view, vi, view.virt[vi].placement.unwrap(), &w, &limits).score;
                (0..view.phys.len())
                    .filter(|&p| Some(p) != view.virt[vi].placement)
                    .map(|p| affinity::score(&view, vi, p, &w, &limits))
                    .filter(|s| s.infeasible.is_none())
                    .map(|s| s.score - cur)
                    .fold(0.0, f64::max)
            })
            .collect();
        all.sort_by(|a, b| b.total_cmp(a));
        assert!(
            h.rows.iter().all(|r| r.gain >= all[19] - 1e-9),
            "{:?} vs {}",
            h.rows.iter().map(|r| r.gain).collect::<Vec<_>>(),
            all[19]
        );
        // A best target is a feasible cell with the row's highest score.
        for r in h.rows.iter().filter(|r| r.best.is_some()) {
            let b = r.cells[r.best.unwrap()].expect("best is feasible");
            let cur = r.cells[r.current.unwrap()].unwrap_or(0.0);
            assert!((b - cur - r.gain).abs() < 1e-9 || b >= cur);
        }
        // Too many columns: grouped by rack.
        let small = Inputs { max_columns: 20, ..inp.clone() };
        let g = build(&view, &w, &limits, &small);
        assert_eq!(g.group_by, GroupBy::Rack);
        assert_eq!(g.columns.iter().map(|c| c.members.len()).sum::<usize>(), 30);
        let tiny = Inputs { max_columns: 4, ..inp };
        let z = build(&view, &w, &limits, &tiny);
        assert_eq!((z.group_by, z.columns.len()), (GroupBy::Zone, 3));
        // A group's cell is the best of its members' feasible scores.
        let r = &g.rows[0];
        let full = h.rows.iter().find(|x| x.id == r.id).unwrap();
        for (c, col) in g.columns.iter().enumerate() {
            let best = col
                .members
                .iter()
                .filter_map(|m| h.columns.iter().position(|hc| &hc.label == m))
                .filter_map(|hc| full.cells[hc])
                .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
            assert_eq!(r.cells[c], best);
        }
    }
}
