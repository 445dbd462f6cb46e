//! Per-tunnel options: the `[key=value,...]` part of a tunnel SPEC, and the TOML listener keys.
//!
//! Every option is optional; `None` means the proxy-wide default (timeouts) or the built-in one
//! (balancing and health). [`TunnelOptions::set`] parses one `key=value`, for the SPEC parser and
//! for callers that build options from other sources.

use std::time::Duration;

use super::mode::{Reply, TunnelMode};
use super::Strategy;
use crate::units::{format_duration, parse_duration, parse_size};

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
    /// Connect attempts per client across backends before it is reset, at most
    /// [`MAX_ATTEMPTS`] (default: the number of remotes, up to [`MAX_ATTEMPTS`], so that a client
    /// is reset only when every backend has failed it, or that many).
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
}

/// The option keys a SPEC accepts, for error messages and `--help-tunnel`.
pub const OPTION_KEYS: &[&str] = &[
    "connect_timeout",
    "idle_timeout",
    "half_closed_timeout",
    "client_fin_timeout",
    "server_fin_timeout",
    "strategy",
    "attempts",
    "max_conns",
    "queue_timeout",
    "max_fails",
    "fail_timeout",
    "check",
    "check_interval",
    "check_timeout",
    "rise",
    "fall",
    "check_send",
    "check_expect",
    "mode",
    "reply",
    "max_lag",
    "min_live",
    "splice",
];

/// Fewest bytes `max_lag` may be.
pub const MIN_MAX_LAG: usize = 64 * 1024;
/// Most bytes `max_lag` may be.
pub const MAX_MAX_LAG: usize = 1 << 30;
/// Most remotes a fan-out tunnel copies to.
pub const MAX_FANOUT: usize = 64;

impl TunnelOptions {
    /// Sets one option from its key and value text, as `key=value` in a SPEC does.
    ///
    /// Keys are case-insensitive and `-` may stand for `_`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let key = canonical_key(key);
        let value = value.trim();
        let duration = || -> Result<Option<Duration>, String> {
            let d = parse_duration(value).map_err(|e| format!("{key}: {e}"))?;
            if d.is_zero() {
                return Err(format!("{key}: must be more than zero"));
            }
            Ok(Some(d))
        };
        let count = |min: u32, max: u32| -> Result<Option<u32>, String> {
            match value.parse::<u32>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(format!(
                    "{key}: `{value}` is not a whole number from {min} to {max}"
                )),
            }
        };
        match key.as_str() {
            "connect_timeout" => self.connect_timeout = duration()?,
            "idle_timeout" => self.idle_timeout = duration()?,
            "half_closed_timeout" => self.half_closed_timeout = duration()?,
            "client_fin_timeout" => self.client_fin_timeout = duration()?,
            "server_fin_timeout" => self.server_fin_timeout = duration()?,
            "strategy" => self.strategy = Some(value.parse()?),
            "attempts" => self.attempts = count(1, MAX_ATTEMPTS)?,
            "max_conns" => self.max_conns = count(1, 10_000_000)?,
            "queue_timeout" => self.queue_timeout = duration()?,
            "max_fails" => self.max_fails = count(1, 1000)?,
            "fail_timeout" => self.fail_timeout = duration()?,
            "check" => {
                self.check = Some(match value.to_ascii_lowercase().as_str() {
                    "tcp" | "on" | "yes" | "true" => true,
                    "off" | "no" | "false" | "none" => false,
                    _ => return Err(format!("check: `{value}` is not `tcp` or `off`")),
                })
            }
            "check_interval" => self.check_interval = duration()?,
            "check_timeout" => self.check_timeout = duration()?,
            "rise" => self.rise = count(1, 1000)?,
            "fall" => self.fall = count(1, 1000)?,
            "check_send" => {
                self.check_send = Some(unescape(value).map_err(|e| format!("{key}: {e}"))?)
            }
            "check_expect" => {
                self.check_expect = Some(unescape(value).map_err(|e| format!("{key}: {e}"))?)
            }
            "mode" => self.mode = Some(value.parse()?),
            "reply" => self.reply = Some(value.parse()?),
            "max_lag" => {
                let size = parse_size(value).map_err(|e| format!("{key}: {e}"))?;
                if !(MIN_MAX_LAG..=MAX_MAX_LAG).contains(&size) {
                    return Err(format!("{key}: must be from 64KiB to 1GiB, not `{value}`"));
                }
                self.max_lag = Some(size);
            }
            "min_live" => self.min_live = count(1, MAX_FANOUT as u32)?,
            "splice" => {
                self.splice = Some(match value.to_ascii_lowercase().as_str() {
                    "on" | "yes" | "true" => true,
                    "off" | "no" | "false" => false,
                    _ => return Err(format!("splice: `{value}` is not `on` or `off`")),
                })
            }
            _ => {
                return Err(format!(
                    "unknown option `{key}`; known options: {}",
                    OPTION_KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// Every option that is set, as `(key, value text)` in [`OPTION_KEYS`] order.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let d = |v: Option<Duration>| v.map(format_duration);
        let n = |v: Option<u32>| v.map(|n| n.to_string());
        let values = [
            d(self.connect_timeout),
            d(self.idle_timeout),
            d(self.half_closed_timeout),
            d(self.client_fin_timeout),
            d(self.server_fin_timeout),
            self.strategy.map(|s| s.to_string()),
            n(self.attempts),
            n(self.max_conns),
            d(self.queue_timeout),
            n(self.max_fails),
            d(self.fail_timeout),
            self.check
                .map(|on| if on { "tcp" } else { "off" }.to_string()),
            d(self.check_interval),
            d(self.check_timeout),
            n(self.rise),
            n(self.fall),
            self.check_send.as_deref().map(escape),
            self.check_expect.as_deref().map(escape),
            self.mode.map(|m| m.to_string()),
            self.reply.map(|r| r.to_string()),
            self.max_lag.map(format_size),
            n(self.min_live),
            self.splice
                .map(|on| if on { "on" } else { "off" }.to_string()),
        ];
        OPTION_KEYS
            .iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect()
    }
}

impl TunnelOptions {
    /// Checks that the options make sense together (each was checked alone by
    /// [`TunnelOptions::set`]); `remotes` is how many remotes the tunnel has.
    pub fn check(&self, remotes: usize) -> Result<(), String> {
        let fanout = self.mode == Some(TunnelMode::Fanout);
        if !fanout {
            let fanout_only = [
                ("reply", self.reply.is_some()),
                ("max_lag", self.max_lag.is_some()),
                ("min_live", self.min_live.is_some()),
            ];
            if let Some((key, _)) = fanout_only.iter().find(|(_, set)| *set) {
                return Err(format!("option `{key}` applies only with mode=fanout"));
            }
            return Ok(());
        }
        let balancing_only = [
            ("strategy", self.strategy.is_some()),
            ("attempts", self.attempts.is_some()),
            ("queue_timeout", self.queue_timeout.is_some()),
        ];
        if let Some((key, _)) = balancing_only.iter().find(|(_, set)| *set) {
            return Err(format!(
                "option `{key}` does not apply with mode=fanout: every remote gets every client"
            ));
        }
        if remotes > MAX_FANOUT {
            return Err(format!(
                "mode=fanout copies to at most {MAX_FANOUT} remotes, not {remotes}"
            ));
        }
        if let Some(min) = self.min_live {
            if min as usize > remotes {
                return Err(format!(
                    "min_live={min} is more than the {remotes} remotes of the tunnel"
                ));
            }
        }
        Ok(())
    }
}

/// An option key as [`TunnelOptions::set`] reads it: trimmed, lower case, `_` for `-`. Two
/// spellings with the same canonical key are the same option.
pub(crate) fn canonical_key(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

/// A size the way [`parse_size`] reads it back: in KiB or MiB when exact.
fn format_size(bytes: usize) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{}MiB", bytes >> 20)
    } else if bytes.is_multiple_of(1 << 10) {
        format!("{}KiB", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

/// Reads `\r`, `\n`, `\t` and `\\` escapes.
fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                return Err(format!(
                    "unknown escape `\\{other}`; use \\r, \\n, \\t or \\\\"
                ))
            }
            None => return Err("a `\\` at the end needs a letter after it".into()),
        }
    }
    Ok(out)
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("mode", "fanout"),
            ("reply", "none"),
            ("max_lag", "4MiB"),
            ("min_live", "2"),
            ("splice", "off"),
        ];
        for (k, v) in pairs {
            options.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
        assert_eq!(options.check_send.as_deref(), Some("PING\r\n"));
        let rendered: Vec<(&str, String)> = options.pairs();
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
            let err = TunnelOptions::default().set(k, v).unwrap_err();
            assert!(err.contains(fragment), "{k}={v}: {err}");
        }
    }

    #[test]
    fn options_must_fit_the_mode() {
        let with = |pairs: &[(&str, &str)]| {
            let mut options = TunnelOptions::default();
            for (k, v) in pairs {
                options.set(k, v).unwrap();
            }
            options
        };
        assert_eq!(
            with(&[("mode", "fanout"), ("reply", "none")]).check(2),
            Ok(())
        );
        assert_eq!(
            with(&[("reply", "none")]).check(2).unwrap_err(),
            "option `reply` applies only with mode=fanout"
        );
        assert_eq!(
            with(&[("mode", "fanout"), ("strategy", "hash")])
                .check(2)
                .unwrap_err(),
            "option `strategy` does not apply with mode=fanout: every remote gets every client"
        );
        assert_eq!(
            with(&[("mode", "fanout"), ("min_live", "3")])
                .check(2)
                .unwrap_err(),
            "min_live=3 is more than the 2 remotes of the tunnel"
        );
        assert!(with(&[("mode", "fanout")]).check(65).is_err());
        assert_eq!(with(&[("strategy", "hash")]).check(100), Ok(()));
    }
}
