//! The client side of `swarm.v1`, shared by `swarmctl`, the demo inside
//! `swarmd` and the end-to-end tests.
//!
//! Layout:
//! - connecting ([`connect`], [`ClientOptions`], [`Conn`]): the address
//!   (or several replicas' — [`follow`] keeps calls on the leader), TLS for
//!   `https://` URLs, a bearer token on every call;
//! - [`agent`]: the reference orchestrator that carries migrations out on a
//!   simulated cluster (with fault injection);
//! - [`tokens`]: reading token files (swarmd's and `--token-file`);
//! - [`wire`]: the names and mappings of wire enums that both sides print
//!   or convert (phases, decision kinds, affinity components).
//!
//! Why a crate: the CLI must not link the server (its store, series engine
//! and HTTP stack) to talk to it, and the server's demo runs this same
//! orchestrator in process.

#![deny(missing_docs)]

pub mod agent;
mod connect;
pub mod follow;
pub mod tokens;
pub mod wire;

pub use connect::{Bearer, ClientOptions, Conn, ConnectError, connect, with_token};
