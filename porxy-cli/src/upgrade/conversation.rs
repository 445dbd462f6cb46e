//! One conversation on the running porxy's upgrade socket: a request, and if it is `TAKEOVER`
//! and no other takeover runs, the handover of the listening sockets (steps 2 to 4 of the
//! module docs), then of the connections (`handover.rs`).
//!
//! Everything a peer sends is read through a [`LineReader`]: bounded in length, with one
//! deadline per line. A refusal is answered `ERR why` (best effort) and logged, rate-limited.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sendfd::SendWithFd;

use super::line::{LineError, LineReader, Quoted};
use super::peer::Peer;
use super::server::{lock, Fault, Server, REQUEST_TIMEOUT};
use super::successor::MAX_SOCKETS;
use super::STEP_TIMEOUT;
use crate::control::BoundControl;

/// Longest request line.
pub(super) const MAX_REQUEST: usize = 64;
/// How long the running porxy waits for its successor's READY: the successor may be waiting
/// for ports (`--bind-wait`) or resolving names. If it goes away, the wait ends at once.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a refusal may take to write: a peer that does not read is not waited for.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Lets one takeover run at a time, and none after one has succeeded.
#[derive(Default)]
pub(super) struct Gate(Mutex<GateState>);

#[derive(Default, Debug, Clone, Copy)]
enum GateState {
    #[default]
    Open,
    /// A takeover by this process runs.
    Busy { pid: i32, since: Instant },
    /// This porxy was taken over; it stops.
    TakenOver,
}

impl Gate {
    /// Lets `peer`'s takeover through, or says why not.
    fn enter(&self, peer: Peer) -> Result<(), String> {
        let mut state = lock(&self.0);
        match *state {
            GateState::Open => {
                *state = GateState::Busy {
                    pid: peer.pid,
                    since: Instant::now(),
                };
                Ok(())
            }
            GateState::Busy { pid, since } => Err(format!(
                "another takeover is under way (pid {pid}, for {}s)",
                since.elapsed().as_secs()
            )),
            GateState::TakenOver => {
                Err("this porxy has been taken over already and is stopping".into())
            }
        }
    }

    /// The running takeover has ended: done (`taken`), or abandoned.
    fn leave(&self, taken: bool) {
        *lock(&self.0) = if taken {
            GateState::TakenOver
        } else {
            GateState::Open
        };
    }
}

/// One peer, from its request on.
pub(super) struct Conversation {
    reader: LineReader,
    peer: Peer,
    /// Its place among the conversations waiting for their request.
    id: u64,
}

impl Conversation {
    pub(super) fn new(conn: UnixStream, peer: Peer, id: u64) -> Conversation {
        Conversation {
            reader: LineReader::new(conn),
            peer,
            id,
        }
    }

    /// Serves the conversation to its end.
    pub(super) fn run(mut self, server: &Server) {
        let request = self
            .reader
            .read_line(MAX_REQUEST, Instant::now() + REQUEST_TIMEOUT);
        server.done_waiting(self.id);
        let pid = self.peer.pid;
        match request {
            Ok(line) if line == "TAKEOVER" => {}
            // Connected and left without a word: how a porxy checks whether a socket is alive.
            Err(LineError::Closed { partial }) if partial.is_empty() => {
                tracing::debug!(pid, "a peer of the upgrade socket left without a request");
                return;
            }
            Ok(line) => {
                let why = format!("expected TAKEOVER, got {}", Quoted(line.as_bytes()));
                self.refuse(server, Fault::BadRequest, &why);
                return;
            }
            Err(e) => {
                let why = format!("no request: {e}");
                self.refuse(server, Fault::BadRequest, &why);
                return;
            }
        }
        if let Err(why) = server.gate.enter(self.peer) {
            self.refuse(server, Fault::Refused, &why);
            return;
        }
        let outcome = self.hand_over(server);
        server.gate.leave(matches!(outcome, Ok(true)));
        if let Err(why) = outcome {
            tracing::warn!(upgrade = %server.shown, pid, error = %why, "takeover abandoned; carrying on");
        }
    }

    /// Answers `ERR why`, and warns (rate-limited).
    fn refuse(&self, server: &Server, fault: Fault, why: &str) {
        let mut out = self.reader.stream();
        let _ = out.set_write_timeout(Some(REFUSAL_TIMEOUT));
        let _ = out.write_all(format!("ERR {why}\n").as_bytes());
        if let Some(times) = server.due(fault) {
            tracing::warn!(upgrade = %server.shown, pid = self.peer.pid, times, "upgrade socket: {why}; refused");
        }
    }

    /// The takeover proper; true once the new porxy has taken over.
    fn hand_over(mut self, server: &Server) -> Result<bool, String> {
        let (handle, stopper) = (&server.handle, &server.stopper);
        tracing::info!(
            pid = self.peer.pid,
            "a new porxy asks to take over; handing over the listening sockets"
        );
        let mut conn = self.reader.stream();
        conn.set_write_timeout(Some(STEP_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let names: HashMap<SocketAddr, String> = server.reloader.names();
        let sockets = handle.listening_sockets().map_err(|e| e.to_string())?;
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
                BoundControl::Tcp(addr) => text.push_str(&format!("control tcp {addr}\n")),
                BoundControl::Unix(path) => {
                    text.push_str(&format!("control unix {}\n", path.display()))
                }
            }
            fds.push(fd);
        }
        text.push_str("END\n");
        if fds.len() > MAX_SOCKETS {
            stopper.cancel_control_handover();
            let why = format!("{} sockets is more than one handover carries", fds.len());
            let _ = conn.write_all(format!("ERR {why}\n").as_bytes());
            return Err(why);
        }
        let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let sent = conn.send_with_fd(text.as_bytes(), &raw);
        // Our duplicates are no longer needed once sent (the receiver has its own).
        drop(fds);
        if let Err(e) = sent {
            stopper.cancel_control_handover();
            return Err(format!("sending the sockets: {e}"));
        }
        let ready = self
            .reader
            .read_line(MAX_REQUEST, Instant::now() + READY_TIMEOUT);
        match ready {
            Ok(line) if line == "READY" => {}
            Ok(line) => {
                stopper.cancel_control_handover();
                return Err(format!(
                    "the new porxy said {} instead of READY",
                    Quoted(line.as_bytes())
                ));
            }
            Err(e) => {
                stopper.cancel_control_handover();
                return Err(format!("the new porxy went away before it was ready: {e}"));
            }
        }
        // OK goes out before this process stops: with nothing to drain it exits at once, and a
        // successor that never read OK would give up the takeover, leaving nobody to serve.
        if let Err(e) = self.reader.stream().write_all(b"OK\n") {
            stopper.cancel_control_handover();
            return Err(format!("the new porxy went away before it read OK: {e}"));
        }
        tracing::info!("the new porxy accepts now; this one stops accepting");
        stopper.graceful();
        crate::handover::answer(&mut self.reader, handle);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_takeover_at_a_time_and_none_after_success() {
        let gate = Gate::default();
        let peer = Peer { pid: 42, uid: 0 };
        assert_eq!(gate.enter(peer), Ok(()));
        let busy = gate.enter(Peer { pid: 7, uid: 0 }).unwrap_err();
        assert!(
            busy.starts_with("another takeover is under way (pid 42, for "),
            "{busy}"
        );
        gate.leave(false);
        assert_eq!(gate.enter(peer), Ok(()), "open again once abandoned");
        gate.leave(true);
        assert_eq!(
            gate.enter(peer),
            Err("this porxy has been taken over already and is stopping".into())
        );
    }
}
