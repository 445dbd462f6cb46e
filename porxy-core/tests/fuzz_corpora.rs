//! The fuzzers' corpora (`fuzz/corpus/TARGET/`), replayed on stable: every input a fuzzer kept
//! goes through the same check again, so CI catches a regression without nightly or cargo-fuzz.

mod fuzz_checks;

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/target`; at least one must be there.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} fails its check",
            path.display()
        );
        count += 1;
    }
    assert!(count > 0, "{target}: an empty corpus in {}", dir.display());
}

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
