//! What follows every step of a connection's machine, in one place for every kind of
//! connection: the bytes it moved are counted, the upstreams that left are closed, during an
//! export it leaves if it can, and then what its [`Action`] says is carried out (wait for a
//! deadline, drive again, pick a backend, move on after a failed connect, close).
//!
//! Closing is here too: [`Reactor::finish`] is the one place a connection leaves the slab other
//! than by export, and writes its end record.

use std::io;
use std::time::Instant;

use super::close_log::Ended;
use super::export::Exported;
use super::slot::Slot;
use super::{reset, Reactor};
use crate::conn::close::CloseReason;
use crate::conn::{Action, Closing};

impl Reactor {
    /// Carries out what connection `key` answered to a step (`error`: the I/O error behind it,
    /// for the logs).
    #[inline]
    pub(super) fn after_step(
        &mut self,
        key: usize,
        action: Action,
        error: Option<&io::Error>,
        now: Instant,
    ) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        slot.count_bytes(self.counts.shard());
        let departed = self.close_departed(key, now);
        // During an export, a connection that can leave does, whatever it asked for (another
        // drive, a timer, a backend): it does that in the process it goes to.
        if self.handing_over.exporting()
            && matches!(action, Action::Wait | Action::Again | Action::Pick { .. })
            && self.export(key, now) == Exported::Left
        {
            return;
        }
        match action {
            // An upstream left outside a drive (a connect failed or timed out, an operator took
            // it out): what the others wait for may be complete now, so drive again.
            Action::Wait if departed => {
                self.slots.drive_again(key);
                self.slots.arm_timer(key);
            }
            Action::Wait => self.slots.arm_timer(key),
            Action::Again => {
                self.slots.drive_again(key);
                self.slots.arm_timer(key);
            }
            Action::Pick { source } => self.pick(key, source, now),
            Action::ConnectFailed(failure) => {
                if let Some(failed) = self.after_connect_failure(key, failure, error, now) {
                    self.assign_backend(key, Some(failed), now);
                }
            }
            Action::Close { .. } => self.finish(key, action, error, now),
        }
    }

    /// Closes a connection as `action` says, counts it and takes it out of the slab.
    pub(super) fn finish(
        &mut self,
        key: usize,
        action: Action,
        error: Option<&io::Error>,
        now: Instant,
    ) {
        let Some((reason, client, upstream)) = action.closing() else {
            return;
        };
        let Some(mut slot) = self.slots.remove(key) else {
            return;
        };
        // An opening that failed says why itself (not a socket's error).
        let noted = slot.machine.failure().map(io::Error::other);
        let error = error.or(noted.as_ref());
        // Dropping a mio socket closes it, which also removes it from the epoll set.
        if client == Closing::Reset {
            reset(&slot.client);
        }
        let upstream_addr = slot.upstreams.logged_addr(&slot.tunnel);
        let record_addrs = self.record_addrs(&slot);
        for i in 0..slot.upstreams.sockets().len() {
            let (socket, released) = slot.upstreams.take(i, &slot.tunnel);
            if let (Some(socket), Closing::Reset) = (&socket, upstream) {
                reset(socket);
            }
            self.queue.slot_freed(released);
        }
        slot.machine.release(&mut self.pools);
        slot.release_client_count();
        slot.count_bytes(self.counts.shard());
        let lived = now.saturating_duration_since(slot.opened);
        self.counts.closed(&slot.tunnel, reason, lived);
        if let Some(addrs) = record_addrs {
            self.record_slot(&mut slot, addrs, reason, error, now);
        }
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

    /// Ends every connection, relayed and fan-out, with `reason`.
    pub(super) fn abort_all(&mut self, reason: CloseReason, now: Instant) {
        self.abort_where(|_| true, reason, now);
    }

    /// Ends every connection `select` picks, with `reason`; returns how many it picked.
    pub(super) fn abort_where(
        &mut self,
        select: impl Fn(&Slot) -> bool,
        reason: CloseReason,
        now: Instant,
    ) -> usize {
        let keys = self.slots.keys_where(select);
        for &key in &keys {
            if let Some(slot) = self.slots.get_mut(key) {
                let action = slot.machine.abort(reason);
                self.after_step(key, action, None, now);
            }
        }
        keys.len()
    }
}
