//! The end-to-end tests, one module per area, in one test binary: each
//! starts the real `swarmd` (or `swarmctl`) on loopback and talks to it as
//! a user would. One binary links once where twenty did, each with Polars
//! in it (service/Cargo.toml says why that mattered). Run one area with a
//! filter, e.g. `cargo test -p swarm-service --test e2e migrations::`.

mod common;

mod azure_ingest;
mod bad_input;
mod calibration;
mod cli;
mod compat;
mod dashboard;
mod decisions;
mod demo;
mod drain;
mod durability;
mod ecosystem;
mod limits;
mod load;
mod migrations;
mod outcomes;
mod predictive;
mod prometheus;
mod python;
mod reconfigure;
mod replay;
mod security;
