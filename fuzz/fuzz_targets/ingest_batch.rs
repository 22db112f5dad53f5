//! `cargo fuzz run ingest_batch`: see `swarm_service::fuzzing::ingest_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_service::fuzzing::ingest_batch(data));
