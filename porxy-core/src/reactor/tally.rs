//! What a connection's record needs that its machine does not keep: the bytes it moved in
//! total, how long its connect took, and how each fan-out destination ended. Kept in its slot
//! from start to end, and turned into an [`ConnectionRecord`] when it ends.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::access_record::{ConnectionRecord, DestinationOutcome, DestinationRecord};
use crate::conn::close::CloseReason;
use crate::conn::fanout::DestEnd;

/// One connection's running totals. Every connection holds one, idle or not: what most
/// connections never need is boxed, so that it costs a pointer.
#[derive(Debug, Default)]
pub(super) struct Tally {
    to_upstream: u64,
    to_client: u64,
    /// How long the connect took, in microseconds, plus one (0: none completed).
    connect_micros: u32,
    imported: bool,
    rare: Option<Box<Rare>>,
}

/// What only some connections have to record.
#[derive(Debug, Default)]
struct Rare {
    /// The last backend whose connect failed: the one a connection that never got a backend
    /// is recorded with.
    tried: Option<SocketAddr>,
    /// Fan-out only: per destination, bytes sent and how it left (`None`: still there).
    dests: Vec<(u64, Option<DestEnd>)>,
    /// The server name the client asked for, and the subject of the certificate it showed.
    server_name: Option<String>,
    client_subject: Option<String>,
}

/// What the slot knows of a connection as it ends, besides its tally.
pub(super) struct Ending {
    pub(super) id: u64,
    pub(super) tunnel: SocketAddr,
    pub(super) client: SocketAddr,
    pub(super) backend: Option<SocketAddr>,
    /// Fan-out: each destination's backend address, in order.
    pub(super) dest_addrs: Vec<Option<SocketAddr>>,
    pub(super) generation: u64,
    pub(super) opened: Instant,
    pub(super) reason: CloseReason,
    pub(super) error: Option<String>,
}

impl Tally {
    /// The tally of a connection taken over from another process.
    pub(super) fn imported() -> Tally {
        Tally {
            imported: true,
            ..Tally::default()
        }
    }

    #[inline]
    pub(super) fn moved(&mut self, to_upstream: u64, to_client: u64, per_dest: &[u64]) {
        self.to_upstream += to_upstream;
        self.to_client += to_client;
        if per_dest.is_empty() {
            return;
        }
        let dests = &mut self.rare().dests;
        if dests.len() < per_dest.len() {
            dests.resize(per_dest.len(), (0, None));
        }
        for (dest, sent) in dests.iter_mut().zip(per_dest) {
            dest.0 += sent;
        }
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// What the client's opening said of it: the server name it asked for, the subject of the
    /// certificate it showed.
    pub(super) fn identified(&mut self, server_name: Option<&str>, client_subject: Option<String>) {
        if server_name.is_none() && client_subject.is_none() {
            return;
        }
        let rare = self.rare();
        rare.server_name = server_name.map(str::to_string);
        rare.client_subject = client_subject;
    }

    /// A connect to `backend` failed.
    pub(super) fn tried(&mut self, backend: SocketAddr) {
        self.rare().tried = Some(backend);
    }

    pub(super) fn connected_after(&mut self, took: Duration) {
        let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX - 1);
        self.connect_micros = micros + 1;
    }

    /// Fan-out destination `i` left for `end`.
    pub(super) fn dest_left(&mut self, i: usize, end: DestEnd) {
        let dests = &mut self.rare().dests;
        if dests.len() <= i {
            dests.resize(i + 1, (0, None));
        }
        dests[i].1 = Some(end);
    }

    /// The record of the connection, ending at `now`.
    pub(super) fn record(&mut self, ending: Ending, now: Instant) -> ConnectionRecord {
        let ended = SystemTime::now();
        let rare = self.rare.take().map(|r| *r).unwrap_or_default();
        let lived = now.saturating_duration_since(ending.opened);
        let destinations = ending
            .dest_addrs
            .iter()
            .enumerate()
            .filter_map(|(i, addr)| {
                let (sent, end) = rare.dests.get(i).copied().unwrap_or((0, None));
                Some(DestinationRecord {
                    addr: (*addr)?,
                    bytes_sent: sent,
                    outcome: end.map_or(DestinationOutcome::WithConnection(ending.reason), outcome),
                })
            })
            .collect();
        ConnectionRecord {
            id: ending.id,
            tunnel: ending.tunnel,
            client: ending.client,
            backend: ending.backend.or(rare.tried),
            destinations,
            generation: ending.generation,
            started: ended.checked_sub(lived).unwrap_or(ended),
            ended,
            connect_time: (self.connect_micros > 0)
                .then(|| Duration::from_micros(u64::from(self.connect_micros - 1))),
            bytes_to_upstream: self.to_upstream,
            bytes_to_client: self.to_client,
            reason: ending.reason,
            error: ending.error,
            server_name: rare.server_name,
            tls_client_subject: rare.client_subject,
            imported: self.imported,
        }
    }
}

fn outcome(end: DestEnd) -> DestinationOutcome {
    match end {
        DestEnd::Finished => DestinationOutcome::Finished,
        DestEnd::Lagged => DestinationOutcome::Lagged,
        DestEnd::ConnectFailed(reason) => DestinationOutcome::ConnectFailed(reason),
        DestEnd::Failed => DestinationOutcome::Failed,
        DestEnd::Skipped => DestinationOutcome::Skipped,
        DestEnd::CutShort => DestinationOutcome::CutShort,
        DestEnd::Left => DestinationOutcome::Left,
    }
}
