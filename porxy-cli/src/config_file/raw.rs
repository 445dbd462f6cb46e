//! The file's shape exactly as serde reads it: every value that needs checking is kept as
//! written, with its byte span, so the lift can point at it. Unknown keys are refused here.
//!
//! Nothing in this module is validated beyond TOML types; [`super`] lifts it into core types.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) proxy: RawProxy,
    /// Keyed by name; the key's span is where the name is written.
    #[serde(default)]
    pub(super) backends: BTreeMap<Spanned<String>, RawBackend>,
    /// Keyed by name; sorted by the key's span, this is file order.
    #[serde(default)]
    pub(super) listeners: BTreeMap<Spanned<String>, RawListener>,
    /// `[control]`: the control socket, if any.
    pub(super) control: Option<RawControl>,
    /// `[admin]`: the HTTP admin endpoint, if any.
    pub(super) admin: Option<RawAdmin>,
    /// `[state]`: where runtime changes are kept, if anywhere.
    pub(super) state: Option<RawState>,
    /// `[metrics]`: the metrics-only listener, if any.
    pub(super) metrics: Option<RawMetrics>,
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    /// A TCP address, or `unix:PATH`.
    pub(super) listen: Spanned<RawAddress>,
}

/// `[state]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    /// The state file.
    pub(super) file: Spanned<String>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    /// A TCP address, or `unix:PATH` / a path with a `/`.
    pub(super) listen: Option<Spanned<RawAddress>>,
    /// The JSON-RPC socket's address, if any.
    pub(super) rpc: Option<Spanned<RawAddress>>,
    /// A file whose first line is the bearer token requests must carry.
    pub(super) token_file: Option<Spanned<String>>,
    /// The largest request body taken.
    pub(super) max_body: Option<Spanned<RawSize>>,
    /// Serve beyond loopback without a token.
    pub(super) insecure: Option<Spanned<bool>>,
    /// How long a request may take from its first byte to its last.
    pub(super) request_timeout: Option<Spanned<RawDuration>>,
    /// How long a connection may stay silent between requests.
    pub(super) idle_timeout: Option<Spanned<RawDuration>>,
}

/// `[control]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    /// A TCP address, or `unix:PATH` / a path with a `/`.
    pub(super) listen: Spanned<RawAddress>,
    /// How long a control client may take to complete a line.
    pub(super) idle_timeout: Option<Spanned<RawDuration>>,
}

/// `[proxy]`: every key optional, defaults from porxy-core.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub(super) reactors: Option<Spanned<usize>>,
    pub(super) buffer_size: Option<Spanned<RawSize>>,
    pub(super) pipe_size: Option<Spanned<RawSize>>,
    pub(super) backlog: Option<Spanned<i32>>,
    pub(super) connect_timeout: Option<Spanned<RawDuration>>,
    pub(super) idle_timeout: Option<Spanned<RawDuration>>,
    pub(super) half_closed_timeout: Option<Spanned<RawDuration>>,
    pub(super) client_fin_timeout: Option<Spanned<RawDuration>>,
    pub(super) server_fin_timeout: Option<Spanned<RawDuration>>,
    pub(super) drain_timeout: Option<Spanned<RawDuration>>,
    pub(super) max_connections: Option<Spanned<usize>>,
    /// Most new clients accepted per second, proxy-wide.
    pub(super) max_accept_rate: Option<Spanned<u32>>,
    /// Relay with splice(2); the default of every listener.
    pub(super) splice: Option<Spanned<bool>>,
    /// `"reactors"` or `"listener"`.
    pub(super) accept: Option<Spanned<String>>,
    /// How long reactors poll without blocking after activity; `"0s"` is off.
    pub(super) busy_poll: Option<Spanned<RawDuration>>,
    /// Listening sockets SO_REUSEPORT, for a redeploy beside a running porxy.
    pub(super) reuse_port: Option<Spanned<bool>>,
    /// Clients that may connect to a listener with no rules of its own: networks.
    pub(super) allow: Option<Spanned<Vec<String>>>,
    /// Clients refused by a listener with no rules of its own: networks.
    pub(super) deny: Option<Spanned<Vec<String>>>,
    /// `PATH`, `stderr` or `off`: where connection records go.
    pub(super) access_log: Option<Spanned<String>>,
    /// `logfmt` or `json`.
    pub(super) access_log_format: Option<Spanned<String>>,
}

impl RawProxy {
    /// Where the value of the `[proxy]` key `name` is written, if it is.
    pub(super) fn span_of(&self, name: &str) -> Option<Range<usize>> {
        match name {
            "reactors" => self.reactors.as_ref().map(Spanned::span),
            "buffer_size" => self.buffer_size.as_ref().map(Spanned::span),
            "pipe_size" => self.pipe_size.as_ref().map(Spanned::span),
            "backlog" => self.backlog.as_ref().map(Spanned::span),
            "connect_timeout" => self.connect_timeout.as_ref().map(Spanned::span),
            "idle_timeout" => self.idle_timeout.as_ref().map(Spanned::span),
            "half_closed_timeout" => self.half_closed_timeout.as_ref().map(Spanned::span),
            "client_fin_timeout" => self.client_fin_timeout.as_ref().map(Spanned::span),
            "server_fin_timeout" => self.server_fin_timeout.as_ref().map(Spanned::span),
            "drain_timeout" => self.drain_timeout.as_ref().map(Spanned::span),
            "max_connections" => self.max_connections.as_ref().map(Spanned::span),
            "max_accept_rate" => self.max_accept_rate.as_ref().map(Spanned::span),
            "splice" => self.splice.as_ref().map(Spanned::span),
            "accept" => self.accept.as_ref().map(Spanned::span),
            "busy_poll" => self.busy_poll.as_ref().map(Spanned::span),
            _ => None,
        }
    }
}

/// `[listeners.NAME.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// `[[listeners.NAME.tls.certs]]`, in order: the first is the default.
    pub(super) certs: Vec<RawCertPair>,
}

/// One `[[listeners.NAME.tls.certs]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertPair {
    pub(super) cert: String,
    pub(super) key: String,
}

/// `[backends.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) address: Spanned<RawAddress>,
    /// Share of the load, 1 to 1000.
    pub(super) weight: Option<Spanned<i64>>,
    /// Most connections at once.
    pub(super) max_conns: Option<Spanned<i64>>,
    /// The PROXY header it gets ahead of each client: `v1` or `v2` (default: the listener's).
    pub(super) send_proxy: Option<Spanned<String>>,
    /// porxy speaks TLS to it (default: the listener's `backend_tls`).
    pub(super) tls: Option<Spanned<bool>>,
    /// The CAs its certificate must chain to.
    pub(super) tls_ca: Option<Spanned<String>>,
    /// The name its certificate must be for.
    pub(super) tls_server_name: Option<Spanned<String>>,
    /// Verify its certificate.
    pub(super) tls_verify: Option<Spanned<bool>>,
    /// Protocols offered to it by ALPN.
    pub(super) tls_alpn: Option<Spanned<Vec<String>>>,
    /// The chain shown to it if it asks for a client certificate.
    pub(super) tls_cert: Option<Spanned<String>>,
    /// Its key.
    pub(super) tls_key: Option<Spanned<String>>,
}

/// `[listeners.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) listen: Spanned<RawAddress>,
    /// Optional for serde so that a missing list gets porxy's own message.
    pub(super) backends: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) connect_timeout: Option<Spanned<RawDuration>>,
    pub(super) idle_timeout: Option<Spanned<RawDuration>>,
    pub(super) half_closed_timeout: Option<Spanned<RawDuration>>,
    pub(super) client_fin_timeout: Option<Spanned<RawDuration>>,
    pub(super) server_fin_timeout: Option<Spanned<RawDuration>>,
    pub(super) strategy: Option<Spanned<String>>,
    pub(super) attempts: Option<Spanned<i64>>,
    pub(super) max_conns: Option<Spanned<i64>>,
    pub(super) queue_timeout: Option<Spanned<RawDuration>>,
    pub(super) max_fails: Option<Spanned<i64>>,
    pub(super) fail_timeout: Option<Spanned<RawDuration>>,
    /// Relay with splice(2), or copy (default: `[proxy] splice`).
    pub(super) splice: Option<Spanned<bool>>,
    /// `[listeners.NAME.check]`: active health checks, on when the table is there.
    pub(super) check: Option<RawCheck>,
    /// `balance` (the default) or `fanout`.
    pub(super) mode: Option<Spanned<String>>,
    /// Fan-out: `primary` or `none`.
    pub(super) reply: Option<Spanned<String>>,
    /// Read a PROXY protocol header ahead of each client: `v1`, `v2` or `any`.
    pub(super) accept_proxy: Option<Spanned<String>>,
    /// How long a client has to send its PROXY header (default 5s).
    pub(super) proxy_timeout: Option<Spanned<RawDuration>>,
    /// Send a PROXY protocol header to each backend first: `v1` or `v2`.
    pub(super) send_proxy: Option<Spanned<String>>,
    /// The peers that may send a PROXY header: networks.
    pub(super) proxy_from: Option<Spanned<Vec<String>>>,
    /// Clients that may connect: networks.
    pub(super) allow: Option<Spanned<Vec<String>>>,
    /// Clients refused: networks.
    pub(super) deny: Option<Spanned<Vec<String>>>,
    /// This listener's access log: `PATH`, `stderr` or `off` (default: `[proxy]`'s).
    pub(super) access_log: Option<Spanned<String>>,
    /// `logfmt` or `json` (default: `[proxy]`'s).
    pub(super) access_log_format: Option<Spanned<String>>,
    /// The most connections one client may hold at once.
    pub(super) max_conns_per_client: Option<Spanned<i64>>,
    /// New connections one client may open per second.
    pub(super) rate_per_client: Option<Spanned<i64>>,
    /// New connections one client may open at once beyond the rate.
    pub(super) rate_burst: Option<Spanned<i64>>,
    /// The prefix by which IPv6 clients are one client.
    pub(super) client_ipv6_prefix: Option<Spanned<i64>>,
    /// Bytes a second each connection reads from its client.
    pub(super) max_rate_up: Option<Spanned<RawSize>>,
    /// Bytes a second each connection reads from its upstream.
    pub(super) max_rate_down: Option<Spanned<RawSize>>,
    /// Bytes a second the listener's connections together read from their clients.
    pub(super) max_tunnel_rate_up: Option<Spanned<RawSize>>,
    /// Bytes a second the listener's connections together read from their upstreams.
    pub(super) max_tunnel_rate_down: Option<Spanned<RawSize>>,
    /// TLS termination: the certificate chain's PEM file.
    pub(super) tls_cert: Option<Spanned<String>>,
    /// The private key's PEM file.
    pub(super) tls_key: Option<Spanned<String>>,
    /// Protocols offered by ALPN, most wanted first.
    pub(super) tls_alpn: Option<Spanned<Vec<String>>>,
    /// `1.2` or `1.3`.
    pub(super) tls_min_version: Option<Spanned<String>>,
    /// How long a client has for its handshake.
    pub(super) tls_handshake_timeout: Option<Spanned<RawDuration>>,
    /// Mutual TLS: the CA certificates clients' certificates must chain to.
    pub(super) tls_client_ca: Option<Spanned<String>>,
    /// `required` or `optional`.
    pub(super) tls_client_auth: Option<Spanned<String>>,
    /// TLS to the backends.
    pub(super) backend_tls: Option<Spanned<bool>>,
    /// The CAs backends' certificates must chain to.
    pub(super) tls_ca: Option<Spanned<String>>,
    /// The name backends' certificates must be for.
    pub(super) tls_server_name: Option<Spanned<String>>,
    /// Verify backends' certificates (default true).
    pub(super) tls_verify: Option<Spanned<bool>>,
    /// The chain shown to backends that ask for a client certificate.
    pub(super) backend_tls_cert: Option<Spanned<String>>,
    /// Its key.
    pub(super) backend_tls_key: Option<Spanned<String>>,
    /// `[listeners.NAME.tls]`: several certificates, chosen by SNI.
    pub(super) tls: Option<Spanned<RawTls>>,
    /// `[listeners.NAME.sni_routes]`: server names to the listener's backends that serve them.
    pub(super) sni_routes: Option<Spanned<RawSniRoutes>>,
    /// Fan-out: bytes a destination may fall behind.
    pub(super) max_lag: Option<Spanned<RawSize>>,
    /// Fan-out: fewest live destinations.
    pub(super) min_live: Option<Spanned<i64>>,
}

/// `[listeners.NAME.sni_routes]`: each server name to the names of its backends.
pub(super) type RawSniRoutes = BTreeMap<String, Spanned<Vec<Spanned<String>>>>;

/// `[listeners.NAME.check]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) interval: Option<Spanned<RawDuration>>,
    pub(super) timeout: Option<Spanned<RawDuration>>,
    pub(super) rise: Option<Spanned<i64>>,
    pub(super) fall: Option<Spanned<i64>>,
    pub(super) send: Option<Spanned<String>>,
    pub(super) expect: Option<Spanned<String>>,
    /// Checks send a PROXY header first, to backends that get one.
    pub(super) send_proxy: Option<Spanned<bool>>,
    /// Checks of TLS backends do the handshake (default true, with backend_tls).
    pub(super) tls: Option<Spanned<bool>>,
}

/// A size: a string like `"64KiB"` or an integer number of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawSize {
    Bytes(u64),
    Text(String),
}

/// A duration string like `"5s"`, not yet parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawDuration(pub(super) String);

/// An address string like `"127.0.0.1:8000"`, not yet parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawAddress(pub(super) String);

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"64KiB\" or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                u64::try_from(v)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = deserializer.deserialize_any(TextVisitor {
            expecting: "a duration string like \"5s\", \"500ms\" or \"2m\"",
            integer_hint: |v| format!("a duration needs quotes and a unit, like \"{v}s\""),
        })?;
        Ok(RawDuration(text))
    }
}

impl<'de> Deserialize<'de> for RawAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = deserializer.deserialize_any(TextVisitor {
            expecting: "an address string like \"127.0.0.1:8000\", \"[::1]:8000\" or \"8000\"",
            integer_hint: |v| format!("an address is a string, like \"127.0.0.1:{v}\""),
        })?;
        Ok(RawAddress(text))
    }
}

/// Accepts a string; for an integer says how to write it instead.
struct TextVisitor {
    expecting: &'static str,
    integer_hint: fn(i64) -> String,
}

impl Visitor<'_> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Err(E::custom((self.integer_hint)(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(E::invalid_type(de::Unexpected::Unsigned(v), &self)),
        }
    }
}
