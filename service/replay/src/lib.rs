//! The trace-replay simulator behind `swarmctl replay`: a real trace in
//! virtual time through the same placement code `swarmd` runs, with
//! policies side by side.
//!
//! - [`scenario`]: hosts, VM sizes and the initial packing (seeded rule, or
//!   a JSON file shared with other tools);
//! - [`forecasts`]: the trace aligned to one grid, demand in cores, and the
//!   proactive policy's forecasts (cross-fitted models by default);
//! - [`engine`]: the replay loop and what each policy did;
//! - [`frontier`]: the reactive rules swept over a grid of settings, the
//!   tuned-reactive frontier a proactive policy is judged against;
//! - [`hindsight`]: the best static placement with the whole trace in
//!   view, a bound beside the oracles;
//! - [`foresight`]: how early the signals a controller can act on warn of
//!   overloads (why proactive can, or cannot, get ahead of them);
//! - [`report`]: JSON and Markdown reports.
//!
//! Why a crate of its own: the replay trains models and reads traces
//! (training, datasets, Polars through them), which the server does not
//! need; `swarmctl` links it, `swarmd` does not. It decides with
//! `swarm-core` only, so a replay is the server's own decision code.

#![deny(missing_docs)]

pub mod engine;
pub mod forecasts;
pub mod foresight;
pub mod frontier;
pub mod hindsight;
pub mod report;
pub mod scenario;
