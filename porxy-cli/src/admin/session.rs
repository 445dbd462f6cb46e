//! One HTTP client's session: requests read in turn on one connection (keep-alive, pipelined
//! requests served in order), each judged before its body is read (route, method, token, type),
//! served, and answered with its length. It ends when the client closes or asks to, after an
//! answer that closes, when it is idle too long between requests (closed without a word), when
//! it does not take an answer in time (reset), or when it is evicted for a newcomer.

use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::time::Instant;

use super::api::Api;
use super::auth::{self, Token};
use super::http::head::Framing;
use super::http::{Head, HttpError, Limits, Next, Reader, Response};
use super::router::{self, Endpoint, Route};
use super::rpc;
use crate::clients::{
    write_all_by, Admission, ClientStream, Deadlines, Member, Register, Standing, MAX_CLIENTS,
};

/// What every session of one endpoint shares.
#[derive(Clone)]
pub struct Settings {
    pub api: Api,
    pub token: Option<Token>,
    pub limits: Limits,
    pub deadlines: Deadlines,
    pub register: Arc<Register>,
    /// Serves `/metrics` only (`--metrics`): for scrapers that should not reach the API.
    pub only_metrics: bool,
}

/// Starts a session for a newly accepted client on a thread of its own.
pub fn start<S: ClientStream>(stream: S, settings: &Settings) -> io::Result<()> {
    let member = match settings.register.admit(stream.stopper()?, Instant::now()) {
        Admission::Admitted(member) => member,
        Admission::Full => {
            let error = HttpError::closing(
                503,
                format!("too many admin clients (limit {MAX_CLIENTS}), all busy; try again later"),
            );
            farewell(stream, &error);
            return Ok(());
        }
    };
    let settings = settings.clone();
    std::thread::Builder::new()
        .name("porxy-admin-session".into())
        .spawn(move || {
            if let Err(e) = run(stream, &settings, &member) {
                tracing::debug!(error = %e, "admin session ended");
            }
        })?;
    Ok(())
}

/// Sends a last answer without waiting for the client to take it, and closes.
fn farewell(mut stream: impl ClientStream, error: &HttpError) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(&Response::error(error).to_bytes(false, true));
}

fn run<S: ClientStream>(mut stream: S, settings: &Settings, member: &Member) -> io::Result<()> {
    let mut reader = Reader::default();
    // Bounded by the client: each turn serves one request, or ends.
    loop {
        member.waiting(Instant::now());
        let idle_deadline = settings.deadlines.request_by(Instant::now());
        let next = reader.next(&mut stream, &settings.limits, idle_deadline, |head| {
            admit(head, settings).map(drop)
        })?;
        if member.busy() == Standing::Evicted {
            let why = format!(
                "too many admin clients (limit {MAX_CLIENTS}); closing this one, which waited \
                 longest"
            );
            farewell(stream, &HttpError::closing(503, why));
            return Ok(());
        }
        let (head, answer) = match next {
            Next::Ended => return Ok(()),
            Next::Refused(error, head) => {
                let close = error.close;
                let head_only = head
                    .as_ref()
                    .is_some_and(|h| h.method == super::http::Method::Head);
                let keep = head.is_some_and(|h| h.keep_alive) && !close;
                send(
                    &mut stream,
                    settings,
                    &Response::error(&error),
                    head_only,
                    !keep,
                )?;
                if !keep {
                    return Ok(());
                }
                continue;
            }
            Next::Request(request) => {
                let answer = match admit(&request.head, settings) {
                    Ok(Route::Api(endpoint)) => settings.api.serve(endpoint, &request.body),
                    Ok(Route::Rpc) => rpc::over_http(&settings.api, &request.body),
                    Err(error) => Response::error(&error).into(),
                };
                (request.head, answer)
            }
        };
        let close = !head.keep_alive || answer.then_stop;
        let head_only = head.method == super::http::Method::Head;
        send(&mut stream, settings, &answer.response, head_only, close)?;
        if answer.then_stop {
            settings.api.ctx.stopper.graceful();
        }
        if close {
            return Ok(());
        }
    }
}

/// Judges a head before its body is read: the endpoint it is for, the token, the type of a
/// body it carries.
fn admit(head: &Head, settings: &Settings) -> Result<Route, HttpError> {
    let endpoint = router::route(head.method, &head.path)?;
    if settings.only_metrics && endpoint != Route::Api(Endpoint::Metrics) {
        return Err(HttpError::new(404, "this listener serves /metrics only"));
    }
    auth::check(settings.token.as_ref(), head.authorization.as_deref())?;
    if head.framing != Framing::Empty && endpoint.takes_body() {
        match head.content_type.as_deref() {
            Some("application/json") => {}
            Some(other) => {
                return Err(HttpError::new(
                    415,
                    format!("the body must be application/json, not {other}"),
                ))
            }
            None => {
                return Err(HttpError::new(
                    415,
                    "the body needs `Content-Type: application/json`",
                ))
            }
        }
    }
    Ok(endpoint)
}

/// Writes an answer by the reply deadline; a client that does not take it is reset.
fn send<S: ClientStream>(
    stream: &mut S,
    settings: &Settings,
    response: &Response,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    let deadline = settings.deadlines.reply_by(Instant::now());
    let bytes = response.to_bytes(head_only, close);
    if let Err(e) = write_all_by(stream, &bytes, deadline) {
        if e.kind() == ErrorKind::TimedOut {
            let _ = stream.reset_on_close();
        }
        return Err(e);
    }
    Ok(())
}
