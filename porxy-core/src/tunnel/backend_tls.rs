//! A tunnel's TLS to its backends: for each backend porxy speaks TLS to, the client
//! configuration (the tunnel's, or the backend's own) and the name it must prove it is (its
//! own `tls_server_name`, else the tunnel's, else the remote's host name, else its IP address).

use std::net::SocketAddr;

use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use super::loaded::BackendClients;
use crate::balance::health::CheckTls;
use crate::cert_status::CertificateStatus;
use crate::spec::{Endpoint, TunnelSpec};
use crate::tls::client::ClientTls;

/// TLS to the backends of one tunnel version.
#[derive(Debug, Clone)]
pub(crate) struct BackendTls {
    clients: BackendClients,
    /// By backend index (the spec's remotes, in order): how to speak TLS to it, if porxy does.
    backends: Box<[Option<(ClientTls, ServerName<'static>)>]>,
}

impl BackendTls {
    /// TLS to the remotes of `spec` that speak it (they resolved to `remotes`, same order);
    /// `None` if none does.
    pub(crate) fn new(
        clients: BackendClients,
        spec: &TunnelSpec,
        remotes: &[SocketAddr],
    ) -> Option<BackendTls> {
        let tunnel_name = spec.options.tls_server_name.as_deref();
        let backends: Box<[_]> = spec
            .remotes
            .iter()
            .zip(remotes)
            .map(|(remote, addr)| {
                let client = clients.for_remote(spec, remote)?.clone();
                let given = remote.tls.server_name.as_deref().or(tunnel_name);
                let given = given.and_then(|name| ServerName::try_from(name.to_string()).ok());
                let name = match (given, &remote.endpoint) {
                    (Some(name), _) => name,
                    (None, Endpoint::Host { host, .. }) => ServerName::try_from(host.clone())
                        .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into())),
                    (None, Endpoint::Addr(_)) => ServerName::IpAddress(addr.ip().into()),
                };
                Some((client, name))
            })
            .collect();
        backends
            .iter()
            .any(Option::is_some)
            .then_some(BackendTls { clients, backends })
    }

    /// The client configurations, for a version built again.
    pub(crate) fn clients(&self) -> BackendClients {
        self.clients.clone()
    }

    /// The certificates it shows backends that ask, each once.
    pub(crate) fn certificates(&self) -> impl Iterator<Item = &CertificateStatus> {
        self.clients.all().filter_map(ClientTls::certificate)
    }

    /// How a check of backend `index` speaks TLS to it, `preface` first in the clear; `None`
    /// if porxy does not speak TLS to it.
    pub(crate) fn check(&self, index: usize, preface: Vec<u8>) -> Option<CheckTls> {
        let (client, name) = self.backends.get(index)?.as_ref()?;
        Some(CheckTls {
            client: client.clone(),
            name: name.clone(),
            preface,
        })
    }

    /// A session with backend `index` (`None` if porxy does not speak TLS to it), for a
    /// client that chose `client_alpn` in its own TLS with porxy: a backend is offered that
    /// protocol alone, since the bytes it gets are the client's (without it, the tunnel's or
    /// the backend's `tls_alpn`, if any).
    pub(crate) fn session(
        &self,
        index: usize,
        client_alpn: Option<&[u8]>,
    ) -> Option<Result<ClientConnection, rustls::Error>> {
        let (client, name) = self.backends.get(index)?.as_ref()?;
        Some(client.session(name.clone(), client_alpn))
    }
}
