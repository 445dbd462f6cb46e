//! The binary's fuzzers' corpora (`fuzz/corpus/TARGET/`), replayed on stable: every input a
//! fuzzer kept goes through the same check again (`porxy_cli::fuzzing`).

#[path = "../../porxy-core/tests/corpus_replay/mod.rs"]
mod corpus_replay;

use corpus_replay::replay;
use porxy_cli::fuzzing;

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
