//! Controlled migrations with shadowing.
//!
//! - [`machine`]: the pure, durable state machine of one migration — an
//!   explicit table of allowed transitions, per-phase timeouts, shadow-health
//!   verification, fencing epochs and idempotent reports. No IO, no clock:
//!   the caller persists each transition before acting on it.
//! - [`book`]: all migrations, with the rules that span several: one live
//!   migration per virtual node, reservations on targets.
//! - [`agent`]: the reference orchestrator (a gRPC client that carries
//!   migrations out on a simulated cluster, with fault injection).
//!
//! The IO around them (store, topology commit at cutover, timeouts on a
//! timer) is in [`crate::state`]; the gRPC service in [`crate::grpc`].

pub mod agent;
pub mod book;
pub mod machine;
