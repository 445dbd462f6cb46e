//! Fuzz target: see porxy-cli/src/fuzzing.rs, `http_head`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| porxy_cli::fuzzing::http_head(data));
