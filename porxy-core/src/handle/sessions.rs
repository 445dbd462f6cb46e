//! Handing established connections over between processes: [`ProxyHandle::export_sessions`] on
//! the proxy that goes away, [`ProxyHandle::import_sessions`] on the one that takes over.
//!
//! The transport between the two (a Unix socket, say) is the caller's; [`wire`] is the format.
//! See [`Session`] for what travels and why no byte is lost or repeated, and the reactor's
//! `export.rs` and `import.rs` for how connections leave and enter a reactor.
//!
//! [`wire`]: crate::session::wire

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{resolve_remotes, ProxyHandle};
use crate::error::Error;
use crate::reactor::ReactorMsg;
use crate::session::Session;
use crate::spec::{Endpoint, TunnelSpec};
use crate::tunnel::loaded::Loaded;
use crate::tunnel::reach::OwnListener;
use crate::tunnel::Tunnel;

/// How long past its settle time an export waits for a reactor that has not finished (a
/// reactor busy with a burst); past it, what has not come stays in this process.
const EXPORT_GRACE: Duration = Duration::from_secs(5);

/// What [`ProxyHandle::import_sessions`] did with the sessions it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Sessions that go on in the tunnel listening on their address (or, given back to the
    /// proxy they came from, in their own tunnel).
    pub matched: usize,
    /// Relaying and fan-out sessions whose address no tunnel here listens on: they go on all
    /// the same, to the backends they had, in a tunnel of their own that is not listed in
    /// status (like the connections of a closed tunnel).
    pub detached: usize,
    /// Sessions closed with a reset: a client that waited for a backend on a tunnel this proxy
    /// does not have, or a proxy whose reactors are gone.
    pub reset: usize,
}

/// The connections a stopping proxy hands over, as they come out of its reactors
/// ([`ProxyHandle::export_sessions`]).
///
/// Dropping it takes back whatever has not been taken out of it yet, and lets the reactors end
/// once they hold no connection.
pub struct SessionExport {
    handle: ProxyHandle,
    rx: Option<Receiver<Session>>,
    /// When to stop waiting for reactors that have not finished.
    deadline: Instant,
}

impl ProxyHandle {
    /// Takes this proxy's established connections out of it, to hand them to another process
    /// (a zero-downtime upgrade); the proxy must be stopping ([`ProxyHandle::stop`], graceful),
    /// so that no new client arrives meanwhile.
    ///
    /// Relaying connections leave at once, with their sockets and the bytes buffered between
    /// them; clients waiting for a backend slot leave with their socket alone (nothing was read
    /// from them yet); fan-out connections leave with every open destination's socket, the
    /// client bytes some destination lacks and each destination's position. Connections whose
    /// upstream connect is in flight (for fan-out: any destination's) leave as soon as it
    /// completes, for up to `settle`; those still connecting then stay, and finish here like
    /// in any graceful stop. Every connection that leaves counts as closed with
    /// [`CloseReason::HandedOver`](crate::CloseReason::HandedOver).
    ///
    /// The reactors keep running, even with no connection left, until the export is dropped,
    /// so that sessions another process did not take can be given back
    /// ([`ProxyHandle::import_sessions`]).
    pub fn export_sessions(&self, settle: Duration) -> Result<SessionExport, Error> {
        if !self.is_stopping() {
            return Err(Error::NotStopping);
        }
        let until = crate::units::after(Instant::now(), settle);
        let (tx, rx) = crossbeam_channel::unbounded();
        for reactor in &self.shared.reactors {
            // A reactor that is gone holds no connection; its message, and sender, are dropped.
            let _ = reactor.send(ReactorMsg::Export {
                to: tx.clone(),
                until,
            });
        }
        Ok(SessionExport {
            handle: self.clone(),
            rx: Some(rx),
            deadline: crate::units::after(until, EXPORT_GRACE),
        })
    }

    /// Takes in connections exported by another process (or given back after a handover that
    /// failed), spread over the reactors in turn. Each goes on in the tunnel listening on the
    /// address it came in on, and takes a slot on that tunnel's backend with its address, if
    /// there is one (whatever the limit: it exists already); a fan-out connection does so for
    /// each of its open destinations, keeps the fan-out settings it ran with, and sends to a
    /// destination this tunnel has no backend for all the same, without a slot. See
    /// [`ImportReport`] for sessions whose tunnel is not here.
    ///
    /// Works on a stopping proxy too: the connections then drain with the others. Fails with
    /// [`Error::Stopped`] (every session reset) only when no reactor runs any more.
    pub fn import_sessions(&self, sessions: Vec<Session>) -> Result<ImportReport, Error> {
        let mut report = ImportReport::default();
        let tunnels = self.import_tunnels(&sessions);
        let reactors = &self.shared.reactors;
        let mut woken = vec![false; reactors.len()];
        let mut undelivered = 0;
        for mut session in sessions {
            let found = match session.origin.take() {
                Some((proxy, tunnel)) if proxy == self.shared.id => Some((tunnel, false)),
                _ => tunnels.get(&session.tunnel).cloned(),
            };
            let Some((tunnel, detached)) = found else {
                tracing::warn!(
                    tunnel = %session.tunnel,
                    client = %session.peer,
                    "a handed-over client has no backend to go on with, and no tunnel listens \
                     on its address here; reset"
                );
                report.reset += 1;
                continue;
            };
            let id = self.shared.conn_ids.fetch_add(1, Ordering::Relaxed);
            let mut msg = ReactorMsg::Import {
                session: Box::new(session),
                tunnel,
                id,
            };
            // In turn; a reactor that is gone passes its turn on.
            let mut delivered = false;
            for _ in 0..reactors.len() {
                let index =
                    self.shared.next_import.fetch_add(1, Ordering::Relaxed) % reactors.len();
                match reactors[index].queue(msg) {
                    Ok(()) => {
                        woken[index] = true;
                        delivered = true;
                        break;
                    }
                    Err(returned) => msg = returned,
                }
            }
            match (delivered, detached) {
                (true, false) => report.matched += 1,
                (true, true) => report.detached += 1,
                // Dropping the message drops the session, which resets its connections.
                (false, _) => {
                    report.reset += 1;
                    undelivered += 1;
                }
            }
        }
        for (index, wake) in woken.into_iter().enumerate() {
            if wake {
                reactors[index].wake();
            }
        }
        if undelivered > 0 && report.matched + report.detached == 0 {
            return Err(Error::Stopped);
        }
        Ok(report)
    }

    /// The tunnel for every address the sessions came in on: the one listening there, or, when
    /// there is none and some are relaying or fanning out, a detached tunnel (`true`) to the
    /// backends they had.
    fn import_tunnels(&self, sessions: &[Session]) -> HashMap<SocketAddr, (Arc<Tunnel>, bool)> {
        let mut tunnels = HashMap::new();
        let mut orphans: HashMap<SocketAddr, Vec<SocketAddr>> = HashMap::new();
        let own = |s: &&Session| s.origin.as_ref().is_some_and(|(p, _)| *p == self.shared.id);
        for session in sessions.iter().filter(|s| !own(s)) {
            if tunnels.contains_key(&session.tunnel) {
                continue;
            }
            if let Some(backends) = orphans.get_mut(&session.tunnel) {
                for backend in session.destinations() {
                    if !backends.contains(&backend) {
                        backends.push(backend);
                    }
                }
                continue;
            }
            match self.tunnels().get(&session.tunnel) {
                Some(tunnel) => {
                    tunnels.insert(session.tunnel, (tunnel.clone(), false));
                }
                None => {
                    orphans.insert(session.tunnel, session.destinations());
                }
            }
        }
        for (local, backends) in orphans {
            if let Some(tunnel) = self.detached_tunnel(local, &backends) {
                tunnels.insert(local, (tunnel, true));
            }
        }
        tunnels
    }

    /// A tunnel for connections handed over on an address no tunnel here listens on: it only
    /// carries them on, with the proxy's default settings; it accepts nothing and is not
    /// listed in status.
    fn detached_tunnel(&self, local: SocketAddr, backends: &[SocketAddr]) -> Option<Arc<Tunnel>> {
        if backends.is_empty() {
            return None;
        }
        let spec = TunnelSpec::new(local, backends.iter().map(|b| Endpoint::Addr(*b)));
        // Addresses resolve to themselves, and are distinct.
        let remotes = resolve_remotes(&spec).ok()?;
        // It listens nowhere: how it would be reached does not matter.
        let lineage = self.new_lineage(OwnListener::to_bind(local), self.current_generation());
        tracing::info!(
            tunnel = %local,
            backends = ?backends,
            "no tunnel listens where handed-over connections came in; they go on detached"
        );
        let config = self.config();
        let tunnel = Tunnel::build(lineage, &spec, &remotes, &config, None, Loaded::default());
        Some(Arc::new(tunnel.ok()?))
    }
}

impl SessionExport {
    /// The next sessions out of the reactors, at most `max`: waits until at least one is out
    /// or the export is over. Empty when it is over.
    pub fn next_batch(&mut self, max: usize) -> Vec<Session> {
        let Some(rx) = &self.rx else {
            return Vec::new();
        };
        let first = match rx.recv_deadline(self.deadline) {
            Ok(session) => session,
            Err(RecvTimeoutError::Disconnected) => return Vec::new(),
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    "a reactor did not finish its export in time; its connections stay here"
                );
                return Vec::new();
            }
        };
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(session) => batch.push(session),
                Err(_) => break,
            }
        }
        batch
    }

    /// Ends the export now (connections still in a reactor stay there) and returns the
    /// sessions that came out and were not taken yet; [`SessionExport::next_batch`] returns
    /// nothing after this. To keep them here, give them back with
    /// [`ProxyHandle::import_sessions`] before dropping the export.
    pub fn end(&mut self) -> Vec<Session> {
        let Some(rx) = self.rx.take() else {
            return Vec::new();
        };
        for reactor in &self.handle.shared.reactors {
            let _ = reactor.send(ReactorMsg::EndExport);
        }
        // Every reactor drops its sender when it reads EndExport: what is left arrives before
        // the channel disconnects.
        let deadline = crate::units::after(Instant::now(), EXPORT_GRACE);
        std::iter::from_fn(|| rx.recv_deadline(deadline).ok()).collect()
    }
}

impl Drop for SessionExport {
    /// Whatever was not taken out goes on in this proxy; then the reactors may end once they
    /// hold no connection.
    fn drop(&mut self) {
        let rest = self.end();
        if !rest.is_empty() {
            let count = rest.len();
            let reset = self
                .handle
                .import_sessions(rest)
                .map_or(count, |report| report.reset);
            tracing::info!(
                connections = count,
                reset,
                "connections not handed over go on here"
            );
        }
        // Only after the sessions given back: a reactor reads them before it lets go.
        for reactor in &self.handle.shared.reactors {
            let _ = reactor.send(ReactorMsg::Release);
        }
    }
}

impl std::fmt::Debug for SessionExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionExport")
            .field("open", &self.rx.is_some())
            .finish()
    }
}
