//! The JSON-RPC methods, each one of the admin API's endpoints: `status`, `routes.list`,
//! `routes.get`, `routes.replace`, `tunnel.open`, `tunnel.close`, `backend.add`,
//! `backend.remove`, `backend.drain`, `backend.enable`, `backend.disable`, `reload`, `stop`;
//! and, for clients of the design porxy comes from, its camelCase names: `listTunnels`,
//! `numberOfTunnels`, `tunnelInfo`, `openTunnel`, `closeTunnel`, `addRemote`, `removeRemote`.
//!
//! A route is named by its name or its listen address. A method's result is what its
//! endpoint's body would be; its refusal carries porxy's own code ([`super::codes`]), or
//! `-32602` for params that do not fit, naming the param.

use std::cell::Cell;

use serde_json::{json, Value};

use super::codes;
use super::protocol::{Call, Params, RpcError, INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND};
use crate::admin::api::Api;
use crate::admin::http::HttpError;
use crate::admin::router::Endpoint;

/// The methods, over `api`; `stop` is set when a stop is to begin once the answer is sent.
pub struct Methods<'a> {
    pub api: &'a Api,
    pub stop: &'a Cell<bool>,
}

impl Call for Methods<'_> {
    fn call(&self, method: &str, params: Params<'_>) -> Result<Value, RpcError> {
        match method {
            "status" => self.plain(&params, Endpoint::Status),
            "routes.list" => self.plain(&params, Endpoint::ListRoutes),
            "listTunnels" => Ok(self.plain(&params, Endpoint::ListRoutes)?["routes"].take()),
            "numberOfTunnels" => {
                let routes = self.plain(&params, Endpoint::ListRoutes)?;
                Ok(routes["routes"].as_array().map_or(0, Vec::len).into())
            }
            "routes.get" | "tunnelInfo" => {
                let key = if method == "tunnelInfo" {
                    "tunnel"
                } else {
                    "name"
                };
                params.only(&[key])?;
                let name = self.route(&params, 0, key)?;
                self.run(Endpoint::GetRoute(name), &Value::Null)
            }
            "routes.replace" => {
                params.only(&["routes"])?;
                let routes = params.required(0, "routes")?;
                self.run(Endpoint::ReplaceRoutes, &json!({ "routes": routes }))
            }
            "tunnel.open" => {
                params.only(&["route"])?;
                let route = params.required(0, "route")?;
                let Some(name) = route.get("name").and_then(Value::as_str) else {
                    return Err(invalid("route.name: missing"));
                };
                self.run(Endpoint::PutRoute(name.to_string()), route)
            }
            "openTunnel" => {
                params.only(&["tunnel_socket", "remotes", "options"])?;
                let listen = text(params.required(0, "tunnel_socket")?, "tunnel_socket")?;
                let remotes = params.required(1, "remotes")?;
                let remotes: Vec<Value> = remotes
                    .as_array()
                    .ok_or_else(|| invalid("remotes: must be an array of addresses"))?
                    .iter()
                    .map(|r| match r {
                        Value::String(address) => json!({ "address": address }),
                        other => other.clone(),
                    })
                    .collect();
                let mut route = json!({ "name": listen, "listen": listen, "remotes": remotes });
                if let Some(options) = params.get(2, "options") {
                    route["options"] = options.clone();
                }
                self.run(Endpoint::PutRoute(listen.to_string()), &route)
            }
            "tunnel.close" | "closeTunnel" => {
                let key = if method == "closeTunnel" {
                    "tunnel_socket"
                } else {
                    "name"
                };
                params.only(&[key])?;
                let name = self.route(&params, 0, key)?;
                self.run(Endpoint::DeleteRoute(name), &Value::Null)
            }
            "backend.add" | "addRemote" => {
                let (route_key, backend_key) = match method {
                    "addRemote" => ("tunnel", "remote"),
                    _ => ("route", "backend"),
                };
                params.only(&[route_key, backend_key])?;
                let route = self.route(&params, 0, route_key)?;
                let backend = match params.required(1, backend_key)? {
                    Value::String(address) => json!({ "address": address }),
                    other => other.clone(),
                };
                self.run(Endpoint::AddBackend(route), &backend)
            }
            "backend.remove" | "removeRemote" => {
                let (route_key, backend_key) = match method {
                    "removeRemote" => ("tunnel", "remote"),
                    _ => ("route", "backend"),
                };
                params.only(&[route_key, backend_key, "deadline"])?;
                let route = self.route(&params, 0, route_key)?;
                let backend = text(params.required(1, backend_key)?, backend_key)?.to_string();
                let body = match params.get(2, "deadline") {
                    Some(deadline) => json!({ "deadline": deadline }),
                    None => Value::Null,
                };
                self.run(Endpoint::RemoveBackend { route, backend }, &body)
            }
            "backend.drain" | "backend.enable" | "backend.disable" => {
                params.only(&["route", "backend"])?;
                let route = self.route(&params, 0, "route")?;
                let backend = text(params.required(1, "backend")?, "backend")?.to_string();
                let state = method.trim_start_matches("backend.");
                self.run(
                    Endpoint::ChangeBackend { route, backend },
                    &json!({ "state": state }),
                )
            }
            "reload" => self.plain(&params, Endpoint::Reload),
            "stop" => {
                let result = self.plain(&params, Endpoint::Stop)?;
                self.stop.set(true);
                Ok(result)
            }
            other => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("no method `{other}`"),
            )),
        }
    }
}

impl Methods<'_> {
    /// A method without params.
    fn plain(&self, params: &Params<'_>, endpoint: Endpoint) -> Result<Value, RpcError> {
        params.only(&[])?;
        self.run(endpoint, &Value::Null)
    }

    /// Serves `endpoint` with `body` (none for null); the answer's body as the result.
    fn run(&self, endpoint: Endpoint, body: &Value) -> Result<Value, RpcError> {
        let bytes = match body {
            Value::Null => Vec::new(),
            body => body.to_string().into_bytes(),
        };
        match self.api.answer(endpoint, &bytes) {
            Ok(answer) => serde_json::from_slice(&answer.response.body)
                .map_err(|e| RpcError::new(INTERNAL_ERROR, e.to_string())),
            Err(error) => Err(refusal(error)),
        }
    }

    /// The name of the route param `key` names, by its name or its listen address.
    fn route(&self, params: &Params<'_>, index: usize, key: &str) -> Result<String, RpcError> {
        let given = text(params.required(index, key)?, key)?;
        let running = self.api.ctx.reloader.running();
        let by_address = running
            .iter()
            .find(|t| t.spec.local.to_string() == given)
            .map(|t| t.name.clone());
        Ok(match running.iter().any(|t| t.name == given) {
            true => given.to_string(),
            false => by_address.unwrap_or_else(|| given.to_string()),
        })
    }
}

/// An endpoint's refusal as a method's: porxy's code for its kind, or invalid params for a
/// body that did not fit (its message names the field).
fn refusal(error: HttpError) -> RpcError {
    let code = error.kind.unwrap_or(match error.status {
        400 => INVALID_PARAMS,
        404 => codes::NO_SUCH_TUNNEL,
        _ => INTERNAL_ERROR,
    });
    RpcError::new(code, error.message)
}

fn invalid(message: &str) -> RpcError {
    RpcError::new(INVALID_PARAMS, message)
}

fn text<'a>(value: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    value
        .as_str()
        .ok_or_else(|| RpcError::new(INVALID_PARAMS, format!("param `{name}` must be a string")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::rpc::protocol::INTERNAL_ERROR;

    /// An endpoint's refusal keeps porxy's own code; without one, a body that did not fit is
    /// invalid params, and a failure inside is the spec's internal error.
    #[test]
    fn refusals_keep_their_kind_or_take_the_specs_code() {
        let kinded = HttpError::new(409, "in use").with_kind(codes::PORT_IN_USE);
        assert_eq!(refusal(kinded), RpcError::new(codes::PORT_IN_USE, "in use"));
        let field = HttpError::new(400, "route.listen: missing");
        assert_eq!(refusal(field).code, INVALID_PARAMS);
        let inside = HttpError::new(500, "a thread died");
        assert_eq!(
            refusal(inside),
            RpcError::new(INTERNAL_ERROR, "a thread died")
        );
    }
}
