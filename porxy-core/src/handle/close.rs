//! Closing a tunnel: its listening socket, and its connections or not.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{CloseMode, ProxyHandle, CLOSE_CONFIRM_TIMEOUT};
use crate::error::Error;
use crate::listener::ListenerMsg;
use crate::reactor::ReactorMsg;
use crate::tunnel::Tunnel;

/// What [`ProxyHandle::close`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Closed {
    /// A tunnel listened on the address, and no longer does. False when only connections
    /// left by earlier tunnels there were reset.
    pub listening: bool,
    /// Connections reset ([`CloseMode::CloseConnections`]): those of the tunnel and those left
    /// by earlier tunnels on the address.
    pub reset: u64,
}

impl Closed {
    /// Made by [`ProxyHandle::close`]; public for a front end's own tests.
    pub fn new(listening: bool, reset: u64) -> Closed {
        Closed { listening, reset }
    }
}

impl ProxyHandle {
    /// Stops listening on `local`. When this returns the port refuses new connections.
    /// Established connections go on, or are closed now, as `mode` says.
    ///
    /// [`CloseMode::CloseConnections`] resets every connection that came in on `local`, the
    /// ones an earlier tunnel there left going included (a tunnel closed with
    /// [`CloseMode::KeepConnections`], then opened again), and they are reset when this
    /// returns. With no tunnel on `local` it still resets those left going, and fails with
    /// [`Error::NoSuchTunnel`] only when there are none. [`Closed`] says what was done.
    pub fn close(&self, local: SocketAddr, mode: CloseMode) -> Result<Closed, Error> {
        self.close_locked(&mut self.tunnels(), local, mode)
    }

    /// [`ProxyHandle::close`], with the tunnel table already locked.
    pub(super) fn close_locked(
        &self,
        tunnels: &mut BTreeMap<SocketAddr, Arc<Tunnel>>,
        local: SocketAddr,
        mode: CloseMode,
    ) -> Result<Closed, Error> {
        let tunnel = tunnels.remove(&local);
        if let Some(tunnel) = &tunnel {
            self.unwatch(tunnel.balancer.backends.iter());
            let (done_tx, done_rx) = crossbeam_channel::bounded(1);
            self.shared
                .listener
                .send(ListenerMsg::Remove(local, done_tx))
                .map_err(|_| Error::Stopped)?;
            // The listener confirms once the socket is closed; it only fails to if it has
            // stopped, and then the socket is closed anyway.
            let _ = done_rx.recv_timeout(CLOSE_CONFIRM_TIMEOUT);
        }
        let reset = match mode {
            CloseMode::CloseConnections => self.reset_connections_on(local),
            CloseMode::KeepConnections => 0,
        };
        match tunnel {
            Some(_) => tracing::info!(local = %local, ?mode, reset, "tunnel closed"),
            None if reset > 0 => {
                tracing::info!(local = %local, reset, "connections left by closed tunnels reset")
            }
            None => return Err(Error::NoSuchTunnel(local)),
        }
        Ok(Closed {
            listening: tunnel.is_some(),
            reset,
        })
    }

    /// Resets every connection that came in on `local`, whichever tunnel it came through, and
    /// returns how many once every reactor has (each is waited for a few seconds at most).
    fn reset_connections_on(&self, local: SocketAddr) -> u64 {
        let reactors = &self.shared.reactors;
        let (done, counts) = crossbeam_channel::bounded(reactors.len());
        let asked = reactors
            .iter()
            .filter(|r| {
                let done = done.clone();
                r.send(ReactorMsg::CloseListen { local, done }).is_ok()
            })
            .count();
        // Only the reactors hold senders now: one that ends without answering is seen at once.
        drop(done);
        let until = Instant::now() + CLOSE_CONFIRM_TIMEOUT;
        let mut reset = 0;
        for _ in 0..asked {
            match counts.recv_deadline(until) {
                Ok(n) => reset += n as u64,
                // A reactor that stopped meanwhile closes its connections anyway.
                Err(_) => break,
            }
        }
        reset
    }
}
