//! Lifting the `[backends.NAME]` tables: each backend's address, weight, limit, PROXY header
//! and TLS settings, which the listeners that name it share.

use std::collections::BTreeMap;

use porxy_core::{Remote, RemoteTls, MAX_WEIGHT};
use toml::Spanned;

use super::locate::key_path;
use super::raw::{self, RawAddress};
use super::{Backend, ConfigError, Lift};

impl Lift<'_> {
    pub(super) fn backends(
        &self,
        raw: &BTreeMap<Spanned<String>, raw::RawBackend>,
    ) -> Result<BTreeMap<String, Backend>, ConfigError> {
        let mut backends = BTreeMap::new();
        for (name, backend) in raw {
            let key = |last: &str| key_path(&["backends", name.get_ref(), last]);
            let (endpoint, at) = self.endpoint(&backend.address, key("address"))?;
            if let Some(fault) = endpoint.remote_fault() {
                let RawAddress(text) = backend.address.get_ref();
                let at = self.inside_string(backend.address.span(), text, 1);
                return Err(self.error(at, key("address"), fault.to_string()));
            }
            let mut remote = Remote::from(endpoint);
            if let Some(weight) = &backend.weight {
                remote.weight =
                    self.count(weight, 1, i64::from(MAX_WEIGHT), &key("weight"))? as u32;
            }
            if let Some(max) = &backend.max_conns {
                remote.max_conns = Some(self.count(max, 1, 10_000_000, &key("max_conns"))? as u32);
            }
            if let Some(version) = &backend.send_proxy {
                let parsed = version.get_ref().parse::<porxy_core::SendProxy>();
                remote.send_proxy = Some(parsed.map_err(|e| {
                    self.error(version.span().start, key("send_proxy"), e.to_string())
                })?);
            }
            remote.tls = tls(backend);
            backends.insert(name.get_ref().clone(), Backend { remote, at });
        }
        Ok(backends)
    }
}

/// A backend's own TLS settings, as the file has them (paths and names taken as written; the
/// core checks them with the listener they serve).
fn tls(backend: &raw::RawBackend) -> RemoteTls {
    let text = |value: &Option<Spanned<String>>| value.as_ref().map(|v| v.get_ref().clone());
    let mut tls = RemoteTls::default();
    tls.enabled = backend.tls.as_ref().map(|on| *on.get_ref());
    tls.ca = text(&backend.tls_ca);
    tls.server_name = text(&backend.tls_server_name);
    tls.verify = backend.tls_verify.as_ref().map(|on| *on.get_ref());
    tls.alpn = backend
        .tls_alpn
        .as_ref()
        .map(|list| list.get_ref().join(";"));
    tls.cert = text(&backend.tls_cert);
    tls.key = text(&backend.tls_key);
    tls
}
