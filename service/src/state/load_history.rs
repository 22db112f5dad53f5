//! The risk-aware rule's history read in place from the stored series.
//!
//! The rule ([`swarm_core::placement::risk::propose`]) reads every virtual node's window once into
//! its host's sums, and again only for the few nodes it weighs moving; so
//! swarmd hands it the series themselves, not a copy of every node's week
//! (1.6 GB of f64 at 100,000 nodes, which took longer to build than the rest
//! of the round).

use std::cell::RefCell;

use swarm_core::placement::affinity::ClusterView;
use swarm_core::placement::risk::LoadHistory;

use crate::forecast::{self, Aggregate};
use crate::series::frames::{Frames, SeriesHandle};

/// Every virtual node's CPU in cores on the model's grid ending now, in view
/// order: its peak series where it has points in the window (peaks are what
/// overload), else its usage series, else none.
pub(super) struct FrameHistory<'a> {
    nodes: Vec<Option<(SeriesHandle<'a>, Aggregate)>>,
    step_ms: i64,
    now_ms: i64,
    steps: usize,
}

thread_local! {
    /// Points of the series being read (one buffer per reading thread).
    static POINTS: RefCell<Vec<(i64, f64)>> = const { RefCell::new(Vec::new()) };
}

impl<'a> FrameHistory<'a> {
    /// The series of `view`'s virtual nodes over the `steps` steps of
    /// `step_ms` ending at `now_ms`.
    pub(super) fn new(
        frames: &'a Frames,
        view: &ClusterView,
        step_ms: i64,
        steps: usize,
        now_ms: i64,
    ) -> polars::prelude::PolarsResult<Self> {
        let from = window_start(now_ms, step_ms, steps);
        // Its peak series, else its usage series, as every reader of a
        // virtual node's CPU picks ([`super::virtual_cpu`]); one with no
        // point in the window is no history.
        let mut by_id = super::virtual_cpu(frames, |series, agg, _| {
            series.newest_ms().is_some_and(|t| t >= from).then_some((*series, agg))
        })?;
        let nodes: Vec<Option<(SeriesHandle<'a>, Aggregate)>> =
            view.virt.iter().map(|v| by_id.remove(v.id.as_str())).collect();
        let steps = if nodes.iter().any(Option::is_some) { steps } else { 0 };
        Ok(FrameHistory { nodes, step_ms, now_ms, steps })
    }
}

/// The first time a window of `steps` grid points ending at `now_ms` reads
/// (the cell of the first point opens a step before it).
fn window_start(now_ms: i64, step_ms: i64, steps: usize) -> i64 {
    now_ms - steps as i64 * step_ms
}

impl LoadHistory for FrameHistory<'_> {
    fn steps(&self) -> usize {
        self.steps
    }

    fn read(&self, vi: usize, out: &mut [f64]) -> bool {
        let Some((series, agg)) = self.nodes.get(vi).copied().flatten() else { return false };
        POINTS.with_borrow_mut(|points| {
            points.clear();
            series.read(window_start(self.now_ms, self.step_ms, self.steps), i64::MAX, points);
            if points.is_empty() {
                return false;
            }
            if out.len() == self.steps {
                forecast::regular_into(points, self.step_ms, self.now_ms, agg, out);
            } else {
                // The tail of the whole window's grid, so that a gap at the
                // tail's start is filled as on the whole window.
                let mut whole = vec![0.0; self.steps];
                forecast::regular_into(points, self.step_ms, self.now_ms, agg, &mut whole);
                out.copy_from_slice(&whole[self.steps - out.len()..]);
            }
            true
        })
    }
}
