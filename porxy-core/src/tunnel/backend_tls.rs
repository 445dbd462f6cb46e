//! A tunnel's TLS to its backends: the client configuration, and the name each backend must
//! prove it is (`tls_server_name`, else the remote's host name, else its IP address).

use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use crate::balance::health::CheckTls;
use crate::spec::{Endpoint, TunnelSpec};
use crate::tls::client::ClientTls;

/// TLS to the backends of one tunnel version.
#[derive(Debug, Clone)]
pub(crate) struct BackendTls {
    tls: ClientTls,
    /// By backend index (the spec's remotes, in order).
    names: Box<[ServerName<'static>]>,
}

impl BackendTls {
    /// `tls` for the remotes of `spec`, which resolved to `remotes` (same order).
    pub(crate) fn new(
        tls: ClientTls,
        spec: &TunnelSpec,
        remotes: &[std::net::SocketAddr],
    ) -> BackendTls {
        let given = spec
            .options
            .tls_server_name
            .as_deref()
            .and_then(|name| ServerName::try_from(name.to_string()).ok());
        let names = spec
            .remotes
            .iter()
            .zip(remotes)
            .map(|(remote, addr)| match (&given, &remote.endpoint) {
                (Some(name), _) => name.clone(),
                (None, Endpoint::Host { host, .. }) => ServerName::try_from(host.clone())
                    .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into())),
                (None, Endpoint::Addr(_)) => ServerName::IpAddress(addr.ip().into()),
            })
            .collect();
        BackendTls { tls, names }
    }

    /// The certificate it shows backends that ask, if any.
    pub(crate) fn certificate(&self) -> Option<&crate::status::CertificateStatus> {
        self.tls.certificate()
    }

    /// The client configuration, for a version built again.
    pub(crate) fn client(&self) -> ClientTls {
        self.tls.clone()
    }

    /// How a check of backend `index` speaks TLS to it, `preface` first in the clear.
    pub(crate) fn check(&self, index: usize, preface: Vec<u8>) -> Option<CheckTls> {
        Some(CheckTls {
            client: self.tls.clone(),
            name: self.names.get(index)?.clone(),
            preface,
        })
    }

    /// A session with backend `index`, for a client that chose `client_alpn` in its own TLS
    /// with porxy: a backend is offered that protocol alone, since the bytes it gets are the
    /// client's (without it, the tunnel's `tls_alpn` toward backends, if any).
    pub(crate) fn session(
        &self,
        index: usize,
        client_alpn: Option<&[u8]>,
    ) -> Option<Result<ClientConnection, rustls::Error>> {
        let name = self.names.get(index)?.clone();
        Some(self.tls.session(name, client_alpn))
    }
}
