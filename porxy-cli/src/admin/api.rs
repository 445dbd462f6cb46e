//! What each endpoint does: the routing table read and replaced through the [`Reloader`]
//! (all or nothing, as a reload), backends changed and the proxy reloaded or stopped through
//! the same typed commands the control socket runs ([`execute`]), status read from the handle.
//! The answer is an HTTP [`Response`]; a stop is begun by the session once it is sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use porxy_core::units::parse_duration;
use porxy_core::{Endpoint as Address, ProxyHandle, Remote};
use serde_json::{json, Value};

use super::http::{HttpError, Response};
use super::json::{outcome, status};
use super::router::Endpoint;
use super::rpc::codes;
use crate::control::command::{BackendAction, Command};
use crate::control::execute::{execute, Context};
use crate::control::outcome::{AdminError, Outcome};
use crate::error::chain;
use crate::named_tunnel::NamedTunnel;
use crate::route_table::{lift, show};

/// What the endpoints act on.
#[derive(Clone)]
pub struct Api {
    pub handle: ProxyHandle,
    pub ctx: Context,
    /// Set once every tunnel of the start listens (`/readyz`).
    pub started: Arc<AtomicBool>,
}

/// An answer, and whether a graceful stop begins once it is sent.
pub struct Answer {
    pub response: Response,
    pub then_stop: bool,
}

impl From<Response> for Answer {
    fn from(response: Response) -> Self {
        Answer {
            response,
            then_stop: false,
        }
    }
}

impl Api {
    /// Serves `endpoint` with the request's `body` (JSON, possibly empty).
    pub fn serve(&self, endpoint: Endpoint, body: &[u8]) -> Answer {
        match self.answer(endpoint, body) {
            Ok(answer) => answer,
            Err(error) => Response::error(&error).into(),
        }
    }

    /// What `endpoint` answers to `body`: a response, or the refusal.
    pub fn answer(&self, endpoint: Endpoint, body: &[u8]) -> Result<Answer, HttpError> {
        let ok = |value: Value| Ok(Response::json(200, &value).into());
        match endpoint {
            Endpoint::Healthz => ok(json!({ "status": "serving" })),
            Endpoint::Readyz => {
                let why = if self.handle.is_stopping() {
                    Some("stopping")
                } else if !self.started.load(Ordering::Acquire) {
                    Some("starting")
                } else {
                    None
                };
                match why {
                    None => ok(json!({ "ready": true })),
                    Some(why) => {
                        Ok(Response::json(503, &json!({ "ready": false, "why": why })).into())
                    }
                }
            }
            Endpoint::Status => {
                let names = self.ctx.reloader.names();
                let snapshot = self.handle.status();
                let mut body = status::status(&snapshot, |t| {
                    names
                        .get(&t.local)
                        .cloned()
                        .unwrap_or_else(|| t.local.to_string())
                });
                body["access_log"] = status::access_log(self.ctx.reloader.access_log.counts());
                ok(body)
            }
            Endpoint::Metrics => {
                let names = self.ctx.reloader.names();
                let snapshot = self.handle.status();
                let name_of = |t: &porxy_core::TunnelStatus| {
                    names
                        .get(&t.local)
                        .cloned()
                        .unwrap_or_else(|| t.local.to_string())
                };
                let reloader = &self.ctx.reloader;
                let access = reloader.access_log.counts();
                let text = crate::metrics::scrape(&snapshot, &reloader.counts, access, &name_of);
                Ok(Response {
                    status: 200,
                    headers: vec![(
                        "Content-Type",
                        crate::metrics::exposition::CONTENT_TYPE.into(),
                    )],
                    body: text.into_bytes(),
                }
                .into())
            }
            Endpoint::ListRoutes => {
                let running = self.ctx.reloader.running();
                ok(show::routes(&running, &self.handle.status().tunnels))
            }
            Endpoint::GetRoute(name) => {
                let running = self.ctx.reloader.running();
                let tunnel = find(&running, &name)?;
                let statuses = self.handle.status().tunnels;
                let status = statuses
                    .iter()
                    .find(|s| s.local.to_string() == tunnel.spec.local.to_string());
                ok(show::route(tunnel, status))
            }
            Endpoint::ReplaceRoutes => {
                let tunnels = lift::routes(&json_body(body)?).map_err(lift_error)?;
                self.apply(tunnels)
            }
            Endpoint::PutRoute(name) => {
                let tunnel =
                    lift::route(&json_body(body)?, "route", Some(&name)).map_err(lift_error)?;
                let mut tunnels = self.ctx.reloader.running();
                match tunnels.iter_mut().find(|t| t.name == name) {
                    Some(place) => *place = tunnel,
                    None => tunnels.push(tunnel),
                }
                self.apply(tunnels)
            }
            Endpoint::DeleteRoute(name) => {
                let mut tunnels = self.ctx.reloader.running();
                find(&tunnels, &name)?;
                tunnels.retain(|t| t.name != name);
                self.apply(tunnels)
            }
            Endpoint::AddBackend(name) => {
                let local = self.local_of(&name)?;
                let remote = lift::remote(&json_body(body)?, "backend").map_err(lift_error)?;
                self.run(Command::Backend {
                    local,
                    remote,
                    action: BackendAction::Add,
                })
            }
            Endpoint::ChangeBackend { route, backend } => {
                let local = self.local_of(&route)?;
                let remote = backend_address(&backend)?;
                let action = backend_action(&json_body(body)?)?;
                self.run(Command::Backend {
                    local,
                    remote,
                    action,
                })
            }
            Endpoint::RemoveBackend { route, backend } => {
                let local = self.local_of(&route)?;
                let remote = backend_address(&backend)?;
                let deadline = match body.is_empty() {
                    true => None,
                    false => deadline(&json_body(body)?)?,
                };
                self.run(Command::Backend {
                    local,
                    remote,
                    action: BackendAction::Remove { deadline },
                })
            }
            Endpoint::Reload => self.run(Command::Reload { force: false }),
            Endpoint::Stop => {
                let mut answer = self.run(Command::Stop)?;
                answer.response.status = 202;
                answer.then_stop = true;
                Ok(answer)
            }
        }
    }

    /// Makes the running tunnels exactly `tunnels`; the reload report.
    fn apply(&self, tunnels: Vec<NamedTunnel>) -> Result<Answer, HttpError> {
        let report = self
            .ctx
            .reloader
            .apply(tunnels)
            .map_err(|e| admin_error(&AdminError::ReloadRefused(e)))?;
        Ok(Response::json(200, &outcome::reload_report(&report)).into())
    }

    /// Runs a control command; its outcome as JSON.
    fn run(&self, command: Command) -> Result<Answer, HttpError> {
        let done: Outcome =
            execute(command, &self.handle, &self.ctx).map_err(|e| admin_error(&e))?;
        Ok(Response::json(200, &outcome::outcome(&done)).into())
    }

    /// The listen address of the route called `name`.
    fn local_of(&self, name: &str) -> Result<Address, HttpError> {
        let running = self.ctx.reloader.running();
        Ok(find(&running, name)?.spec.local.clone())
    }
}

fn find<'a>(tunnels: &'a [NamedTunnel], name: &str) -> Result<&'a NamedTunnel, HttpError> {
    tunnels.iter().find(|t| t.name == name).ok_or_else(|| {
        HttpError::new(404, format!("no route named `{name}`")).with_kind(codes::NO_SUCH_TUNNEL)
    })
}

fn json_body(body: &[u8]) -> Result<Value, HttpError> {
    if body.is_empty() {
        return Err(HttpError::new(400, "the request needs a JSON body"));
    }
    serde_json::from_slice(body).map_err(|e| HttpError::new(400, format!("not JSON: {e}")))
}

fn lift_error(error: lift::LiftError) -> HttpError {
    HttpError::new(400, error.to_string())
}

fn admin_error(error: &AdminError) -> HttpError {
    HttpError::new(outcome::status_of(error), chain(error)).with_kind(codes::of_admin(error))
}

fn backend_address(text: &str) -> Result<Remote, HttpError> {
    text.parse::<Address>()
        .map(Remote::from)
        .map_err(|e| HttpError::new(400, format!("backend `{text}`: {}", e.message())))
}

/// `{"state": "drain" | "disable" | "enable" | "remove", "deadline": "30s"}`.
fn backend_action(body: &Value) -> Result<BackendAction, HttpError> {
    let bad = |message: String| HttpError::new(400, message);
    let object = body
        .as_object()
        .ok_or_else(|| bad("the body must be an object: {\"state\": \"drain\"}".into()))?;
    if let Some(key) = object
        .keys()
        .find(|k| !["state", "deadline"].contains(&k.as_str()))
    {
        return Err(bad(format!("{key}: unknown key; known: state, deadline")));
    }
    let state = object
        .get("state")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("state: missing; one of drain, disable, enable, remove".into()))?;
    let action = match state {
        "drain" => BackendAction::Drain,
        "disable" => BackendAction::Disable,
        "enable" => BackendAction::Enable,
        "remove" => BackendAction::Remove {
            deadline: deadline(body)?,
        },
        other => {
            return Err(bad(format!(
                "state: `{other}` is not one of drain, disable, enable, remove"
            )))
        }
    };
    if object.contains_key("deadline") && !matches!(action, BackendAction::Remove { .. }) {
        return Err(bad("deadline: applies only with state remove".into()));
    }
    Ok(action)
}

/// An optional `deadline` (`"30s"`, `"now"`).
fn deadline(body: &Value) -> Result<Option<std::time::Duration>, HttpError> {
    match body.get("deadline") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("now") => {
            Ok(Some(std::time::Duration::ZERO))
        }
        Some(Value::String(text)) => parse_duration(text)
            .map(Some)
            .map_err(|e| HttpError::new(400, format!("deadline: {e}"))),
        Some(_) => Err(HttpError::new(
            400,
            "deadline: must be a duration like \"30s\"",
        )),
    }
}
