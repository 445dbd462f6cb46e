//! JSON-RPC 2.0 over the admin API: `POST /rpc` on the admin endpoint, and `--rpc ADDR`, a
//! TCP socket of newline-delimited JSON for tools that keep a connection open ([`socket`]).
//! The envelope is [`protocol`]'s, the methods [`methods`]', the error codes [`codes`]'.

pub mod codes;
pub mod methods;
pub mod protocol;
pub mod socket;

use std::cell::Cell;

use super::api::{Answer, Api};
use super::http::Response;
use methods::Methods;

/// The answer to `POST /rpc` with `body`: the JSON-RPC answer, or `204` when there is none
/// (notifications only); a `stop` call begins the stop once it is sent.
pub fn over_http(api: &Api, body: &[u8]) -> Answer {
    let stop = Cell::new(false);
    let methods = Methods { api, stop: &stop };
    let response = match protocol::respond(body, &methods) {
        Some(answer) => Response::json(200, &answer),
        None => Response {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        },
    };
    Answer {
        response,
        then_stop: stop.get(),
    }
}
