//! Accepting in the reactor ([`AcceptMode::Reactors`](crate::AcceptMode)): the reactor takes
//! new clients straight from the tunnels' listening sockets, with no hand-over from another
//! thread.
//!
//! The listener thread sends each listening socket to every reactor (`ReactorMsg::Listen`); the
//! reactor puts it in its epoll, level-triggered and exclusive (`epoll.rs`), and keeps an `Arc`
//! of it. A readiness event marks the socket ready; after the event batch and the messages
//! (so that a `Stop` or `Unlisten` that came with it wins) the reactor accepts, up to
//! [`ACCEPT_BATCH`] clients per socket per round, and adopts each at once. Events for a socket
//! the reactor no longer has are recognised by its listen id, and ignored.
//!
//! A reactor stops accepting ("parks": it takes every listening socket out of its epoll, so that
//! level-triggered readiness cannot make it spin, and looks again every [`PARK_TICK`]) when:
//! - the proxy holds `max_connections` ([`Admission`](crate::accept::Admission)): new clients
//!   wait in the listen backlog, as with the listener thread;
//! - over the proxy-wide `max_accept_rate` ([`AcceptRate`](crate::accept::AcceptRate)): until
//!   the next client is due, new clients wait in the listen backlog;
//! - descriptors or memory ran out (EMFILE, ENFILE, ...): for [`RESOURCE_BACKOFF`], logged at
//!   most once a second across the reactors;
//! - it holds more than its share of the open connections (the average over the reactors plus
//!   `SPREAD_SLACK`): the kernel wakes the first idle reactor in its list, so without this one
//!   reactor would take nearly every client of a light load. It accepts again once the others
//!   have caught up.
//!
//! Stepping aside must not strand a client: the kernel wakes one reactor per arriving client,
//! and a client the woken reactor leaves in the backlog wakes no other. So a reactor the kernel
//! woke always accepts at least one client before it steps aside (on Linux 5.10 and later a
//! sleeping reactor is woken for one client only; clients arriving while it runs wake the
//! next). Should a kernel have woken it alone for more, a reactor that stepped aside looks once,
//! a [`PARK_TICK`] later, whether clients still wait, and takes them itself. Hence the spread:
//! no reactor holds more than the average plus `SPREAD_SLACK + 1`, but for clients left
//! unclaimed that long.
//!
//! An accept failing in any other way (not for one client, not for want of resources) takes
//! that socket alone out of the epoll for [`RESOURCE_BACKOFF`]: level-triggered, a socket in
//! some broken state would otherwise be reported, and fail, in a loop.
//!
//! Adding the sockets back to the epoll reports at once the clients that queued meanwhile.
//! Stopping (`ReactorMsg::Stop`) and removing a tunnel take the sockets out of the epoll before
//! the reactor lets go of them: after an upgrade the new process holds the same sockets, and a
//! registration left behind would keep taking its wake-ups.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use tracing::debug;

use super::accepted::{Accepted, Origin};
use super::Reactor;
use crate::accept::parking::{self, Load, Parked, Tick};
use crate::accept::{AcceptFailure, Accepting, ListenSocket, NoTurn, Pause};

/// Clients accepted from one listening socket per round before the reactor turns to its
/// connections (and to the other sockets).
const ACCEPT_BATCH: usize = 64;

/// How an accept round ended.
enum Round {
    /// Every ready socket was served (or gave its batch).
    Done,
    /// Stop accepting, for this reason.
    Park(Parked),
}

impl Reactor {
    /// Starts accepting from `socket` (unless stopping, or accepting is the listener's).
    pub(super) fn listen(&mut self, socket: Arc<ListenSocket>) {
        if self.stopping.is_stopping() {
            return;
        }
        if let Some(acceptor) = self.acceptor.as_mut() {
            acceptor.listen(&self.poll, socket);
        }
    }

    /// Stops accepting from listening socket `id` and lets go of it.
    pub(super) fn unlisten(&mut self, id: usize) {
        if let Some(acceptor) = self.acceptor.as_mut() {
            acceptor.unlisten(&self.poll, id);
        }
    }

    /// Stops accepting from every listening socket and lets go of them (the proxy stops).
    pub(super) fn unlisten_all(&mut self) {
        if let Some(acceptor) = self.acceptor.as_mut() {
            acceptor.unlisten_all(&self.poll);
        }
    }

    /// A readiness event for listening socket `id`: accept from it after the batch.
    pub(super) fn on_listener_event(&mut self, id: usize) {
        if let Some(acceptor) = self.acceptor.as_mut() {
            acceptor.on_event(id);
        }
    }

    /// Accepts from every ready listening socket, as far as the limit and the share allow; a
    /// parked reactor first looks whether it may accept again.
    pub(super) fn accept_round(&mut self, now: Instant) {
        let Some(acceptor) = self.acceptor.as_mut() else {
            return;
        };
        acceptor.end_set_asides(&self.poll, now);
        let shared = acceptor.shared().clone();
        if acceptor.parked_mut().is_some() {
            let load = self.load(&shared);
            let tick = self
                .acceptor
                .as_mut()
                .and_then(|a| a.parked_mut())
                .map_or(Tick::Stay, |parked| parked.tick(now, load));
            let resume = match tick {
                Tick::Stay => false,
                Tick::Resume => true,
                Tick::Probe => self.probe(&shared, now),
            };
            if resume {
                if let Some(acceptor) = self.acceptor.as_mut() {
                    acceptor.unpark(&self.poll);
                }
            }
            return;
        }
        let ready = acceptor.take_ready();
        if ready.is_empty() {
            return;
        }
        let round = match self.accept_from(&ready, &shared, now) {
            Round::Done => {
                parking::after_round(now, self.load(&shared)).map_or(Round::Done, Round::Park)
            }
            round => round,
        };
        if let Round::Park(why) = round {
            self.park(why, &shared, now);
        }
    }

    /// For a reactor that stepped aside: accepts at most one client per listening socket.
    /// A client still in the backlog a [`PARK_TICK`](parking::PARK_TICK) after that was told
    /// to nobody else, so it is taken here whatever the share. True if one was: more may wait,
    /// so the reactor goes back to its epoll for a round.
    fn probe(&mut self, shared: &Accepting, now: Instant) -> bool {
        let Some(acceptor) = &self.acceptor else {
            return false;
        };
        let mut took = false;
        for socket in acceptor.sockets() {
            if shared.take_turn(now).is_err() {
                break;
            }
            match socket.socket().accept() {
                Ok((stream, peer)) => {
                    took = true;
                    self.take_in(stream, peer, &socket, shared, now);
                }
                // Nobody waits (the usual answer), or a failure the next round meets again.
                Err(_) => shared.release_turn(),
            }
        }
        took
    }

    /// One round over the `ready` sockets.
    fn accept_from(
        &mut self,
        ready: &[Arc<ListenSocket>],
        shared: &Accepting,
        now: Instant,
    ) -> Round {
        let mut accepted = 0usize;
        for socket in ready {
            for _ in 0..ACCEPT_BATCH {
                if let Some(why) = parking::before_accept(accepted, now, self.load(shared)) {
                    return Round::Park(why);
                }
                match shared.take_turn(now) {
                    Ok(()) => {}
                    Err(NoTurn::Full) => return Round::Park(Parked::Full),
                    Err(NoTurn::Rate { until }) => return Round::Park(Parked::Throttled { until }),
                }
                match socket.socket().accept() {
                    Ok((stream, peer)) => {
                        accepted += 1;
                        self.take_in(stream, peer, socket, shared, now);
                    }
                    Err(e) => {
                        shared.release_turn();
                        match AcceptFailure::of(&e) {
                            AcceptFailure::NoneWaiting => break,
                            AcceptFailure::OneClient => continue,
                            AcceptFailure::Shortage => {
                                shared.warn_shortage(&e, now);
                                return Round::Park(Parked::starved(now));
                            }
                            AcceptFailure::Broken => {
                                self.set_aside(socket, shared, &e, now);
                                break;
                            }
                        }
                    }
                }
            }
        }
        Round::Done
    }

    /// Adopts a client just accepted, whose turn ([`Accepting::take_turn`]) is taken.
    fn take_in(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        socket: &ListenSocket,
        shared: &Accepting,
        now: Instant,
    ) {
        // Read after the accept: a client that connected after a change of the tunnel returned
        // gets the new version, even in the middle of a batch.
        let tunnel = match self.acceptor.as_mut() {
            Some(acceptor) => acceptor.current_tunnel(socket),
            None => socket.tunnel(),
        };
        self.counts.accepted(&tunnel);
        let accepted = Accepted {
            stream,
            peer,
            tunnel,
            id: shared.conn_ids.fetch_add(1, Ordering::Relaxed),
            nodelay: socket.clients_nodelay(),
        };
        self.adopt(accepted, Origin::Accepted, now);
    }

    /// The connections as this reactor sees them now, for the parking policy.
    fn load(&self, shared: &Accepting) -> Load {
        Load {
            own: self.counts.open_here(),
            total: shared.admission.open(),
            reactors: shared.reactors,
            room: shared.admission.has_room(),
        }
    }

    /// Takes every listening socket out of the epoll, for `why`.
    fn park(&mut self, why: Parked, shared: &Accepting, now: Instant) {
        let Some(acceptor) = self.acceptor.as_mut() else {
            return;
        };
        acceptor.park(&self.poll, why);
        let pause = match why {
            Parked::Full => {
                shared.warn_capacity(now);
                Pause::ConnectionLimit
            }
            Parked::OverShare { .. } => {
                debug!(
                    reactor = self.counts.shard(),
                    open = self.counts.open_here(),
                    "more than its share of the connections: leaving new clients to other reactors"
                );
                Pause::OverShare
            }
            Parked::Throttled { until } => {
                shared.note_rate(now, until);
                Pause::AcceptRate
            }
            Parked::Starved { .. } => Pause::ResourceShortage,
        };
        shared.pauses.record(pause);
    }

    /// Takes a socket whose accept failed unexpectedly out of the epoll for a while.
    fn set_aside(
        &mut self,
        socket: &ListenSocket,
        shared: &Accepting,
        error: &io::Error,
        now: Instant,
    ) {
        shared.warn_accept_failed(socket.local(), error, now);
        if let Some(acceptor) = self.acceptor.as_mut() {
            acceptor.set_aside(&self.poll, socket, now);
        }
    }
}
