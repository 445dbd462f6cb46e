//! One control client's session: the line protocol over one connection.
//!
//! A session reads bounded lines (at most [`MAX_LINE`] bytes; a longer one is refused and
//! skipped up to its newline) and answers each. It ends on `EXIT`, EOF, a client that does not
//! complete a line within the idle timeout (counted from when the session starts waiting for
//! the line: bytes that trickle in without a newline do not extend it), a client that does not
//! take a whole reply within the write timeout (10 s, [`Deadlines`]; reading part of it does not
//! extend that either; the client is reset), or eviction.
//!
//! How many sessions run at once, and which one makes room for a newcomer, is the register's
//! ([`crate::clients::Register`], at most [`MAX_CLIENTS`]): the session tells it when it
//! waits for a line and when it is busy, and tells its client why it is evicted or refused.

use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::time::Instant;

use porxy_core::units::format_duration;
use porxy_core::ProxyHandle;

use super::command::{parse, MAX_LINE};
use super::execute::{execute, Context};
use super::outcome::AdminError;
use super::render::{render, Reply};
use crate::clients::{
    write_all_by, Admission, ClientStream, Deadlines, Line, LineReader, Member, Register, Standing,
    MAX_CLIENTS,
};

/// Starts a session for a newly accepted client on a thread of its own.
pub(super) fn start<S: ClientStream>(
    stream: S,
    handle: &ProxyHandle,
    ctx: &Context,
    register: &Arc<Register>,
    deadlines: Deadlines,
) -> io::Result<()> {
    let member = match register.admit(stream.stopper()?, Instant::now()) {
        Admission::Admitted(member) => member,
        Admission::Full => {
            farewell(
                stream,
                &format!(
                    "too many control connections (limit {MAX_CLIENTS}), all busy; try again \
                     later"
                ),
            );
            return Ok(());
        }
    };
    let handle = handle.clone();
    let ctx = ctx.clone();
    // The session leaves the register when `member` drops: after its client is served, or at
    // once if the thread does not start (the closure is dropped with what it holds).
    std::thread::Builder::new()
        .name("porxy-control-session".into())
        .spawn(move || {
            let session = Session {
                handle: &handle,
                ctx: &ctx,
                member: &member,
                deadlines,
            };
            if let Err(e) = session.run(stream) {
                tracing::debug!(error = %e, "control session ended");
            }
        })?;
    Ok(())
}

/// Sends a last `ERR:` line without waiting for the client to take it, and closes.
fn farewell(stream: impl ClientStream, why: &str) {
    let mut stream = stream;
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(Reply::err(why).text.as_bytes());
}

struct Session<'a> {
    handle: &'a ProxyHandle,
    ctx: &'a Context,
    member: &'a Member,
    deadlines: Deadlines,
}

impl Session<'_> {
    /// Serves the client until EXIT, EOF, a timeout, eviction or an IO error.
    fn run<S: ClientStream>(&self, mut stream: S) -> io::Result<()> {
        let mut lines = LineReader::new(MAX_LINE);
        loop {
            // Waiting since admission for the first line (so that clients are evicted in the
            // order they came), since the last reply for the others.
            self.member.waiting(Instant::now());
            let next = lines.next_line(&mut stream, self.deadlines.request_by(Instant::now()));
            if self.member.busy() == Standing::Evicted {
                farewell(
                    stream,
                    &format!(
                        "too many control connections (limit {MAX_CLIENTS}); \
                         closing this one, which waited longest"
                    ),
                );
                return Ok(());
            }
            let line = match next {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    farewell(
                        stream,
                        &format!(
                            "idle for too long: no complete line within {}; closing",
                            format_duration(self.deadlines.idle_timeout())
                        ),
                    );
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let reply = match line {
                Line::Complete(bytes) => render(
                    &parse(&bytes)
                        .map_err(AdminError::from)
                        .and_then(|command| execute(command, self.handle, self.ctx)),
                ),
                Line::TooLong(len) => Reply::err(format!(
                    "line too long: over {len} bytes, the limit is {MAX_LINE}"
                )),
            };
            let deadline = self.deadlines.reply_by(Instant::now());
            if let Err(e) = write_all_by(&mut stream, reply.text.as_bytes(), deadline) {
                if e.kind() == ErrorKind::TimedOut {
                    // It does not take its replies: what is left of them is dropped.
                    let _ = stream.reset_on_close();
                }
                return Err(e);
            }
            if reply.then_stop {
                let _ = stream.flush();
                self.ctx.stopper.graceful();
            }
            if reply.close {
                return Ok(());
            }
        }
    }
}
