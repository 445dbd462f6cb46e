//! What a tunnel version needs from outside its spec, read once where it enters: the
//! certificate and key of a TLS listener, and what its TLS to backends trusts and shows. Read before anything changes (an OPEN, a reload),
//! so that a missing or broken file refuses the change whole; a version built again from the
//! same files without reading them (a backend added or removed) takes its predecessor's.

use std::path::Path;

use crate::error::Error;
use crate::spec::{Endpoint, Remote, RemoteTls, TunnelOptions, TunnelSpec};
use crate::tls::client::{ClientTls, ClientTlsSettings};
use crate::tls::server::{ServerTls, ServerTlsSettings};
use crate::tls::CertError;

/// The files a tunnel version runs with, read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loaded {
    /// Its TLS termination, if its clients speak TLS.
    pub(crate) tls: Option<ServerTls>,
    /// Its TLS to the backends that speak it.
    pub(crate) backend_tls: BackendClients,
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
            backend_tls: backend_clients(spec).map_err(failed)?,
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

/// The TLS client configurations of a tunnel's backends: the tunnel's own (`backend_tls`,
/// and for backends that say `tls` with no settings of their own), and one for each remote
/// whose own CAs, verification, ALPN or certificate need one, by its address as written.
#[derive(Debug, Clone, Default)]
pub(crate) struct BackendClients {
    tunnel: Option<ClientTls>,
    own: Vec<(Endpoint, ClientTls)>,
}

impl BackendClients {
    /// The configuration for `remote` of `spec`, if porxy speaks TLS to it.
    pub(crate) fn for_remote(&self, spec: &TunnelSpec, remote: &Remote) -> Option<&ClientTls> {
        if !spec.tls_to(remote) {
            return None;
        }
        let own = self.own.iter().find(|(at, _)| *at == remote.endpoint);
        own.map(|(_, client)| client).or(self.tunnel.as_ref())
    }

    /// Every configuration, the tunnel's first.
    pub(crate) fn all(&self) -> impl Iterator<Item = &ClientTls> {
        self.tunnel
            .iter()
            .chain(self.own.iter().map(|(_, client)| client))
    }
}

/// The TLS client configurations `spec`'s backends need; each set of settings is read once.
fn backend_clients<'a>(spec: &'a TunnelSpec) -> Result<BackendClients, CertError> {
    let options = &spec.options;
    let mut built: Vec<(ClientTlsSettings<'_>, ClientTls)> = Vec::new();
    let mut client = |settings: ClientTlsSettings<'a>, backend: Option<&Endpoint>| {
        if let Some((_, made)) = built.iter().find(|(s, _)| *s == settings) {
            return Ok(made.clone());
        }
        if !settings.verify {
            let backend = backend.map(ToString::to_string);
            tracing::warn!(
                tunnel = %spec.local,
                backend,
                "tls_verify=off: the backends' certificates are not verified; anyone on the path can pose as them"
            );
        }
        let made = ClientTls::new(&settings)?;
        built.push((settings, made.clone()));
        Ok::<_, CertError>(made)
    };
    let bare = |remote: &Remote| spec.tls_to(remote) && !remote.tls.own_config();
    // Backends added later (an ADD) take the tunnel's, so it is read whenever the tunnel says.
    let tunnel = if options.backend_tls == Some(true) || spec.remotes.iter().any(bare) {
        Some(client(settings(options, None), None)?)
    } else {
        None
    };
    let mut own = Vec::new();
    for remote in &spec.remotes {
        if spec.tls_to(remote) && remote.tls.own_config() {
            let made = client(settings(options, Some(&remote.tls)), Some(&remote.endpoint))?;
            own.push((remote.endpoint.clone(), made));
        }
    }
    Ok(BackendClients { tunnel, own })
}

/// The settings of a session to a backend with `own` settings, each over the tunnel's.
fn settings<'a>(options: &'a TunnelOptions, own: Option<&'a RemoteTls>) -> ClientTlsSettings<'a> {
    let pick = |mine: Option<&'a String>, tunnel: &'a Option<String>| {
        mine.or(tunnel.as_ref())
            .map(|path| Path::new(path.as_str()))
    };
    let cert = pick(own.and_then(|o| o.cert.as_ref()), &options.backend_tls_cert);
    let key = pick(own.and_then(|o| o.key.as_ref()), &options.backend_tls_key);
    // A listener that terminates TLS offers `tls_alpn` to its clients; its backends are then
    // offered, connection by connection, what the client chose (`BackendTls::session`).
    let tunnel_alpn = options
        .tls_alpn
        .as_ref()
        .filter(|_| options.tls_cert.is_none());
    let alpn = own
        .and_then(|o| o.alpn.as_ref())
        .or(tunnel_alpn)
        .map(|protocols| list(protocols).map(|p| p.as_bytes().to_vec()).collect())
        .unwrap_or_default();
    ClientTlsSettings {
        ca: pick(own.and_then(|o| o.ca.as_ref()), &options.tls_ca),
        verify: own
            .and_then(|o| o.verify)
            .or(options.tls_verify)
            .unwrap_or(true),
        identity: cert.zip(key),
        alpn,
    }
}

/// The items of a `;`-separated option value, trimmed, empty ones left out.
pub(crate) fn list(value: &str) -> impl Iterator<Item = &str> + Clone {
    value
        .split(';')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}
