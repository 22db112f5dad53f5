//! `cargo fuzz run store_open`: see `swarm_service::fuzzing::store_open`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_service::fuzzing::store_open(data));
