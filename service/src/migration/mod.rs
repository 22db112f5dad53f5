//! Controlled migrations with shadowing.
//!
//! - [`machine`]: the pure, durable state machine of one migration — an
//!   explicit table of allowed transitions, per-phase timeouts, shadow-health
//!   verification, fencing epochs and idempotent reports. No IO, no clock:
//!   the caller persists each transition before acting on it.
//!
//! (The gRPC service, the store table and the reference agent build on it.)

pub mod machine;
