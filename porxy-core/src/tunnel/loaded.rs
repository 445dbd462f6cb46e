//! What a tunnel version needs from outside its spec, read once where it enters: the
//! certificate and key of a TLS listener. Read before anything changes (an OPEN, a reload),
//! so that a missing or broken file refuses the change whole; a version built again from the
//! same files without reading them (a backend added or removed) takes its predecessor's.

use std::path::Path;

use crate::error::Error;
use crate::spec::TunnelSpec;
use crate::tls::client::{ClientTls, ClientTlsSettings};
use crate::tls::server::{ServerTls, ServerTlsSettings};
use crate::tls::CertError;

/// The files a tunnel version runs with, read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loaded {
    /// Its TLS termination, if its clients speak TLS.
    pub(crate) tls: Option<ServerTls>,
    /// Its TLS to the backends, if it speaks TLS to them.
    pub(crate) backend_tls: Option<ClientTls>,
}

impl Loaded {
    /// Reads what `spec` names (its certificate and key, if it terminates TLS); an error names
    /// the tunnel and the file.
    pub(crate) fn read(spec: &TunnelSpec) -> Result<Loaded, Error> {
        let failed = |source| Error::Tls {
            local: spec.local.to_string(),
            source: Box::new(source),
        };
        Ok(Loaded {
            tls: server_tls(spec).map_err(failed)?,
            backend_tls: backend_tls(spec).map_err(failed)?,
        })
    }
}

/// A listener's TLS termination, if its spec asks for it.
fn server_tls(spec: &TunnelSpec) -> Result<Option<ServerTls>, CertError> {
    {
        let options = &spec.options;
        let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) else {
            return Ok(None);
        };
        let alpn = options
            .tls_alpn
            .as_deref()
            .map(|protocols| list(protocols).map(|p| p.as_bytes().to_vec()).collect())
            .unwrap_or_default();
        // Pairs by position: the first chain with the first key, ...
        let certs = list(cert)
            .zip(list(key))
            .map(|(cert, key)| (Path::new(cert), Path::new(key)))
            .collect();
        let settings = ServerTlsSettings {
            certs,
            alpn,
            min_version: options.tls_min_version.unwrap_or_default(),
            client_ca: options
                .tls_client_ca
                .as_deref()
                .map(|ca| (Path::new(ca), options.tls_client_auth.unwrap_or_default())),
        };
        ServerTls::new(&settings).map(Some)
    }
}

/// A tunnel's TLS to its backends, if its spec asks for it.
fn backend_tls(spec: &TunnelSpec) -> Result<Option<ClientTls>, CertError> {
    let options = &spec.options;
    if options.backend_tls != Some(true) {
        return Ok(None);
    }
    let verify = options.tls_verify.unwrap_or(true);
    if !verify {
        tracing::warn!(
            tunnel = %spec.local,
            "tls_verify=off: the backends' certificates are not verified; anyone on the path can pose as them"
        );
    }
    let identity = match (&options.backend_tls_cert, &options.backend_tls_key) {
        (Some(cert), Some(key)) => Some((Path::new(cert.as_str()), Path::new(key.as_str()))),
        _ => None,
    };
    // A listener that terminates TLS offers `tls_alpn` to its clients; its backends are then
    // offered, connection by connection, what the client chose (`BackendTls::session`).
    let alpn = match (&options.tls_cert, &options.tls_alpn) {
        (None, Some(protocols)) => list(protocols).map(|p| p.as_bytes().to_vec()).collect(),
        _ => Vec::new(),
    };
    let settings = ClientTlsSettings {
        ca: options.tls_ca.as_deref().map(Path::new),
        verify,
        identity,
        alpn,
    };
    ClientTls::new(&settings).map(Some)
}

/// The items of a `;`-separated option value, trimmed, empty ones left out.
pub(crate) fn list(value: &str) -> impl Iterator<Item = &str> + Clone {
    value
        .split(';')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}
