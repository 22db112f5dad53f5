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

    /// The most nodes or placements one mutating topology call may carry;
    /// swarmd refuses more (INVALID_ARGUMENT) and swarmctl splits its calls
    /// under it.
    pub const MAX_NODES_PER_CALL: usize = 10_000;

    /// Encoded `FileDescriptorSet` of the whole API, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swarm_v1_descriptor.bin"));
}

/// The OpenTelemetry protocol's metrics service and messages (vendored
/// protos, see `proto/opentelemetry/README.md`), for swarmd's OTLP intake.
/// Nested as the packages are, because the generated code refers to its
/// siblings by relative paths.
pub mod opentelemetry {
    /// `opentelemetry.proto`.
    pub mod proto {
        /// `opentelemetry.proto.common`.
        pub mod common {
            /// `opentelemetry.proto.common.v1`.
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.common.v1");
            }
        }
        /// `opentelemetry.proto.resource`.
        pub mod resource {
            /// `opentelemetry.proto.resource.v1`.
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.resource.v1");
            }
        }
        /// `opentelemetry.proto.metrics`.
        pub mod metrics {
            /// `opentelemetry.proto.metrics.v1`.
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.metrics.v1");
            }
        }
        /// `opentelemetry.proto.collector`.
        pub mod collector {
            /// `opentelemetry.proto.collector.metrics`.
            pub mod metrics {
                /// `opentelemetry.proto.collector.metrics.v1`.
                pub mod v1 {
                    tonic::include_proto!("opentelemetry.proto.collector.metrics.v1");
                }
            }
        }
    }
}

/// Short name for the OTLP modules.
pub use opentelemetry::proto as otlp;
