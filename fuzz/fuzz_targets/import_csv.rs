//! `cargo fuzz run import_csv`: see `swarm_datasets::fuzzing::import_csv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_datasets::fuzzing::import_csv(data));
