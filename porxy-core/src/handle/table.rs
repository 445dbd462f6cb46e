//! The tunnel table: the map the API's writers change under a lock, and a snapshot of it that
//! readers take without waiting.
//!
//! A writer may hold the lock for seconds (a change or a close waits for the listener thread
//! to confirm it); a status call, soon a metrics scrape, must not wait behind it. So every
//! writer goes through a [`TableGuard`], which publishes the table as an immutable snapshot
//! when it is let go, if it changed anything; readers clone the snapshot's `Arc` under a lock
//! held for that clone alone. A reader sees the table as the last writer left it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::tunnel::Tunnel;

/// The tunnels by listen address.
type Map = BTreeMap<SocketAddr, Arc<Tunnel>>;

/// The tunnel table and its published snapshot.
#[derive(Default)]
pub(super) struct TunnelTable {
    map: Mutex<Map>,
    published: Mutex<Arc<[Arc<Tunnel>]>>,
}

impl TunnelTable {
    /// Locks the table for reading or changing it; the change is published when the guard is
    /// let go.
    pub(super) fn lock(&self) -> TableGuard<'_> {
        TableGuard {
            // The table is only ever left consistent: a panic while holding it cannot corrupt
            // it.
            map: self.map.lock().unwrap_or_else(|p| p.into_inner()),
            published: &self.published,
            changed: false,
        }
    }

    /// The tunnels as the last writer left them, in address order. Never waits for a writer.
    pub(super) fn snapshot(&self) -> Arc<[Arc<Tunnel>]> {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The locked table. Changing it (through `DerefMut`) marks it for publishing.
pub(super) struct TableGuard<'a> {
    map: MutexGuard<'a, Map>,
    published: &'a Mutex<Arc<[Arc<Tunnel>]>>,
    changed: bool,
}

impl Deref for TableGuard<'_> {
    type Target = Map;

    fn deref(&self) -> &Map {
        &self.map
    }
}

impl DerefMut for TableGuard<'_> {
    fn deref_mut(&mut self) -> &mut Map {
        self.changed = true;
        &mut self.map
    }
}

impl Drop for TableGuard<'_> {
    fn drop(&mut self) {
        if self.changed {
            let snapshot: Arc<[Arc<Tunnel>]> = self.map.values().cloned().collect();
            *self.published.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::{Proxy, StopMode, TunnelSpec};

    /// Regression: `status()` took the table lock that a change or a reload holds while it
    /// waits (up to 5 s) for the listener thread, so a status call, or a scrape, stalled
    /// behind it. It reads the published snapshot instead.
    #[test]
    fn status_answers_while_a_writer_holds_the_table() {
        let spec: TunnelSpec = "127.0.0.1:0=127.0.0.1:9".parse().unwrap();
        let proxy = Proxy::builder().reactors(1).tunnel(spec).start().unwrap();
        let handle = proxy.handle();
        let local = proxy.bound()[0];
        // A writer waiting for the listener's confirmation, as `replace` does.
        let writer = handle.tunnels();
        let (done, answered) = crossbeam_channel::bounded(1);
        let reader = handle.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let status = reader.status();
            let _ = done.send((status, started.elapsed()));
        });
        let (status, took) = answered
            .recv_timeout(Duration::from_millis(50))
            .expect("status answers within 50 ms while a writer holds the table");
        assert!(took < Duration::from_millis(50), "{took:?}");
        let listed: Vec<_> = status.tunnels.iter().map(|t| t.local).collect();
        assert_eq!(listed, [local]);
        drop(writer);
        proxy.stop(StopMode::Now).unwrap();
    }

    /// A change is seen by status once the writer lets the table go.
    #[test]
    fn status_sees_a_change_once_published() {
        let spec: TunnelSpec = "127.0.0.1:0=127.0.0.1:9".parse().unwrap();
        let proxy = Proxy::builder().reactors(1).tunnel(spec).start().unwrap();
        let handle = proxy.handle();
        let opened = handle
            .open(&"127.0.0.1:0=127.0.0.1:10".parse().unwrap())
            .unwrap();
        let listed: Vec<_> = handle.status().tunnels.iter().map(|t| t.local).collect();
        assert!(
            listed.contains(&opened.local) && listed.len() == 2,
            "{listed:?}"
        );
        handle
            .close(opened.local, crate::CloseMode::KeepConnections)
            .unwrap();
        assert_eq!(handle.status().tunnels.len(), 1);
        proxy.stop(StopMode::Now).unwrap();
    }
}
