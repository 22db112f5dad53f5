//! Swarm's placement service: the library behind `swarmd` and `swarmctl`.
//!
//! Layout:
//! - [`domain`]: validated topology types (ids, nodes, resources);
//! - [`validate`]: wire messages to domain types, with field paths in errors;
//! - [`placement`]: the pure placement math — affinity, controller rounds and
//!   the assessment of single moves, no IO and no clock reads, shared with
//!   the replay simulator;
//! - [`series`]: durable metric intake (write-ahead log with group commit,
//!   snapshots) into Polars frames;
//! - [`store`]: the narrow interface to durable metadata and its embedded
//!   (redb) implementation;
//! - [`decisions`]: the sequenced, resumable decision log;
//! - [`forecast`]: raw samples → the model's grid → forecasts (serving);
//! - [`history`]: decayed performance of virtual nodes per physical node;
//! - [`migration`]: the pure state machine of a shadowed migration, the
//!   book of all migrations (reservations), and the reference orchestrator;
//! - [`state`]: the cheap-clone [`state::Swarm`] handle that does the IO
//!   around the pure code;
//! - [`grpc`]: the `swarm.v1` services, the OTLP metrics receiver, health
//!   and reflection, and [`grpc::serve`];
//! - [`http`]: the web dashboard (heatmap, forecasts, decisions), its JSON
//!   API and Prometheus `/metrics`;
//! - [`otlp`]: OTLP metrics → samples (pure); [`telemetry`]: swarmd's own metrics;
//! - [`auth`]: who may call what (bearer tokens, pure); [`security`]: loading
//!   tokens and TLS; [`limits`]: ingest limits and back-pressure;
//! - [`client`]: connecting to swarmd (TLS, token) for swarmctl, its agent and the demo;
//! - [`fuzzing`]: the harnesses of the `cargo fuzz` targets in `fuzz/`;
//! - [`config`]: file/env/flag configuration; [`clock`]: injectable time;
//! - [`reconfig`]: minimal-movement reconfiguration plans (min-cost flow),
//!   pure;
//! - [`replay`]: the trace-replay simulator (same placement code, virtual time);
//! - [`demo`]: the demo cluster and its load generator;
//! - [`ctl`]: the `swarmctl` commands.

#![deny(missing_docs)]

pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod convert;
pub mod ctl;
pub mod decisions;
pub mod demo;
pub mod domain;
pub mod forecast;
pub mod fuzzing;
pub mod grpc;
pub mod history;
pub mod http;
pub mod limits;
pub mod migration;
pub mod otlp;
pub mod placement;
pub mod reconfig;
pub mod replay;
pub mod security;
pub mod series;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod validate;
