//! Setting one option: from the text of its value ([`TunnelOptions::set`]), or from a value
//! already typed ([`TunnelOptions::set_duration`], [`TunnelOptions::set_count`],
//! [`TunnelOptions::set_size`]).
//!
//! Every value is checked here, whichever way it comes, with the same rules and errors: a
//! duration is more than zero and at most 365 days, a number is within its option's range,
//! a size is within its option's range. A typed setter given an option of another type refuses it
//! ([`OptionErrorKind::WrongType`]).

use std::str::FromStr;
use std::time::Duration;

use super::key::Value;
use super::{OptionKey, TunnelOptions};
use crate::spec::error::{OptionError, OptionErrorKind, UnknownName};
use crate::spec::Networks;
use crate::units::{parse_duration, parse_size, MAX_DURATION};

impl TunnelOptions {
    /// Sets one option from the text of its value, as `key=value` in a SPEC does.
    pub fn set(&mut self, key: OptionKey, value: &str) -> Result<(), OptionError> {
        let value = value.trim();
        let fail = |kind| OptionError::new(key, kind);
        match key.value() {
            Value::Duration => {
                let duration =
                    parse_duration(value).map_err(|e| fail(OptionErrorKind::BadQuantity(e)))?;
                self.set_duration(key, duration)
            }
            Value::Count { .. } => self.put_count(key, value.parse().ok(), value),
            Value::Size { .. } => {
                let bytes = parse_size(value).map_err(|e| fail(OptionErrorKind::BadQuantity(e)))?;
                self.put_size(key, bytes as u64, value)
            }
            Value::Switch { on, off, expected } => {
                let word = value.to_ascii_lowercase();
                let state = if on.contains(&word.as_str()) {
                    true
                } else if off.contains(&word.as_str()) {
                    false
                } else {
                    return Err(fail(OptionErrorKind::NotASwitch {
                        value: value.to_string(),
                        expected,
                    }));
                };
                *self.switch_slot(key).ok_or_else(|| wrong_type(key))? = Some(state);
                Ok(())
            }
            Value::Text => {
                let text = unescape(value).map_err(fail)?;
                *self.text_slot(key).ok_or_else(|| wrong_type(key))? = Some(text);
                Ok(())
            }
            Value::Strategy => {
                self.strategy = Some(named(value).map_err(fail)?);
                Ok(())
            }
            Value::Mode => {
                self.mode = Some(named(value).map_err(fail)?);
                Ok(())
            }
            Value::Reply => {
                self.reply = Some(named(value).map_err(fail)?);
                Ok(())
            }
            Value::AcceptProxy => {
                self.accept_proxy = Some(named(value).map_err(fail)?);
                Ok(())
            }
            Value::SendProxy => {
                self.send_proxy = Some(named(value).map_err(fail)?);
                Ok(())
            }
            Value::TlsVersion => {
                self.tls_min_version = Some(named(value).map_err(fail)?);
                Ok(())
            }
            Value::ClientAuth => {
                self.tls_client_auth = Some(named(value).map_err(fail)?);
                Ok(())
            }
            Value::Networks => {
                let networks = value.parse().map_err(OptionErrorKind::BadNetworks);
                self.set_networks(key, networks.map_err(fail)?)
            }
            Value::SniRoutes => {
                let routes = value.parse().map_err(OptionErrorKind::BadSniRoutes);
                self.sni_routes = Some(routes.map_err(fail)?);
                Ok(())
            }
        }
    }

    /// Sets a duration option (`connect_timeout`, `idle_timeout`, `half_closed_timeout`,
    /// `client_fin_timeout`, `server_fin_timeout`, `queue_timeout`, `fail_timeout`,
    /// `check_interval`, `check_timeout`): more than zero, at most 365 days.
    pub fn set_duration(&mut self, key: OptionKey, value: Duration) -> Result<(), OptionError> {
        let slot = self.duration_slot(key).ok_or_else(|| wrong_type(key))?;
        if value.is_zero() {
            return Err(OptionError::new(key, OptionErrorKind::Zero));
        }
        if value > MAX_DURATION {
            return Err(OptionError::new(key, OptionErrorKind::TooLong));
        }
        *slot = Some(value);
        Ok(())
    }

    /// Sets a whole-number option (`attempts`, `max_conns`, `max_fails`, `rise`, `fall`,
    /// `min_live`), within its range. Any integer is taken, as a config file has it: one out of
    /// the range is refused like a bad `key=value`.
    pub fn set_count(&mut self, key: OptionKey, value: i64) -> Result<(), OptionError> {
        self.put_count(key, Some(value), &value.to_string())
    }

    /// Sets a networks option (`proxy_from`, `allow`, `deny`).
    pub fn set_networks(&mut self, key: OptionKey, networks: Networks) -> Result<(), OptionError> {
        let slot = match key {
            OptionKey::ProxyFrom => &mut self.proxy_from,
            OptionKey::Allow => &mut self.allow,
            OptionKey::Deny => &mut self.deny,
            _ => return Err(wrong_type(key)),
        };
        *slot = Some(networks);
        Ok(())
    }

    /// Sets a size option in bytes: `max_lag` from 64 KiB to 1 GiB; the bandwidth limits
    /// (`max_rate_up`, ..., bytes a second) from 1 KiB to 1 TiB.
    pub fn set_size(&mut self, key: OptionKey, bytes: u64) -> Result<(), OptionError> {
        self.put_size(key, bytes, &bytes.to_string())
    }

    /// [`TunnelOptions::set_count`], with the value as written for an error (`None`: not a
    /// number at all).
    fn put_count(
        &mut self,
        key: OptionKey,
        value: Option<i64>,
        written: &str,
    ) -> Result<(), OptionError> {
        let Value::Count { min, max } = key.value() else {
            return Err(wrong_type(key));
        };
        let in_range = value
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (min..=max).contains(n));
        let Some(n) = in_range else {
            let value = written.to_string();
            let kind = OptionErrorKind::NotInRange { value, min, max };
            return Err(OptionError::new(key, kind));
        };
        *self.count_slot(key).ok_or_else(|| wrong_type(key))? = Some(n);
        Ok(())
    }

    /// [`TunnelOptions::set_size`], with the value as written for an error.
    fn put_size(&mut self, key: OptionKey, bytes: u64, written: &str) -> Result<(), OptionError> {
        let Value::Size { min, max } = key.value() else {
            return Err(wrong_type(key));
        };
        if !(min..=max).contains(&bytes) {
            let value = written.to_string();
            let kind = OptionErrorKind::SizeNotInRange { value, min, max };
            return Err(OptionError::new(key, kind));
        }
        match key {
            OptionKey::MaxLag => self.max_lag = usize::try_from(bytes).ok(),
            OptionKey::MaxRateUp => self.max_rate_up = Some(bytes),
            OptionKey::MaxRateDown => self.max_rate_down = Some(bytes),
            OptionKey::MaxTunnelRateUp => self.max_tunnel_rate_up = Some(bytes),
            OptionKey::MaxTunnelRateDown => self.max_tunnel_rate_down = Some(bytes),
            _ => return Err(wrong_type(key)),
        }
        Ok(())
    }

    fn duration_slot(&mut self, key: OptionKey) -> Option<&mut Option<Duration>> {
        Some(match key {
            OptionKey::ConnectTimeout => &mut self.connect_timeout,
            OptionKey::IdleTimeout => &mut self.idle_timeout,
            OptionKey::HalfClosedTimeout => &mut self.half_closed_timeout,
            OptionKey::ClientFinTimeout => &mut self.client_fin_timeout,
            OptionKey::ServerFinTimeout => &mut self.server_fin_timeout,
            OptionKey::QueueTimeout => &mut self.queue_timeout,
            OptionKey::FailTimeout => &mut self.fail_timeout,
            OptionKey::CheckInterval => &mut self.check_interval,
            OptionKey::CheckTimeout => &mut self.check_timeout,
            OptionKey::ProxyTimeout => &mut self.proxy_timeout,
            OptionKey::TlsHandshakeTimeout => &mut self.tls_handshake_timeout,
            _ => return None,
        })
    }

    fn count_slot(&mut self, key: OptionKey) -> Option<&mut Option<u32>> {
        Some(match key {
            OptionKey::MaxConnsPerClient => &mut self.max_conns_per_client,
            OptionKey::RatePerClient => &mut self.rate_per_client,
            OptionKey::RateBurst => &mut self.rate_burst,
            OptionKey::ClientIpv6Prefix => &mut self.client_ipv6_prefix,
            OptionKey::Attempts => &mut self.attempts,
            OptionKey::MaxConns => &mut self.max_conns,
            OptionKey::MaxFails => &mut self.max_fails,
            OptionKey::Rise => &mut self.rise,
            OptionKey::Fall => &mut self.fall,
            OptionKey::MinLive => &mut self.min_live,
            _ => return None,
        })
    }

    fn switch_slot(&mut self, key: OptionKey) -> Option<&mut Option<bool>> {
        Some(match key {
            OptionKey::Check => &mut self.check,
            OptionKey::Splice => &mut self.splice,
            OptionKey::CheckSendProxy => &mut self.check_send_proxy,
            OptionKey::BackendTls => &mut self.backend_tls,
            OptionKey::TlsVerify => &mut self.tls_verify,
            OptionKey::CheckTls => &mut self.check_tls,
            _ => return None,
        })
    }

    fn text_slot(&mut self, key: OptionKey) -> Option<&mut Option<String>> {
        Some(match key {
            OptionKey::CheckSend => &mut self.check_send,
            OptionKey::CheckExpect => &mut self.check_expect,
            OptionKey::TlsCert => &mut self.tls_cert,
            OptionKey::TlsKey => &mut self.tls_key,
            OptionKey::TlsAlpn => &mut self.tls_alpn,
            OptionKey::TlsClientCa => &mut self.tls_client_ca,
            OptionKey::TlsCa => &mut self.tls_ca,
            OptionKey::TlsServerName => &mut self.tls_server_name,
            OptionKey::BackendTlsCert => &mut self.backend_tls_cert,
            OptionKey::BackendTlsKey => &mut self.backend_tls_key,
            _ => return None,
        })
    }
}

/// A value that is a name (a strategy, a mode, a TLS version, ...), read by its own `FromStr`.
fn named<T: FromStr<Err = UnknownName>>(value: &str) -> Result<T, OptionErrorKind> {
    value.parse().map_err(OptionErrorKind::UnknownName)
}

/// `key` given to a setter for values of another type.
fn wrong_type(key: OptionKey) -> OptionError {
    let takes = key.value().takes();
    OptionError::new(key, OptionErrorKind::WrongType { takes })
}

/// Reads `\r`, `\n`, `\t` and `\\` escapes, and `\,`, `\[`, `\]` for the characters that
/// would end or nest a value in a SPEC.
fn unescape(text: &str) -> Result<String, OptionErrorKind> {
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
            Some(c @ ('\\' | ',' | '[' | ']')) => out.push(c),
            Some(other) => return Err(OptionErrorKind::UnknownEscape(other)),
            None => return Err(OptionErrorKind::TrailingBackslash),
        }
    }
    Ok(out)
}
