//! Fuzz target: see porxy-cli/src/fuzzing.rs, `rpc_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| porxy_cli::fuzzing::rpc_request(data));
