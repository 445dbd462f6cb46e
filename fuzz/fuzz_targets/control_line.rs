//! Fuzz target: see porxy-cli/src/fuzzing.rs, `control_line`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| porxy_cli::fuzzing::control_line(data));
