//! Per-tunnel options: the `[key=value,...]` part of a tunnel SPEC, and the TOML listener keys.
//!
//! Every option is optional; `None` means the proxy-wide default (timeouts) or the built-in one
//! (balancing and health). Each is named by an [`OptionKey`]. Values are checked once, where they
//! enter: [`TunnelOptions::set`] reads one from its text (a SPEC's `key=value`), and the typed
//! setters ([`TunnelOptions::set_duration`], [`TunnelOptions::set_count`],
//! [`TunnelOptions::set_size`]) take values already typed (the config file's), with the same
//! rules and errors. Whether the options fit together is [`TunnelOptions::check`]'s business.
//! Turning them into what a tunnel runs with needs the proxy-wide settings, so it is the
//! runtime's (`tunnel`).

mod conflict;
mod key;
mod render;
mod set;
#[cfg(test)]
mod tests;

use std::time::Duration;

use super::mode::{Reply, TunnelMode};
use super::{AcceptProxy, ClientAuth, Networks, SendProxy, SniRoutes, Strategy, TlsVersion};

pub use key::{OptionKey, OPTION_KEYS};

/// The most connect attempts a client gets, set or by default: with backends that time out, a
/// client may wait this many connect timeouts before it is reset.
pub(crate) const MAX_ATTEMPTS: u32 = 16;

/// Per-tunnel settings; `None` means the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelOptions {
    /// How long an upstream connect may take before the next backend is tried.
    pub connect_timeout: Option<Duration>,
    /// How long a connection may pass no byte either way before it is closed.
    pub idle_timeout: Option<Duration>,
    /// How long a connection may stay half-closed (one side has sent FIN, the other not):
    /// the default of `client_fin_timeout` and `server_fin_timeout`.
    pub half_closed_timeout: Option<Duration>,
    /// How long a connection may stay half-closed after the client's FIN (the client has
    /// stopped sending; the reply may still flow). Default: `half_closed_timeout`.
    pub client_fin_timeout: Option<Duration>,
    /// How long a connection may stay half-closed after the upstream's FIN (the upstream has
    /// stopped sending; the client may still send). Default: `half_closed_timeout`.
    pub server_fin_timeout: Option<Duration>,
    /// How connections are spread over the remotes (default round robin).
    pub strategy: Option<Strategy>,
    /// Connect attempts per client across backends before it is reset, at most 16 (default:
    /// the number of remotes, up to 16, so that a client is reset only when every backend has
    /// failed it, or that many).
    pub attempts: Option<u32>,
    /// Most connections each remote takes at once (default: no limit).
    pub max_conns: Option<u32>,
    /// How long a client waits for a slot when every remote is at `max_conns` (default 5s).
    pub queue_timeout: Option<Duration>,
    /// Connect failures in a row that mark a remote down (default 3).
    pub max_fails: Option<u32>,
    /// Without active checks, how long a remote marked down rests before it is tried again
    /// (default 10s).
    pub fail_timeout: Option<Duration>,
    /// Active health checks on or off (default off).
    pub check: Option<bool>,
    /// Time between two checks of a remote (default 2s).
    pub check_interval: Option<Duration>,
    /// How long one check may take (default 1s).
    pub check_timeout: Option<Duration>,
    /// Good checks in a row that bring a down remote back (default 2).
    pub rise: Option<u32>,
    /// Failed checks in a row that take an up remote down (default 3).
    pub fall: Option<u32>,
    /// Bytes a check sends once connected (`\r`, `\n`, `\t`, `\\` escapes allowed).
    pub check_send: Option<String>,
    /// Checks of a remote that gets a PROXY header (`send_proxy`, the tunnel's or its own)
    /// send one first: v2 `LOCAL`, or v1 `UNKNOWN`, the forms the protocol gives health checks
    /// (default off: a check is a bare connect, and `check_send`).
    pub check_send_proxy: Option<bool>,
    /// What the reply to a check must start with (same escapes).
    pub check_expect: Option<String>,
    /// Balance over the remotes (the default) or copy every client to all of them.
    pub mode: Option<TunnelMode>,
    /// Fan-out: whose replies reach the client (default: the first remote's).
    pub reply: Option<Reply>,
    /// Fan-out: how many bytes a destination may fall behind before it is dropped for that
    /// connection (default 1 MiB).
    pub max_lag: Option<usize>,
    /// Fan-out: the client connection ends when fewer destinations than this are still alive
    /// (default 1).
    pub min_live: Option<u32>,
    /// Relay bulk data with splice(2), the bytes never entering user space (default: the
    /// proxy-wide setting, on where the platform has splice).
    pub splice: Option<bool>,
    /// Read a PROXY protocol header ahead of each client's stream, and take the client it
    /// names as the real one (default: none is read).
    pub accept_proxy: Option<AcceptProxy>,
    /// How long a client has to send its whole PROXY header (default 5s).
    pub proxy_timeout: Option<Duration>,
    /// Send a PROXY protocol header to each upstream ahead of the client's stream, naming the
    /// client (default: none is sent).
    pub send_proxy: Option<SendProxy>,
    /// The peers that may send a PROXY header; any other is refused before it is read
    /// (default: any peer).
    pub proxy_from: Option<Networks>,
    /// Clients (their real address) that may connect; see [`TunnelOptions::deny`].
    pub allow: Option<Networks>,
    /// Clients (their real address) refused. The most specific network that holds a client
    /// decides (a tie: refused); a client in neither list is refused if `allow` is given,
    /// else taken.
    pub deny: Option<Networks>,
    /// The most connections one client (its real address; IPv6 by its
    /// [`client_ipv6_prefix`](TunnelOptions::client_ipv6_prefix)) may hold at once (default: no
    /// limit).
    pub max_conns_per_client: Option<u32>,
    /// New connections one client may open per second, on average (default: no limit).
    pub rate_per_client: Option<u32>,
    /// New connections one client may open at once beyond the rate (default: the rate).
    pub rate_burst: Option<u32>,
    /// The prefix length by which IPv6 clients are one client for the per-client limit and
    /// rate (default: 64, since one host commonly holds a whole /64).
    pub client_ipv6_prefix: Option<u32>,
    /// Most bytes a second each connection reads from its client (default: no limit).
    pub max_rate_up: Option<u64>,
    /// Most bytes a second each connection reads from its upstream (default: no limit).
    pub max_rate_down: Option<u64>,
    /// Most bytes a second the tunnel's connections together read from their clients
    /// (default: no limit).
    pub max_tunnel_rate_up: Option<u64>,
    /// Most bytes a second the tunnel's connections together read from their upstreams
    /// (default: no limit).
    pub max_tunnel_rate_down: Option<u64>,
    /// TLS termination: the PEM file of the listener's certificate chain (its own first);
    /// with [`tls_key`](TunnelOptions::tls_key), clients speak TLS and the backends get
    /// plaintext (default: no TLS).
    pub tls_cert: Option<String>,
    /// The PEM file of the private key of `tls_cert`.
    pub tls_key: Option<String>,
    /// The protocols offered by ALPN, most wanted first, `;`-separated (`h2;http/1.1`;
    /// default: none, so no ALPN).
    pub tls_alpn: Option<String>,
    /// The oldest TLS version taken (default 1.2).
    pub tls_min_version: Option<TlsVersion>,
    /// How long a client has for its TLS handshake, from accept (default 10s).
    pub tls_handshake_timeout: Option<Duration>,
    /// Mutual TLS: the PEM file of the CA certificates a client's certificate must chain to
    /// (default: none, no client certificate asked for).
    pub tls_client_ca: Option<String>,
    /// Whether a client must show a certificate (default `required`, with `tls_client_ca`).
    pub tls_client_auth: Option<ClientAuth>,
    /// TLS to the backends: porxy opens a TLS session with each (default off).
    pub backend_tls: Option<bool>,
    /// The PEM file of the CAs backends' certificates must chain to (default: the system's
    /// trust store).
    pub tls_ca: Option<String>,
    /// The name backends' certificates must be for (default: each remote's host name, or its
    /// IP address, verified as an IP address).
    pub tls_server_name: Option<String>,
    /// Whether backends' certificates are verified (default on; off is logged as a warning).
    pub tls_verify: Option<bool>,
    /// The PEM chain shown to backends that ask for a client certificate.
    pub backend_tls_cert: Option<String>,
    /// The PEM key of `backend_tls_cert`.
    pub backend_tls_key: Option<String>,
    /// Routing by server name: the ClientHello's SNI picks which remotes may serve a client,
    /// and its TLS goes through untouched (or, on a listener that terminates TLS, the
    /// handshake's SNI does). Default: every remote serves every client.
    pub sni_routes: Option<SniRoutes>,
    /// Whether active checks of TLS backends do the TLS handshake, the certificate verified
    /// as the relay's is, and send and expect inside it (default on, with `backend_tls`); off:
    /// a TCP connect (and `check_send`, in the clear) is the check.
    pub check_tls: Option<bool>,
}

/// Fewest bytes `max_lag` may be.
pub const MIN_MAX_LAG: usize = 64 * 1024;
/// Most bytes `max_lag` may be.
pub const MAX_MAX_LAG: usize = 1 << 30;
/// Fewest bytes a second a bandwidth limit may be.
pub const MIN_RATE: u64 = 1024;
/// Most bytes a second a bandwidth limit may be.
pub const MAX_RATE: u64 = 1 << 40;
/// Most remotes a fan-out tunnel copies to.
pub const MAX_FANOUT: usize = 64;
