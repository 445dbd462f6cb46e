//! A reactor: one thread, one mio `Poll`, one slab of connections. The mio glue around [`Conn`].
//!
//! Clients come either from the listener thread, over the reactor's [`Mailbox`]
//! ([`AcceptMode::Listener`](crate::AcceptMode)), or from the reactor's own accepts on the
//! listening sockets the listener thread shares with it (`accept.rs`). For each, the
//! reactor starts a non-blocking upstream connect, registers both sockets (edge-triggered, for
//! reading and writing, once: no `epoll_ctl` after that) and inserts the connection into its slab.
//! Readiness events go to the connection's state machine; what it answers (wait, drive again,
//! close) is carried out here. Nothing here is shared with other reactors except the immutable
//! tunnels, the counters sharded per reactor and, when reactors accept, the listening sockets
//! and the count of open connections against the limit.
//!
//! Invariants:
//! - a socket is registered before its connection enters the slab;
//! - a connection leaves the slab when it closes; events and timers that name it afterwards
//!   are recognised as stale by the connection id they carry, and ignored;
//! - new connections are adopted after an event batch, so no key is reused within one batch;
//! - every loop is bounded: messages per wake, syscalls per connection per drive;
//! - a connection holds a slot on at most one backend (`Slot::backend`), given back exactly once:
//!   when it closes, when its connect fails and it moves on, or when it is handed over;
//! - a connection handed over to another process (`handover.rs`) leaves the slab with its
//!   sockets deregistered first: nothing here reads or writes them afterwards.
//!
//! Files: this one holds the types and the event loop; `adopt.rs` takes clients in,
//! `upstream.rs` connects and retries, `messages.rs` answers other threads, `timers.rs` keeps
//! the clock, `health.rs` the backends' passive health, `handover.rs` and `fan_handover.rs`
//! move connections between processes, `fanout.rs` is the fan-out glue, `accept.rs` accepts
//! (its policy is `accept/parking.rs`), `socket.rs` is a connection's socket, `stopping.rs` a
//! stop's deadline, `spin.rs` busy polling, `close_log.rs` the rate-limited close warnings.

mod accept;
mod adopt;
mod close_log;
// Unsafe code (with splice/kernel.rs the only such place): `epoll_ctl` for EPOLLEXCLUSIVE,
// which mio lacks.
#[allow(unsafe_code)]
mod epoll;
mod fan_handover;
mod fanout;
mod handover;
mod health;
mod messages;
mod socket;
mod spin;
mod stopping;
mod timers;
pub(crate) mod token;
mod upstream;

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll};
use slab::Slab;

use crate::accept::Accepting;
use crate::balance::backend::Backend;
use crate::balance::Tried;
use crate::conn::close::CloseReason;
use crate::conn::hold::Pools;
use crate::conn::{Action, Closing, Conn, Phase, Readiness, Side};
use crate::mailbox::{Mailbox, WAKER_TOKEN};
use crate::status::ReactorStats;
use crate::tunnel::Tunnel;
use close_log::Ended;
pub(crate) use messages::ReactorMsg;
use socket::Socket;
use stopping::Stopping;

/// Events taken from the OS per `poll` call.
const EVENTS_CAPACITY: usize = 1024;
/// How often queued connections look for a slot freed on another reactor.
const QUEUE_TICK: Duration = Duration::from_millis(10);
/// Deadlines handled per round before the reactor turns back to its sockets.
const TIMERS_PER_ROUND: usize = 4096;
/// Messages handled per wake before the reactor turns back to its sockets.
const MESSAGES_PER_ROUND: usize = 512;

/// What every proxied socket is registered for: readable and writable and, where the poller
/// reports it, urgent data. A read stops at TCP's urgent mark, so it may run short with bytes
/// still queued behind the mark; urgent data is reported like a hang-up (see
/// [`Readiness::failed`]), which makes the reads go on until `WouldBlock`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const SOCKET_INTEREST: Interest = Interest::READABLE
    .add(Interest::WRITABLE)
    .add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const SOCKET_INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// A client socket just accepted (by the listener thread, or by the reactor itself).
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) tunnel: Arc<Tunnel>,
    /// Process-wide connection id, for logs.
    pub(crate) id: u64,
    /// TCP_NODELAY is on already: inherited from a listening socket that had it (see
    /// [`ListenSocket::clients_nodelay`]), which saves a syscall per client.
    pub(crate) nodelay: bool,
}

/// Where a client comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The listener thread, or this reactor, accepted it.
    Accepted,
    /// Another process handed it over.
    Imported,
}

/// How a reactor thread ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReactorExit {
    /// Connections that were cut rather than left to finish.
    pub(crate) cut: u64,
}

/// One connection's sockets and bookkeeping around its state machine.
struct Slot {
    id: u64,
    conn: Conn,
    client: Socket,
    /// None while the connection waits for a backend slot, or between two connect attempts.
    upstream: Option<Socket>,
    /// The backend (an index into `tunnel.balancer.backends`) whose slot this connection holds.
    backend: Option<usize>,
    /// Backends this connection has tried to connect to.
    tried: Tried,
    peer: SocketAddr,
    tunnel: Arc<Tunnel>,
    /// The earliest deadline armed in the timer queue for this connection.
    timer_armed: Option<Instant>,
    /// When this process took the connection in (accepted, or imported).
    opened: Instant,
    span: tracing::Span,
}

pub(crate) struct Reactor {
    index: usize,
    /// The process-wide id of the proxy this reactor belongs to.
    proxy: u64,
    poll: Poll,
    rx: Receiver<ReactorMsg>,
    slab: Slab<Slot>,
    timers: crate::timer::TimerQueue,
    /// Relay buffers and splice pipes, lent to connections while bytes are in flight.
    pools: Pools,
    stats: Arc<ReactorStats>,
    /// Connections whose drive ran out of budget, to be driven again before blocking.
    again: Vec<(usize, u64)>,
    /// Messages remain in the channel after a bounded round.
    more_messages: bool,
    stopping: Stopping,
    cut: u64,
    /// Connections waiting for a backend slot, oldest first.
    queued: VecDeque<(usize, u64)>,
    /// A slot may have freed up: try the queue before blocking.
    retry_queue: bool,
    /// Backends whose connections are to be closed at a deadline (removal).
    backend_deadlines: Vec<(Instant, Arc<Backend>)>,
    /// Fan-out connections, apart from the relayed ones, with their own timers.
    fans: Slab<fanout::FanSlot>,
    fan_timers: crate::timer::TimerQueue,
    /// Fan-out connections whose drive ran out of budget.
    fan_again: Vec<(usize, u64)>,
    /// An export of connections to another process, while it lasts.
    exporting: Option<handover::Exporting>,
    /// Since an export: do not end before `Release`, even with no connection left.
    holding: bool,
    /// The accepting side, when reactors accept (`None`: the listener thread hands clients over).
    acceptor: Option<accept::Acceptor>,
    /// The count against the connection limit this reactor's connections are in, whoever
    /// accepted them.
    accepting: Arc<Accepting>,
    /// Rate limits for the warnings about failed connections.
    close_log: close_log::CloseLog,
    /// Busy polling: whether to poll with a zero timeout for a while after activity.
    busy: spin::BusyPoll,
}

impl Reactor {
    /// A reactor and the mailbox that reaches it, lending its connections buffers and pipes
    /// from `pools`. The thread is started by the caller. Its connections count in
    /// `accepting`; with `accepts`, the reactor accepts from the listening sockets it is sent.
    pub(crate) fn new(
        proxy: u64,
        index: usize,
        pools: Pools,
        stats: Arc<ReactorStats>,
        accepting: Arc<Accepting>,
        accepts: bool,
    ) -> io::Result<(Reactor, Mailbox<ReactorMsg>)> {
        let poll = Poll::new()?;
        let (mailbox, rx) = crate::mailbox::mailbox(poll.registry())?;
        let reactor = Reactor {
            index,
            proxy,
            poll,
            rx,
            slab: Slab::new(),
            timers: Default::default(),
            pools,
            stats,
            again: Vec::new(),
            more_messages: false,
            stopping: Stopping::Running,
            cut: 0,
            queued: VecDeque::new(),
            retry_queue: false,
            backend_deadlines: Vec::new(),
            fans: Slab::new(),
            fan_timers: Default::default(),
            fan_again: Vec::new(),
            exporting: None,
            holding: false,
            acceptor: accepts.then(|| accept::Acceptor::new(accepting.clone())),
            accepting,
            close_log: Default::default(),
            busy: spin::BusyPoll::new(Duration::ZERO),
        };
        Ok((reactor, mailbox))
    }

    /// The same reactor, polling without blocking for up to `window` after each activity (see
    /// `spin.rs`); `Duration::ZERO`, the default, never spins.
    pub(crate) fn with_busy_poll(mut self, window: Duration) -> Self {
        self.busy = spin::BusyPoll::new(window);
        self
    }

    /// Runs until stopped. Never panics on anything the network does.
    pub(crate) fn run(mut self) -> ReactorExit {
        // A splice to a socket whose peer has gone may raise SIGPIPE: never let it kill the host.
        crate::splice::block_sigpipe();
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let now = Instant::now();
            if self.stopping.is_stopping() {
                if self.slab.is_empty() && self.fans.is_empty() && !self.holding {
                    break;
                }
                if self.stopping.cut_due(now) {
                    self.cut += (self.slab.len() + self.fans.len()) as u64;
                    self.abort_all(CloseReason::ProxyStopped, now);
                    break;
                }
            }
            let timeout = self.busy.timeout(now, self.poll_timeout(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                // The event queue itself failed: nothing can be relayed any more.
                tracing::error!(reactor = self.index, error = %e, "poll failed; closing this reactor's connections");
                self.cut += (self.slab.len() + self.fans.len()) as u64;
                self.abort_all(CloseReason::LocalResource, Instant::now());
                break;
            }
            let now = Instant::now();
            // Events (the waker's too), or work the last round left: spin on for a while. Not
            // connections queued for a backend slot: they would keep an idle reactor spinning.
            if !events.is_empty() || self.work_left() {
                self.busy.activity(now);
            }
            let mut woken = false;
            for event in events.iter() {
                if event.token() == WAKER_TOKEN {
                    woken = true;
                    continue;
                }
                let ready = Readiness {
                    readable: event.is_readable(),
                    writable: event.is_writable(),
                    failed: event.is_error()
                        || event.is_read_closed()
                        || event.is_write_closed()
                        || event.is_priority(),
                };
                if let Some((key, side)) = token::parse(event.token()) {
                    self.on_event(key, side, ready, now);
                } else if let Some((key, socket)) = token::parse_fan(event.token()) {
                    self.on_fan_event(key, socket, ready, now);
                } else if let Some(id) = token::parse_listener(event.token()) {
                    self.on_listener_event(id);
                }
            }
            for (key, id) in std::mem::take(&mut self.again) {
                if self.slab.get(key).is_some_and(|s| s.id == id) {
                    self.drive(key, now);
                }
            }
            self.drive_fans_again(now);
            self.fire_timers(now);
            self.fire_fan_timers(now, TIMERS_PER_ROUND);
            self.fire_backend_deadlines(now);
            if woken || self.more_messages {
                self.handle_messages(now);
            }
            // After the messages: a `Stop` or `Unlisten` that came with the event wins.
            self.accept_round(now);
            if self.retry_queue || !self.queued.is_empty() {
                self.serve_queue(now);
            }
            self.end_export_if_done(now);
        }
        ReactorExit { cut: self.cut }
    }

    /// Connections to drive again or messages to handle: the next poll must not block.
    fn work_left(&self) -> bool {
        !self.again.is_empty() || !self.fan_again.is_empty() || self.more_messages
    }

    fn on_event(&mut self, key: usize, side: Side, ready: Readiness, now: Instant) {
        let Some(slot) = self.slab.get_mut(key) else {
            return; // A stale event for a connection closed earlier in this batch.
        };
        if side == Side::Upstream && slot.upstream.is_none() {
            return; // A stale event for an upstream socket already given up.
        }
        slot.conn.on_ready(side, ready);
        if slot.conn.phase() == Phase::Connecting {
            if side == Side::Upstream && slot.conn.upstream_signalled() {
                self.check_connect(key, now);
            }
            return;
        }
        self.drive(key, now);
    }

    fn drive(&mut self, key: usize, now: Instant) {
        let Some(slot) = self.slab.get_mut(key) else {
            return;
        };
        let Some(upstream) = slot.upstream.as_mut() else {
            return;
        };
        let action = {
            let _enter = slot.span.enter();
            slot.conn
                .drive(&mut slot.client, upstream, &mut self.pools, now)
        };
        let (to_upstream, to_client) = slot.conn.take_unreported();
        if to_upstream + to_client > 0 {
            let shard = slot.tunnel.stats.reactor(self.index);
            crate::status::bump(&shard.bytes_to_upstream, to_upstream);
            crate::status::bump(&shard.bytes_to_client, to_client);
        }
        match action {
            Action::Wait => self.arm_timer(key),
            Action::Again => {
                let id = slot.id;
                self.again.push((key, id));
                self.arm_timer(key);
            }
            Action::Close { .. } => self.finish(key, action, None, now),
            Action::ConnectFailed(_) => {} // Only a connect attempt answers this.
        }
    }

    /// Ends every connection, relayed and fan-out, with `reason`.
    fn abort_all(&mut self, reason: CloseReason, now: Instant) {
        self.abort_where(|_| true, reason, now);
        self.abort_fans_where(|_| true, reason);
    }

    /// Ends every connection `select` picks, with `reason`; returns how many it picked.
    fn abort_where(
        &mut self,
        select: impl Fn(&Slot) -> bool,
        reason: CloseReason,
        now: Instant,
    ) -> usize {
        let keys: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, s)| select(s))
            .map(|(k, _)| k)
            .collect();
        for &key in &keys {
            let action = self.slab[key].conn.abort(reason);
            self.finish(key, action, None, now);
        }
        keys.len()
    }

    /// Closes a connection as `action` says, counts it and takes it out of the slab.
    fn finish(&mut self, key: usize, action: Action, error: Option<&io::Error>, now: Instant) {
        let Some((reason, client, upstream)) = action.closing() else {
            return;
        };
        let Some(mut slot) = self.slab.try_remove(key) else {
            return;
        };
        // Dropping a mio socket closes it, which also removes it from the epoll set.
        if client == Closing::Reset {
            reset(&slot.client);
        }
        if let (Closing::Reset, Some(stream)) = (upstream, &slot.upstream) {
            reset(stream);
        }
        let upstream_addr = slot.backend_addr();
        self.release_backend(&mut slot);
        let (to_upstream, to_client) = slot.conn.take_unreported();
        let shard = slot.tunnel.stats.reactor(self.index);
        crate::status::bump(&shard.bytes_to_upstream, to_upstream);
        crate::status::bump(&shard.bytes_to_client, to_client);
        self.count_closed(&slot.tunnel, reason);
        let ended = Ended {
            span: &slot.span,
            id: slot.id,
            tunnel: &slot.tunnel,
            peer: slot.peer,
            upstream: upstream_addr,
            opened: Some(slot.opened),
        };
        self.close_log.closed(ended, reason, error, now);
    }
}

impl Slot {
    /// True when this connection holds a slot on `backend`.
    fn on_backend(&self, backend: &Arc<Backend>) -> bool {
        self.backend
            .is_some_and(|i| Arc::ptr_eq(&self.tunnel.balancer.backends[i], backend))
    }

    fn backend_addr(&self) -> Option<SocketAddr> {
        self.backend.map(|i| self.tunnel.balancer.backends[i].addr)
    }
}

/// Arms SO_LINGER 0 so that the coming close sends a reset.
fn reset(stream: &impl std::os::fd::AsFd) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
