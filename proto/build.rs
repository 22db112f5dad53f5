//! Compiles `swarm/v1/*.proto` with protox (pure Rust), so building Swarm
//! needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "swarm/v1/topology.proto",
        "swarm/v1/metrics.proto",
        "swarm/v1/placement.proto",
        "swarm/v1/migrations.proto",
        "swarm/v1/reconfiguration.proto",
        // OTLP metrics intake (vendored, see opentelemetry/README.md).
        "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
    ];
    println!("cargo:rerun-if-changed=swarm");
    println!("cargo:rerun-if-changed=opentelemetry");
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for gRPC server reflection.
    std::fs::write(out.join("swarm_v1_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    // Only the server side of OTLP: Swarm receives metrics, it sends none.
    tonic_prost_build::configure().build_client(true).compile_fds(fds)?;
    Ok(())
}
