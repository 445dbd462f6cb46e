//! The binary's fuzzers' corpora (`fuzz/corpus/TARGET/`), replayed on stable: every input a
//! fuzzer kept goes through the same check again (`porxy_cli::fuzzing`).

use std::path::Path;

use porxy_cli::fuzzing;

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
fn control_line_corpus() {
    replay("control_line", fuzzing::control_line);
}

#[test]
fn config_corpus() {
    replay("config", fuzzing::config);
}

#[test]
fn http_head_corpus() {
    replay("http_head", fuzzing::http_head);
}

#[test]
fn chunked_body_corpus() {
    replay("chunked_body", fuzzing::chunked_body);
}

#[test]
fn routes_corpus() {
    replay("routes", fuzzing::routes);
}

#[test]
fn rpc_request_corpus() {
    replay("rpc_request", fuzzing::rpc_request);
}
