//! Reading routes from JSON (`PUT /routes`, `PUT /routes/{name}`): each checked as the config
//! file's listeners are, every error naming the field it is about (`routes[2].remotes[0].
//! address: ...`). The shape is [`super::show`]'s; `state` is read-only and ignored.
//!
//! Option values are given as a SPEC writes them (`"5s"`, `"on"`), or as JSON numbers,
//! booleans and arrays of strings (a list, as TOML writes networks and protocols); `sni_routes`
//! may also be an object of names to remote addresses.

use std::fmt;

use porxy_core::{Endpoint, OptionKey, Remote, SendProxy, TunnelOptions, TunnelSpec, MAX_WEIGHT};
use serde_json::{Map, Value};

use crate::named_tunnel::NamedTunnel;

/// A field of the body that cannot be taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiftError {
    /// Where, as a path into the body (`routes[1].options.strategy`).
    pub path: String,
    pub message: String,
}

impl fmt::Display for LiftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn fail<T>(path: &str, message: impl Into<String>) -> Result<T, LiftError> {
    Err(LiftError {
        path: path.to_string(),
        message: message.into(),
    })
}

const ROUTE_KEYS: &[&str] = &["name", "listen", "mode", "strategy", "remotes", "options"];
const REMOTE_KEYS: &[&str] = &[
    "address",
    "weight",
    "max_conns",
    "send_proxy",
    "state",
    "tls",
    "tls_ca",
    "tls_server_name",
    "tls_verify",
    "tls_alpn",
    "tls_cert",
    "tls_key",
];

/// The whole table: `{"routes": [...]}`; no two routes with one name.
pub fn routes(body: &Value) -> Result<Vec<NamedTunnel>, LiftError> {
    let object = as_object(body, "body")?;
    known_keys(object, &["routes"], "body")?;
    let Some(list) = object.get("routes") else {
        return fail(
            "body",
            "no `routes`: give the whole table, `{\"routes\": [...]}`",
        );
    };
    let Value::Array(list) = list else {
        return fail("routes", "must be an array of routes");
    };
    let mut tunnels: Vec<NamedTunnel> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let path = format!("routes[{i}]");
        let tunnel = route(item, &path, None)?;
        if let Some(first) = tunnels.iter().position(|t| t.name == tunnel.name) {
            return fail(
                &format!("{path}.name"),
                format!("`{}` is the name of routes[{first}] too", tunnel.name),
            );
        }
        tunnels.push(tunnel);
    }
    Ok(tunnels)
}

/// One route at `path`; `named` is the name the URL gives it (the body may repeat it, or
/// leave it out).
pub fn route(item: &Value, path: &str, named: Option<&str>) -> Result<NamedTunnel, LiftError> {
    let object = as_object(item, path)?;
    known_keys(object, ROUTE_KEYS, path)?;
    let at = |key: &str| format!("{path}.{key}");
    let name = match (object.get("name"), named) {
        (Some(given), Some(url)) => {
            let given = as_str(given, &at("name"))?;
            if given != url {
                return fail(
                    &at("name"),
                    format!("`{given}` differs from the URL's `{url}`"),
                );
            }
            given.to_string()
        }
        (Some(given), None) => as_str(given, &at("name"))?.to_string(),
        (None, Some(url)) => url.to_string(),
        (None, None) => return fail(&at("name"), "missing"),
    };
    // Letters, digits, `_` and `-` as in the config file; `.`, `:` and brackets too, so that
    // a route may be named by its address (as one opened unnamed is).
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:[]".contains(&b))
    {
        return fail(
            &at("name"),
            "a route name may use only letters, digits, `_`, `-`, `.`, `:` and brackets",
        );
    }
    let Some(listen) = object.get("listen") else {
        return fail(&at("listen"), "missing: the address to listen on");
    };
    let local: Endpoint = as_str(listen, &at("listen"))?
        .parse()
        .or_else(|e: porxy_core::SpecError| fail(&at("listen"), e.message()))?;
    let Some(Value::Array(items)) = object.get("remotes") else {
        return fail(&at("remotes"), "missing: an array of backends");
    };
    if items.is_empty() {
        return fail(&at("remotes"), "empty: give at least one backend");
    }
    let remotes = items
        .iter()
        .enumerate()
        .map(|(j, item)| remote(item, &format!("{path}.remotes[{j}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut options = TunnelOptions::default();
    if let Some(given) = object.get("options") {
        let given = as_object(given, &at("options"))?;
        for (key, value) in given {
            let path = format!("{path}.options.{key}");
            set_option(&mut options, key, value, &path)?;
        }
    }
    for key in ["mode", "strategy"] {
        if let Some(value) = object.get(key) {
            if options.pairs().iter().any(|(k, _)| k.as_str() == key) {
                return fail(&at(key), "given here and in `options`: give it once");
            }
            set_option(&mut options, key, value, &at(key))?;
        }
    }
    let spec = TunnelSpec::new(local, remotes).with_options(options);
    if let Err(conflict) = spec.check() {
        return fail(path, conflict.to_string());
    }
    Ok(NamedTunnel {
        name,
        remote_origins: (0..spec.remotes.len())
            .map(|j| format!("{path}.remotes[{j}]"))
            .collect(),
        local_origin: at("listen"),
        spec,
    })
}

/// One backend.
pub fn remote(item: &Value, path: &str) -> Result<Remote, LiftError> {
    let object = as_object(item, path)?;
    known_keys(object, REMOTE_KEYS, path)?;
    let at = |key: &str| format!("{path}.{key}");
    let Some(address) = object.get("address") else {
        return fail(&at("address"), "missing");
    };
    let endpoint: Endpoint = as_str(address, &at("address"))?
        .parse()
        .or_else(|e: porxy_core::SpecError| fail(&at("address"), e.message()))?;
    if let Some(fault) = endpoint.remote_fault() {
        return fail(&at("address"), fault.to_string());
    }
    let mut remote = Remote::from(endpoint);
    if let Some(weight) = object.get("weight") {
        remote.weight = count(weight, 1, u64::from(MAX_WEIGHT), &at("weight"))? as u32;
    }
    match object.get("max_conns") {
        None | Some(Value::Null) => {}
        Some(max) => remote.max_conns = Some(count(max, 1, 10_000_000, &at("max_conns"))? as u32),
    }
    match object.get("send_proxy") {
        None | Some(Value::Null) => {}
        Some(version) => {
            let text = as_str(version, &at("send_proxy"))?;
            let parsed = text.parse::<SendProxy>();
            remote.send_proxy = Some(parsed.or_else(|e| fail(&at("send_proxy"), e.to_string()))?);
        }
    }
    let tls = &mut remote.tls;
    tls.enabled = flag(object, "tls", path)?;
    tls.verify = flag(object, "tls_verify", path)?;
    tls.ca = text(object, "tls_ca", path)?;
    tls.server_name = text(object, "tls_server_name", path)?;
    tls.cert = text(object, "tls_cert", path)?;
    tls.key = text(object, "tls_key", path)?;
    tls.alpn = match object.get("tls_alpn") {
        None | Some(Value::Null) => None,
        Some(value) => Some(list(value, &at("tls_alpn"))?),
    };
    Ok(remote)
}

/// Sets option `key` from its JSON value.
fn set_option(
    options: &mut TunnelOptions,
    key: &str,
    value: &Value,
    path: &str,
) -> Result<(), LiftError> {
    let option: OptionKey = key.parse().or_else(|e| fail(path, format!("{e}")))?;
    let text = match value {
        Value::Null => return Ok(()),
        Value::String(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(on) => if *on { "on" } else { "off" }.to_string(),
        Value::Array(_) => list(value, path)?,
        Value::Object(routes) if option == OptionKey::SniRoutes => {
            let mut parts = Vec::new();
            for (name, to) in routes {
                let to = list(to, &format!("{path}.{name}"))?.replace(';', "|");
                parts.push(format!("{name}>{to}"));
            }
            parts.join(";")
        }
        Value::Object(_) => return fail(path, "takes a string, a number, a boolean or a list"),
    };
    options
        .set(option, &text)
        .or_else(|e| fail(path, e.kind().to_string()))
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, LiftError> {
    match value {
        Value::Object(object) => Ok(object),
        _ => fail(path, "must be an object"),
    }
}

fn as_str<'a>(value: &'a Value, path: &str) -> Result<&'a str, LiftError> {
    match value {
        Value::String(text) => Ok(text),
        _ => fail(path, "must be a string"),
    }
}

/// Refuses a key not in `known`, naming those that are.
fn known_keys(object: &Map<String, Value>, known: &[&str], path: &str) -> Result<(), LiftError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => fail(
            &format!("{path}.{key}"),
            format!("unknown key; known: {}", known.join(", ")),
        ),
        None => Ok(()),
    }
}

/// A whole number in `min..=max`.
fn count(value: &Value, min: u64, max: u64, path: &str) -> Result<u64, LiftError> {
    match value.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => fail(path, format!("must be a whole number from {min} to {max}")),
    }
}

/// An optional boolean field.
fn flag(object: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, LiftError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(on)) => Ok(Some(*on)),
        Some(_) => fail(&format!("{path}.{key}"), "must be true or false"),
    }
}

/// An optional string field.
fn text(object: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, LiftError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => as_str(value, &format!("{path}.{key}")).map(|t| Some(t.to_string())),
    }
}

/// A list of strings (or one string of `;`-separated items), as `;`-separated text.
fn list(value: &Value, path: &str) -> Result<String, LiftError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Array(items) => items
            .iter()
            .map(|item| as_str(item, path).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()
            .map(|items| items.join(";")),
        _ => fail(path, "must be a list of strings"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    /// Any JSON: scalars, and arrays and objects of them, keys drawn from the real ones too.
    fn any_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("routes".to_string()),
            Just("name".to_string()),
            Just("listen".to_string()),
            Just("remotes".to_string()),
            Just("address".to_string()),
            Just("options".to_string()),
            Just("weight".to_string()),
            Just("strategy".to_string()),
            "[a-z_]{1,12}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[ -~]{0,24}".prop_map(Value::from),
            Just(json!("127.0.0.1:7000")),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(key.clone(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any body: routes, or a refusal naming a place and saying what; never a panic.
        #[test]
        fn any_json_lifts_or_says_where_and_what(body in any_json()) {
            match routes(&body) {
                Ok(tunnels) => prop_assert!(tunnels.iter().all(|t| !t.name.is_empty())),
                Err(error) => {
                    prop_assert!(!error.path.is_empty());
                    prop_assert!(!error.message.is_empty());
                }
            }
        }
    }

    #[test]
    fn a_good_route_lifts_to_its_spec() {
        let body = json!({"routes": [{
            "name": "web", "listen": "127.0.0.1:0", "strategy": "first",
            "remotes": [{"address": "127.0.0.1:7000", "weight": 3, "max_conns": 10}],
            "options": {"allow": ["10.0.0.0/8", "127.0.0.1"], "check": true, "rise": 2,
                        "sni_routes": {"a.test": ["127.0.0.1:7000"]}},
        }]});
        let tunnels = routes(&body).unwrap();
        assert_eq!(
            tunnels[0].spec.to_string(),
            "127.0.0.1:0=127.0.0.1:7000*3[strategy=first,check=tcp,rise=2,allow=10.0.0.0/8;127.0.0.1,sni_routes=a.test>127.0.0.1:7000]"
        );
        assert_eq!(tunnels[0].spec.remotes[0].max_conns, Some(10));
    }
}
