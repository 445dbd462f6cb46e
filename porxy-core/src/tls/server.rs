//! How a listener terminates TLS ([`ServerTls`]): its rustls configuration, built once per
//! tunnel version from its options and shared by every connection of that version.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ServerConfig, ServerConnection, ServerSessionMemoryCache};
use rustls::version::{TLS12, TLS13};

use super::certs::{self, CertError};
use super::provider;
use crate::spec::TlsVersion;

/// Session ids a listener remembers for resumption (TLS 1.2; TLS 1.3 resumes with tickets).
const SESSION_CACHE: usize = 4096;
/// How long a client has for its handshake unless told otherwise.
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a TLS listener is told: its certificate chain and key files, the protocols it offers
/// by ALPN (most wanted first), and the oldest TLS version it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerTlsSettings<'a> {
    pub(crate) cert: &'a Path,
    pub(crate) key: &'a Path,
    pub(crate) alpn: Vec<Vec<u8>>,
    pub(crate) min_version: TlsVersion,
}

/// A listener's TLS termination, ready to start sessions.
#[derive(Clone)]
pub(crate) struct ServerTls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("alpn", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the files and builds the configuration: every fault names its file.
    pub(crate) fn new(settings: &ServerTlsSettings<'_>) -> Result<ServerTls, CertError> {
        let provider = provider();
        let key = certs::certified_key(settings.cert, settings.key, &provider)?;
        let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::V1_2 => &[&TLS13, &TLS12],
            TlsVersion::V1_3 => &[&TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .map_err(|e| CertError::Mismatch {
                cert: settings.cert.to_path_buf(),
                key: settings.key.to_path_buf(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
        config.alpn_protocols = settings.alpn.clone();
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        // Tickets let TLS 1.3 clients resume without a full handshake; their keys rotate
        // every few hours and never leave this process.
        if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
            config.ticketer = ticketer;
        }
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// A new server session for one client.
    pub(crate) fn session(&self) -> Result<ServerConnection, rustls::Error> {
        ServerConnection::new(self.config.clone())
    }
}
