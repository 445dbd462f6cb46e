//! TLS with rustls (the `ring` provider): certificates read from PEM files ([`certs`]), a
//! listener's termination ([`server`]), and a session over a socket as a connection's
//! transport ([`stream`]).

pub(crate) mod certs;
pub(crate) mod client;
pub(crate) mod client_hello;
pub(crate) mod resolver;
pub(crate) mod server;
pub(crate) mod server_names;
pub(crate) mod stream;
pub(crate) mod x509;

pub(crate) use crate::cert_error::CertError;

/// The crypto provider every TLS configuration of porxy uses: `ring`, which builds with only
/// cargo and a C compiler (aws-lc-rs needs cmake and takes several times longer). rustls marks
/// it deprecated because it offers no post-quantum key exchange; its classical groups (X25519,
/// P-256, P-384) are what HAProxy and nginx negotiate with OpenSSL 3.0 here too.
#[allow(deprecated)]
pub(crate) fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
