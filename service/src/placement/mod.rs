//! Placement math: affinity and controller rounds. Pure: no IO, no tokio, no
//! clock reads — `swarmd` and the replay simulator call exactly this code.

pub mod affinity;
pub mod controller;
