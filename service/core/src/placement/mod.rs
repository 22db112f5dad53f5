//! Placement math: the cluster view, affinity, the cost function, the pruned
//! target search and controller rounds. Pure: no IO, no tokio, no clock reads
//! — `swarmd` and the replay simulator call exactly this code.

pub mod affinity;
pub mod assess;
pub mod calibration;
pub mod controller;
pub mod cost;
pub mod descheduler;
pub mod heatmap;
pub mod move_back;
pub mod risk;
pub mod search;
pub mod synthetic;
#[cfg(test)]
pub(crate) mod testing;
pub mod tuning;
pub mod view;
