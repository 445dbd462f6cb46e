//! A connection's end record, handed to the access sink when there is one and it wants the
//! connection's tunnel: built here for every way a connection ends in this process (closed
//! from its slot, turned away before it had one, refused as it was taken over).

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use super::slot::Slot;
use super::tally::{Ending, Tally};
use super::Reactor;
use crate::conn::close::CloseReason;
use crate::tunnel::Tunnel;

/// Where a connection went: a relayed one's backend, a fan-out one's destinations.
pub(super) struct RecordAddrs {
    backend: Option<SocketAddr>,
    dests: Vec<Option<SocketAddr>>,
}

impl Reactor {
    /// Where the connection in `slot` went, for its record, if it is to be recorded: read
    /// before its upstreams are let go.
    pub(super) fn record_addrs(&self, slot: &Slot) -> Option<RecordAddrs> {
        self.sink_for(&slot.tunnel)?;
        let dests = if slot.tunnel.fanout.is_some() {
            (0..slot.upstreams.sockets().len())
                .map(|i| slot.upstreams.addr(i, &slot.tunnel))
                .collect()
        } else {
            Vec::new()
        };
        Some(RecordAddrs {
            backend: slot.upstreams.logged_addr(&slot.tunnel),
            dests,
        })
    }

    /// Records the end of the connection in `slot`, which went to `addrs`, closed for
    /// `reason` (`error`: why, in words).
    pub(super) fn record_slot(
        &self,
        slot: &mut Slot,
        addrs: RecordAddrs,
        reason: CloseReason,
        error: Option<&io::Error>,
        now: Instant,
    ) {
        let Some(sink) = self.sink_for(&slot.tunnel) else {
            return;
        };
        let ending = Ending {
            id: slot.id,
            tunnel: slot.tunnel.local,
            client: slot.peer,
            backend: addrs.backend,
            dest_addrs: addrs.dests,
            generation: slot.tunnel.generation.id,
            opened: slot.opened,
            reason,
            error: error.map(ToString::to_string),
        };
        sink.record(slot.tally.record(ending, now));
    }

    /// Records the end of a client of `tunnel` that never had a slot (turned away, or refused
    /// as it was taken over: `imported`), taken in at `opened`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_unslotted(
        &self,
        id: u64,
        tunnel: &Tunnel,
        client: SocketAddr,
        opened: Instant,
        imported: bool,
        reason: CloseReason,
        error: Option<&io::Error>,
    ) {
        let Some(sink) = self.sink_for(tunnel) else {
            return;
        };
        let mut tally = if imported {
            Tally::imported()
        } else {
            Tally::default()
        };
        let ending = Ending {
            id,
            tunnel: tunnel.local,
            client,
            backend: None,
            dest_addrs: Vec::new(),
            generation: tunnel.generation.id,
            opened,
            reason,
            error: error.map(ToString::to_string),
        };
        sink.record(tally.record(ending, opened));
    }

    /// The sink, if there is one and it records connections of `tunnel`.
    fn sink_for(&self, tunnel: &Tunnel) -> Option<&dyn crate::access_record::AccessSink> {
        let sink = self.access.as_deref()?;
        sink.wants(tunnel.local).then_some(sink)
    }
}
