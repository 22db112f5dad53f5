//! Swarm's placement server: the library behind `swarmd`.
//!
//! Layout:
//! - the pure decision core (domain types, placement math, reconfiguration
//!   planner, migration machine) is the `swarm-core` crate;
//! - [`validate`]: wire messages to domain types, with field paths in errors;
//! - [`series`]: durable metric intake (write-ahead log with group commit,
//!   snapshots) into Polars frames;
//! - [`store`]: the narrow interface to durable metadata, its embedded
//!   (redb) and etcd (fenced transactions) implementations;
//! - [`ha`]: leader election on etcd leases, and what a standby serves;
//! - [`decisions`]: the sequenced, resumable decision log;
//! - [`forecast`]: raw samples → the model's grid → forecasts (serving);
//! - [`state`]: the cheap-clone [`state::Swarm`] handle that does the IO
//!   around the pure code;
//! - [`grpc`]: the `swarm.v1` services, the OTLP metrics receiver, health
//!   and reflection, and [`grpc::serve`];
//! - [`http`]: the web dashboard (heatmap, forecasts, decisions), its JSON
//!   API and Prometheus `/metrics`;
//! - [`prometheus`]: a Prometheus-compatible server as the metrics backend
//!   (PromQL reads into the frames as a cache, remote-write);
//! - [`otlp`]: OTLP metrics → samples (pure); [`telemetry`]: swarmd's own metrics;
//! - [`auth`]: who may call what (bearer tokens, pure); [`security`]: loading
//!   tokens and TLS; [`limits`]: ingest limits and back-pressure;
//! - [`fuzzing`]: the harnesses of the `cargo fuzz` targets in `fuzz/`;
//! - [`config`]: file/env/flag configuration; [`clock`]: the wall clock;
//! - [`memory`]: giving the memory a round freed back to the system;
//! - [`demo`]: the demo cluster and its load generator.
//!
//! The other crates of the workspace, and why they are apart:
//! - `swarm-core` (`service/core`): the pure decision core — domain types,
//!   affinity, cost model, pruned search, controller, reconfiguration
//!   planner, migration machine and book. No IO; the replay runs it too.
//! - `swarm-client` (`service/client`): connecting to swarmd, the reference
//!   orchestrator, wire names; the demo here and swarmctl both use it.
//! - `swarm-ctl` (`service/ctl`): swarmctl, its commands and its binary;
//!   the end-to-end tests here run that binary beside `swarmd`.
//! - `swarm-replay` (`service/replay`): the trace-replay simulator, linked
//!   by swarmctl only.

#![deny(missing_docs)]

pub mod auth;
pub mod clock;
pub mod config;
pub mod convert;
pub mod decisions;
pub mod demo;
pub mod forecast;
pub mod fuzzing;
pub mod grpc;
pub mod ha;
pub mod http;
pub mod limits;
pub mod memory;
pub mod otlp;
pub mod prometheus;
pub mod security;
pub mod series;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod validate;
