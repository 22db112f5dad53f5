//! `cargo fuzz run import_parquet`: see `swarm_datasets::fuzzing::import_parquet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_datasets::fuzzing::import_parquet(data));
