//! A backend's own TLS settings: the config file's `[backends.NAME]` TLS keys, each over the
//! tunnel's option of the same meaning (`backend_tls`, `tls_ca`, `tls_server_name`,
//! `tls_verify`, `tls_alpn`, `backend_tls_cert`, `backend_tls_key`). A SPEC has no syntax for
//! them: a SPEC's TLS settings are the tunnel's, for all its remotes.

use super::OptionKey;

/// One remote's TLS settings; `None` means the tunnel's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteTls {
    /// porxy speaks TLS to it (or, `false`, plain TCP), whatever `backend_tls` says.
    pub enabled: Option<bool>,
    /// The PEM file of the CAs its certificate must chain to.
    pub ca: Option<String>,
    /// The name its certificate must be for.
    pub server_name: Option<String>,
    /// Whether its certificate is verified.
    pub verify: Option<bool>,
    /// The protocols offered to it by ALPN, `;`-separated.
    pub alpn: Option<String>,
    /// The PEM chain shown to it if it asks for a client certificate.
    pub cert: Option<String>,
    /// The PEM key of `cert`.
    pub key: Option<String>,
}

impl RemoteTls {
    /// The settings it gives, by the tunnel option each stands for (all but `enabled`).
    pub(crate) fn given(&self) -> impl Iterator<Item = OptionKey> + '_ {
        [
            (OptionKey::TlsCa, self.ca.is_some()),
            (OptionKey::TlsServerName, self.server_name.is_some()),
            (OptionKey::TlsVerify, self.verify.is_some()),
            (OptionKey::TlsAlpn, self.alpn.is_some()),
            (OptionKey::BackendTlsCert, self.cert.is_some()),
            (OptionKey::BackendTlsKey, self.key.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, given)| given.then_some(key))
    }

    /// Whether its session needs a configuration of its own (its CAs, verification, ALPN or
    /// certificate differ from the tunnel's); a server name alone does not.
    pub(crate) fn own_config(&self) -> bool {
        self.given().any(|key| key != OptionKey::TlsServerName)
    }
}
