//! [`OptionKey`]: the name of each option, and what its value is.

use std::fmt;
use std::str::FromStr;

use super::{MAX_ATTEMPTS, MAX_FANOUT, MAX_MAX_LAG, MAX_RATE, MIN_MAX_LAG, MIN_RATE};
use crate::spec::error::UnknownOption;

/// One per-tunnel option: a key of `[key=value,...]` in a SPEC, or of a listener in the
/// config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum OptionKey {
    /// `connect_timeout`: a duration.
    ConnectTimeout,
    /// `idle_timeout`: a duration.
    IdleTimeout,
    /// `half_closed_timeout`: a duration.
    HalfClosedTimeout,
    /// `client_fin_timeout`: a duration.
    ClientFinTimeout,
    /// `server_fin_timeout`: a duration.
    ServerFinTimeout,
    /// `strategy`: a [`Strategy`](crate::Strategy) name.
    Strategy,
    /// `attempts`: 1 to 16.
    Attempts,
    /// `max_conns`: 1 to 10,000,000.
    MaxConns,
    /// `queue_timeout`: a duration.
    QueueTimeout,
    /// `max_fails`: 1 to 1000.
    MaxFails,
    /// `fail_timeout`: a duration.
    FailTimeout,
    /// `check`: `tcp` or `off`.
    Check,
    /// `check_interval`: a duration.
    CheckInterval,
    /// `check_timeout`: a duration.
    CheckTimeout,
    /// `rise`: 1 to 1000.
    Rise,
    /// `fall`: 1 to 1000.
    Fall,
    /// `check_send`: text, with `\r`, `\n`, `\t`, `\\` escapes.
    CheckSend,
    /// `check_expect`: text, with the same escapes.
    CheckExpect,
    /// `check_send_proxy`: `on` or `off`.
    CheckSendProxy,
    /// `mode`: `balance` or `fanout`.
    Mode,
    /// `reply`: `primary` or `none`.
    Reply,
    /// `max_lag`: a size from 64 KiB to 1 GiB.
    MaxLag,
    /// `min_live`: 1 to 64.
    MinLive,
    /// `splice`: `on` or `off`.
    Splice,
    /// `accept_proxy`: `v1`, `v2` or `any`.
    AcceptProxy,
    /// `proxy_timeout`: a duration.
    ProxyTimeout,
    /// `send_proxy`: `v1` or `v2`.
    SendProxy,
    /// `proxy_from`: networks.
    ProxyFrom,
    /// `allow`: networks.
    Allow,
    /// `deny`: networks.
    Deny,
    /// `max_conns_per_client`: 1 to 1,000,000.
    MaxConnsPerClient,
    /// `rate_per_client`: 1 to 1,000,000 a second.
    RatePerClient,
    /// `rate_burst`: 1 to 1,000,000.
    RateBurst,
    /// `client_ipv6_prefix`: 1 to 128.
    ClientIpv6Prefix,
    /// `max_rate_up`: bytes a second, 1 KiB to 1 TiB.
    MaxRateUp,
    /// `max_rate_down`: bytes a second, 1 KiB to 1 TiB.
    MaxRateDown,
    /// `max_tunnel_rate_up`: bytes a second, 1 KiB to 1 TiB.
    MaxTunnelRateUp,
    /// `max_tunnel_rate_down`: bytes a second, 1 KiB to 1 TiB.
    MaxTunnelRateDown,
    /// `tls_cert`: a path (a PEM certificate chain).
    TlsCert,
    /// `tls_key`: a path (a PEM private key).
    TlsKey,
    /// `tls_alpn`: protocol names, `;`-separated.
    TlsAlpn,
    /// `tls_min_version`: `1.2` or `1.3`.
    TlsMinVersion,
    /// `tls_handshake_timeout`: a duration.
    TlsHandshakeTimeout,
    /// `tls_client_ca`: a path (PEM certificates of the CAs client certificates must chain to).
    TlsClientCa,
    /// `tls_client_auth`: `required` or `optional`.
    TlsClientAuth,
    /// `backend_tls`: `on` or `off`.
    BackendTls,
    /// `tls_ca`: a path (PEM certificates of the CAs backends' certificates must chain to).
    TlsCa,
    /// `tls_server_name`: the name backends' certificates must show.
    TlsServerName,
    /// `tls_verify`: `on` or `off`.
    TlsVerify,
    /// `backend_tls_cert`: a path (the PEM chain shown to backends that ask).
    BackendTlsCert,
    /// `backend_tls_key`: a path (its PEM key).
    BackendTlsKey,
    /// `sni_routes`: server names to remotes, `NAME>REMOTE|REMOTE;...`.
    SniRoutes,
    /// `check_tls`: `on` or `off`.
    CheckTls,
}

/// What an option's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value {
    /// A duration, more than zero.
    Duration,
    /// A whole number in `min..=max`.
    Count { min: u32, max: u32 },
    /// A byte size (`max_lag`; bytes a second for the rates), from `min` to `max`.
    Size { min: u64, max: u64 },
    /// On or off, from one of the words given.
    Switch {
        on: &'static [&'static str],
        off: &'static [&'static str],
        expected: &'static str,
    },
    /// Text with escapes.
    Text,
    /// A [`Strategy`](crate::Strategy) name.
    Strategy,
    /// A [`TunnelMode`](crate::TunnelMode) name.
    Mode,
    /// A [`Reply`](crate::Reply) name.
    Reply,
    /// An [`AcceptProxy`](crate::AcceptProxy) name.
    AcceptProxy,
    /// A [`SendProxy`](crate::SendProxy) name.
    SendProxy,
    /// A [`TlsVersion`](crate::TlsVersion).
    TlsVersion,
    /// A [`ClientAuth`](crate::ClientAuth).
    ClientAuth,
    /// [`Networks`](crate::Networks), `;`-separated.
    Networks,
    /// [`SniRoutes`](crate::SniRoutes).
    SniRoutes,
}

impl Value {
    /// What an option of this kind takes, for an error.
    pub(super) fn takes(self) -> &'static str {
        match self {
            Value::Duration => "a duration, like `5s`",
            Value::Count { .. } => "a whole number",
            Value::Size { .. } => "a size, like `4MiB`",
            Value::Switch { expected, .. } => expected,
            Value::Text => "text",
            Value::Strategy => "a strategy name",
            Value::Mode => "a mode name",
            Value::Reply => "a reply name",
            Value::AcceptProxy => "`v1`, `v2` or `any`",
            Value::SendProxy => "`v1` or `v2`",
            Value::TlsVersion => "`1.2` or `1.3`",
            Value::ClientAuth => "`required` or `optional`",
            Value::Networks => "networks, like `10.0.0.0/8;192.0.2.7`",
            Value::SniRoutes => "routes, like `a.example.com>10.0.0.1:443;*>10.0.0.2:443`",
        }
    }
}

impl OptionKey {
    /// Every option, in the order a SPEC shows them.
    pub const ALL: [OptionKey; 53] = [
        OptionKey::ConnectTimeout,
        OptionKey::IdleTimeout,
        OptionKey::HalfClosedTimeout,
        OptionKey::ClientFinTimeout,
        OptionKey::ServerFinTimeout,
        OptionKey::Strategy,
        OptionKey::Attempts,
        OptionKey::MaxConns,
        OptionKey::QueueTimeout,
        OptionKey::MaxFails,
        OptionKey::FailTimeout,
        OptionKey::Check,
        OptionKey::CheckInterval,
        OptionKey::CheckTimeout,
        OptionKey::Rise,
        OptionKey::Fall,
        OptionKey::CheckSend,
        OptionKey::CheckExpect,
        OptionKey::CheckSendProxy,
        OptionKey::Mode,
        OptionKey::Reply,
        OptionKey::MaxLag,
        OptionKey::MinLive,
        OptionKey::Splice,
        OptionKey::AcceptProxy,
        OptionKey::ProxyTimeout,
        OptionKey::SendProxy,
        OptionKey::ProxyFrom,
        OptionKey::Allow,
        OptionKey::Deny,
        OptionKey::MaxConnsPerClient,
        OptionKey::RatePerClient,
        OptionKey::RateBurst,
        OptionKey::ClientIpv6Prefix,
        OptionKey::MaxRateUp,
        OptionKey::MaxRateDown,
        OptionKey::MaxTunnelRateUp,
        OptionKey::MaxTunnelRateDown,
        OptionKey::TlsCert,
        OptionKey::TlsKey,
        OptionKey::TlsAlpn,
        OptionKey::TlsMinVersion,
        OptionKey::TlsHandshakeTimeout,
        OptionKey::TlsClientCa,
        OptionKey::TlsClientAuth,
        OptionKey::BackendTls,
        OptionKey::TlsCa,
        OptionKey::TlsServerName,
        OptionKey::TlsVerify,
        OptionKey::BackendTlsCert,
        OptionKey::BackendTlsKey,
        OptionKey::SniRoutes,
        OptionKey::CheckTls,
    ];

    /// The key as written in a SPEC or a config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            OptionKey::ConnectTimeout => "connect_timeout",
            OptionKey::IdleTimeout => "idle_timeout",
            OptionKey::HalfClosedTimeout => "half_closed_timeout",
            OptionKey::ClientFinTimeout => "client_fin_timeout",
            OptionKey::ServerFinTimeout => "server_fin_timeout",
            OptionKey::Strategy => "strategy",
            OptionKey::Attempts => "attempts",
            OptionKey::MaxConns => "max_conns",
            OptionKey::QueueTimeout => "queue_timeout",
            OptionKey::MaxFails => "max_fails",
            OptionKey::FailTimeout => "fail_timeout",
            OptionKey::Check => "check",
            OptionKey::CheckInterval => "check_interval",
            OptionKey::CheckTimeout => "check_timeout",
            OptionKey::Rise => "rise",
            OptionKey::Fall => "fall",
            OptionKey::CheckSend => "check_send",
            OptionKey::CheckExpect => "check_expect",
            OptionKey::CheckSendProxy => "check_send_proxy",
            OptionKey::Mode => "mode",
            OptionKey::Reply => "reply",
            OptionKey::MaxLag => "max_lag",
            OptionKey::MinLive => "min_live",
            OptionKey::Splice => "splice",
            OptionKey::AcceptProxy => "accept_proxy",
            OptionKey::ProxyTimeout => "proxy_timeout",
            OptionKey::SendProxy => "send_proxy",
            OptionKey::ProxyFrom => "proxy_from",
            OptionKey::Allow => "allow",
            OptionKey::Deny => "deny",
            OptionKey::MaxConnsPerClient => "max_conns_per_client",
            OptionKey::RatePerClient => "rate_per_client",
            OptionKey::RateBurst => "rate_burst",
            OptionKey::ClientIpv6Prefix => "client_ipv6_prefix",
            OptionKey::MaxRateUp => "max_rate_up",
            OptionKey::MaxRateDown => "max_rate_down",
            OptionKey::MaxTunnelRateUp => "max_tunnel_rate_up",
            OptionKey::MaxTunnelRateDown => "max_tunnel_rate_down",
            OptionKey::TlsCert => "tls_cert",
            OptionKey::TlsKey => "tls_key",
            OptionKey::TlsAlpn => "tls_alpn",
            OptionKey::TlsMinVersion => "tls_min_version",
            OptionKey::TlsHandshakeTimeout => "tls_handshake_timeout",
            OptionKey::TlsClientCa => "tls_client_ca",
            OptionKey::TlsClientAuth => "tls_client_auth",
            OptionKey::BackendTls => "backend_tls",
            OptionKey::TlsCa => "tls_ca",
            OptionKey::TlsServerName => "tls_server_name",
            OptionKey::TlsVerify => "tls_verify",
            OptionKey::BackendTlsCert => "backend_tls_cert",
            OptionKey::BackendTlsKey => "backend_tls_key",
            OptionKey::SniRoutes => "sni_routes",
            OptionKey::CheckTls => "check_tls",
        }
    }

    /// What its value is.
    pub(super) fn value(self) -> Value {
        let count = |min, max| Value::Count { min, max };
        match self {
            OptionKey::ConnectTimeout
            | OptionKey::IdleTimeout
            | OptionKey::HalfClosedTimeout
            | OptionKey::ClientFinTimeout
            | OptionKey::ServerFinTimeout
            | OptionKey::QueueTimeout
            | OptionKey::FailTimeout
            | OptionKey::CheckInterval
            | OptionKey::CheckTimeout
            | OptionKey::ProxyTimeout
            | OptionKey::TlsHandshakeTimeout => Value::Duration,
            OptionKey::Attempts => count(1, MAX_ATTEMPTS),
            OptionKey::MaxConns => count(1, 10_000_000),
            OptionKey::MaxConnsPerClient | OptionKey::RatePerClient | OptionKey::RateBurst => {
                count(1, 1_000_000)
            }
            OptionKey::MaxFails | OptionKey::Rise | OptionKey::Fall => count(1, 1000),
            OptionKey::ClientIpv6Prefix => count(1, 128),
            OptionKey::MinLive => count(1, MAX_FANOUT as u32),
            OptionKey::MaxLag => Value::Size {
                min: MIN_MAX_LAG as u64,
                max: MAX_MAX_LAG as u64,
            },
            OptionKey::MaxRateUp
            | OptionKey::MaxRateDown
            | OptionKey::MaxTunnelRateUp
            | OptionKey::MaxTunnelRateDown => Value::Size {
                min: MIN_RATE,
                max: MAX_RATE,
            },
            OptionKey::Check => Value::Switch {
                on: &["tcp", "on", "yes", "true"],
                off: &["off", "no", "false", "none"],
                expected: "`tcp` or `off`",
            },
            OptionKey::Splice
            | OptionKey::CheckSendProxy
            | OptionKey::BackendTls
            | OptionKey::TlsVerify
            | OptionKey::CheckTls => Value::Switch {
                on: &["on", "yes", "true"],
                off: &["off", "no", "false"],
                expected: "`on` or `off`",
            },
            OptionKey::CheckSend
            | OptionKey::CheckExpect
            | OptionKey::TlsCert
            | OptionKey::TlsKey
            | OptionKey::TlsAlpn
            | OptionKey::TlsClientCa
            | OptionKey::TlsCa
            | OptionKey::TlsServerName
            | OptionKey::BackendTlsCert
            | OptionKey::BackendTlsKey => Value::Text,
            OptionKey::TlsClientAuth => Value::ClientAuth,
            OptionKey::TlsMinVersion => Value::TlsVersion,
            OptionKey::Strategy => Value::Strategy,
            OptionKey::Mode => Value::Mode,
            OptionKey::Reply => Value::Reply,
            OptionKey::AcceptProxy => Value::AcceptProxy,
            OptionKey::SendProxy => Value::SendProxy,
            OptionKey::ProxyFrom | OptionKey::Allow | OptionKey::Deny => Value::Networks,
            OptionKey::SniRoutes => Value::SniRoutes,
        }
    }
}

/// Every option key, in [`OptionKey::ALL`] order: for error messages and `--help-tunnel`.
pub const OPTION_KEYS: &[&str] = &key_names();

const fn key_names() -> [&'static str; OptionKey::ALL.len()] {
    let mut names = [""; OptionKey::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = OptionKey::ALL[i].as_str();
        i += 1;
    }
    names
}

impl FromStr for OptionKey {
    type Err = UnknownOption;

    /// Keys are case-insensitive and `-` may stand for `_`: two spellings that read the same
    /// are the same option.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let key = text.trim().to_ascii_lowercase().replace('-', "_");
        OptionKey::ALL
            .into_iter()
            .find(|k| k.as_str() == key)
            .ok_or_else(|| UnknownOption::new(key))
    }
}

impl fmt::Display for OptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
