//! `cargo fuzz run otlp_export`: see `swarm_service::fuzzing::otlp_export`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_service::fuzzing::otlp_export(data));
