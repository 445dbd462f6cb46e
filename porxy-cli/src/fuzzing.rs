//! The binary's parsers of outside input, reachable by the fuzzers (`fuzz/`) and by the replay
//! of their corpora (`porxy-cli/tests/fuzz_corpora.rs`): each takes raw bytes and must never
//! panic; what it accepts is checked where a round trip exists.

use serde_json::Value;

use crate::admin::http::chunked::Chunked;
use crate::admin::rpc::protocol::{respond, Call, Params, RpcError};
use crate::config_file::{self, Overrides};
use crate::control::command;

/// A control-socket line: a command, or an error whose reply is one line with nothing a
/// terminal would act on (the message may quote the input; the reply escapes it).
pub fn control_line(data: &[u8]) {
    if let Err(error) = command::parse(data) {
        let reply = crate::control::render::Reply::err(error);
        let line = reply.text.strip_suffix('\n').unwrap_or(&reply.text);
        assert!(
            line.starts_with("ERR: ") && !line.chars().any(char::is_control),
            "a reply that is not one clean line: {:?}",
            reply.text
        );
    }
}

/// A configuration file: lifted, or refused with a located error.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = config_file::parse("fuzz.toml", text, &Overrides::default()) {
        let _ = error.to_string();
    }
}

/// An HTTP request head, as the admin API reads it.
pub fn http_head(data: &[u8]) {
    let _ = crate::admin::http::head::parse(data);
}

/// A chunked request body, fed in pieces of every size the input's first byte says.
pub fn chunked_body(data: &[u8]) {
    let Some((&piece, body)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut chunked = Chunked::new(64 * 1024);
    // As a reader does: bytes come in pieces; those not taken stay for the next feed.
    let (mut start, mut have) = (0, 0);
    while have < body.len() || start < have {
        have = (have + piece).min(body.len());
        match chunked.feed(&body[start..have]) {
            Ok((used, done)) => {
                assert!(used <= have - start, "took more than it was given");
                start += used;
                if done || (used == 0 && have == body.len()) {
                    break;
                }
            }
            Err(_) => return,
        }
    }
    let _ = chunked.into_body();
}

/// A routing table as `PUT /routes` takes it.
pub fn routes(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let _ = crate::route_table::lift::routes(&value);
    }
}

/// A JSON-RPC request body, answered by methods that take anything and return nothing.
pub fn rpc_request(data: &[u8]) {
    struct Echo;
    impl Call for Echo {
        fn call(&self, _method: &str, _params: Params<'_>) -> Result<Value, RpcError> {
            Ok(Value::Null)
        }
    }
    let _ = respond(data, &Echo);
}
