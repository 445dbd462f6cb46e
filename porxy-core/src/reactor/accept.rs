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
use mio::Poll;
use tracing::{debug, warn};

use super::accepted::{Accepted, Origin};
use super::epoll::{self, Registration};
use super::{token, Reactor};
use crate::accept::parking::{self, Load, Parked, Tick};
use crate::accept::{AcceptFailure, Accepting, ListenSocket};
use crate::tunnel::Tunnel;

/// Clients accepted from one listening socket per round before the reactor turns to its
/// connections (and to the other sockets).
const ACCEPT_BATCH: usize = 64;
/// A reactor's accepting side.
pub(super) struct Acceptor {
    shared: Arc<Accepting>,
    listening: Vec<Listening>,
    /// Why the sockets are out of the epoll, while they are.
    parked: Option<Parked>,
}

/// One listening socket this reactor accepts from.
struct Listening {
    socket: Arc<ListenSocket>,
    /// This reactor's copy of the tunnel its clients get (see [`ListenSocket::current_tunnel`]).
    tunnel: Option<(u64, Arc<Tunnel>)>,
    /// In this reactor's epoll now.
    registered: bool,
    /// Reported readable since the last round.
    ready: bool,
    /// Its accept failed unexpectedly: out of the epoll until then.
    set_aside: Option<Instant>,
}

/// How an accept round ended.
enum Round {
    /// Every ready socket was served (or gave its batch).
    Done,
    /// Stop accepting, for this reason.
    Park(Parked),
}

impl Acceptor {
    pub(super) fn new(shared: Arc<Accepting>) -> Self {
        Acceptor {
            shared,
            listening: Vec::new(),
            parked: None,
        }
    }

    /// When a parked reactor should look again.
    pub(super) fn wake_at(&self, now: Instant) -> Option<Instant> {
        let parked = self.parked.map(|parked| parked.wake_at(now));
        let set_aside = self.listening.iter().filter_map(|l| l.set_aside).min();
        parked.into_iter().chain(set_aside).min()
    }
}

impl Reactor {
    /// Starts accepting from `socket` (unless stopping, or accepting is the listener's).
    pub(super) fn listen(&mut self, socket: Arc<ListenSocket>) {
        if self.stopping.is_stopping() {
            return;
        }
        let Some(acceptor) = self.acceptor.as_mut() else {
            return;
        };
        if acceptor
            .listening
            .iter()
            .any(|l| l.socket.id() == socket.id())
        {
            return;
        }
        let mut listening = Listening {
            socket,
            tunnel: None,
            registered: false,
            ready: false,
            set_aside: None,
        };
        if acceptor.parked.is_none() {
            register(&self.poll, &mut listening, self.counts.shard());
        }
        acceptor.listening.push(listening);
    }

    /// Stops accepting from listening socket `id` and lets go of it.
    pub(super) fn unlisten(&mut self, id: usize) {
        let Some(acceptor) = self.acceptor.as_mut() else {
            return;
        };
        if let Some(at) = acceptor.listening.iter().position(|l| l.socket.id() == id) {
            let mut listening = acceptor.listening.swap_remove(at);
            deregister(&self.poll, &mut listening, self.counts.shard());
        }
    }

    /// Stops accepting from every listening socket and lets go of them (the proxy stops).
    pub(super) fn unlisten_all(&mut self) {
        let Some(acceptor) = self.acceptor.as_mut() else {
            return;
        };
        for mut listening in acceptor.listening.drain(..) {
            deregister(&self.poll, &mut listening, self.counts.shard());
        }
        acceptor.parked = None;
    }

    /// A readiness event for listening socket `id`: accept from it after the batch.
    pub(super) fn on_listener_event(&mut self, id: usize) {
        let Some(acceptor) = self.acceptor.as_mut() else {
            return;
        };
        // Stale (removed, or out of the epoll since the event was fetched): ignored.
        if let Some(listening) = acceptor
            .listening
            .iter_mut()
            .find(|l| l.socket.id() == id && l.registered)
        {
            listening.ready = true;
        }
    }

    /// Accepts from every ready listening socket, as far as the limit and the share allow; a
    /// parked reactor first looks whether it may accept again.
    pub(super) fn accept_round(&mut self, now: Instant) {
        let Some(acceptor) = self.acceptor.as_mut() else {
            return;
        };
        for listening in &mut acceptor.listening {
            if listening.set_aside.is_some_and(|until| now >= until) {
                listening.set_aside = None;
                if acceptor.parked.is_none() {
                    register(&self.poll, listening, self.counts.shard());
                }
            }
        }
        if acceptor.parked.is_some() {
            let shared = acceptor.shared.clone();
            let load = self.load(&shared);
            let tick = self
                .acceptor
                .as_mut()
                .and_then(|a| a.parked.as_mut())
                .map_or(Tick::Stay, |parked| parked.tick(now, load));
            let resume = match tick {
                Tick::Stay => false,
                Tick::Resume => true,
                Tick::Probe => self.probe(&shared, now),
            };
            if resume {
                self.unpark();
            }
            return;
        }
        let mut ready: Vec<Arc<ListenSocket>> = Vec::new();
        for listening in &mut acceptor.listening {
            if std::mem::take(&mut listening.ready) {
                ready.push(listening.socket.clone());
            }
        }
        if ready.is_empty() {
            return;
        }
        let shared = acceptor.shared.clone();
        let round = self.accept_from(&ready, &shared, now);
        let round = match round {
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
    /// A client still in the backlog a [`PARK_TICK`] after that was told to nobody else, so it
    /// is taken here whatever the share. True if one was: more may wait, so the reactor goes
    /// back to its epoll for a round.
    fn probe(&mut self, shared: &Accepting, now: Instant) -> bool {
        let sockets: Vec<Arc<ListenSocket>> = match &self.acceptor {
            Some(acceptor) => acceptor
                .listening
                .iter()
                .map(|l| l.socket.clone())
                .collect(),
            None => return false,
        };
        let mut took = false;
        for socket in sockets {
            if !shared.admission.try_admit() {
                break;
            }
            match socket.socket().accept() {
                Ok((stream, peer)) => {
                    took = true;
                    self.take_in(stream, peer, &socket, shared, now);
                }
                // Nobody waits (the usual answer), or a failure the next round meets again.
                Err(_) => shared.admission.release(),
            }
        }
        took
    }

    /// Puts every listening socket back in the epoll; clients that queued meanwhile are
    /// reported at the next poll.
    fn unpark(&mut self) {
        let Some(acceptor) = self.acceptor.as_mut() else {
            return;
        };
        acceptor.parked = None;
        for listening in &mut acceptor.listening {
            register(&self.poll, listening, self.counts.shard());
        }
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
                if !shared.admission.try_admit() {
                    return Round::Park(Parked::Full);
                }
                match socket.socket().accept() {
                    Ok((stream, peer)) => {
                        accepted += 1;
                        self.take_in(stream, peer, socket, shared, now);
                    }
                    Err(e) => {
                        shared.admission.release();
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

    /// Adopts a client just accepted, whose place under the limit is already taken.
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
        let copy = self.acceptor.as_mut().and_then(|acceptor| {
            let listening = acceptor
                .listening
                .iter_mut()
                .find(|l| l.socket.id() == socket.id());
            listening.map(|l| l.socket.current_tunnel(&mut l.tunnel))
        });
        let tunnel = copy.unwrap_or_else(|| socket.tunnel());
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
        for listening in &mut acceptor.listening {
            deregister(&self.poll, listening, self.counts.shard());
            listening.ready = false;
        }
        acceptor.parked = Some(why);
        match why {
            Parked::Full => shared.warn_capacity(now),
            Parked::OverShare { .. } => debug!(
                reactor = self.counts.shard(),
                open = self.counts.open_here(),
                "more than its share of the connections: leaving new clients to other reactors"
            ),
            Parked::Starved { .. } => {}
        }
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
        let Some(acceptor) = self.acceptor.as_mut() else {
            return;
        };
        if let Some(listening) = acceptor
            .listening
            .iter_mut()
            .find(|l| l.socket.id() == socket.id())
        {
            deregister(&self.poll, listening, self.counts.shard());
            listening.set_aside = Some(now + parking::RESOURCE_BACKOFF);
        }
    }
}

/// Puts a listening socket in the reactor's epoll, if it is not there yet (nor set aside).
fn register(poll: &Poll, listening: &mut Listening, reactor: usize) {
    if listening.registered || listening.set_aside.is_some() {
        return;
    }
    let token = token::listener_token(listening.socket.id());
    match epoll::add_exclusive(poll, listening.socket.socket(), token) {
        Ok(Registration::Exclusive) => listening.registered = true,
        Ok(Registration::Shared) => {
            listening.registered = true;
            debug!(
                reactor,
                tunnel = %listening.socket.local(),
                "EPOLLEXCLUSIVE refused: every reactor is woken for each new client"
            );
        }
        Err(e) => warn!(
            reactor,
            tunnel = %listening.socket.local(),
            error = %e,
            "cannot watch the listening socket; this reactor does not accept from it"
        ),
    }
}

/// Takes a listening socket out of the reactor's epoll, if it is there.
fn deregister(poll: &Poll, listening: &mut Listening, reactor: usize) {
    if !std::mem::take(&mut listening.registered) {
        return;
    }
    if let Err(e) = epoll::delete(poll, listening.socket.socket()) {
        debug!(reactor, tunnel = %listening.socket.local(), error = %e, "cannot unwatch the listening socket");
    }
}
