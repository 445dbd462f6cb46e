//! A tunnel's options resolved against the proxy-wide settings: everything a tunnel version
//! runs with, in one place.
//!
//! An option not set takes the proxy-wide setting (timeouts, splice) or the built-in default
//! (balancing, health, fan-out). [`resolve`] refuses options that do not fit together, as
//! [`TunnelOptions::check`] does, so nothing resolved can come from a misfit, with one
//! exception: a `min_live` above the remotes is taken as all of them, since removing a backend
//! may leave fewer remotes than a `min_live` that fitted when it was given. [`check_options`]
//! is [`TunnelOptions::check`] as the API's error, for the callers that must refuse a new spec
//! before they resolve a name or bind a port.

use std::time::Duration;

use crate::balance::backend::PassiveHealth;
use crate::balance::health::CheckConfig;
use crate::config::{
    ProxyConfig, TunnelSettings, DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_TIMEOUT,
    DEFAULT_FAIL_TIMEOUT, DEFAULT_FALL, DEFAULT_MAX_FAILS, DEFAULT_QUEUE_TIMEOUT, DEFAULT_RISE,
};
use crate::conn::client_limits::DEFAULT_IPV6_PREFIX;
use crate::conn::fanout::{FanoutSettings, DEFAULT_MAX_LAG};
use crate::error::Error;
use crate::spec::{
    AcceptProxy, Networks, OptionsConflict, SendProxy, Strategy, TunnelMode, TunnelOptions,
    TunnelSpec, MAX_ATTEMPTS,
};
use crate::tls::server::DEFAULT_HANDSHAKE_TIMEOUT;
use crate::tunnel::bandwidth::BandwidthLimits;
use crate::tunnel::opening::ClientTls;
use crate::units::MAX_DURATION;

/// What a tunnel version runs with, from its options and the proxy-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The timeouts and splice of each connection.
    pub(crate) settings: TunnelSettings,
    /// How connections are spread over the backends.
    pub(crate) strategy: Strategy,
    /// When connect failures take a backend down, and for how long.
    pub(crate) passive: PassiveHealth,
    /// Active health checks, if on.
    pub(crate) check: Option<CheckConfig>,
    /// Connect attempts per client, across backends.
    pub(crate) attempts: u32,
    /// Fan-out settings, when every client is copied to every remote.
    pub(crate) fanout: Option<FanoutSettings>,
    /// The most connections a remote takes at once when it sets no limit of its own.
    pub(crate) max_conns: Option<u32>,
    /// The PROXY header each client sends first, and how long it has for it.
    pub(crate) accept_proxy: Option<(AcceptProxy, Duration)>,
    /// The PROXY header sent to each upstream ahead of the client's stream.
    pub(crate) send_proxy: Option<SendProxy>,
    /// Active checks send a PROXY header first.
    pub(crate) check_send_proxy: bool,
    /// Active checks of TLS backends do the TLS handshake.
    pub(crate) check_tls: bool,
    /// The peers that may send a PROXY header.
    pub(crate) proxy_from: Option<Networks>,
    /// Who may connect.
    pub(crate) allow: Option<Networks>,
    pub(crate) deny: Option<Networks>,
    /// The most connections one client may hold at once.
    pub(crate) max_conns_per_client: Option<u32>,
    /// New connections one client may open per second, and in a burst.
    pub(crate) rate_per_client: Option<(u32, u32)>,
    /// The prefix by which IPv6 clients are one client.
    pub(crate) client_ipv6_prefix: u8,
    /// Bandwidth limits, per connection and per tunnel.
    pub(crate) bandwidth: BandwidthLimits,
    /// What its listener does with its clients' TLS (terminates it, or routes by its server
    /// name), and how long a client has for its handshake or its ClientHello.
    pub(crate) client_tls: Option<ClientTls>,
}

/// How long a client has to send its PROXY header by default.
pub(crate) const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves `options` for a tunnel with `remotes` remotes under `config`; refuses options that
/// do not fit together, but for a `min_live` above the remotes (see the module doc).
///
/// A half-closed timeout comes from, first to last: the tunnel's own `client_fin_timeout`
/// (or `server_fin_timeout`), the tunnel's `half_closed_timeout`, the proxy-wide
/// `client_fin_timeout` (or `server_fin_timeout`), the proxy-wide `half_closed_timeout`.
/// Durations are capped at [`MAX_DURATION`], so that no deadline computed from them can
/// overflow the clock.
pub(crate) fn resolve(
    options: &TunnelOptions,
    remotes: usize,
    config: &ProxyConfig,
) -> Result<Resolved, OptionsConflict> {
    match options.check(remotes) {
        // The last rule checked: every other one holds.
        Ok(()) | Err(OptionsConflict::MinLiveAboveRemotes { .. }) => {}
        Err(conflict) => return Err(conflict),
    }
    let cap = |d: Duration| d.min(MAX_DURATION);
    let fin_timeout = |tunnel: Option<Duration>, proxy: Option<Duration>| {
        cap(tunnel
            .or(options.half_closed_timeout)
            .or(proxy)
            .unwrap_or(config.half_closed_timeout))
    };
    let settings = TunnelSettings {
        connect_timeout: cap(options.connect_timeout.unwrap_or(config.connect_timeout)),
        idle_timeout: cap(options.idle_timeout.unwrap_or(config.idle_timeout)),
        client_fin_timeout: fin_timeout(options.client_fin_timeout, config.client_fin_timeout),
        server_fin_timeout: fin_timeout(options.server_fin_timeout, config.server_fin_timeout),
        queue_timeout: cap(options.queue_timeout.unwrap_or(DEFAULT_QUEUE_TIMEOUT)),
        // A TLS end must see its bytes: each direction of a TLS connection has one, so its
        // connections copy (plain tunnels still splice).
        splice: options.splice.unwrap_or(config.splice)
            && crate::splice::SUPPORTED
            && options.tls_cert.is_none()
            && options.backend_tls != Some(true),
    };
    let check = options.check.unwrap_or(false).then(|| {
        let interval = cap(options.check_interval.unwrap_or(DEFAULT_CHECK_INTERVAL));
        CheckConfig {
            interval,
            timeout: cap(options
                .check_timeout
                .unwrap_or(DEFAULT_CHECK_TIMEOUT.min(interval))),
            rise: options.rise.unwrap_or(DEFAULT_RISE),
            fall: options.fall.unwrap_or(DEFAULT_FALL),
            send: options.check_send.clone().map(String::into_bytes),
            expect: options.check_expect.clone().map(String::into_bytes),
            // Each backend's, from the tunnel's TLS: `Tunnel::check_of`.
            tls: None,
        }
    });
    let passive = PassiveHealth {
        max_fails: options.max_fails.unwrap_or(DEFAULT_MAX_FAILS),
        fail_timeout: options.fail_timeout.unwrap_or(DEFAULT_FAIL_TIMEOUT),
        active_checks: check.is_some(),
    };
    // By default a client may try every backend once (the tried set rules out repeats): while
    // any backend is alive, no client is reset for the dead ones. Capped like an explicit
    // `attempts`, so that behind many backends that time out a client still waits at most
    // MAX_ATTEMPTS connect timeouts.
    let attempts = options.attempts.unwrap_or_else(|| {
        u32::try_from(remotes)
            .unwrap_or(u32::MAX)
            .clamp(1, MAX_ATTEMPTS)
    });
    let fanout = (options.mode == Some(TunnelMode::Fanout)).then(|| FanoutSettings {
        reply: options.reply.unwrap_or_default(),
        // Below two buffers, a destination keeping up could look behind after one read.
        max_lag: options
            .max_lag
            .unwrap_or(DEFAULT_MAX_LAG)
            .max(2 * config.buffer_size),
        min_live: options
            .min_live
            .unwrap_or(1)
            .clamp(1, remotes.max(1) as u32),
    });
    let own_rules = options.allow.is_some() || options.deny.is_some();
    Ok(Resolved {
        settings,
        strategy: options.strategy.unwrap_or_default(),
        passive,
        check,
        attempts,
        fanout,
        max_conns: options.max_conns,
        accept_proxy: options.accept_proxy.map(|accept| {
            let timeout = options.proxy_timeout.unwrap_or(DEFAULT_PROXY_TIMEOUT);
            (accept, timeout.min(MAX_DURATION))
        }),
        send_proxy: options.send_proxy,
        check_send_proxy: options.check_send_proxy.unwrap_or(false),
        // It matters only for backends porxy speaks TLS to (`Tunnel::check_of`).
        check_tls: options.check_tls.unwrap_or(true),
        proxy_from: options.proxy_from.clone(),
        // A tunnel's own rules replace the proxy-wide ones, both lists at once.
        allow: if own_rules {
            options.allow.clone()
        } else {
            config.allow.clone()
        },
        deny: if own_rules {
            options.deny.clone()
        } else {
            config.deny.clone()
        },
        max_conns_per_client: options.max_conns_per_client,
        rate_per_client: options
            .rate_per_client
            .map(|rate| (rate, options.rate_burst.unwrap_or(rate))),
        client_ipv6_prefix: options
            .client_ipv6_prefix
            .and_then(|p| u8::try_from(p).ok())
            .unwrap_or(DEFAULT_IPV6_PREFIX),
        bandwidth: BandwidthLimits {
            conn: (options.max_rate_up, options.max_rate_down),
            tunnel: (options.max_tunnel_rate_up, options.max_tunnel_rate_down),
        },
        client_tls: {
            let timeout = options
                .tls_handshake_timeout
                .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT)
                .min(MAX_DURATION);
            // A listener that terminates routes by the handshake's name: no peek.
            match (&options.tls_cert, &options.sni_routes) {
                (Some(_), _) => Some(ClientTls::Terminate(timeout)),
                (None, Some(_)) => Some(ClientTls::Route(timeout)),
                (None, None) => None,
            }
        },
    })
}

/// Refuses a spec whose options do not fit together (or with its remotes), naming the tunnel:
/// what [`resolve`] refuses, said before anything is resolved or bound.
pub(crate) fn check_options(spec: &TunnelSpec) -> Result<(), Error> {
    spec.check()
        .map_err(|conflict| options_error(spec, conflict))
}

/// The API's error for `spec`'s options not fitting together.
pub(crate) fn options_error(spec: &TunnelSpec, conflict: OptionsConflict) -> Error {
    Error::Options {
        local: spec.local.to_string(),
        conflict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::OptionKey;

    fn settings(config: &ProxyConfig, options: &TunnelOptions) -> TunnelSettings {
        resolve(options, 1, config).unwrap().settings
    }

    fn with(pairs: &[(OptionKey, &str)]) -> TunnelOptions {
        let mut options = TunnelOptions::default();
        for (key, value) in pairs {
            options.set(*key, value).unwrap();
        }
        options
    }

    #[test]
    fn fin_timeouts_default_to_the_half_closed_timeout_nearest_the_tunnel() {
        let secs = Duration::from_secs;
        let mut config = ProxyConfig {
            half_closed_timeout: secs(60),
            ..ProxyConfig::default()
        };
        let fins = |config: &ProxyConfig, options: &TunnelOptions| {
            let settings = settings(config, options);
            (settings.client_fin_timeout, settings.server_fin_timeout)
        };
        let none = TunnelOptions::default();
        assert_eq!(fins(&config, &none), (secs(60), secs(60)));
        config.server_fin_timeout = Some(secs(5));
        assert_eq!(fins(&config, &none), (secs(60), secs(5)));
        let mut half = with(&[(OptionKey::HalfClosedTimeout, "30s")]);
        assert_eq!(
            fins(&config, &half),
            (secs(30), secs(30)),
            "the tunnel's half_closed_timeout beats the proxy-wide server_fin_timeout"
        );
        half.set(OptionKey::ClientFinTimeout, "2s").unwrap();
        assert_eq!(fins(&config, &half), (secs(2), secs(30)));
        let server = with(&[(OptionKey::ServerFinTimeout, "1s")]);
        assert_eq!(fins(&config, &server), (secs(60), secs(1)));
    }

    #[test]
    fn a_tunnel_option_overrides_the_proxy_wide_splice() {
        let mut config = ProxyConfig {
            splice: false,
            ..ProxyConfig::default()
        };
        let on = TunnelOptions {
            splice: Some(true),
            ..TunnelOptions::default()
        };
        assert!(!settings(&config, &TunnelOptions::default()).splice);
        assert_eq!(settings(&config, &on).splice, crate::splice::SUPPORTED);
        config.splice = true;
        let off = TunnelOptions {
            splice: Some(false),
            ..TunnelOptions::default()
        };
        assert!(!settings(&config, &off).splice);
    }

    /// Routing by server name reads the ClientHello by peeking and takes nothing: the TLS
    /// stream still splices, and the time for the ClientHello is the handshake timeout.
    #[test]
    fn routing_by_server_name_keeps_splice_and_peeks_within_the_handshake_timeout() {
        let config = ProxyConfig {
            splice: true,
            ..ProxyConfig::default()
        };
        let mut routed = TunnelOptions::default();
        routed
            .set(OptionKey::SniRoutes, "a.test>10.0.0.1:443")
            .unwrap();
        let resolved = resolve(&routed, 1, &config).unwrap();
        assert_eq!(resolved.settings.splice, crate::splice::SUPPORTED);
        assert_eq!(
            resolved.client_tls,
            Some(ClientTls::Route(DEFAULT_HANDSHAKE_TIMEOUT))
        );
        routed.set(OptionKey::TlsHandshakeTimeout, "2s").unwrap();
        let resolved = resolve(&routed, 1, &config).unwrap();
        assert_eq!(
            resolved.client_tls,
            Some(ClientTls::Route(Duration::from_secs(2)))
        );
    }

    #[test]
    fn options_that_do_not_fit_resolve_to_nothing() {
        let config = ProxyConfig::default();
        let reply = with(&[(OptionKey::Reply, "none")]);
        assert_eq!(
            resolve(&reply, 2, &config),
            Err(OptionsConflict::FanoutOnly(OptionKey::Reply))
        );
        let many = with(&[(OptionKey::Mode, "fanout")]);
        assert_eq!(
            resolve(&many, 65, &config),
            Err(OptionsConflict::TooManyRemotes { remotes: 65 })
        );
        let fanout = with(&[(OptionKey::Mode, "fanout"), (OptionKey::MinLive, "3")]);
        let resolved = resolve(&fanout, 3, &config).unwrap();
        let fan = resolved.fanout.expect("fan-out settings");
        assert_eq!((fan.min_live, fan.max_lag), (3, DEFAULT_MAX_LAG));

        let spec: TunnelSpec = "127.0.0.1:8000=9000".parse().unwrap();
        let spec = spec.with_options(reply);
        assert_eq!(
            check_options(&spec).unwrap_err().to_string(),
            "tunnel on 127.0.0.1:8000: option `reply` applies only with mode=fanout"
        );
    }

    /// A fan-out tunnel whose backend is removed goes on with a `min_live` of the remotes left,
    /// as it did before options were resolved in one place; a new spec is refused it.
    #[test]
    fn a_min_live_above_the_remotes_left_is_all_of_them() {
        let fanout = with(&[(OptionKey::Mode, "fanout"), (OptionKey::MinLive, "3")]);
        let resolved = resolve(&fanout, 2, &ProxyConfig::default()).unwrap();
        assert_eq!(resolved.fanout.map(|f| f.min_live), Some(2));
        assert_eq!(
            fanout.check(2),
            Err(OptionsConflict::MinLiveAboveRemotes {
                min_live: 3,
                remotes: 2
            })
        );
    }

    #[test]
    fn health_and_balancing_take_the_built_in_defaults() {
        let config = ProxyConfig::default();
        let resolved = resolve(&TunnelOptions::default(), 3, &config).unwrap();
        assert_eq!(resolved.strategy, Strategy::RoundRobin);
        assert_eq!(resolved.check, None);
        assert_eq!(resolved.attempts, 3);
        assert_eq!(resolved.fanout, None);
        assert_eq!(
            (resolved.passive.max_fails, resolved.passive.fail_timeout),
            (DEFAULT_MAX_FAILS, DEFAULT_FAIL_TIMEOUT)
        );
        let checked = with(&[
            (OptionKey::Check, "tcp"),
            (OptionKey::CheckInterval, "500ms"),
        ]);
        let check = resolve(&checked, 1, &config).unwrap().check.unwrap();
        assert_eq!(
            (check.interval, check.timeout),
            (Duration::from_millis(500), Duration::from_millis(500)),
            "the check timeout is at most the interval"
        );
    }
}
