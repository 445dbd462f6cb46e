//! `--rpc ADDR`: JSON-RPC 2.0 over a plain socket, one request (or batch) per line and one
//! answer per line, for tools that keep a connection open. A line is at most the admin body
//! limit; a client that completes none within the idle timeout is disconnected. It shares the
//! admin endpoint's clients register and methods; it has no token, so it listens on loopback
//! or a Unix socket only, unless `--admin-insecure`.

use std::cell::Cell;
use std::io::{self, ErrorKind};
use std::time::Instant;

use super::methods::Methods;
use super::protocol::{self, INVALID_REQUEST};
use crate::admin::api::Api;
use crate::clients::listener::{self, Starter};
use crate::clients::{
    write_all_by, Admission, BoundAddr, ClientStream, Closer, Deadlines, Line, LineReader,
    ListenError, ListenSocket, Member, Register, Standing, MAX_CLIENTS,
};

/// The socket's name in errors and logs.
pub const ROLE: &str = "JSON-RPC socket";

/// What every session of the socket shares.
#[derive(Clone)]
pub struct RpcSettings {
    pub api: Api,
    /// The longest line taken.
    pub max_line: usize,
    pub deadlines: Deadlines,
    pub register: std::sync::Arc<Register>,
}

impl Starter for RpcSettings {
    fn start<S: ClientStream>(&self, stream: S) -> io::Result<()> {
        let member = match self.register.admit(stream.stopper()?, Instant::now()) {
            Admission::Admitted(member) => member,
            Admission::Full => {
                let why = format!("too many admin clients (limit {MAX_CLIENTS}), all busy");
                farewell(stream, &why);
                return Ok(());
            }
        };
        let settings = self.clone();
        std::thread::Builder::new()
            .name("porxy-rpc-session".into())
            .spawn(move || {
                if let Err(e) = run(stream, &settings, &member) {
                    tracing::debug!(error = %e, "JSON-RPC session ended");
                }
            })?;
        Ok(())
    }
}

/// Binds the socket at `addr`, waiting up to `wait` for an address in use (a redeploy).
pub fn bind(
    addr: &crate::clients::ListenAddr,
    wait: std::time::Duration,
) -> Result<(ListenSocket, BoundAddr), ListenError> {
    crate::admin::server::bind_as(addr, ROLE, wait)
}

/// Serves a bound JSON-RPC socket on a thread of its own.
pub fn serve(
    socket: ListenSocket,
    bound: BoundAddr,
    settings: RpcSettings,
) -> Result<Closer, ListenError> {
    listener::serve(socket, bound, ROLE, settings)
}

/// A last error line (id null), sent without waiting, then the end.
fn farewell(mut stream: impl ClientStream, why: &str) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(error_line(INVALID_REQUEST, why).as_bytes());
}

fn error_line(code: i64, message: &str) -> String {
    let error = serde_json::json!({
        "jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": null
    });
    format!("{error}\n")
}

fn run<S: ClientStream>(mut stream: S, settings: &RpcSettings, member: &Member) -> io::Result<()> {
    let mut lines = LineReader::new(settings.max_line);
    // Bounded by the client: each turn answers one line, or ends.
    loop {
        member.waiting(Instant::now());
        let next = lines.next_line(&mut stream, settings.deadlines.request_by(Instant::now()));
        if member.busy() == Standing::Evicted {
            farewell(
                stream,
                "too many admin clients; closing this one, which waited longest",
            );
            return Ok(());
        }
        let line = match next {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::TimedOut => return Ok(()),
            Err(e) => return Err(e),
        };
        let stop = Cell::new(false);
        let answer = match line {
            Line::Complete(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Complete(bytes) => {
                let methods = Methods {
                    api: &settings.api,
                    stop: &stop,
                };
                match protocol::respond(&bytes, &methods) {
                    Some(answer) => format!("{answer}\n"),
                    None => String::new(),
                }
            }
            Line::TooLong(max) => error_line(
                protocol::PARSE_ERROR,
                &format!("a request over {max} bytes; one request per line"),
            ),
        };
        let deadline = settings.deadlines.reply_by(Instant::now());
        if let Err(e) = write_all_by(&mut stream, answer.as_bytes(), deadline) {
            if e.kind() == ErrorKind::TimedOut {
                let _ = stream.reset_on_close();
            }
            return Err(e);
        }
        if stop.get() {
            settings.api.ctx.stopper.graceful();
        }
    }
}
