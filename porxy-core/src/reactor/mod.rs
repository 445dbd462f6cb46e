//! A reactor: one thread, one mio `Poll`, one slab of connections. The mio glue around [`Conn`].
//!
//! The listener hands accepted client sockets over the reactor's [`Mailbox`]. For each, the
//! reactor starts a non-blocking upstream connect, registers both sockets (edge-triggered, for
//! reading and writing, once: no `epoll_ctl` after that) and inserts the connection into its slab.
//! Readiness events go to the connection's state machine; what it answers (wait, drive again,
//! close) is carried out here. Nothing here is shared with other reactors except the immutable
//! tunnels and the counters sharded per reactor.
//!
//! Invariants:
//! - a socket is registered before its connection enters the slab;
//! - a connection leaves the slab when it closes; events and timers that name it afterwards
//!   are recognised as stale by the connection id they carry, and ignored;
//! - new connections are adopted after an event batch, so no key is reused within one batch;
//! - every loop is bounded: messages per wake, syscalls per connection per drive.

pub(crate) mod token;

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll};
use slab::Slab;
use tracing::{debug, info, warn};

use crate::buffer::BufferPool;
use crate::conn::close::CloseReason;
use crate::conn::{Action, Closing, Conn, Phase, Readiness, Side};
use crate::mailbox::{Mailbox, WAKER_TOKEN};
use crate::status::ReactorStats;
use crate::tunnel::{Tunnel, TunnelId};

/// Events taken from the OS per `poll` call.
const EVENTS_CAPACITY: usize = 1024;
/// Messages handled per wake before the reactor turns back to its sockets.
const MESSAGES_PER_ROUND: usize = 512;

/// A client socket accepted by the listener, on its way to a reactor.
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) tunnel: Arc<Tunnel>,
    /// Process-wide connection id, for logs.
    pub(crate) id: u64,
}

/// What other threads ask of a reactor.
pub(crate) enum ReactorMsg {
    /// Take over a freshly accepted client.
    Adopt(Accepted),
    /// Close every connection of this tunnel now.
    CloseTunnel(TunnelId),
    /// Finish: when every connection has ended, or at the deadline (`None`: at once).
    Stop { deadline: Option<Instant> },
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
    client: TcpStream,
    upstream: TcpStream,
    upstream_addr: SocketAddr,
    peer: SocketAddr,
    tunnel: Arc<Tunnel>,
    /// The earliest deadline armed in the timer queue for this connection.
    timer_armed: Option<Instant>,
    span: tracing::Span,
}

pub(crate) struct Reactor {
    index: usize,
    poll: Poll,
    rx: Receiver<ReactorMsg>,
    slab: Slab<Slot>,
    timers: crate::timer::TimerQueue,
    pool: BufferPool,
    stats: Arc<ReactorStats>,
    /// Connections whose drive ran out of budget, to be driven again before blocking.
    again: Vec<(usize, u64)>,
    /// Messages remain in the channel after a bounded round.
    more_messages: bool,
    stopping: Option<Option<Instant>>,
    cut: u64,
}

impl Reactor {
    /// A reactor and the mailbox that reaches it. The thread is started by the caller.
    pub(crate) fn new(
        index: usize,
        buffer_size: usize,
        stats: Arc<ReactorStats>,
    ) -> io::Result<(Reactor, Mailbox<ReactorMsg>)> {
        let poll = Poll::new()?;
        let (mailbox, rx) = crate::mailbox::mailbox(poll.registry())?;
        let reactor = Reactor {
            index,
            poll,
            rx,
            slab: Slab::new(),
            timers: Default::default(),
            pool: BufferPool::new(buffer_size),
            stats,
            again: Vec::new(),
            more_messages: false,
            stopping: None,
            cut: 0,
        };
        Ok((reactor, mailbox))
    }

    /// Runs until stopped. Never panics on anything the network does.
    pub(crate) fn run(mut self) -> ReactorExit {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let now = Instant::now();
            if let Some(deadline) = self.stopping {
                if self.slab.is_empty() {
                    break;
                }
                if deadline.is_none_or(|d| now >= d) {
                    self.cut += self.slab.len() as u64;
                    self.abort_where(|_| true, CloseReason::ProxyStopped, now);
                    break;
                }
            }
            let timeout = self.poll_timeout(now);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                // The event queue itself failed: nothing can be relayed any more.
                tracing::error!(reactor = self.index, error = %e, "poll failed; closing this reactor's connections");
                self.cut += self.slab.len() as u64;
                self.abort_where(|_| true, CloseReason::LocalResource, Instant::now());
                break;
            }
            let now = Instant::now();
            let mut woken = false;
            for event in events.iter() {
                if event.token() == WAKER_TOKEN {
                    woken = true;
                    continue;
                }
                let Some((key, side)) = token::parse(event.token()) else {
                    continue;
                };
                let ready = Readiness {
                    readable: event.is_readable(),
                    writable: event.is_writable(),
                    failed: event.is_error() || event.is_read_closed() || event.is_write_closed(),
                };
                self.on_event(key, side, ready, now);
            }
            for (key, id) in std::mem::take(&mut self.again) {
                if self.slab.get(key).is_some_and(|s| s.id == id) {
                    self.drive(key, now);
                }
            }
            self.fire_timers(now);
            if woken || self.more_messages {
                self.handle_messages(now);
            }
        }
        ReactorExit { cut: self.cut }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() || self.more_messages {
            return Some(Duration::ZERO);
        }
        let stop = self.stopping.flatten();
        let next = match (self.timers.next(), stop) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Round up to the next millisecond so a timer is not polled for early, in a spin.
        next.map(|at| at.saturating_duration_since(now) + Duration::from_micros(999))
    }

    fn on_event(&mut self, key: usize, side: Side, ready: Readiness, now: Instant) {
        let Some(slot) = self.slab.get_mut(key) else {
            return; // A stale event for a connection closed earlier in this batch.
        };
        slot.conn.on_ready(side, ready);
        if slot.conn.phase() == Phase::Connecting {
            if side != Side::Upstream || !slot.conn.upstream_signalled() {
                return;
            }
            match connect_outcome(&slot.upstream) {
                ConnectOutcome::Pending => return,
                ConnectOutcome::Connected => {
                    let _enter = slot.span.enter();
                    debug!("upstream connected");
                    slot.conn.on_connected(now);
                }
                ConnectOutcome::Failed(error) => {
                    let action = slot.conn.on_connect_failed(&error);
                    self.finish(key, action, Some(&error), now);
                    return;
                }
            }
        }
        self.drive(key, now);
    }

    fn drive(&mut self, key: usize, now: Instant) {
        let Some(slot) = self.slab.get_mut(key) else {
            return;
        };
        let action = {
            let _enter = slot.span.enter();
            slot.conn
                .drive(&mut slot.client, &mut slot.upstream, &mut self.pool, now)
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
        }
    }

    /// Makes sure the timer queue holds an entry no later than the connection's deadline.
    fn arm_timer(&mut self, key: usize) {
        let Some(slot) = self.slab.get_mut(key) else {
            return;
        };
        let Some(deadline) = slot.conn.deadline() else {
            return;
        };
        if slot.timer_armed.is_none_or(|armed| deadline < armed) {
            slot.timer_armed = Some(deadline);
            self.timers.arm(deadline, key, slot.id);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((key, id, at)) = self.timers.pop_due(now) {
            let Some(slot) = self.slab.get_mut(key) else {
                continue;
            };
            if slot.id != id {
                continue;
            }
            if slot.timer_armed == Some(at) {
                slot.timer_armed = None;
            }
            match slot.conn.on_timer(now) {
                action @ Action::Close { .. } => self.finish(key, action, None, now),
                _ => self.arm_timer(key),
            }
        }
    }

    fn handle_messages(&mut self, now: Instant) {
        self.more_messages = false;
        for _ in 0..MESSAGES_PER_ROUND {
            match self.rx.try_recv() {
                Ok(ReactorMsg::Adopt(accepted)) => self.adopt(accepted, now),
                Ok(ReactorMsg::CloseTunnel(id)) => {
                    self.abort_where(|s| s.tunnel.id == id, CloseReason::TunnelClosed, now)
                }
                Ok(ReactorMsg::Stop { deadline }) => {
                    debug!(
                        reactor = self.index,
                        open = self.slab.len(),
                        "reactor stopping"
                    );
                    self.stopping = Some(earlier_stop(self.stopping, deadline));
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    // Every sender is gone: nobody can stop us any other way.
                    self.stopping.get_or_insert(None);
                    return;
                }
            }
        }
        self.more_messages = true;
    }

    /// Starts the upstream connect for an accepted client and takes the connection in.
    fn adopt(&mut self, accepted: Accepted, now: Instant) {
        let Accepted {
            stream: client,
            peer,
            tunnel,
            id,
        } = accepted;
        let upstream_addr = tunnel.pick_remote();
        let span = tracing::debug_span!(
            "conn",
            id,
            tunnel = %tunnel.local,
            client = %peer,
            upstream = %upstream_addr
        );
        let shard = tunnel.stats.reactor(self.index);
        shard.opened();
        self.stats.opened();
        let _ = client.set_nodelay(true);
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        let mut conn = Conn::new(now, tunnel.settings);
        let registry = self.poll.registry();
        let started = TcpStream::connect(upstream_addr).and_then(|mut upstream| {
            let _ = upstream.set_nodelay(true);
            let both = Interest::READABLE | Interest::WRITABLE;
            registry.register(&mut upstream, token::token(key, Side::Upstream), both)?;
            Ok(upstream)
        });
        let upstream = match started {
            Ok(upstream) => upstream,
            Err(error) => {
                let action = conn.on_connect_failed(&error);
                let reason = match action {
                    Action::Close { reason, .. } => reason,
                    _ => CloseReason::ConnectError,
                };
                log_close(
                    &span,
                    reason,
                    Some(&error),
                    id,
                    &tunnel,
                    peer,
                    upstream_addr,
                );
                reset(&client);
                tunnel.stats.reactor(self.index).closed(reason);
                self.stats.closed();
                return;
            }
        };
        let mut client = client;
        if let Err(error) = registry.register(
            &mut client,
            token::token(key, Side::Client),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log_close(
                &span,
                CloseReason::LocalResource,
                Some(&error),
                id,
                &tunnel,
                peer,
                upstream_addr,
            );
            reset(&client);
            tunnel
                .stats
                .reactor(self.index)
                .closed(CloseReason::LocalResource);
            self.stats.closed();
            return;
        }
        span.in_scope(|| debug!("accepted"));
        entry.insert(Slot {
            id,
            conn,
            client,
            upstream,
            upstream_addr,
            peer,
            tunnel,
            timer_armed: None,
            span,
        });
        self.arm_timer(key);
    }

    /// Ends every connection `select` picks, with `reason`.
    fn abort_where(&mut self, select: impl Fn(&Slot) -> bool, reason: CloseReason, now: Instant) {
        let keys: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, s)| select(s))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            let action = self.slab[key].conn.abort(reason);
            self.finish(key, action, None, now);
        }
    }

    /// Closes a connection as `action` says, counts it and takes it out of the slab.
    fn finish(&mut self, key: usize, action: Action, error: Option<&io::Error>, _now: Instant) {
        let Action::Close {
            reason,
            client,
            upstream,
        } = action
        else {
            return;
        };
        let Some(slot) = self.slab.try_remove(key) else {
            return;
        };
        // Dropping a mio socket closes it, which also removes it from the epoll set.
        if client == Closing::Reset {
            reset(&slot.client);
        }
        if upstream == Closing::Reset {
            reset(&slot.upstream);
        }
        let (to_upstream, to_client) = {
            let mut conn = slot.conn;
            conn.take_unreported()
        };
        let shard = slot.tunnel.stats.reactor(self.index);
        crate::status::bump(&shard.bytes_to_upstream, to_upstream);
        crate::status::bump(&shard.bytes_to_client, to_client);
        shard.closed(reason);
        self.stats.closed();
        log_close(
            &slot.span,
            reason,
            error,
            slot.id,
            &slot.tunnel,
            slot.peer,
            slot.upstream_addr,
        );
    }
}

/// Merges a new stop request into the current one: the earlier deadline wins, and `None`
/// (stop at once) is earliest of all, so a second, immediate stop cuts a graceful one short.
fn earlier_stop(current: Option<Option<Instant>>, incoming: Option<Instant>) -> Option<Instant> {
    match (current, incoming) {
        (None, incoming) => incoming,
        (Some(None), _) | (Some(Some(_)), None) => None,
        (Some(Some(a)), Some(b)) => Some(a.min(b)),
    }
}

/// Where a non-blocking connect stands after the socket signalled.
enum ConnectOutcome {
    Pending,
    Connected,
    Failed(io::Error),
}

/// The non-blocking connect recipe: `SO_ERROR` first, then `peer_addr` to tell a completed
/// connect from a spurious wake-up.
fn connect_outcome(stream: &TcpStream) -> ConnectOutcome {
    match stream.take_error() {
        Ok(Some(error)) => return ConnectOutcome::Failed(error),
        Err(error) => return ConnectOutcome::Failed(error),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => ConnectOutcome::Connected,
        Err(e) if e.kind() == ErrorKind::NotConnected => ConnectOutcome::Pending,
        Err(e) => ConnectOutcome::Failed(e),
    }
}

/// Arms SO_LINGER 0 so that the coming close sends a reset.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

fn log_close(
    span: &tracing::Span,
    reason: CloseReason,
    error: Option<&io::Error>,
    id: u64,
    tunnel: &Tunnel,
    peer: SocketAddr,
    upstream: SocketAddr,
) {
    let _enter = span.enter();
    let error = error.map(|e| e.to_string());
    match reason {
        CloseReason::ConnectRefused
        | CloseReason::ConnectTimeout
        | CloseReason::ConnectError
        | CloseReason::LocalResource => warn!(
            conn = id,
            tunnel = %tunnel.local,
            client = %peer,
            %upstream,
            reason = %reason,
            error = error.as_deref().unwrap_or(""),
            "connection failed"
        ),
        CloseReason::UpstreamReset => info!(
            conn = id,
            tunnel = %tunnel.local,
            %upstream,
            reason = %reason,
            "upstream reset the connection"
        ),
        _ => debug!(reason = %reason, "closed"),
    }
}
