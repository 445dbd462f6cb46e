//! Fuzz target: see porxy-cli/src/fuzzing.rs, `chunked_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| porxy_cli::fuzzing::chunked_body(data));
