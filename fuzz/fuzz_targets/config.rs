//! Fuzz target: see porxy-cli/src/fuzzing.rs, `config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| porxy_cli::fuzzing::config(data));
