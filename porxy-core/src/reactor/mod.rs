//! A reactor: one thread, one mio `Poll`, one slab of connections. The mio glue around each
//! connection's [`Machine`](crate::conn::machine::Machine).
//!
//! Clients come either from the listener thread, over the reactor's [`Mailbox`]
//! ([`AcceptMode::Listener`](crate::AcceptMode)), or from the reactor's own accepts on the
//! listening sockets the listener thread shares with it (`accept.rs`). Every connection,
//! relayed or fan-out, lives in one [`Slot`](slot::Slot) of one slab, with one timer queue and
//! one token scheme: the reactor registers its sockets (edge-triggered, for reading and
//! writing, once: no `epoll_ctl` after that), starts its upstream connects, and hands readiness,
//! connect outcomes and deadlines to its machine. What the machine answers ([`Action`]) is
//! carried out in one place, `after_step.rs`. Nothing here is shared with other reactors except
//! the immutable tunnels, the counters sharded per reactor and, when reactors accept, the
//! listening sockets and the count of open connections against the limit.
//!
//! Invariants:
//! - a socket is registered before its connection enters the slab;
//! - a connection leaves the slab when it closes (`finish`) or is handed over (`export`);
//!   events and timers that name it afterwards are recognised as stale by the connection id
//!   they carry, and ignored;
//! - new connections are adopted after an event batch, so no key is reused within one batch;
//! - every loop is bounded: messages per wake, syscalls per connection per drive;
//! - an upstream holds a slot on at most one backend, given back exactly once
//!   ([`Upstreams::take`](upstreams::Upstreams::take)): when it closes, when its connect fails
//!   and the connection moves on, or when it is handed over;
//! - a connection handed over to another process leaves the slab with its sockets
//!   deregistered first: nothing here reads or writes them afterwards.
//!
//! Files: this one holds the reactor and its event loop. Its parts, each a type whose fields
//! only its own file touches: `slot.rs` the connections (slab, timer queue, drive-again list),
//! `upstreams.rs` a connection's upstream sockets and backend slots, `accounting.rs` what every
//! connection in and out counts, `queue.rs` connections waiting for a backend slot,
//! `removals.rs` backends' drain deadlines, `handing_over.rs` an export and the hold after it,
//! `acceptor.rs` the listening sockets it accepts from, `close_log.rs` the end of every
//! connection in the log, `stopping.rs` a stop's deadline, `spin.rs` busy polling, `socket.rs`
//! a connection's socket. What the reactor does, one file each: `after_step.rs` what follows a
//! machine's step and how a connection ends, `adopt.rs` takes clients in and builds their
//! machine at the pick, `upstream.rs` picks a backend, connects and retries, `fanout.rs` opens
//! a fan-out connection's destinations, `departures.rs` closes upstreams that leave a
//! connection, `export.rs` and `import.rs` move connections between processes, `messages.rs`
//! answers the mail (`mail.rs`), `timers.rs` keeps the clock, `health.rs` the backends'
//! passive health, `accept.rs` accepts (its policy is `accept/parking.rs`). `token.rs` says
//! how a token names a socket, `accepted.rs` what a client brings in, `epoll.rs` the
//! EPOLLEXCLUSIVE calls.

mod accept;
mod accepted;
mod acceptor;
mod accounting;
mod adopt;
mod after_step;
mod close_log;
mod departures;
// Unsafe code (with splice/kernel.rs the only such place): `epoll_ctl` for EPOLLEXCLUSIVE,
// which mio lacks.
#[allow(unsafe_code)]
mod epoll;
mod export;
mod fanout;
mod handing_over;
mod health;
mod idle_trim;
mod import;
mod mail;
mod messages;
mod queue;
mod records;
mod removals;
mod slot;
mod socket;
mod spin;
mod stopping;
mod tally;
mod timers;
pub(crate) mod token;
mod upstream;
mod upstreams;

use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll};

use crate::accept::Accepting;
use crate::conn::close::CloseReason;
use crate::conn::hold::Pools;
use crate::conn::machine::{AfterReady, SocketIx};
use crate::conn::Readiness;
use crate::mailbox::{Mailbox, WAKER_TOKEN};
use crate::status::ReactorStats;
pub(crate) use accepted::{Accepted, Origin};
use accounting::Accounting;
use handing_over::HandingOver;
pub(crate) use mail::ReactorMsg;
use queue::BackendQueue;
use removals::Removals;
use slot::Slots;
use stopping::Stopping;

/// Events taken from the OS per `poll` call.
const EVENTS_CAPACITY: usize = 1024;
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

/// How a reactor thread ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReactorExit {
    /// Connections that were cut rather than left to finish.
    pub(crate) cut: u64,
}

pub(crate) struct Reactor {
    /// The process-wide id of the proxy this reactor belongs to.
    proxy: u64,
    poll: Poll,
    rx: Receiver<ReactorMsg>,
    /// The connections, relayed and fan-out alike.
    slots: Slots,
    /// Relay buffers and splice pipes, lent to connections while bytes are in flight.
    pools: Pools,
    /// What every connection in and out counts, and where.
    counts: Accounting,
    /// Messages remain in the channel after a bounded round.
    more_messages: bool,
    stopping: Stopping,
    /// Connections cut rather than left to finish, for the exit.
    cut: u64,
    /// Relayed connections waiting for a backend slot.
    queue: BackendQueue,
    /// Backends whose connections are to be closed at a deadline.
    removals: Removals,
    /// An export of connections to another process, and the hold that follows it.
    handing_over: HandingOver,
    /// The accepting side, when reactors accept (`None`: the listener thread hands clients over).
    acceptor: Option<acceptor::Acceptor>,
    /// Rate limits for the warnings about failed connections.
    close_log: close_log::CloseLog,
    /// Busy polling: whether to poll with a zero timeout for a while after activity.
    busy: spin::BusyPoll,
    /// Where connection records go, if anywhere.
    access: Option<Arc<dyn crate::access_record::AccessSink>>,
    /// When to give memory back after a burst.
    idle_trim: idle_trim::IdleTrim,
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
            proxy,
            poll,
            rx,
            slots: Slots::default(),
            pools,
            more_messages: false,
            stopping: Stopping::Running,
            cut: 0,
            queue: BackendQueue::default(),
            removals: Removals::default(),
            handing_over: HandingOver::default(),
            acceptor: accepts.then(|| acceptor::Acceptor::new(accepting.clone(), index)),
            counts: Accounting::new(index, stats, accepting),
            close_log: Default::default(),
            busy: spin::BusyPoll::new(Duration::ZERO),
            access: None,
            idle_trim: Default::default(),
        };
        Ok((reactor, mailbox))
    }

    /// The same reactor, handing the record of each connection's end to `sink`.
    pub(crate) fn with_access_sink(
        mut self,
        sink: Option<Arc<dyn crate::access_record::AccessSink>>,
    ) -> Self {
        self.access = sink;
        self
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
                if self.slots.is_empty() && !self.handing_over.holding() {
                    break;
                }
                if self.stopping.cut_due(now) {
                    self.cut += self.slots.len() as u64;
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
                tracing::error!(reactor = self.counts.shard(), error = %e, "poll failed; closing this reactor's connections");
                self.cut += self.slots.len() as u64;
                self.abort_all(CloseReason::LocalResource, Instant::now());
                break;
            }
            let now = Instant::now();
            // Events (the waker's too), or work the last round left: spin on for a while. Not
            // connections queued for a backend slot: they would keep an idle reactor spinning.
            if !events.is_empty() || self.work_left() {
                self.busy.activity(now);
                self.idle_trim.activity(now);
            } else if self.idle_trim.take_due(now) {
                self.give_back_memory();
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
                if let Some((key, socket)) = token::parse(event.token()) {
                    self.on_event(key, socket, ready, now);
                } else if let Some(id) = token::parse_listener(event.token()) {
                    self.on_listener_event(id);
                }
            }
            for (key, id) in self.slots.take_again() {
                if self.slots.holds(key, id) {
                    self.drive(key, now);
                }
            }
            self.fire_timers(now);
            self.fire_backend_deadlines(now);
            if woken || self.more_messages {
                self.handle_messages(now);
            }
            // After the messages: a `Stop` or `Unlisten` that came with the event wins.
            self.accept_round(now);
            if self.queue.due() {
                self.serve_queue(now);
            }
            self.end_export_if_done(now);
        }
        ReactorExit { cut: self.cut }
    }

    /// Quiet after a burst: the stock of free buffers goes, and the allocator hands its free
    /// pages back to the system (see `memory.rs`).
    fn give_back_memory(&mut self) {
        self.pools.buffers.trim();
        crate::memory::release_free();
    }

    /// Connections to drive again or messages to handle: the next poll must not block.
    fn work_left(&self) -> bool {
        self.slots.have_again() || self.more_messages
    }

    fn on_event(&mut self, key: usize, socket: SocketIx, ready: Readiness, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return; // A stale event for a connection closed earlier in this batch.
        };
        if let SocketIx::Upstream(i) = socket {
            if slot.upstreams.socket(i).is_none() {
                return; // A stale event for an upstream socket already given up.
            }
        }
        match slot.machine.on_ready(socket, ready) {
            AfterReady::Wait => {}
            AfterReady::Drive => self.drive(key, now),
            AfterReady::CheckConnect(i, ready) => self.check_connect(key, i, ready, now),
        }
    }

    /// Relays what readiness allows on connection `key`.
    #[inline]
    fn drive(&mut self, key: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let action = {
            let _enter = slot.span.enter();
            slot.machine.drive(
                &mut slot.client,
                slot.upstreams.sockets_mut(),
                &mut self.pools,
                now,
            )
        };
        self.after_step(key, action, None, now);
    }
}

/// Arms SO_LINGER 0 so that the coming close sends a reset.
fn reset(stream: &impl std::os::fd::AsFd) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
