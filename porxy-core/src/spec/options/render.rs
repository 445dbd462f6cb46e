//! Options back to text, as a SPEC writes them: what status shows, and what parses back to the
//! same options.

use std::time::Duration;

use super::{OptionKey, TunnelOptions};
use crate::units::{format_duration, format_size};

impl TunnelOptions {
    /// Every option that is set, with its value as a SPEC writes it, in [`OptionKey::ALL`]
    /// order.
    pub fn pairs(&self) -> Vec<(OptionKey, String)> {
        OptionKey::ALL
            .into_iter()
            .filter_map(|key| self.text(key).map(|text| (key, text)))
            .collect()
    }

    /// The value of `key` as a SPEC writes it, if it is set.
    fn text(&self, key: OptionKey) -> Option<String> {
        let duration = |d: Option<Duration>| d.map(format_duration);
        let count = |n: Option<u32>| n.map(|n| n.to_string());
        let switch =
            |on: Option<bool>, word: &str| on.map(|on| if on { word } else { "off" }.into());
        match key {
            OptionKey::ConnectTimeout => duration(self.connect_timeout),
            OptionKey::IdleTimeout => duration(self.idle_timeout),
            OptionKey::HalfClosedTimeout => duration(self.half_closed_timeout),
            OptionKey::ClientFinTimeout => duration(self.client_fin_timeout),
            OptionKey::ServerFinTimeout => duration(self.server_fin_timeout),
            OptionKey::Strategy => self.strategy.map(|s| s.to_string()),
            OptionKey::Attempts => count(self.attempts),
            OptionKey::MaxConns => count(self.max_conns),
            OptionKey::QueueTimeout => duration(self.queue_timeout),
            OptionKey::MaxFails => count(self.max_fails),
            OptionKey::FailTimeout => duration(self.fail_timeout),
            OptionKey::Check => switch(self.check, "tcp"),
            OptionKey::CheckInterval => duration(self.check_interval),
            OptionKey::CheckTimeout => duration(self.check_timeout),
            OptionKey::Rise => count(self.rise),
            OptionKey::Fall => count(self.fall),
            OptionKey::CheckSend => self.check_send.as_deref().map(escape),
            OptionKey::CheckExpect => self.check_expect.as_deref().map(escape),
            OptionKey::CheckSendProxy => switch(self.check_send_proxy, "on"),
            OptionKey::Mode => self.mode.map(|m| m.to_string()),
            OptionKey::Reply => self.reply.map(|r| r.to_string()),
            OptionKey::MaxLag => self.max_lag.map(|bytes| format_size(bytes as u64)),
            OptionKey::MaxRateUp => self.max_rate_up.map(format_size),
            OptionKey::MaxRateDown => self.max_rate_down.map(format_size),
            OptionKey::MaxTunnelRateUp => self.max_tunnel_rate_up.map(format_size),
            OptionKey::MaxTunnelRateDown => self.max_tunnel_rate_down.map(format_size),
            OptionKey::TlsCert => self.tls_cert.as_deref().map(escape),
            OptionKey::TlsKey => self.tls_key.as_deref().map(escape),
            OptionKey::TlsAlpn => self.tls_alpn.as_deref().map(escape),
            OptionKey::TlsMinVersion => self.tls_min_version.map(|v| v.to_string()),
            OptionKey::TlsHandshakeTimeout => duration(self.tls_handshake_timeout),
            OptionKey::TlsClientCa => self.tls_client_ca.as_deref().map(escape),
            OptionKey::TlsClientAuth => self.tls_client_auth.map(|a| a.to_string()),
            OptionKey::BackendTls => switch(self.backend_tls, "on"),
            OptionKey::TlsCa => self.tls_ca.as_deref().map(escape),
            OptionKey::TlsServerName => self.tls_server_name.as_deref().map(escape),
            OptionKey::TlsVerify => switch(self.tls_verify, "on"),
            OptionKey::BackendTlsCert => self.backend_tls_cert.as_deref().map(escape),
            OptionKey::BackendTlsKey => self.backend_tls_key.as_deref().map(escape),
            OptionKey::MinLive => count(self.min_live),
            OptionKey::Splice => switch(self.splice, "on"),
            OptionKey::AcceptProxy => self.accept_proxy.map(|a| a.to_string()),
            OptionKey::ProxyTimeout => duration(self.proxy_timeout),
            OptionKey::SendProxy => self.send_proxy.map(|v| v.to_string()),
            OptionKey::ProxyFrom => self.proxy_from.as_ref().map(ToString::to_string),
            OptionKey::Allow => self.allow.as_ref().map(ToString::to_string),
            OptionKey::Deny => self.deny.as_ref().map(ToString::to_string),
            OptionKey::SniRoutes => self.sni_routes.as_ref().map(ToString::to_string),
            OptionKey::CheckTls => switch(self.check_tls, "on"),
            OptionKey::MaxConnsPerClient => count(self.max_conns_per_client),
            OptionKey::RatePerClient => count(self.rate_per_client),
            OptionKey::RateBurst => count(self.rate_burst),
            OptionKey::ClientIpv6Prefix => count(self.client_ipv6_prefix),
        }
    }
}

/// Writes `\`, CR, LF and tab as the escapes [`TunnelOptions::set`] reads.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            // What would end the value, or nest it, in a SPEC.
            ',' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}
