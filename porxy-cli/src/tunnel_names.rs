//! Tunnel names by bound address, as the last start or reload left them: published by the
//! reloader, read by whoever names a tunnel (status, metrics, the routing table, the access
//! log) without waiting for a reload under way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A shared, published map of tunnel names; clones see the same map.
#[derive(Debug, Clone, Default)]
pub(crate) struct TunnelNames(Arc<Mutex<Arc<HashMap<SocketAddr, String>>>>);

impl TunnelNames {
    /// The names as last published.
    pub(crate) fn get(&self) -> Arc<HashMap<SocketAddr, String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Publishes the names of `bound` (name → bound address).
    pub(crate) fn publish(&self, bound: &HashMap<String, SocketAddr>) {
        let names = bound
            .iter()
            .map(|(name, addr)| (*addr, name.clone()))
            .collect();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(names);
    }
}
