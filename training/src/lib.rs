//! Offline training and evaluation of Swarm's forecasting models.
//!
//! Layout:
//! - [`data`]: a trace file → regular series of one metric (via `swarm-datasets`);
//! - [`design`]: series → design matrices, one per horizon, through the
//!   shared feature pipeline of `swarm-models`;
//! - [`linear`]: median (least-absolute-deviation) regression by
//!   iteratively reweighted least squares on linfa-linear;
//! - [`gbt`]: absolute-loss gradient-boosted trees (LAD-TreeBoost);
//! - [`fit`]: the fitting pipeline: split-conformal interval calibration,
//!   then the final model;
//! - [`mase`]: the MASE scale, shared by the backtest's metric and the
//!   fit's loss weights;
//! - [`backtest`]: the rolling-origin protocol, the baselines and the report.

#![deny(missing_docs)]

pub mod backtest;
pub mod cores;
pub mod data;
pub mod design;
pub mod fit;
pub mod gbt;
pub mod linear;
pub mod mase;
