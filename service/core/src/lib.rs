//! Swarm's decision core: everything that decides, and nothing that does IO.
//!
//! Layout:
//! - [`domain`]: validated topology types (ids, nodes, resources, labels);
//! - [`metric`]: entity kinds and the metric catalogue;
//! - [`decision`]: what was decided to move, and why (sequenced by the server);
//! - [`placement`]: the cluster view, affinity, the cost function, the pruned
//!   target search, controller rounds and the assessment of single moves;
//! - [`reconfig`]: minimal-movement reconfiguration plans (min-cost flow);
//! - [`migration`]: the state machine of one shadowed migration and the book
//!   of all of them (reservations, one live migration per virtual node);
//! - [`outcome`]: what a completed move achieved, judged from the samples
//!   before and after its cutover;
//! - [`history`]: decayed performance of virtual nodes per physical node;
//! - [`locality`]: zone and rack labels, interned places, distances;
//! - [`clock`]: the injectable clock the core is handed (it never reads one);
//! - [`duration`]: the one way durations are written in config and flags.
//!
//! Why a crate of its own: `swarmd` and the replay simulator must run the very
//! same decision code, and that code must stay pure (no tokio, no store, no
//! wire types, no clock reads) so a replay is reproducible and a round is a
//! function of its inputs. As a module of the server that purity was a
//! convention; as a crate it is a dependency list, and `.ci/run` fails if
//! `cargo tree -p swarm-core` ever shows tokio, tonic, prost, redb, polars or
//! axum. It also keeps rebuilds small: the CLI and the server recompile
//! without recompiling this.
//!
//! The IO around it is one manager in the server (`swarm_service::state`),
//! in the manner of Garage's layout code.

#![deny(missing_docs)]

pub mod clock;
pub mod decision;
pub mod domain;
pub mod duration;
pub mod history;
pub mod locality;
pub mod metric;
pub mod migration;
pub mod outcome;
pub mod placement;
pub mod reconfig;
