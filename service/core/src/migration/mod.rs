//! Controlled migrations with shadowing, the pure part.
//!
//! - [`machine`]: one migration's durable state machine — an explicit table
//!   of allowed transitions that every phase change is checked against,
//!   per-phase timeouts, shadow-health verification, fencing epochs and
//!   idempotent reports. No IO, no clock: the caller persists each transition
//!   before acting on it.
//! - [`book`]: all migrations, with the rules that span several: one live
//!   migration per virtual node, reservations on targets.

pub mod book;
pub mod machine;
