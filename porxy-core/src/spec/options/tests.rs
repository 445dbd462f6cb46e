//! Unit tests of the options: every key sets and renders back, bad values and misfits say
//! what is expected, the typed setters follow the same rules.

use std::time::Duration;

use super::*;
use crate::spec::error::{OptionErrorKind, OptionsConflict};

fn key(text: &str) -> OptionKey {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn every_key_sets_and_renders_back() {
    let mut options = TunnelOptions::default();
    let pairs = [
        ("connect_timeout", "2s"),
        ("idle_timeout", "10m"),
        ("half_closed_timeout", "30s"),
        ("client_fin_timeout", "5s"),
        ("server_fin_timeout", "1m"),
        ("strategy", "least_conn"),
        ("attempts", "2"),
        ("max_conns", "100"),
        ("queue_timeout", "1s"),
        ("max_fails", "5"),
        ("fail_timeout", "20s"),
        ("check", "tcp"),
        ("check_interval", "500ms"),
        ("check_timeout", "200ms"),
        ("rise", "1"),
        ("fall", "2"),
        ("check_send", "PING\\r\\n"),
        ("check_expect", "+PONG"),
        ("check_send_proxy", "on"),
        ("mode", "fanout"),
        ("reply", "none"),
        ("max_lag", "4MiB"),
        ("min_live", "2"),
        ("splice", "off"),
        ("accept_proxy", "v2"),
        ("proxy_timeout", "3s"),
        ("send_proxy", "v1"),
        ("proxy_from", "10.0.0.0/8;192.0.2.7"),
        ("allow", "2001:db8::/32"),
        ("deny", "10.6.0.0/16"),
        ("max_conns_per_client", "10"),
        ("rate_per_client", "20"),
        ("rate_burst", "40"),
        ("client_ipv6_prefix", "56"),
        ("max_rate_up", "1MiB"),
        ("max_rate_down", "512KiB"),
        ("max_tunnel_rate_up", "10GiB"),
        ("max_tunnel_rate_down", "1TiB"),
        ("tls_cert", "/etc/porxy/a.pem"),
        ("tls_key", "/etc/porxy/a.key"),
        ("tls_alpn", "h2;http/1.1"),
        ("tls_min_version", "1.3"),
        ("tls_handshake_timeout", "4s"),
        ("tls_client_ca", "/etc/porxy/clients.pem"),
        ("tls_client_auth", "optional"),
        ("backend_tls", "on"),
        ("tls_ca", "/etc/porxy/backends-ca.pem"),
        ("tls_server_name", "db.internal"),
        ("tls_verify", "off"),
        ("backend_tls_cert", "/etc/porxy/porxy.pem"),
        ("backend_tls_key", "/etc/porxy/porxy.key"),
    ];
    for (k, v) in pairs {
        options
            .set(key(k), v)
            .unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    assert_eq!(options.check_send.as_deref(), Some("PING\r\n"));
    let rendered: Vec<(&str, String)> = options
        .pairs()
        .into_iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let want: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
    assert_eq!(rendered, want);
}

#[test]
fn bad_values_say_what_is_expected() {
    let cases = [
        ("strategy", "fastest", "unknown strategy `fastest`"),
        (
            "attempts",
            "0",
            "attempts: `0` is not a whole number from 1 to 16",
        ),
        ("max_conns", "-1", "max_conns: `-1` is not a whole number"),
        ("check", "http", "check: `http` is not `tcp` or `off`"),
        ("check_send", "a\\q", "unknown escape `\\q`"),
        ("rise", "many", "rise: `many` is not a whole number"),
        ("queue_timeout", "5", "no unit"),
        (
            "mode",
            "mirror",
            "unknown mode `mirror`; known modes: balance, fanout",
        ),
        ("reply", "all", "unknown reply `all`; use primary or none"),
        (
            "accept_proxy",
            "v3",
            "unknown accept_proxy `v3`; use v1, v2 or any",
        ),
        (
            "max_lag",
            "1KiB",
            "max_lag: must be from 64KiB to 1GiB, not `1KiB`",
        ),
        ("max_lag", "lots", "max_lag: `lots` is not a size"),
        (
            "min_live",
            "0",
            "min_live: `0` is not a whole number from 1 to 64",
        ),
        ("splice", "auto", "splice: `auto` is not `on` or `off`"),
    ];
    for (k, v, fragment) in cases {
        let err = TunnelOptions::default().set(key(k), v).unwrap_err();
        assert!(err.to_string().contains(fragment), "{k}={v}: {err}");
    }
}

#[test]
fn options_must_fit_the_mode() {
    let with = |pairs: &[(&str, &str)]| {
        let mut options = TunnelOptions::default();
        for (k, v) in pairs {
            options.set(key(k), v).unwrap();
        }
        options
    };
    assert_eq!(
        with(&[("mode", "fanout"), ("reply", "none")]).check(2),
        Ok(())
    );
    assert_eq!(
        with(&[("reply", "none")]).check(2).unwrap_err().to_string(),
        "option `reply` applies only with mode=fanout"
    );
    assert_eq!(
        with(&[("mode", "fanout"), ("strategy", "hash")])
            .check(2)
            .unwrap_err()
            .to_string(),
        "option `strategy` does not apply with mode=fanout: every remote gets every client"
    );
    assert_eq!(
        with(&[("mode", "fanout"), ("min_live", "3")])
            .check(2)
            .unwrap_err()
            .to_string(),
        "min_live=3 is more than the 2 remotes of the tunnel"
    );
    assert!(with(&[("mode", "fanout")]).check(65).is_err());
    assert_eq!(
        with(&[("proxy_timeout", "2s")])
            .check(1)
            .unwrap_err()
            .to_string(),
        "option `proxy_timeout` applies only with accept_proxy"
    );
    assert_eq!(
        with(&[("accept_proxy", "any"), ("proxy_timeout", "2s")]).check(1),
        Ok(())
    );
    assert_eq!(
        with(&[("rate_burst", "10")])
            .check(1)
            .unwrap_err()
            .to_string(),
        "option `rate_burst` applies only with rate_per_client"
    );
    assert_eq!(
        with(&[("proxy_from", "10.0.0.0/8")])
            .check(1)
            .unwrap_err()
            .to_string(),
        "option `proxy_from` applies only with accept_proxy"
    );
    assert_eq!(
        with(&[("accept_proxy", "v1"), ("mode", "fanout")]).check(2),
        Ok(()),
        "a fan-out tunnel reads the header too"
    );
    assert_eq!(with(&[("strategy", "hash")]).check(100), Ok(()));
}

#[test]
fn keys_parse_in_any_spelling_and_list_in_order() {
    for key in OptionKey::ALL {
        assert_eq!(key.as_str().parse::<OptionKey>(), Ok(key));
        let shouted = key.as_str().to_ascii_uppercase().replace('_', "-");
        assert_eq!(format!(" {shouted} ").parse::<OptionKey>(), Ok(key));
    }
    let names: Vec<&str> = OptionKey::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(OPTION_KEYS, names.as_slice());
    let unknown = "Conect-Timeout".parse::<OptionKey>().unwrap_err();
    assert_eq!(unknown.key(), "conect_timeout");
    assert_eq!(
        unknown.to_string(),
        format!(
            "unknown option `conect_timeout`; known options: {}",
            OPTION_KEYS.join(", ")
        )
    );
}

/// The typed setters follow the rules `set` follows, with the same messages: the config file
/// gives typed values and must say what a SPEC would.
#[test]
fn typed_setters_check_as_the_text_does() {
    let mut options = TunnelOptions::default();
    options
        .set_duration(OptionKey::QueueTimeout, Duration::from_secs(2))
        .unwrap();
    options.set_count(OptionKey::Rise, 4).unwrap();
    options.set_size(OptionKey::MaxLag, 4 << 20).unwrap();
    assert_eq!(options.queue_timeout, Some(Duration::from_secs(2)));
    assert_eq!(options.rise, Some(4));
    assert_eq!(options.max_lag, Some(4 << 20));

    let zero = options
        .set_duration(OptionKey::IdleTimeout, Duration::ZERO)
        .unwrap_err();
    assert_eq!(
        (zero.key(), zero.kind()),
        (OptionKey::IdleTimeout, &OptionErrorKind::Zero)
    );
    assert_eq!(zero.to_string(), "idle_timeout: must be more than zero");
    assert_eq!(
        zero,
        TunnelOptions::default()
            .set(OptionKey::IdleTimeout, "0s")
            .unwrap_err()
    );
    let long = options
        .set_duration(OptionKey::IdleTimeout, Duration::from_secs(400 * 86_400))
        .unwrap_err();
    assert_eq!(long.kind(), &OptionErrorKind::TooLong);

    let count = options.set_count(OptionKey::Rise, 0).unwrap_err();
    assert_eq!(
        count.kind().to_string(),
        "`0` is not a whole number from 1 to 1000"
    );
    assert_eq!(
        count,
        TunnelOptions::default()
            .set(OptionKey::Rise, "0")
            .unwrap_err()
    );
    let negative = options.set_count(OptionKey::MaxConns, -1).unwrap_err();
    assert_eq!(
        negative.to_string(),
        "max_conns: `-1` is not a whole number from 1 to 10000000"
    );
    let lag = options.set_size(OptionKey::MaxLag, 1024).unwrap_err();
    assert_eq!(
        lag.kind().to_string(),
        "must be from 64KiB to 1GiB, not `1024`"
    );
    assert_eq!(
        options.rise,
        Some(4),
        "a refused value leaves the option as it was"
    );

    let wrong = options
        .set_duration(OptionKey::Attempts, Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(wrong.to_string(), "attempts: takes a whole number");
    let wrong = options.set_count(OptionKey::Splice, 1).unwrap_err();
    assert_eq!(wrong.to_string(), "splice: takes `on` or `off`");
    assert!(options.set_size(OptionKey::Rise, 1 << 20).is_err());
}

/// The messages as porxy has always printed them, whole.
#[test]
fn messages_read_as_before() {
    let cases = [
        (
            "queue_timeout",
            "5",
            "queue_timeout: `5` has no unit; write it as `5s` or `5ms`",
        ),
        (
            "connect_timeout",
            "0s",
            "connect_timeout: must be more than zero",
        ),
        (
            "check_send",
            "a\\",
            "check_send: a `\\` at the end needs a letter after it",
        ),
        (
            "check_expect",
            "a\\q",
            "check_expect: unknown escape `\\q`; use \\r, \\n, \\t or \\\\",
        ),
        (
            "strategy",
            "fastest",
            "unknown strategy `fastest`; known strategies: round_robin, least_conn, random, \
             hash, first",
        ),
        (
            "max_lag",
            " 63k ",
            "max_lag: must be from 64KiB to 1GiB, not `63k`",
        ),
    ];
    for (k, v, message) in cases {
        let err = TunnelOptions::default().set(key(k), v).unwrap_err();
        assert_eq!(err.to_string(), message, "{k}={v}");
    }
    let name = TunnelOptions::default()
        .set(OptionKey::Mode, "mirror")
        .unwrap_err();
    let OptionErrorKind::UnknownName(unknown) = name.kind() else {
        panic!("{name:?}");
    };
    assert_eq!(
        (unknown.option(), unknown.text()),
        (OptionKey::Mode, "mirror")
    );
    let conflict = TunnelOptions {
        mode: Some(TunnelMode::Fanout),
        ..TunnelOptions::default()
    }
    .check(65)
    .unwrap_err();
    assert_eq!(conflict, OptionsConflict::TooManyRemotes { remotes: 65 });
    assert_eq!(
        conflict.to_string(),
        "mode=fanout copies to at most 64 remotes, not 65"
    );
}

#[test]
fn remotes_own_proxy_headers_fit_the_tunnel() {
    let remote = |port: u16, send_proxy: Option<SendProxy>| {
        let mut remote = crate::spec::Remote::from(crate::spec::Endpoint::Addr(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        ));
        remote.send_proxy = send_proxy;
        remote
    };
    let spec = |remotes: Vec<crate::spec::Remote>, options: &[(&str, &str)]| {
        let mut tunnel_options = TunnelOptions::default();
        for (k, v) in options {
            tunnel_options.set(k.parse().unwrap(), v).unwrap();
        }
        crate::spec::TunnelSpec::new(
            "127.0.0.1:8000".parse::<std::net::SocketAddr>().unwrap(),
            remotes,
        )
        .with_options(tunnel_options)
    };
    let (v1, v2) = (Some(SendProxy::V1), Some(SendProxy::V2));
    // check_send_proxy needs a remote that gets a header, its own or the tunnel's.
    let checked = [("check_send_proxy", "on")];
    assert_eq!(
        spec(vec![remote(1, None)], &checked).check(),
        Err(OptionsConflict::NoProxyHeaderToCheck)
    );
    assert_eq!(
        spec(vec![remote(1, None), remote(2, v2)], &checked).check(),
        Ok(())
    );
    let both = [("check_send_proxy", "on"), ("send_proxy", "v1")];
    assert_eq!(spec(vec![remote(1, None)], &both).check(), Ok(()));
    // Balanced remotes may differ; fan-out ones get one version, or none.
    assert_eq!(
        spec(vec![remote(1, v1), remote(2, v2)], &[]).check(),
        Ok(())
    );
    let fanout = [("mode", "fanout")];
    assert_eq!(
        spec(vec![remote(1, v1), remote(2, v2)], &fanout).check(),
        Err(OptionsConflict::FanoutProxyVersions)
    );
    assert_eq!(
        spec(vec![remote(1, v1), remote(2, None)], &fanout).check(),
        Ok(())
    );
    let fanout_v2 = [("mode", "fanout"), ("send_proxy", "v2")];
    assert_eq!(
        spec(vec![remote(1, v1), remote(2, None)], &fanout_v2).check(),
        Err(OptionsConflict::FanoutProxyVersions),
        "the second takes the tunnel's v2"
    );
}
