//! A reactor's connections: one [`Slot`] per connection, relayed or fan-out alike, in one slab,
//! with one timer queue and one list of connections to drive again.
//!
//! A slot is what the glue keeps around a connection's state machine: its sockets, the backend
//! slots its upstreams hold, its tunnel, its log span. The slab key is the connection's key in
//! its socket tokens ([`token`](super::token)); timers and drives deferred to later in a round
//! name it by key and connection id, so an entry that outlived its connection (or whose key was
//! reused) is recognised and dropped.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Instant;

use slab::Slab;

use super::socket::Socket;
use super::tally::Tally;
use super::upstreams::Upstreams;
use crate::conn::machine::Machine;
use crate::conn::proxy_header;
use crate::timer::TimerQueue;
use crate::tunnel::Tunnel;

/// One connection's sockets and bookkeeping around its state machine.
pub(super) struct Slot {
    /// Process-wide connection id, for logs.
    pub(super) id: u64,
    pub(super) machine: Machine,
    pub(super) client: Socket,
    pub(super) upstreams: Upstreams,
    pub(super) peer: SocketAddr,
    pub(super) tunnel: Arc<Tunnel>,
    /// When this process took the connection in (accepted, or imported).
    pub(super) opened: Instant,
    pub(super) span: tracing::Span,
    /// What its end record needs that the machine does not keep.
    pub(super) tally: Tally,
    /// The earliest deadline armed in the timer queue for this connection.
    timer_armed: Option<Armed>,
}

/// When a connection's timer is armed, in nanoseconds after its reactor's [`Slots`] began:
/// half the size of an `Instant` in every slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Armed(NonZeroU64);

impl Slot {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        id: u64,
        machine: Machine,
        client: Socket,
        upstreams: Upstreams,
        peer: SocketAddr,
        tunnel: Arc<Tunnel>,
        opened: Instant,
        span: tracing::Span,
    ) -> Slot {
        Slot {
            id,
            machine,
            client,
            upstreams,
            peer,
            tunnel,
            opened,
            span,
            tally: Tally::default(),
            timer_armed: None,
        }
    }

    /// Adds the bytes the connection moved since the last count to its tunnel's counters (in
    /// shard `reactor`), to its backend's, or to each fan-out destination's.
    #[inline]
    pub(super) fn count_bytes(&mut self, reactor: usize) {
        let moved = self.machine.take_unreported();
        self.tally
            .moved(moved.to_upstream, moved.to_client, &moved.per_upstream);
        if moved.to_upstream + moved.to_client > 0 {
            let shard = self.tunnel.stats.reactor(reactor);
            crate::status::bump(&shard.bytes_to_upstream, moved.to_upstream);
            crate::status::bump(&shard.bytes_to_client, moved.to_client);
        }
        if moved.per_upstream.is_empty() {
            // Relayed: its one backend got what the client sent, and sent what it got.
            if moved.to_upstream + moved.to_client > 0 {
                if let Some((_, backend)) = self.upstreams.backend(0, &self.tunnel) {
                    backend.add_bytes(reactor, moved.to_upstream, moved.to_client);
                }
            }
            return;
        }
        for (i, sent) in moved.per_upstream.into_iter().enumerate() {
            if let Some((_, backend)) = self.upstreams.backend(i, &self.tunnel) {
                backend.add_sent(sent);
                // Replies reach the client from the primary, destination 0.
                let replies = if i == 0 { moved.to_client } else { 0 };
                backend.add_bytes(reactor, sent, replies);
            }
        }
    }

    /// The PROXY header backend `index` of its tunnel gets ahead of this connection's stream,
    /// if it gets one: naming the client (its real one) and the address it reached.
    pub(super) fn proxy_header_to(&self, index: usize) -> Option<Vec<u8>> {
        let version = self.tunnel.send_proxy_to(index)?;
        // The address the client reached: the listener's own, unless it listens on a wildcard
        // address, which has many (then the kernel says which; a system call saved otherwise).
        let local = self.tunnel.local;
        let destination = if local.ip().is_unspecified() {
            self.client.local_addr().unwrap_or(local)
        } else {
            local
        };
        let authority = match &self.client {
            Socket::Tls(tls) => tls.server_name(),
            Socket::Tcp(_) => None,
        };
        Some(proxy_header::header_to_send(
            version,
            self.peer,
            destination,
            authority,
        ))
    }

    /// A relayed connection that starts relaying at `now` is held to its tunnel's bandwidth
    /// limits, if it has any.
    pub(super) fn limit_bandwidth(&mut self, now: Instant) {
        if let Some(throttle) = self.tunnel.bandwidth.throttle(now) {
            if let Some(conn) = self.machine.relay() {
                conn.set_throttle(throttle);
            }
        }
    }

    /// Gives back the count this connection holds against its client's limit, if it holds
    /// one; call once it ends or leaves.
    pub(super) fn release_client_count(&self) {
        if self.tunnel.max_conns_per_client.is_some() {
            let client = self.tunnel.client_key(self.peer.ip());
            self.tunnel.clients.give_back(self.id, client);
        }
    }

    /// Whether its sockets can move to another process (a TLS session cannot).
    pub(super) fn sockets_travel(&self) -> bool {
        self.client.can_travel()
            && self
                .upstreams
                .sockets()
                .iter()
                .flatten()
                .all(Socket::can_travel)
    }
}

/// A timer entry that came due.
pub(super) enum Due {
    /// Connection `key`'s deadline may have come.
    Conn(usize),
    /// Its connection has gone (or its key holds another).
    Stale,
}

/// The connections of one reactor.
pub(super) struct Slots {
    slab: Slab<Slot>,
    timers: TimerQueue,
    /// Connections whose drive ran out of budget, to be driven again before blocking.
    again: Vec<(usize, u64)>,
    /// What [`Armed`] times count from.
    epoch: Instant,
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            slab: Slab::default(),
            timers: TimerQueue::default(),
            again: Vec::new(),
            epoch: Instant::now(),
        }
    }
}

impl Slots {
    /// `at` as an [`Armed`] time after `epoch` (a moment before it, which no deadline is, as
    /// its first nanosecond). Takes the epoch, not `self`, beside a borrowed slot.
    fn armed_at(epoch: Instant, at: Instant) -> Armed {
        let nanos = at.saturating_duration_since(epoch).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX).max(1);
        Armed(NonZeroU64::new(nanos).unwrap_or(NonZeroU64::MIN))
    }

    #[inline]
    pub(super) fn get(&self, key: usize) -> Option<&Slot> {
        self.slab.get(key)
    }

    #[inline]
    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut Slot> {
        self.slab.get_mut(key)
    }

    /// Whether `key` still holds connection `id`.
    pub(super) fn holds(&self, key: usize, id: u64) -> bool {
        self.slab.get(key).is_some_and(|s| s.id == id)
    }

    /// The key the next [`insert`](Slots::insert) gives, for registering its sockets first.
    pub(super) fn vacant_key(&self) -> usize {
        self.slab.vacant_key()
    }

    /// Inserts `slot` at `key`: the key [`vacant_key`](Slots::vacant_key) gave, which its
    /// sockets were registered with (nothing may enter the slab in between).
    pub(super) fn insert_at(&mut self, key: usize, slot: Slot) {
        let inserted = self.slab.insert(slot);
        debug_assert_eq!(inserted, key, "the slot's key is its sockets' token");
    }

    pub(super) fn remove(&mut self, key: usize) -> Option<Slot> {
        self.slab.try_remove(key)
    }

    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.slab.iter()
    }

    /// The keys of the connections `select` picks.
    pub(super) fn keys_where(&self, select: impl Fn(&Slot) -> bool) -> Vec<usize> {
        self.slab
            .iter()
            .filter(|(_, s)| select(s))
            .map(|(k, _)| k)
            .collect()
    }

    /// Makes sure the timer queue holds an entry no later than the connection's deadline.
    #[inline]
    pub(super) fn arm_timer(&mut self, key: usize) {
        let Some(slot) = self.slab.get_mut(key) else {
            return;
        };
        let Some(deadline) = slot.machine.deadline() else {
            return;
        };
        let at = Slots::armed_at(self.epoch, deadline);
        if slot.timer_armed.is_none_or(|armed| at < armed) {
            slot.timer_armed = Some(at);
            self.timers.arm(deadline, key, slot.id);
        }
    }

    /// Arms a timer for connection `key` at `at`, whatever its deadline says.
    pub(super) fn arm_at(&mut self, key: usize, at: Instant) {
        if let Some(slot) = self.slab.get_mut(key) {
            slot.timer_armed = Some(Slots::armed_at(self.epoch, at));
            self.timers.arm(at, key, slot.id);
        }
    }

    /// The next timer entry due at `now`, if one is: a connection's key, or an entry that
    /// outlived its connection (each counts against the caller's bound on work per round).
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Due> {
        let (key, id, at) = self.timers.pop_due(now)?;
        let Some(slot) = self.slab.get_mut(key).filter(|s| s.id == id) else {
            return Some(Due::Stale);
        };
        if slot.timer_armed == Some(Slots::armed_at(self.epoch, at)) {
            slot.timer_armed = None;
        }
        Some(Due::Conn(key))
    }

    /// The earliest deadline armed.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Connection `key` is to be driven again before the reactor blocks.
    #[inline]
    pub(super) fn drive_again(&mut self, key: usize) {
        if let Some(slot) = self.slab.get(key) {
            self.again.push((key, slot.id));
        }
    }

    /// Whether connections wait to be driven again.
    pub(super) fn have_again(&self) -> bool {
        !self.again.is_empty()
    }

    /// The connections to drive again, as `(key, id)`; the list starts over empty.
    pub(super) fn take_again(&mut self) -> Vec<(usize, u64)> {
        std::mem::take(&mut self.again)
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use std::mem::size_of;

    use super::{Slot, Upstreams};
    use crate::conn::machine::Machine;
    use crate::conn::Conn;

    /// Every connection holds a slot, idle or not: a fan-out machine or destination list
    /// inline would make every relayed connection's as large as theirs, and the idle
    /// benchmark's memory per connection counts it. In release a slot is 472 bytes: 440, as
    /// before relayed and fan-out connections shared one kind of slot, and 32 for the tally its
    /// end record needs (480 in a debug build).
    #[test]
    fn a_slot_is_no_larger_than_a_relayed_connection_needs() {
        assert_eq!(size_of::<Machine>(), size_of::<Conn>());
        // A socket, a backend index beside it, the backends tried. (mio's sockets carry a
        // selector id of their own in debug builds.)
        let upstreams = if cfg!(debug_assertions) { 64 } else { 56 };
        assert!(
            size_of::<Upstreams>() <= upstreams,
            "{}",
            size_of::<Upstreams>()
        );
        // The rest: id, client socket, upstreams, peer, tunnel, opened, span, tally, timer.
        // (mio's sockets carry a selector id of their own in debug builds.)
        let slot = size_of::<Slot>();
        let before = if cfg!(debug_assertions) { 480 } else { 472 };
        assert!(slot <= before, "{slot}");
    }
}
