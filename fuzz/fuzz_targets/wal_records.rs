//! `cargo fuzz run wal_records`: see `swarm_service::fuzzing::wal_records`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_service::fuzzing::wal_records(data));
