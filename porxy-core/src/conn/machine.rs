//! One connection's state machine, whichever kind it is: the single input/output API the reactor
//! drives every connection through.
//!
//! A relayed connection ([`Conn`]) has one upstream; a fan-out connection ([`FanConn`]) one per
//! destination. The two machines stay apart where the hot path needs it (the relay's two pipes
//! and splice), but the reactor sees one [`Machine`]: sockets are numbered the same way for both
//! (0 the client, `1 + i` upstream `i`; see [`SocketIx`]), readiness, connects, drives, timers,
//! aborts and freezes go in the same way, and what follows comes back as an [`Action`].
//!
//! Before either, a connection whose tunnel wants something from its client first (a PROXY
//! header) is [`Machine::Opening`]; once that is over it rests as [`Machine::Opened`] until the
//! reactor builds its relay or fan-out machine, with what the opening learned, and picks.

use std::io;
use std::time::Instant;

use super::close::CloseReason;
use super::fanout::{Departure, FanConn};
use super::frozen::Frozen;
use super::hold::Pools;
use super::opening::{Opened, Opening, OpeningStep};
use super::transport::Transport;
use super::{Action, Closing, Conn, Phase, Readiness, Side};

/// Which socket of a connection: the client, or upstream `i` (a relayed connection has one,
/// upstream 0; a fan-out connection one per destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketIx {
    Client,
    Upstream(usize),
}

/// What the reactor must do after readiness was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterReady {
    /// Nothing yet (a client's bytes wait while the upstream connects).
    Wait,
    /// Relay what the readiness allows: [`Machine::drive`].
    Drive,
    /// Upstream `i` is connecting and signalled: see how its connect went, judging by
    /// `ready` (what it reported), then call [`Machine::on_connected`] or
    /// [`Machine::on_connect_failed`].
    CheckConnect(usize, Readiness),
}

/// Bytes a connection moved since it was last asked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Unreported {
    /// Read from the client (and sent on, or logged for every destination).
    pub(crate) to_upstream: u64,
    /// Written to the client.
    pub(crate) to_client: u64,
    /// Sent to each destination of a fan-out connection (empty for a relayed one, whose
    /// upstream's share is `to_upstream`).
    pub(crate) per_upstream: Vec<u64>,
}

/// One connection's state machine.
pub(crate) enum Machine {
    /// Reading what the client sends before its stream.
    Opening(Box<Opening>),
    /// The opening is over: the reactor takes what it learned ([`Machine::take_opened`]) and
    /// builds the connection's machine.
    Opened(Opened),
    /// Inline: the common case takes no allocation of its own.
    Relay(Conn),
    /// Boxed: the rarer and larger kind would otherwise make every relayed connection's slot
    /// as large as its own (the idle benchmark's memory per connection counts it).
    Fanout(Box<FanConn>),
}

impl Machine {
    /// Records what the poller reported for `socket`, and says what follows.
    #[inline]
    pub(crate) fn on_ready(&mut self, socket: SocketIx, ready: Readiness) -> AfterReady {
        match (self, socket) {
            (Machine::Opening(opening), SocketIx::Client) => {
                opening.on_ready(ready);
                AfterReady::Drive
            }
            (Machine::Opening(_) | Machine::Opened(_), _) => AfterReady::Wait,
            (Machine::Relay(conn), SocketIx::Client) => {
                conn.on_ready(Side::Client, ready);
                match conn.phase() {
                    Phase::Connecting | Phase::Queued => AfterReady::Wait,
                    _ => AfterReady::Drive,
                }
            }
            (Machine::Relay(conn), SocketIx::Upstream(_)) => {
                conn.on_ready(Side::Upstream, ready);
                match conn.phase() {
                    Phase::Connecting if conn.upstream_signalled() => {
                        AfterReady::CheckConnect(0, conn.upstream_readiness())
                    }
                    Phase::Connecting | Phase::Queued => AfterReady::Wait,
                    _ => AfterReady::Drive,
                }
            }
            (Machine::Fanout(fan), SocketIx::Client) => {
                fan.on_client_ready(ready);
                AfterReady::Drive
            }
            (Machine::Fanout(fan), SocketIx::Upstream(i)) => {
                fan.on_dest_ready(i, ready);
                if !fan.dest_connecting(i) {
                    AfterReady::Drive
                } else if ready.writable || ready.failed {
                    AfterReady::CheckConnect(i, ready)
                } else {
                    AfterReady::Wait
                }
            }
        }
    }

    /// Upstream `i`'s connect completed; a relayed connection sends it `preface` (its PROXY
    /// header) first (a fan-out one has its header in its log already). `Some(close)` if that
    /// failed (see [`Conn::on_connected`]).
    pub(crate) fn on_connected(
        &mut self,
        i: usize,
        now: Instant,
        preface: Option<&[u8]>,
        pools: &mut Pools,
    ) -> Option<Action> {
        match self {
            Machine::Relay(conn) => conn.on_connected(now, preface, pools),
            Machine::Fanout(fan) => {
                fan.on_connected(i);
                None
            }
            Machine::Opening(_) | Machine::Opened(_) => None,
        }
    }

    /// Upstream `i`'s connect failed with `error`. A relayed connection answers
    /// [`Action::ConnectFailed`] (another backend may be tried); a fan-out destination leaves
    /// (a departure) and the others go on, unless the connection cannot without it.
    pub(crate) fn on_connect_failed(&mut self, i: usize, error: &io::Error) -> Action {
        match self {
            Machine::Relay(conn) => Action::ConnectFailed(conn.on_connect_failed(error)),
            Machine::Fanout(fan) => fan.on_connect_failed(i, error),
            Machine::Opening(_) | Machine::Opened(_) => Action::Wait,
        }
    }

    /// Relays what readiness allows between `client` and `upstreams` (upstream `i` at index
    /// `i`; `None` where none is open), and says what follows.
    #[inline]
    pub(crate) fn drive<S: Transport>(
        &mut self,
        client: &mut S,
        upstreams: &mut [Option<S>],
        pools: &mut Pools,
        now: Instant,
    ) -> Action {
        match self {
            Machine::Relay(conn) => match upstreams.first_mut().and_then(Option::as_mut) {
                Some(upstream) => conn.drive(client, upstream, pools, now),
                None => Action::Wait,
            },
            Machine::Fanout(fan) => fan.drive(client, upstreams, pools, now),
            Machine::Opening(opening) => {
                let step = opening.read(client);
                self.after_opening(step)
            }
            Machine::Opened(_) => Action::Wait,
        }
    }

    /// The earliest moment something must happen if nothing else does.
    #[inline]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            Machine::Relay(conn) => conn.deadline(),
            Machine::Fanout(fan) => fan.deadline(),
            Machine::Opening(opening) => Some(opening.deadline()),
            Machine::Opened(_) => None,
        }
    }

    /// Checks the deadlines at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Action {
        match self {
            Machine::Relay(conn) => conn.on_timer(now),
            Machine::Fanout(fan) => fan.on_timer(now),
            Machine::Opening(opening) => {
                let step = opening.on_timer(now);
                self.after_opening(step)
            }
            Machine::Opened(_) => Action::Wait,
        }
    }

    /// An operator or the proxy ends the connection.
    pub(crate) fn abort(&mut self, reason: CloseReason) -> Action {
        match self {
            Machine::Relay(conn) => conn.abort(reason),
            Machine::Fanout(fan) => fan.abort(reason),
            Machine::Opening(_) | Machine::Opened(_) => Action::Close {
                reason,
                client: Closing::Reset,
                upstream: Closing::Reset,
            },
        }
    }

    /// Bytes moved since the last call.
    #[inline]
    pub(crate) fn take_unreported(&mut self) -> Unreported {
        match self {
            Machine::Relay(conn) => {
                let (to_upstream, to_client) = conn.take_unreported();
                Unreported {
                    to_upstream,
                    to_client,
                    per_upstream: Vec::new(),
                }
            }
            Machine::Fanout(fan) => {
                let ((to_upstream, to_client), per_upstream) = fan.take_unreported();
                Unreported {
                    to_upstream,
                    to_client,
                    per_upstream,
                }
            }
            // Bytes read in the opening count once they reach the upstream.
            Machine::Opening(_) | Machine::Opened(_) => Unreported::default(),
        }
    }

    /// Upstreams that left a fan-out connection since the last call, for the reactor to close
    /// and count (a relayed connection's one upstream leaves only with the connection).
    #[inline]
    pub(crate) fn take_departures(&mut self) -> Vec<Departure> {
        match self {
            Machine::Fanout(fan) => fan.take_departures(),
            Machine::Relay(_) | Machine::Opening(_) | Machine::Opened(_) => Vec::new(),
        }
    }

    /// Whether the connection can move to another process now (see [`Machine::freeze`]).
    pub(crate) fn can_travel(&self) -> bool {
        match self {
            Machine::Relay(conn) => conn.can_travel(),
            Machine::Fanout(fan) => !fan.connecting(),
            // What it has read of its preamble has no place in a session: it opens here.
            Machine::Opening(_) | Machine::Opened(_) => false,
        }
    }

    /// Takes the connection's state out to carry it to another process, unless it
    /// [`Stays`](Frozen::Stays) (a connect in flight, or over). Bytes not yet reported and
    /// departures must be taken first. An error means its bytes cannot travel: the caller
    /// resets it.
    pub(crate) fn freeze(&mut self, pools: &mut Pools, now: Instant) -> io::Result<Frozen> {
        match self {
            Machine::Relay(conn) => conn.freeze(pools, now),
            Machine::Fanout(fan) => {
                let settings = fan.fanout_settings();
                Ok(match fan.freeze(pools, now)? {
                    Some(state) => Frozen::Fanout(settings, Box::new(state)),
                    None => Frozen::Stays,
                })
            }
            Machine::Opening(_) | Machine::Opened(_) => Ok(Frozen::Stays),
        }
    }

    /// Gives back what the connection holds from `pools`; call when it is removed.
    pub(crate) fn release(&mut self, pools: &mut Pools) {
        match self {
            // The relay's pipes give their buffers back as they empty and end.
            Machine::Relay(_) | Machine::Opening(_) | Machine::Opened(_) => {}
            Machine::Fanout(fan) => fan.release(pools),
        }
    }

    /// An operator took upstream `i` out (disabled or removed its backend). A fan-out
    /// destination leaves and the others go on (`None`: it had already left); a relayed
    /// connection ends with its upstream.
    pub(crate) fn remove_upstream(&mut self, i: usize) -> Option<Action> {
        match self {
            Machine::Relay(conn) => Some(conn.abort(CloseReason::BackendRemoved)),
            Machine::Fanout(fan) => fan.remove_dest(i),
            Machine::Opening(_) | Machine::Opened(_) => None,
        }
    }

    /// The relayed connection, for the connect path (backend pick, queue, retries), which
    /// only a relayed connection takes.
    pub(crate) fn relay(&mut self) -> Option<&mut Conn> {
        match self {
            Machine::Relay(conn) => Some(conn),
            _ => None,
        }
    }

    /// The phase of a relayed connection; `None` for a fan-out one.
    pub(crate) fn relay_phase(&self) -> Option<Phase> {
        match self {
            Machine::Relay(conn) => Some(conn.phase()),
            _ => None,
        }
    }

    /// Whether it waits for an upstream: a connect in flight (to the relay's upstream, or to
    /// any destination), or a relayed connection queued for a backend slot. During an export
    /// such a connection leaves once that settles.
    pub(crate) fn awaiting_upstream(&self) -> bool {
        match self {
            Machine::Relay(conn) => matches!(
                conn.phase(),
                Phase::Connecting | Phase::Handshaking | Phase::Queued
            ),
            Machine::Fanout(fan) => fan.connecting(),
            Machine::Opening(_) | Machine::Opened(_) => false,
        }
    }

    /// What an opening's step comes to: on success the machine rests as [`Machine::Opened`]
    /// and asks for a backend; on failure it closes with the reason the opening names.
    fn after_opening(&mut self, step: OpeningStep) -> Action {
        let Machine::Opening(opening) = self else {
            return Action::Wait;
        };
        match step {
            OpeningStep::Wait => Action::Wait,
            OpeningStep::Again => Action::Again,
            OpeningStep::Open(opened) => {
                let source = opened.source;
                *self = Machine::Opened(opened);
                Action::Pick { source }
            }
            OpeningStep::Fail(error) => {
                let reason = opening.failure_reason(&error);
                opening.failed(&error);
                Action::Close {
                    reason,
                    client: Closing::Reset,
                    upstream: Closing::Graceful,
                }
            }
        }
    }

    /// Why its opening failed, for the close log, if it did.
    pub(crate) fn failure(&self) -> Option<&str> {
        match self {
            Machine::Opening(opening) => opening.failure(),
            _ => None,
        }
    }

    /// What the opening learned, once it is over ([`Machine::Opened`]); `None` for a machine
    /// that had no opening, or took it already.
    pub(crate) fn take_opened(&mut self) -> Option<Opened> {
        match self {
            Machine::Opened(opened) => Some(std::mem::take(opened)),
            _ => None,
        }
    }
}
