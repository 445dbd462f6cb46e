//! The routing table as JSON (`GET /routes`, `GET /routes/{name}`): one object per tunnel,
//! shaped as the config file's listener and backend tables are, field for field, so that what
//! `GET` gives can be `PUT` back ([`super::lift`] reads it).
//!
//! ```json
//! {"routes": [{
//!   "name": "web", "listen": "127.0.0.1:8000", "mode": "balance", "strategy": "round_robin",
//!   "remotes": [{"address": "127.0.0.1:7000", "weight": 1, "max_conns": null, "state": "up"}],
//!   "options": {"connect_timeout": "2s"}
//! }]}
//! ```
//!
//! `options` holds the options set, by their SPEC names, each value as a SPEC writes it
//! (`mode` and `strategy` are given beside them, with their defaults). `state` is the
//! backend's state now; it is read-only.

use porxy_core::{OptionKey, Remote, TunnelStatus};
use serde_json::{json, Map, Value};

use crate::named_tunnel::NamedTunnel;

/// Every tunnel of `tunnels`, with its backends' states from `statuses` (same order).
pub fn routes(tunnels: &[NamedTunnel], statuses: &[TunnelStatus]) -> Value {
    let routes: Vec<Value> = tunnels
        .iter()
        .map(|tunnel| {
            let status = statuses
                .iter()
                .find(|s| tunnel.spec.local.to_string() == s.local.to_string());
            route(tunnel, status)
        })
        .collect();
    json!({ "routes": routes })
}

/// One tunnel.
pub fn route(tunnel: &NamedTunnel, status: Option<&TunnelStatus>) -> Value {
    let spec = &tunnel.spec;
    let mut options = Map::new();
    for (key, text) in spec.options.pairs() {
        if !matches!(key, OptionKey::Mode | OptionKey::Strategy) {
            options.insert(key.as_str().into(), Value::String(text));
        }
    }
    let remotes: Vec<Value> = spec
        .remotes
        .iter()
        .map(|remote| {
            let state = status.and_then(|s| {
                s.backends
                    .iter()
                    .find(|b| remote.endpoint.to_string() == b.addr.to_string())
                    .map(|b| b.state.to_string())
            });
            self::remote(remote, state)
        })
        .collect();
    json!({
        "name": tunnel.name,
        "listen": spec.local.to_string(),
        "mode": spec.options.mode.unwrap_or_default().to_string(),
        "strategy": spec.options.strategy.unwrap_or_default().to_string(),
        "remotes": remotes,
        "options": options,
    })
}

/// One backend, with its own settings where it has them.
fn remote(remote: &Remote, state: Option<String>) -> Value {
    let mut out = Map::new();
    out.insert("address".into(), remote.endpoint.to_string().into());
    out.insert("weight".into(), remote.weight.into());
    out.insert("max_conns".into(), remote.max_conns.into());
    if let Some(version) = remote.send_proxy {
        out.insert("send_proxy".into(), version.to_string().into());
    }
    let tls = &remote.tls;
    if let Some(on) = tls.enabled {
        out.insert("tls".into(), on.into());
    }
    let texts = [
        ("tls_ca", &tls.ca),
        ("tls_server_name", &tls.server_name),
        ("tls_cert", &tls.cert),
        ("tls_key", &tls.key),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            out.insert(key.into(), value.clone().into());
        }
    }
    if let Some(on) = tls.verify {
        out.insert("tls_verify".into(), on.into());
    }
    if let Some(alpn) = &tls.alpn {
        let list: Vec<&str> = alpn.split(';').filter(|p| !p.is_empty()).collect();
        out.insert("tls_alpn".into(), list.into());
    }
    if let Some(state) = state {
        out.insert("state".into(), state.into());
    }
    Value::Object(out)
}
