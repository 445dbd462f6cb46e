//! How a tunnel speaks TLS to its backends ([`ClientTls`]): which CAs it trusts (its own
//! `tls_ca`, else the system's store), whether it verifies at all (`tls_verify=off`, only
//! under that explicit name), and the certificate it shows a backend that asks for one.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::certs::{self, CertError};
use super::provider;
use crate::cert_status::{CertificateRole, CertificateStatus};

/// What a tunnel's TLS to its backends is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientTlsSettings<'a> {
    /// The CAs a backend's certificate must chain to (`None`: the system's store).
    pub(crate) ca: Option<&'a Path>,
    /// Whether backends' certificates are verified at all.
    pub(crate) verify: bool,
    /// The certificate chain and key shown to a backend that asks for one.
    pub(crate) identity: Option<(&'a Path, &'a Path)>,
    /// The protocols offered by ALPN, most wanted first (none: no ALPN).
    pub(crate) alpn: Vec<Vec<u8>>,
}

/// A tunnel's TLS to its backends, ready to start sessions.
#[derive(Clone)]
pub(crate) struct ClientTls {
    config: Arc<ClientConfig>,
    /// The certificate shown to backends that ask, for status.
    certificate: Option<Arc<CertificateStatus>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the files (and the system's store, unless `ca` is given) and builds the
    /// configuration; every fault names its file.
    pub(crate) fn new(settings: &ClientTlsSettings<'_>) -> Result<ClientTls, CertError> {
        let provider = Arc::new(provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| CertError::X509 {
                path: Default::default(),
                reason: e.to_string(),
            })?;
        let builder = if settings.verify {
            builder.with_root_certificates(roots(settings.ca)?)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider.clone())))
        };
        let mut certificate = None;
        let config = match settings.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let identity = certs::identity(cert, key, &provider, SystemTime::now())?;
                certificate = Some(Arc::new(identity.status(CertificateRole::BackendClient)));
                let chain = identity.key.cert.clone();
                let private = certs::private_key(key)?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| CertError::Mismatch {
                        cert: cert.to_path_buf(),
                        key: key.to_path_buf(),
                        reason: e.to_string(),
                    })?
            }
        };
        let mut config = config;
        config.alpn_protocols = settings.alpn.clone();
        Ok(ClientTls {
            config: Arc::new(config),
            certificate,
        })
    }

    /// The certificate it shows backends that ask, if any.
    pub(crate) fn certificate(&self) -> Option<&CertificateStatus> {
        self.certificate.as_deref()
    }

    /// Whether `other` is this very configuration (not one built alike from the same files).
    pub(crate) fn same(&self, other: &ClientTls) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }

    /// A new session with a backend that should prove it is `name`, offering by ALPN the
    /// configuration's protocols, or `alpn` alone if given.
    pub(crate) fn session(
        &self,
        name: ServerName<'static>,
        alpn: Option<&[u8]>,
    ) -> Result<ClientConnection, rustls::Error> {
        match alpn {
            None => ClientConnection::new(self.config.clone(), name),
            Some(protocol) => {
                ClientConnection::new_with_alpn(self.config.clone(), name, vec![protocol.to_vec()])
            }
        }
    }
}

/// The CAs in `ca`, or the system's store.
fn roots(ca: Option<&Path>) -> Result<RootCertStore, CertError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in certs::chain(path)? {
                roots.add(cert).map_err(|e| CertError::X509 {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            // Certificates the system store holds that rustls cannot use are left out, as
            // curl and the rest do.
            let (added, _ignored) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                return Err(CertError::Pem {
                    path: "the system's trust store".into(),
                    what: "holds no usable CA certificate; give tls_ca".into(),
                });
            }
        }
    }
    Ok(roots)
}

/// `tls_verify=off`: every certificate is taken. Signatures are still checked, so the session
/// is encrypted with the key of the certificate shown; who shows it is not.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
