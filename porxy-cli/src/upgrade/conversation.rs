//! One conversation on the running porxy's upgrade socket: a request, and if it is `TAKEOVER`
//! and no other takeover runs, the handover of the listening sockets (steps 2 to 4 of the
//! module docs), then of the connections (`handover.rs`).
//!
//! Everything a peer sends is read through a [`LineReader`]: bounded in length, with one
//! deadline per line. A refusal is answered `ERR why` (best effort) and logged, rate-limited.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use porxy_core::ProxyHandle;
use sendfd::SendWithFd;

use super::gate::Gate;
use super::line::{LineError, LineReader, Quoted};
use super::peer::Peer;
use super::peers::{Fault, Peers, REQUEST_TIMEOUT};
use super::successor::MAX_SOCKETS;
use super::STEP_TIMEOUT;
use crate::clients::BoundAddr;
use crate::journal;
use crate::reload::Reloader;
use crate::stopping::Stopper;

/// Longest request line.
pub(super) const MAX_REQUEST: usize = 64;
/// How long the running porxy waits for its successor's READY: the successor may be waiting
/// for ports (`--bind-wait`) or resolving names. If it goes away, the wait ends at once.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a refusal may take to write: a peer that does not read is not waited for.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// What every conversation of one upgrade socket shares.
pub(super) struct Context {
    pub(super) handle: ProxyHandle,
    pub(super) stopper: Arc<Stopper>,
    pub(super) reloader: Arc<Reloader>,
    pub(super) gate: Gate,
    pub(super) peers: Peers,
}

/// One peer, from its request on.
pub(super) struct Conversation {
    reader: LineReader,
    peer: Peer,
    /// Its place among the conversations waiting for their request, if it waits there.
    id: Option<u64>,
}

impl Conversation {
    pub(super) fn new(conn: UnixStream, peer: Peer, id: Option<u64>) -> Conversation {
        Conversation {
            reader: LineReader::new(conn),
            peer,
            id,
        }
    }

    /// Serves the conversation to its end.
    pub(super) fn run(mut self, context: &Context) {
        let request = self
            .reader
            .read_line(MAX_REQUEST, Instant::now() + REQUEST_TIMEOUT);
        if let Some(id) = self.id {
            context.peers.done_waiting(id);
        }
        let pid = self.peer.pid;
        let runtime_asked = match request.as_deref() {
            Ok("TAKEOVER") => false,
            Ok(line) if line == format!("TAKEOVER {}", journal::FORMAT) => true,
            _ => false,
        };
        match request {
            Ok(line) if line.starts_with("TAKEOVER") && (runtime_asked || line == "TAKEOVER") => {}
            // Connected and left without a word: how a porxy checks whether a socket is alive.
            Err(LineError::Closed { partial }) if partial.is_empty() => {
                tracing::debug!(pid, "a peer of the upgrade socket left without a request");
                return;
            }
            Ok(line) => {
                let why = format!("expected TAKEOVER, got {}", Quoted(line.as_bytes()));
                self.refuse(context, Fault::BadRequest, &why);
                return;
            }
            Err(e) => {
                let why = format!("no request: {e}");
                self.refuse(context, Fault::BadRequest, &why);
                return;
            }
        }
        if let Err(why) = context.gate.enter(self.peer) {
            self.refuse(context, Fault::Refused, &why);
            return;
        }
        let outcome = self.hand_over(context, runtime_asked);
        context.gate.leave(outcome.is_ok());
        if let Err(why) = outcome {
            tracing::warn!(upgrade = %context.peers.shown, pid, error = %why, "takeover abandoned; carrying on");
        }
    }

    /// Answers `ERR why`, and warns (rate-limited).
    fn refuse(&self, context: &Context, fault: Fault, why: &str) {
        let mut out = self.reader.stream();
        let _ = out.set_write_timeout(Some(REFUSAL_TIMEOUT));
        let _ = out.write_all(format!("ERR {why}\n").as_bytes());
        if let Some(times) = context.peers.due(fault) {
            tracing::warn!(upgrade = %context.peers.shown, pid = self.peer.pid, times, "upgrade socket: {why}; refused");
        }
    }

    /// The takeover proper; `Ok` once the new porxy has taken over.
    fn hand_over(mut self, context: &Context, runtime_asked: bool) -> Result<(), Abandoned> {
        let (handle, stopper) = (&context.handle, &context.stopper);
        tracing::info!(
            pid = self.peer.pid,
            "a new porxy asks to take over; handing over the listening sockets"
        );
        let mut conn = self.reader.stream();
        conn.set_write_timeout(Some(STEP_TIMEOUT))
            .map_err(Abandoned::io("setting a write timeout"))?;
        let names = context.reloader.names();
        let sockets = handle.listening_sockets().map_err(Abandoned::Sockets)?;
        let mut text = String::new();
        let mut fds: Vec<OwnedFd> = Vec::new();
        for (addr, socket) in sockets {
            let name = names
                .get(&addr)
                .cloned()
                .unwrap_or_else(|| format!("addr-{addr}"));
            text.push_str(&format!("tunnel {name} {addr}\n"));
            fds.push(socket.into());
        }
        if let Some((bound, fd)) = stopper.control_handover() {
            match &bound {
                BoundAddr::Tcp(addr) => text.push_str(&format!("control tcp {addr}\n")),
                BoundAddr::Unix(path) => {
                    text.push_str(&format!("control unix {}\n", path.display()))
                }
            }
            fds.push(fd);
        }
        text.push_str("END\n");
        // From here on a failure gives the control socket back to this process.
        let abandon = |why: Abandoned| {
            stopper.cancel_control_handover();
            why
        };
        if fds.len() > MAX_SOCKETS {
            let why = abandon(Abandoned::TooManySockets(fds.len()));
            let _ = conn.write_all(format!("ERR {why}\n").as_bytes());
            return Err(why);
        }
        let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let sent = conn.send_with_fd(text.as_bytes(), &raw);
        // Our duplicates are no longer needed once sent (the receiver has its own).
        drop(fds);
        sent.map_err(|e| abandon(Abandoned::io("sending the sockets")(e)))?;
        let mut ready = self
            .reader
            .read_line(MAX_REQUEST, Instant::now() + READY_TIMEOUT);
        // A successor that asked for the runtime journal asks for it once it has the sockets.
        if runtime_asked && matches!(&ready, Ok(line) if line == "RUNTIME") {
            let journal = context.reloader.journal.to_json(Instant::now()).to_string();
            let mut answer = format!("RUNTIME {}\n", journal.len()).into_bytes();
            answer.extend_from_slice(journal.as_bytes());
            self.reader
                .stream()
                .write_all(&answer)
                .map_err(|e| abandon(Abandoned::io("sending the runtime journal")(e)))?;
            ready = self
                .reader
                .read_line(MAX_REQUEST, Instant::now() + READY_TIMEOUT);
        }
        match ready {
            Ok(line) if line == "READY" => {}
            Ok(line) => return Err(abandon(Abandoned::NotReady(line))),
            Err(e) => return Err(abandon(Abandoned::WentAway(e))),
        }
        // OK goes out before this process stops: with nothing to drain it exits at once, and a
        // successor that never read OK would give up the takeover, leaving nobody to serve.
        self.reader.stream().write_all(b"OK\n").map_err(|e| {
            abandon(Abandoned::io("the new porxy went away before it read OK")(
                e,
            ))
        })?;
        tracing::info!("the new porxy accepts now; this one stops accepting");
        // With nothing to drain the proxy stops at once: the process waits for the answer.
        let _hold = stopper.hold_exit();
        stopper.graceful();
        super::handover::answer(&mut self.reader, handle);
        Ok(())
    }
}

/// Why a takeover was abandoned: the running porxy carries on as if nothing had happened.
#[derive(Debug, thiserror::Error)]
enum Abandoned {
    #[error("{step}: {error}")]
    Io {
        step: &'static str,
        error: std::io::Error,
    },
    #[error("cannot duplicate the listening sockets: {0}")]
    Sockets(porxy_core::Error),
    #[error("{0} sockets is more than one handover carries")]
    TooManySockets(usize),
    #[error("the new porxy said {} instead of READY", Quoted(.0.as_bytes()))]
    NotReady(String),
    #[error("the new porxy went away before it was ready: {0}")]
    WentAway(LineError),
}

impl Abandoned {
    fn io(step: &'static str) -> impl Fn(std::io::Error) -> Abandoned {
        move |error| Abandoned::Io { step, error }
    }
}
