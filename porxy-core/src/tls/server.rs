//! How a listener terminates TLS ([`ServerTls`]): its rustls configuration, built once per
//! tunnel version from its options and shared by every connection of that version.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::server::{
    ServerConfig, ServerConnection, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::version::{TLS12, TLS13};
use rustls::RootCertStore;

use super::certs::{self, CertError};
use super::provider;
use super::resolver::SniResolver;
use crate::cert_status::{CertificateRole, CertificateStatus};
use crate::spec::{ClientAuth, TlsVersion};

/// Session ids a listener remembers for resumption (TLS 1.2; TLS 1.3 resumes with tickets).
const SESSION_CACHE: usize = 4096;
/// How long a client has for its handshake unless told otherwise.
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a TLS listener is told: its certificate chains and key files (chosen by SNI, the
/// first the default), the protocols it offers by ALPN (most wanted first), and the oldest TLS
/// version it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerTlsSettings<'a> {
    pub(crate) certs: Vec<(&'a Path, &'a Path)>,
    pub(crate) alpn: Vec<Vec<u8>>,
    pub(crate) min_version: TlsVersion,
    /// Mutual TLS: the CAs a client's certificate must chain to, and whether it must show one.
    pub(crate) client_ca: Option<(&'a Path, ClientAuth)>,
}

/// How soon an expiry is warned about.
const EXPIRY_WARNING: i64 = 14 * 24 * 3600;

/// A listener's TLS termination, ready to start sessions.
#[derive(Clone)]
pub(crate) struct ServerTls {
    config: Arc<ServerConfig>,
    /// Its certificates, for status.
    certificates: Arc<[CertificateStatus]>,
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
        let now = SystemTime::now();
        let identities = settings
            .certs
            .iter()
            .map(|(cert, key)| certs::identity(cert, key, &provider, now))
            .collect::<Result<Vec<_>, _>>()?;
        for identity in &identities {
            let left = identity.facts.seconds_left(now);
            if left < EXPIRY_WARNING {
                tracing::warn!(
                    cert = %identity.path.display(),
                    serial = %identity.facts.serial,
                    days_left = left / 86_400,
                    "a TLS certificate expires within 14 days"
                );
            }
        }
        let Some(resolver) = SniResolver::new(&identities) else {
            return Err(CertError::Pem {
                path: Default::default(),
                what: "no certificate given".into(),
            });
        };
        let (cert, key) = settings.certs[0];
        let provider = Arc::new(provider);
        let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::V1_2 => &[&TLS13, &TLS12],
            TlsVersion::V1_3 => &[&TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| CertError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                reason: e.to_string(),
            })?;
        let builder = match settings.client_ca {
            None => builder.with_no_client_auth(),
            Some((ca, auth)) => {
                builder.with_client_cert_verifier(client_verifier(ca, auth, provider)?)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = settings.alpn.clone();
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        // Tickets let TLS 1.3 clients resume without a full handshake; their keys rotate
        // every few hours and never leave this process.
        if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
            config.ticketer = ticketer;
        }
        let certificates = identities
            .iter()
            .map(|identity| identity.status(CertificateRole::Listener))
            .collect();
        Ok(ServerTls {
            config: Arc::new(config),
            certificates,
        })
    }

    /// Its certificates, in the order given.
    pub(crate) fn certificates(&self) -> &[CertificateStatus] {
        &self.certificates
    }

    /// A new server session for one client.
    pub(crate) fn session(&self) -> Result<ServerConnection, rustls::Error> {
        ServerConnection::new(self.config.clone())
    }
}

/// Verifies client certificates against the CAs in `ca`; with [`ClientAuth::Optional`], a
/// client may show none.
fn client_verifier(
    ca: &Path,
    auth: ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, CertError> {
    let mut roots = RootCertStore::empty();
    for cert in certs::chain(ca)? {
        roots.add(cert).map_err(|e| CertError::X509 {
            path: ca.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match auth {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    builder.build().map_err(|e| CertError::X509 {
        path: ca.to_path_buf(),
        reason: e.to_string(),
    })
}
