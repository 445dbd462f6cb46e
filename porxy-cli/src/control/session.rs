//! One control client's session, and the register of sessions that bounds them.
//!
//! A session reads bounded lines (at most [`MAX_LINE`] bytes; a longer one is refused and
//! skipped up to its newline) and answers each. It ends on `EXIT`, EOF, a client that does not
//! complete a line within the idle timeout (counted from when the session starts waiting for
//! the line: bytes that trickle in without a newline do not extend it), a client that does not
//! take a whole reply within [`WRITE_TIMEOUT`] (reading part of it does not extend that either;
//! the client is reset), or eviction.
//!
//! At most [`MAX_SESSIONS`] run at once. When one more client comes, the session that has
//! waited longest for a line is closed to make room (it is told why), so that clients that
//! connect and say nothing can never lock an operator out. Only when every session is busy
//! (running a command or writing a reply) is the newcomer refused.

use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use porxy_core::units::format_duration;
use porxy_core::ProxyHandle;

use super::command::{parse, MAX_LINE};
use super::execute::{execute, Context};
use super::outcome::AdminError;
use super::render::{render, Reply};
use super::stream::{write_all_by, ControlStream, Line, LineReader};

/// Control clients served at once.
pub const MAX_SESSIONS: usize = 32;
/// A control client that completes no line for this long is disconnected, unless the
/// configuration says otherwise (`[control] idle_timeout`, `--control-idle-timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A control client that has not taken the whole of a reply this long after it was ready is
/// reset, however it took parts of it meanwhile.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a session shares with the acceptor.
struct Shared {
    /// Since when the session has waited for a line; `None` while it runs a command or writes.
    waiting_since: Mutex<Option<Instant>>,
    /// Closed to make room for a newer client.
    evicted: AtomicBool,
    /// Ends the session's reading.
    stop_reading: Box<dyn Fn() + Send + Sync>,
}

impl Shared {
    fn waiting_since(&self) -> MutexGuard<'_, Option<Instant>> {
        self.waiting_since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sessions running now.
#[derive(Default)]
pub(super) struct Sessions {
    running: Mutex<Vec<(u64, Arc<Shared>)>>,
    next_id: AtomicU64,
}

impl Sessions {
    fn running(&self) -> MutexGuard<'_, Vec<(u64, Arc<Shared>)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new session, evicting the longest-waiting one at the limit. `None` when the
    /// limit is reached and every session is busy.
    fn admit(&self, shared: Arc<Shared>) -> Option<u64> {
        let mut running = self.running();
        if running.len() >= MAX_SESSIONS {
            let longest = running
                .iter()
                .enumerate()
                .filter_map(|(index, (_, s))| s.waiting_since().map(|since| (since, index)))
                .min()?;
            let (_, victim) = running.swap_remove(longest.1);
            victim.evicted.store(true, Ordering::SeqCst);
            (victim.stop_reading)();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        running.push((id, shared));
        Some(id)
    }

    fn leave(&self, id: u64) {
        self.running().retain(|(i, _)| *i != id);
    }
}

/// Starts a session for a newly accepted client on a thread of its own.
pub(super) fn start<S: ControlStream>(
    stream: S,
    handle: &ProxyHandle,
    ctx: &Context,
    sessions: &Arc<Sessions>,
    idle_timeout: Duration,
) -> io::Result<()> {
    let shared = Arc::new(Shared {
        // Waiting from the start: a client that says nothing is the first to make room.
        waiting_since: Mutex::new(Some(Instant::now())),
        evicted: AtomicBool::new(false),
        stop_reading: stream.stopper()?,
    });
    let Some(id) = sessions.admit(shared.clone()) else {
        farewell(
            stream,
            &format!(
                "too many control connections (limit {MAX_SESSIONS}), all busy; try again later"
            ),
        );
        return Ok(());
    };
    let handle = handle.clone();
    let ctx = ctx.clone();
    let register = sessions.clone();
    let spawned = std::thread::Builder::new()
        .name("porxy-control-session".into())
        .spawn(move || {
            let session = Session {
                handle: &handle,
                ctx: &ctx,
                shared: &shared,
                idle_timeout,
            };
            if let Err(e) = session.run(stream) {
                tracing::debug!(error = %e, "control session ended");
            }
            register.leave(id);
        });
    if let Err(e) = spawned {
        sessions.leave(id);
        return Err(e);
    }
    Ok(())
}

/// Sends a last `ERR:` line without waiting for the client to take it, and closes.
fn farewell(stream: impl ControlStream, why: &str) {
    let mut stream = stream;
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(Reply::err(why).text.as_bytes());
}

struct Session<'a> {
    handle: &'a ProxyHandle,
    ctx: &'a Context,
    shared: &'a Shared,
    idle_timeout: Duration,
}

impl Session<'_> {
    /// Serves the client until EXIT, EOF, a timeout, eviction or an IO error.
    fn run<S: ControlStream>(&self, mut stream: S) -> io::Result<()> {
        let mut lines = LineReader::default();
        loop {
            // Waiting since admission for the first line (so that clients are evicted in the
            // order they came), since the last reply for the others.
            self.shared.waiting_since().get_or_insert_with(Instant::now);
            let next = lines.next_line(&mut stream, Instant::now() + self.idle_timeout);
            *self.shared.waiting_since() = None;
            if self.shared.evicted.load(Ordering::SeqCst) {
                farewell(
                    stream,
                    &format!(
                        "too many control connections (limit {MAX_SESSIONS}); \
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
                            format_duration(self.idle_timeout)
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
            let deadline = Instant::now() + WRITE_TIMEOUT;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(since: Option<Instant>) -> Arc<Shared> {
        Arc::new(Shared {
            waiting_since: Mutex::new(since),
            evicted: AtomicBool::new(false),
            stop_reading: Box::new(|| {}),
        })
    }

    #[test]
    fn at_the_limit_the_longest_waiting_session_makes_room() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let mut all = Vec::new();
        for n in 0..MAX_SESSIONS {
            // The one waiting longest is in the middle, not first in line.
            let offset = if n == 5 { 0 } else { 10 + n as u64 };
            let busy = n % 2 == 0 && n != 5;
            let shared = waiting((!busy).then(|| start + Duration::from_millis(offset)));
            assert!(sessions.admit(shared.clone()).is_some());
            all.push(shared);
        }
        let newcomer = waiting(Some(Instant::now()));
        assert!(sessions.admit(newcomer).is_some());
        let evicted: Vec<usize> = (0..MAX_SESSIONS)
            .filter(|&n| all[n].evicted.load(Ordering::SeqCst))
            .collect();
        assert_eq!(evicted, [5]);
        assert_eq!(sessions.running().len(), MAX_SESSIONS);
    }

    #[test]
    fn at_the_limit_with_every_session_busy_the_newcomer_is_refused() {
        let sessions = Sessions::default();
        for _ in 0..MAX_SESSIONS {
            assert!(sessions.admit(waiting(None)).is_some());
        }
        assert_eq!(sessions.admit(waiting(Some(Instant::now()))), None);
        assert_eq!(sessions.running().len(), MAX_SESSIONS);
    }
}
