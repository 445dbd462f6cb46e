//! Lifting one `[listeners.NAME]` table into a [`NamedTunnel`]: its address, the backends it
//! names, its timeouts, and its balancing, fan-out and health keys, checked as a SPEC's options
//! are.

use std::collections::BTreeMap;

use porxy_core::{Networks, OptionErrorKind, OptionKey, SniRoutes, TunnelOptions, TunnelSpec};
use toml::Spanned;

use super::locate::{is_bare_key, key_path};
use super::raw::{RawDuration, RawListener, RawSize, RawSniRoutes};
use super::{Backend, ConfigError, Lift};
use crate::named_tunnel::NamedTunnel;

impl Lift<'_> {
    pub(super) fn listener(
        &self,
        name: &Spanned<String>,
        raw: &RawListener,
        backends: &BTreeMap<String, Backend>,
    ) -> Result<NamedTunnel, ConfigError> {
        // `last` is a key of the listener's table, or a dotted path of bare keys below it
        // (`check.interval`): named as the user wrote it, never as one quoted key.
        let key = |last: &str| {
            let mut keys = vec!["listeners", name.get_ref()];
            keys.extend(last.split('.'));
            key_path(&keys)
        };
        let here = key_path(&["listeners", name.get_ref()]);
        if !is_bare_key(name.get_ref()) {
            return Err(self.error(
                name.span().start,
                here,
                "a listener name may use only letters, digits, `_` and `-` (it names the \
                 tunnel in the READY line)",
            ));
        }
        let (local, local_at) = self.endpoint(&raw.listen, key("listen"))?;
        let defined = || {
            if backends.is_empty() {
                "no [backends.NAME] table is defined".to_string()
            } else {
                let names: Vec<&str> = backends.keys().map(String::as_str).collect();
                format!("defined backends: {}", names.join(", "))
            }
        };
        let Some(list) = &raw.backends else {
            return Err(self.error(
                name.span().start,
                here,
                format!(
                    "no backend: expected `backends = [\"NAME\", ...]` naming [backends.NAME] \
                     tables; {}",
                    defined()
                ),
            ));
        };
        if list.get_ref().is_empty() {
            return Err(self.error(
                list.span().start,
                key("backends"),
                format!("empty list: name at least one backend; {}", defined()),
            ));
        }
        let mut remotes = Vec::with_capacity(list.get_ref().len());
        let mut remote_origins = Vec::with_capacity(list.get_ref().len());
        for (index, entry) in list.get_ref().iter().enumerate() {
            let Some(backend) = backends.get(entry.get_ref()) else {
                return Err(self.error(
                    entry.span().start,
                    key("backends"),
                    format!("unknown backend {:?}; {}", entry.get_ref(), defined()),
                ));
            };
            // porxy-core refuses a tunnel with one remote twice; said here, it is located.
            let before = &list.get_ref()[..index];
            if before.iter().any(|b| b.get_ref() == entry.get_ref()) {
                return Err(self.error(
                    entry.span().start,
                    key("backends"),
                    format!(
                        "backend {:?} is listed twice; list it once, and give [{}] a `weight` \
                         to send it more",
                        entry.get_ref(),
                        key_path(&["backends", entry.get_ref()])
                    ),
                ));
            }
            remotes.push(backend.remote.clone());
            remote_origins.push(backend.at.to_string());
        }
        let mut options = TunnelOptions::default();
        self.options(raw, &mut options, &key)?;
        if let Some(routes) = &raw.sni_routes {
            options.sni_routes = Some(self.sni_routes(routes, list.get_ref(), backends, &key)?);
        }
        options.splice = raw.splice.as_ref().map(|on| *on.get_ref());
        let spec = TunnelSpec::new(local, remotes).with_options(options);
        spec.check().map_err(|conflict| {
            self.error(name.span().start, here.clone(), conflict.to_string())
        })?;
        Ok(NamedTunnel {
            name: name.get_ref().clone(),
            spec,
            local_origin: local_at.to_string(),
            remote_origins,
        })
    }

    /// `[listeners.NAME.sni_routes]`: each server name to backends of the listener's own list,
    /// by name.
    fn sni_routes(
        &self,
        raw: &Spanned<RawSniRoutes>,
        listed: &[Spanned<String>],
        backends: &BTreeMap<String, Backend>,
        key: &dyn Fn(&str) -> String,
    ) -> Result<SniRoutes, ConfigError> {
        let mut routes = Vec::new();
        for (name, to) in raw.get_ref() {
            let mut remotes = Vec::new();
            for backend in to.get_ref() {
                let known = listed.iter().any(|l| l.get_ref() == backend.get_ref());
                let Some(found) = backends.get(backend.get_ref()).filter(|_| known) else {
                    let listed: Vec<&str> = listed.iter().map(|l| l.get_ref().as_str()).collect();
                    return Err(self.error(
                        backend.span().start,
                        key("sni_routes"),
                        format!(
                            "backend {:?} is not one of this listener's backends ({})",
                            backend.get_ref(),
                            listed.join(", ")
                        ),
                    ));
                };
                remotes.push(found.remote.endpoint.clone());
            }
            routes.push((name.clone(), remotes));
        }
        SniRoutes::new(routes)
            .map_err(|e| self.error(raw.span().start, key("sni_routes"), e.to_string()))
    }

    /// The listener's timeouts, balancing, fan-out and health keys, set with the core's typed
    /// setters: checked as a SPEC's options are, each error at its value. A value the file
    /// gives as text (a name, a size with a unit) is read from its text, once.
    fn options(
        &self,
        raw: &RawListener,
        options: &mut TunnelOptions,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        use OptionKey as K;
        use RawOption::{Count, Duration, Size, Text};
        let check = raw.check.as_ref();
        let values = [
            (
                K::ConnectTimeout,
                "connect_timeout",
                raw.connect_timeout.as_ref().map(Duration),
            ),
            (
                K::IdleTimeout,
                "idle_timeout",
                raw.idle_timeout.as_ref().map(Duration),
            ),
            (
                K::HalfClosedTimeout,
                "half_closed_timeout",
                raw.half_closed_timeout.as_ref().map(Duration),
            ),
            (
                K::ClientFinTimeout,
                "client_fin_timeout",
                raw.client_fin_timeout.as_ref().map(Duration),
            ),
            (
                K::ServerFinTimeout,
                "server_fin_timeout",
                raw.server_fin_timeout.as_ref().map(Duration),
            ),
            (K::Mode, "mode", raw.mode.as_ref().map(Text)),
            (K::Reply, "reply", raw.reply.as_ref().map(Text)),
            (
                K::AcceptProxy,
                "accept_proxy",
                raw.accept_proxy.as_ref().map(Text),
            ),
            (
                K::ProxyTimeout,
                "proxy_timeout",
                raw.proxy_timeout.as_ref().map(Duration),
            ),
            (
                K::SendProxy,
                "send_proxy",
                raw.send_proxy.as_ref().map(Text),
            ),
            (
                K::TlsMinVersion,
                "tls_min_version",
                raw.tls_min_version.as_ref().map(Text),
            ),
            (
                K::TlsClientAuth,
                "tls_client_auth",
                raw.tls_client_auth.as_ref().map(Text),
            ),
            (
                K::TlsHandshakeTimeout,
                "tls_handshake_timeout",
                raw.tls_handshake_timeout.as_ref().map(Duration),
            ),
            (
                K::MaxConnsPerClient,
                "max_conns_per_client",
                raw.max_conns_per_client.as_ref().map(Count),
            ),
            (
                K::RatePerClient,
                "rate_per_client",
                raw.rate_per_client.as_ref().map(Count),
            ),
            (
                K::RateBurst,
                "rate_burst",
                raw.rate_burst.as_ref().map(Count),
            ),
            (
                K::ClientIpv6Prefix,
                "client_ipv6_prefix",
                raw.client_ipv6_prefix.as_ref().map(Count),
            ),
            (K::MaxLag, "max_lag", raw.max_lag.as_ref().map(Size)),
            (
                K::MaxRateUp,
                "max_rate_up",
                raw.max_rate_up.as_ref().map(Size),
            ),
            (
                K::MaxRateDown,
                "max_rate_down",
                raw.max_rate_down.as_ref().map(Size),
            ),
            (
                K::MaxTunnelRateUp,
                "max_tunnel_rate_up",
                raw.max_tunnel_rate_up.as_ref().map(Size),
            ),
            (
                K::MaxTunnelRateDown,
                "max_tunnel_rate_down",
                raw.max_tunnel_rate_down.as_ref().map(Size),
            ),
            (K::MinLive, "min_live", raw.min_live.as_ref().map(Count)),
            (K::Strategy, "strategy", raw.strategy.as_ref().map(Text)),
            (K::Attempts, "attempts", raw.attempts.as_ref().map(Count)),
            (K::MaxConns, "max_conns", raw.max_conns.as_ref().map(Count)),
            (
                K::QueueTimeout,
                "queue_timeout",
                raw.queue_timeout.as_ref().map(Duration),
            ),
            (K::MaxFails, "max_fails", raw.max_fails.as_ref().map(Count)),
            (
                K::FailTimeout,
                "fail_timeout",
                raw.fail_timeout.as_ref().map(Duration),
            ),
            (
                K::CheckInterval,
                "check.interval",
                check.and_then(|c| c.interval.as_ref()).map(Duration),
            ),
            (
                K::CheckTimeout,
                "check.timeout",
                check.and_then(|c| c.timeout.as_ref()).map(Duration),
            ),
            (
                K::Rise,
                "check.rise",
                check.and_then(|c| c.rise.as_ref()).map(Count),
            ),
            (
                K::Fall,
                "check.fall",
                check.and_then(|c| c.fall.as_ref()).map(Count),
            ),
        ];
        for (option, path, value) in values {
            let Some(value) = value else {
                continue;
            };
            let set = match value {
                Duration(v) => options.set_duration(option, self.duration(v, &key(path))?),
                Count(v) => options.set_count(option, *v.get_ref()),
                Size(v) => match v.get_ref() {
                    RawSize::Bytes(n) => options.set_size(option, *n),
                    RawSize::Text(text) => options.set(option, text),
                },
                Text(v) => options.set(option, v.get_ref()),
            };
            // The key path names the option already: the complaint alone follows it.
            set.map_err(|error| self.error(value.start(), key(path), error.kind().to_string()))?;
        }
        let networks = [
            (K::ProxyFrom, "proxy_from", &raw.proxy_from),
            (K::Allow, "allow", &raw.allow),
            (K::Deny, "deny", &raw.deny),
        ];
        for (option, path, list) in networks {
            let Some(list) = list else {
                continue;
            };
            let items: Vec<&str> = list.get_ref().iter().map(String::as_str).collect();
            Networks::try_from(items.as_slice())
                .map_err(OptionErrorKind::BadNetworks)
                .map(|networks| options.set_networks(option, networks))
                .and_then(|set| set.map_err(|e| e.kind().clone()))
                .map_err(|kind| self.error(list.span().start, key(path), kind.to_string()))?;
        }
        // Paths and protocol names are taken as TOML wrote them (no SPEC escapes).
        options.tls_cert = raw.tls_cert.as_ref().map(|p| p.get_ref().clone());
        options.tls_key = raw.tls_key.as_ref().map(|p| p.get_ref().clone());
        options.tls_client_ca = raw.tls_client_ca.as_ref().map(|p| p.get_ref().clone());
        let text = |value: &Option<Spanned<String>>| value.as_ref().map(|v| v.get_ref().clone());
        options.backend_tls = raw.backend_tls.as_ref().map(|on| *on.get_ref());
        options.tls_verify = raw.tls_verify.as_ref().map(|on| *on.get_ref());
        options.tls_ca = text(&raw.tls_ca);
        options.tls_server_name = text(&raw.tls_server_name);
        options.backend_tls_cert = text(&raw.backend_tls_cert);
        options.backend_tls_key = text(&raw.backend_tls_key);
        if let Some(tls) = &raw.tls {
            if options.tls_cert.is_some() || options.tls_key.is_some() {
                return Err(self.error(
                    tls.span().start,
                    key("tls"),
                    "give the certificates either as tls_cert and tls_key or as [[tls.certs]], not both"
                        .to_string(),
                ));
            }
            let certs = &tls.get_ref().certs;
            let join = |part: fn(&super::raw::RawCertPair) -> &str| {
                certs.iter().map(part).collect::<Vec<_>>().join(";")
            };
            options.tls_cert = Some(join(|pair| &pair.cert));
            options.tls_key = Some(join(|pair| &pair.key));
        }
        options.tls_alpn = raw.tls_alpn.as_ref().map(|list| list.get_ref().join(";"));
        if let Some(check) = check {
            options.check = Some(true);
            // TOML has its own escapes: the strings are taken as they are.
            options.check_send = check.send.as_ref().map(|s| s.get_ref().clone());
            options.check_expect = check.expect.as_ref().map(|s| s.get_ref().clone());
            options.check_send_proxy = check.send_proxy.as_ref().map(|on| *on.get_ref());
            options.check_tls = check.tls.as_ref().map(|on| *on.get_ref());
        }
        Ok(())
    }
}

/// A listener key's value as the file has it, for the typed setter that takes it.
#[derive(Clone, Copy)]
enum RawOption<'a> {
    Duration(&'a Spanned<RawDuration>),
    Count(&'a Spanned<i64>),
    Size(&'a Spanned<RawSize>),
    /// A name (`strategy`, `mode`, `reply`), read by the core from its text.
    Text(&'a Spanned<String>),
}

impl RawOption<'_> {
    /// Where the value starts in the file.
    fn start(self) -> usize {
        match self {
            RawOption::Duration(v) => v.span().start,
            RawOption::Count(v) => v.span().start,
            RawOption::Size(v) => v.span().start,
            RawOption::Text(v) => v.span().start,
        }
    }
}
