//! Fuzz target: see porxy-cli/src/fuzzing.rs, `routes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| porxy_cli::fuzzing::routes(data));
