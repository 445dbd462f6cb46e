//! The fuzzers' corpora (`fuzz/corpus/TARGET/`), replayed on stable: every input a fuzzer kept
//! goes through the same check again, so CI catches a regression without nightly or cargo-fuzz.

mod corpus_replay;
mod fuzz_checks;

use corpus_replay::replay;

#[test]
fn spec_corpus() {
    replay("spec", fuzz_checks::spec);
}

#[test]
fn remote_corpus() {
    replay("remote", fuzz_checks::remote);
}

#[test]
fn units_corpus() {
    replay("units", fuzz_checks::units);
}

#[test]
fn session_frame_corpus() {
    replay("session_frame", fuzz_checks::session_frame);
}
