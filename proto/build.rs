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
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for gRPC server reflection.
    std::fs::write(out.join("swarm_v1_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
