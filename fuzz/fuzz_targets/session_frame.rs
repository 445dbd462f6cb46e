//! Fuzz target: see porxy-core/tests/fuzz_checks/mod.rs, `session_frame`.
#![no_main]

#[path = "../../porxy-core/tests/fuzz_checks/mod.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::session_frame(data));
