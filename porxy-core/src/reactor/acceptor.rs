//! A reactor's accepting side: the listening sockets it accepts from, whether each is in its
//! epoll, which were reported ready, and why it parked (see `accept.rs` for when and why).
//! Every registration change goes through here, so a socket is in the epoll exactly while it
//! is registered, not parked and not set aside.

use std::sync::Arc;
use std::time::Instant;

use mio::Poll;
use tracing::{debug, warn};

use super::epoll::{self, Registration};
use super::token;
use crate::accept::parking::{self, Parked};
use crate::accept::{Accepting, ListenSocket};
use crate::tunnel::Tunnel;

/// A reactor's accepting side.
pub(super) struct Acceptor {
    shared: Arc<Accepting>,
    listening: Vec<Listening>,
    /// Why the sockets are out of the epoll, while they are.
    parked: Option<Parked>,
    /// The reactor's index, for the logs.
    reactor: usize,
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

impl Acceptor {
    pub(super) fn new(shared: Arc<Accepting>, reactor: usize) -> Self {
        Acceptor {
            shared,
            listening: Vec::new(),
            parked: None,
            reactor,
        }
    }

    /// What the accepting threads share.
    pub(super) fn shared(&self) -> &Arc<Accepting> {
        &self.shared
    }

    /// When a parked reactor should look again.
    pub(super) fn wake_at(&self, now: Instant) -> Option<Instant> {
        let parked = self.parked.map(|parked| parked.wake_at(now));
        let set_aside = self.listening.iter().filter_map(|l| l.set_aside).min();
        parked.into_iter().chain(set_aside).min()
    }

    /// Starts accepting from `socket` (once).
    pub(super) fn listen(&mut self, poll: &Poll, socket: Arc<ListenSocket>) {
        if self.listening.iter().any(|l| l.socket.id() == socket.id()) {
            return;
        }
        let mut listening = Listening {
            socket,
            tunnel: None,
            registered: false,
            ready: false,
            set_aside: None,
        };
        if self.parked.is_none() {
            register(poll, &mut listening, self.reactor);
        }
        self.listening.push(listening);
    }

    /// Stops accepting from listening socket `id` and lets go of it.
    pub(super) fn unlisten(&mut self, poll: &Poll, id: usize) {
        if let Some(at) = self.listening.iter().position(|l| l.socket.id() == id) {
            let mut listening = self.listening.swap_remove(at);
            deregister(poll, &mut listening, self.reactor);
        }
    }

    /// Stops accepting from every listening socket and lets go of them.
    pub(super) fn unlisten_all(&mut self, poll: &Poll) {
        for mut listening in self.listening.drain(..) {
            deregister(poll, &mut listening, self.reactor);
        }
        self.parked = None;
    }

    /// A readiness event for listening socket `id`: it is to be accepted from.
    pub(super) fn on_event(&mut self, id: usize) {
        // Stale (removed, or out of the epoll since the event was fetched): ignored.
        if let Some(listening) = self
            .listening
            .iter_mut()
            .find(|l| l.socket.id() == id && l.registered)
        {
            listening.ready = true;
        }
    }

    /// Puts back in the epoll the sockets whose time aside is over at `now` (unless parked).
    pub(super) fn end_set_asides(&mut self, poll: &Poll, now: Instant) {
        for listening in &mut self.listening {
            if listening.set_aside.is_some_and(|until| now >= until) {
                listening.set_aside = None;
                if self.parked.is_none() {
                    register(poll, listening, self.reactor);
                }
            }
        }
    }

    /// Why it is parked, if it is (to tick the policy with).
    pub(super) fn parked_mut(&mut self) -> Option<&mut Parked> {
        self.parked.as_mut()
    }

    /// The sockets reported ready since the last call.
    pub(super) fn take_ready(&mut self) -> Vec<Arc<ListenSocket>> {
        let mut ready = Vec::new();
        for listening in &mut self.listening {
            if std::mem::take(&mut listening.ready) {
                ready.push(listening.socket.clone());
            }
        }
        ready
    }

    /// Every socket it accepts from.
    pub(super) fn sockets(&self) -> Vec<Arc<ListenSocket>> {
        self.listening.iter().map(|l| l.socket.clone()).collect()
    }

    /// The tunnel a client accepted from `socket` now gets: this reactor's copy, renewed when
    /// the tunnel changed.
    pub(super) fn current_tunnel(&mut self, socket: &ListenSocket) -> Arc<Tunnel> {
        let copy = self
            .listening
            .iter_mut()
            .find(|l| l.socket.id() == socket.id())
            .map(|l| l.socket.current_tunnel(&mut l.tunnel));
        copy.unwrap_or_else(|| socket.tunnel())
    }

    /// Puts every listening socket back in the epoll; clients that queued meanwhile are
    /// reported at the next poll.
    pub(super) fn unpark(&mut self, poll: &Poll) {
        self.parked = None;
        for listening in &mut self.listening {
            register(poll, listening, self.reactor);
        }
    }

    /// Takes every listening socket out of the epoll, for `why`.
    pub(super) fn park(&mut self, poll: &Poll, why: Parked) {
        for listening in &mut self.listening {
            deregister(poll, listening, self.reactor);
            listening.ready = false;
        }
        self.parked = Some(why);
    }

    /// Takes `socket`, whose accept failed unexpectedly, out of the epoll for a while.
    pub(super) fn set_aside(&mut self, poll: &Poll, socket: &ListenSocket, now: Instant) {
        if let Some(listening) = self
            .listening
            .iter_mut()
            .find(|l| l.socket.id() == socket.id())
        {
            deregister(poll, listening, self.reactor);
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
