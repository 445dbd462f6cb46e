//! The listener thread: owns every listening socket; accepts and hands clients to reactors, or
//! shares the sockets with reactors that accept themselves ([`AcceptMode`]).
//!
//! In both modes it binds nothing itself (the handle does) but keeps every listening socket
//! ([`ListenSocket`]) from the moment a tunnel opens until it closes or the proxy stops; changes
//! the tunnel new clients get; exports duplicates of the sockets for an upgrade; holds accepting
//! back until the proxy has started; and passes the stop on to the reactors.
//!
//! [`AcceptMode::Reactors`]: each socket goes to every reactor (`ReactorMsg::Listen`, once the
//! proxy starts accepting), which accepts from it (`reactor/accept.rs`), and is withdrawn from
//! them (`ReactorMsg::Unlisten`, or the stop) when the tunnel closes. The socket closes when the
//! last reactor lets go of it, and only then is a `close` told it is done. This thread then
//! sleeps between control messages: no wake-up per connection.
//!
//! [`AcceptMode::Listener`]: accepting is edge-triggered: a listener that signalled is accepted
//! from until `WouldBlock`, in batches of [`ACCEPT_BATCH`] so that one busy port cannot starve
//! the others. Clients are dealt to reactors in turn; each reactor that got any is woken once
//! per batch.
//!
//! At the connection limit (`max_connections`, by default what `RLIMIT_NOFILE` allows) the
//! listener stops accepting and looks again every [`CAPACITY_TICK`]: new clients wait in the
//! kernel's listen backlog, not accepted only to be reset for want of an upstream descriptor.
//! Over the proxy-wide accept rate (`max_accept_rate`) it pauses until the next client is due,
//! and clients wait there too.
//!
//! When the process runs out of descriptors (EMFILE, ENFILE) or kernel memory, accepting would
//! fail at once, forever, and the edge-triggered listener would never signal again for the
//! connections already queued: so the listener pauses accepting for [`RESOURCE_BACKOFF`], then
//! retries every listener, and logs the shortage at most once a second.
//!
//! (Reactors that accept keep the same limit, in the same count, and pause their own way:
//! `reactor/accept.rs`. Both read accept errors and warn through `accept/`.)

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tracing::{debug, warn};

use crate::accept::parking::RESOURCE_BACKOFF;
use crate::accept::{AcceptFailure, AcceptMode, Accepting, ListenSocket, NoTurn, Pause};
use crate::mailbox::{Mailbox, WAKER_TOKEN};
use crate::reactor::{Accepted, ReactorMsg};
use crate::tunnel::Tunnel;

/// Clients accepted from one listener before the others get a turn.
const ACCEPT_BATCH: usize = 64;
/// How often a listener at the connection limit looks whether connections have ended.
const CAPACITY_TICK: Duration = Duration::from_millis(10);

/// What the API asks of the listener thread.
pub(crate) enum ListenerMsg {
    /// Start accepting on this bound, listening socket for this tunnel.
    Add(Arc<Tunnel>, TcpListener),
    /// New connections on `tunnel.local` use this tunnel from now on; replies once they do.
    Replace(Arc<Tunnel>, Sender<()>),
    /// Stop listening on this address; replies once the socket is closed.
    Remove(SocketAddr, Sender<()>),
    /// Send back a duplicate of every listening socket, for a new process to take over.
    Export(Sender<Vec<(SocketAddr, std::net::TcpListener)>>),
    /// Begin accepting (the builder sends it once every tunnel it was given is open).
    StartAccepting,
    /// Close every listening socket, pass the stop on to the reactors, and end. Once no
    /// thread of this proxy holds a listening socket any more, one `()` per socket goes to
    /// `released`.
    Stop {
        deadline: Option<Instant>,
        released: Sender<()>,
    },
}

struct Entry {
    socket: Arc<ListenSocket>,
    /// Listener mode: signalled and not yet accepted from until `WouldBlock`.
    ready: bool,
}

pub(crate) struct Listener {
    mode: AcceptMode,
    poll: Poll,
    rx: Receiver<ListenerMsg>,
    entries: Slab<Entry>,
    by_addr: HashMap<SocketAddr, usize>,
    reactors: Vec<Mailbox<ReactorMsg>>,
    next_reactor: usize,
    /// The connection limit's count, connection ids and rate-limited warnings, shared with
    /// the reactors (which give a place back when a connection ends).
    shared: Arc<Accepting>,
    paused_until: Option<Instant>,
    at_capacity: bool,
    /// False until the proxy has started: a start that fails half-way has accepted nobody, so
    /// it resets nobody (on sockets shared with another process, their clients stay queued).
    accepting: bool,
    /// The id of the next listening socket (never reused, see [`ListenSocket`]).
    next_socket_id: usize,
    /// Who asked for the stop, to be told as each listening socket is let go of.
    released: Option<Sender<()>>,
}

impl Listener {
    pub(crate) fn new(
        mode: AcceptMode,
        reactors: Vec<Mailbox<ReactorMsg>>,
        accepting: Arc<Accepting>,
    ) -> io::Result<(Listener, Mailbox<ListenerMsg>)> {
        let poll = Poll::new()?;
        let (mailbox, rx) = crate::mailbox::mailbox(poll.registry())?;
        let listener = Listener {
            mode,
            poll,
            rx,
            entries: Slab::new(),
            by_addr: HashMap::new(),
            reactors,
            next_reactor: 0,
            shared: accepting,
            paused_until: None,
            at_capacity: false,
            accepting: false,
            next_socket_id: 0,
            released: None,
        };
        Ok((listener, mailbox))
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            if self.paused_until.is_some_and(|until| now >= until) {
                self.paused_until = None;
                // Connections may have queued while paused, with no new edge to say so.
                for (_, entry) in self.entries.iter_mut() {
                    entry.ready = true;
                }
            }
            let any_ready = self.accepting
                && self.mode == AcceptMode::Listener
                && self.entries.iter().any(|(_, e)| e.ready);
            let timeout = match self.paused_until {
                Some(until) => Some(until.saturating_duration_since(now)),
                None if any_ready && self.at_capacity => Some(CAPACITY_TICK),
                None if any_ready => Some(Duration::ZERO),
                None => None,
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "listener poll failed; no more connections are accepted");
                self.stop(None);
                return;
            }
            let mut woken = false;
            for event in events.iter() {
                if event.token() == WAKER_TOKEN {
                    woken = true;
                } else if let Some(entry) = self.entries.get_mut(event.token().0) {
                    entry.ready = true;
                }
            }
            if woken {
                if let Some(deadline) = self.handle_messages() {
                    self.stop(deadline);
                    return;
                }
            }
            if self.paused_until.is_none() && self.accepting && self.mode == AcceptMode::Listener {
                self.accept_round();
            }
        }
    }

    /// Handles queued messages; returns `Some(deadline)` when told to stop.
    fn handle_messages(&mut self) -> Option<Option<Instant>> {
        loop {
            match self.rx.try_recv() {
                Ok(ListenerMsg::Add(tunnel, socket)) => self.add(tunnel, socket),
                Ok(ListenerMsg::Replace(tunnel, done)) => {
                    if let Some(&key) = self.by_addr.get(&tunnel.local) {
                        self.entries[key].socket.set_tunnel(tunnel);
                    }
                    let _ = done.send(());
                }
                Ok(ListenerMsg::Remove(addr, done)) => {
                    if let Some(key) = self.by_addr.remove(&addr) {
                        self.remove(key, done);
                        debug!(tunnel = %addr, "stopped listening");
                    } else {
                        let _ = done.send(());
                    }
                }
                Ok(ListenerMsg::Export(reply)) => {
                    let mut sockets = Vec::with_capacity(self.entries.len());
                    for (_, entry) in self.entries.iter() {
                        let local = entry.socket.local();
                        match socket2::SockRef::from(entry.socket.socket()).try_clone() {
                            Ok(dup) => sockets.push((local, dup.into())),
                            Err(e) => {
                                warn!(tunnel = %local, error = %e, "cannot duplicate a listening socket")
                            }
                        }
                    }
                    let _ = reply.send(sockets);
                }
                Ok(ListenerMsg::StartAccepting) if self.accepting => {}
                Ok(ListenerMsg::StartAccepting) => {
                    self.accepting = true;
                    if self.mode == AcceptMode::Reactors {
                        let sockets: Vec<_> =
                            self.entries.iter().map(|(_, e)| e.socket.clone()).collect();
                        for socket in sockets {
                            self.share(socket);
                        }
                    }
                }
                Ok(ListenerMsg::Stop { deadline, released }) => {
                    self.released = Some(released);
                    return Some(deadline);
                }
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => return Some(None),
            }
        }
    }

    /// Takes charge of a new tunnel's listening socket: watches it (listener mode) or, once
    /// accepting, shares it with the reactors.
    fn add(&mut self, tunnel: Arc<Tunnel>, socket: TcpListener) {
        let local = tunnel.local;
        let id = self.next_socket_id;
        self.next_socket_id += 1;
        let socket = Arc::new(ListenSocket::new(id, tunnel, socket));
        // Nothing enters the slab before the insert below, so the key holds.
        let key = self.entries.vacant_key();
        match self.mode {
            AcceptMode::Listener => {
                let fd = socket.socket().as_raw_fd();
                if let Err(e) = self.poll.registry().register(
                    &mut SourceFd(&fd),
                    Token(key),
                    Interest::READABLE,
                ) {
                    warn!(tunnel = %local, error = %e, "cannot watch the listening socket");
                    return;
                }
            }
            AcceptMode::Reactors if self.accepting => self.share(socket.clone()),
            AcceptMode::Reactors => {}
        }
        self.by_addr.insert(local, key);
        // Clients may already wait in the backlog: accept them without an edge.
        self.entries.insert(Entry {
            socket,
            ready: true,
        });
    }

    /// Sends a listening socket to every reactor, to accept from.
    fn share(&self, socket: Arc<ListenSocket>) {
        for reactor in &self.reactors {
            let _ = reactor.send(ReactorMsg::Listen(socket.clone()));
        }
    }

    /// Stops listening on entry `key`; `done` hears once the socket is closed: at once in
    /// listener mode, once every reactor has let go of it when reactors accept.
    fn remove(&mut self, key: usize, done: Sender<()>) {
        let entry = self.entries.remove(key);
        entry.socket.on_close(done);
        match self.mode {
            AcceptMode::Listener => {
                let fd = entry.socket.socket().as_raw_fd();
                // The registration outlives our descriptor if another process shares the socket.
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            }
            AcceptMode::Reactors => {
                for reactor in &self.reactors {
                    let _ = reactor.send(ReactorMsg::Unlisten(entry.socket.id()));
                }
            }
        }
        // Dropping the last `Arc` closes the socket: new connections are refused from then on.
    }

    /// One batch from every ready listener, as far as the connection limit allows: a place
    /// under it is taken before each accept, and given back if the accept finds nobody (the
    /// reactor gives it back when the connection ends).
    fn accept_round(&mut self) {
        let accepting = self.shared.clone();
        let now = Instant::now();
        let was_full = self.at_capacity;
        self.at_capacity = !accepting.admission.has_room();
        if self.at_capacity {
            if !was_full {
                accepting.pauses.record(Pause::ConnectionLimit);
            }
            accepting.warn_capacity(now);
            return;
        }
        let mut to_wake = vec![false; self.reactors.len()];
        let keys: Vec<usize> = self
            .entries
            .iter()
            .filter(|(_, e)| e.ready)
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            let tunnel = self.entries[key].socket.tunnel();
            for _ in 0..ACCEPT_BATCH {
                match accepting.take_turn(now) {
                    Ok(()) => {}
                    Err(NoTurn::Full) => {
                        self.at_capacity = true;
                        accepting.pauses.record(Pause::ConnectionLimit);
                        break;
                    }
                    Err(NoTurn::Rate { until }) => {
                        self.paused_until = Some(until);
                        accepting.pauses.record(Pause::AcceptRate);
                        accepting.note_rate(now, until);
                        break;
                    }
                }
                let entry = &mut self.entries[key];
                match entry.socket.socket().accept() {
                    Ok((stream, peer)) => {
                        let tunnel = tunnel.clone();
                        crate::status::bump(&tunnel.stats.listener().accepted, 1);
                        let id = accepting.conn_ids.fetch_add(1, Ordering::Relaxed);
                        let index = self.next_reactor;
                        self.next_reactor = (self.next_reactor + 1) % self.reactors.len();
                        let msg = ReactorMsg::Adopt(Accepted {
                            stream,
                            peer,
                            tunnel,
                            id,
                            nodelay: entry.socket.clients_nodelay(),
                        });
                        if self.reactors[index].queue(msg).is_err() {
                            accepting.admission.release();
                            warn!(reactor = index, "reactor is gone; connection dropped");
                        } else {
                            to_wake[index] = true;
                        }
                    }
                    Err(e) => {
                        accepting.release_turn();
                        match AcceptFailure::of(&e) {
                            AcceptFailure::NoneWaiting => {
                                entry.ready = false;
                                break;
                            }
                            AcceptFailure::OneClient => continue,
                            AcceptFailure::Shortage => {
                                self.paused_until = Some(now + RESOURCE_BACKOFF);
                                accepting.pauses.record(Pause::ResourceShortage);
                                accepting.warn_shortage(&e, now);
                                break;
                            }
                            AcceptFailure::Broken => {
                                accepting.warn_accept_failed(entry.socket.local(), &e, now);
                                entry.ready = false;
                                break;
                            }
                        }
                    }
                }
            }
            if self.paused_until.is_some() || self.at_capacity {
                break;
            }
        }
        for (index, wake) in to_wake.into_iter().enumerate() {
            if wake {
                self.reactors[index].wake();
            }
        }
    }

    fn stop(&mut self, deadline: Option<Instant>) {
        let listening = self.entries.len();
        if let Some(released) = self.released.take() {
            for (_, entry) in self.entries.iter() {
                entry.socket.on_close(released.clone());
            }
        }
        // Reactors that accept let go of their copies when the stop reaches them.
        self.entries.clear();
        self.by_addr.clear();
        debug!(closed = listening, "listener stopped; stopping reactors");
        for reactor in &self.reactors {
            let _ = reactor.send(ReactorMsg::Stop { deadline });
        }
    }
}
