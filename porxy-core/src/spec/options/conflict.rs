//! Whether options fit together: each was checked alone when it was set; some only make sense
//! in one mode, and fan-out has bounds that depend on the remotes.

use super::{OptionKey, TunnelOptions, MAX_FANOUT};
use crate::spec::error::OptionsConflict;
use crate::spec::{TunnelMode, TunnelSpec};

impl TunnelSpec {
    /// Checks that the options fit together and with the remotes ([`TunnelOptions::check`]),
    /// and what the remotes' own settings ask: `check_send_proxy` needs a remote that gets a
    /// PROXY header, and fan-out remotes get one version of it, or none.
    pub fn check(&self) -> Result<(), OptionsConflict> {
        self.options.check(self.remotes.len())?;
        self.check_remotes()
    }

    /// The rules on the remotes' own settings alone (see [`TunnelSpec::check`]).
    pub(crate) fn check_remotes(&self) -> Result<(), OptionsConflict> {
        let options = &self.options;
        let versions = self
            .remotes
            .iter()
            .map(|r| r.send_proxy.or(options.send_proxy));
        if options.check_send_proxy == Some(true) && versions.clone().all(|v| v.is_none()) {
            return Err(OptionsConflict::NoProxyHeaderToCheck);
        }
        for remote in &self.remotes {
            let given = remote.tls.given().next();
            if let Some(key) = given.filter(|_| !self.tls_to(remote)) {
                let remote = remote.endpoint.to_string();
                return Err(OptionsConflict::RemoteTlsOnly { remote, key });
            }
            match (&remote.tls.cert, &remote.tls.key) {
                (Some(_), None) => return Err(OptionsConflict::TlsPair(OptionKey::BackendTlsKey)),
                (None, Some(_)) => return Err(OptionsConflict::TlsPair(OptionKey::BackendTlsCert)),
                _ => {}
            }
        }
        let any_tls = self.remotes.iter().any(|remote| self.tls_to(remote));
        if options.check_tls.is_some() && !any_tls {
            return Err(OptionsConflict::BackendTlsOnly(OptionKey::CheckTls));
        }
        if options.mode == Some(TunnelMode::Fanout) && any_tls {
            return Err(OptionsConflict::RelayOnly(OptionKey::BackendTls));
        }
        let mut sent = versions.flatten();
        if let Some(routes) = &options.sni_routes {
            for route in routes.iter() {
                let unknown = route
                    .remotes
                    .iter()
                    .find(|to| !self.remotes.iter().any(|r| r.endpoint == **to));
                if let Some(remote) = unknown {
                    let remote = remote.to_string();
                    return Err(OptionsConflict::SniRouteRemote { remote });
                }
            }
        }
        if options.mode == Some(TunnelMode::Fanout) {
            if let Some(first) = sent.next() {
                if sent.any(|v| v != first) {
                    return Err(OptionsConflict::FanoutProxyVersions);
                }
            }
        }
        Ok(())
    }
}

impl TunnelOptions {
    /// Checks that the options fit together, and with `remotes`, how many remotes the tunnel
    /// has. The SPEC parser, the config file and the API that opens tunnels and adds backends
    /// all check with this.
    pub fn check(&self, remotes: usize) -> Result<(), OptionsConflict> {
        if self.accept_proxy.is_none() {
            let header_only = [
                (OptionKey::ProxyTimeout, self.proxy_timeout.is_some()),
                (OptionKey::ProxyFrom, self.proxy_from.is_some()),
            ];
            if let Some((key, _)) = header_only.iter().find(|(_, set)| *set) {
                return Err(OptionsConflict::AcceptProxyOnly(*key));
            }
        }
        if self.rate_burst.is_some() && self.rate_per_client.is_none() {
            return Err(OptionsConflict::RatePerClientOnly(OptionKey::RateBurst));
        }
        if self.backend_tls != Some(true) {
            let backend_tls_only = [
                (OptionKey::TlsCa, self.tls_ca.is_some()),
                (OptionKey::TlsServerName, self.tls_server_name.is_some()),
                (OptionKey::TlsVerify, self.tls_verify.is_some()),
                (OptionKey::BackendTlsCert, self.backend_tls_cert.is_some()),
                (OptionKey::BackendTlsKey, self.backend_tls_key.is_some()),
            ];
            if let Some((key, _)) = backend_tls_only.iter().find(|(_, set)| *set) {
                return Err(OptionsConflict::BackendTlsOnly(*key));
            }
        }
        match (&self.backend_tls_cert, &self.backend_tls_key) {
            (Some(_), None) => return Err(OptionsConflict::TlsPair(OptionKey::BackendTlsKey)),
            (None, Some(_)) => return Err(OptionsConflict::TlsPair(OptionKey::BackendTlsCert)),
            _ => {}
        }
        if self.tls_client_auth.is_some() && self.tls_client_ca.is_none() {
            return Err(OptionsConflict::ClientCaOnly);
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(OptionsConflict::TlsPair(OptionKey::TlsKey)),
            (None, Some(_)) => return Err(OptionsConflict::TlsPair(OptionKey::TlsCert)),
            (Some(certs), Some(keys)) => {
                let count = |list: &str| list.split(';').filter(|i| !i.trim().is_empty()).count();
                let (certs, keys) = (count(certs), count(keys));
                if certs != keys || certs == 0 {
                    return Err(OptionsConflict::TlsPairs { certs, keys });
                }
            }
            (None, None) => {
                let tls_only = [
                    (
                        OptionKey::TlsAlpn,
                        self.tls_alpn.is_some() && self.backend_tls != Some(true),
                    ),
                    (OptionKey::TlsClientCa, self.tls_client_ca.is_some()),
                    (OptionKey::TlsMinVersion, self.tls_min_version.is_some()),
                    (
                        OptionKey::TlsHandshakeTimeout,
                        // Also the time a routed client has for its ClientHello.
                        self.tls_handshake_timeout.is_some() && self.sni_routes.is_none(),
                    ),
                ];
                if let Some((key, _)) = tls_only.iter().find(|(_, set)| *set) {
                    return Err(OptionsConflict::TlsOnly(*key));
                }
            }
        }
        let fanout = self.mode == Some(TunnelMode::Fanout);
        if !fanout {
            let fanout_only = [
                (OptionKey::Reply, self.reply.is_some()),
                (OptionKey::MaxLag, self.max_lag.is_some()),
                (OptionKey::MinLive, self.min_live.is_some()),
            ];
            return match fanout_only.iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(OptionsConflict::FanoutOnly(*key)),
                None => Ok(()),
            };
        }
        let balancing_only = [
            (OptionKey::Strategy, self.strategy.is_some()),
            (OptionKey::Attempts, self.attempts.is_some()),
            (OptionKey::QueueTimeout, self.queue_timeout.is_some()),
        ];
        if let Some((key, _)) = balancing_only.iter().find(|(_, set)| *set) {
            return Err(OptionsConflict::BalanceOnly(*key));
        }
        let relay_only = [
            (OptionKey::BackendTls, self.backend_tls == Some(true)),
            (OptionKey::SniRoutes, self.sni_routes.is_some()),
            (OptionKey::MaxRateUp, self.max_rate_up.is_some()),
            (OptionKey::MaxRateDown, self.max_rate_down.is_some()),
            (
                OptionKey::MaxTunnelRateUp,
                self.max_tunnel_rate_up.is_some(),
            ),
            (
                OptionKey::MaxTunnelRateDown,
                self.max_tunnel_rate_down.is_some(),
            ),
        ];
        if let Some((key, _)) = relay_only.iter().find(|(_, set)| *set) {
            return Err(OptionsConflict::RelayOnly(*key));
        }
        if remotes > MAX_FANOUT {
            return Err(OptionsConflict::TooManyRemotes { remotes });
        }
        match self.min_live {
            Some(min_live) if min_live as usize > remotes => {
                Err(OptionsConflict::MinLiveAboveRemotes { min_live, remotes })
            }
            _ => Ok(()),
        }
    }
}
