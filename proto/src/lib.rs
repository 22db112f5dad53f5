//! The Swarm gRPC API, package `swarm.v1`.
//!
//! Layout: the `.proto` sources live in `proto/swarm/v1/` and are the single
//! source of truth; `build.rs` compiles them with protox and tonic-prost-build.
//! Everything here is generated; see the `.proto` files for documentation of
//! every message and field (units, ranges, defaults).

#![allow(missing_docs, clippy::all)]

/// Package `swarm.v1`.
pub mod v1 {
    tonic::include_proto!("swarm.v1");

    /// Encoded `FileDescriptorSet` of the whole API, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swarm_v1_descriptor.bin"));
}
