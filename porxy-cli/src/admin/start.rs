//! Starting the admin front ends (the HTTP endpoint, the JSON-RPC socket, the metrics-only
//! listener): binding their
//! addresses (waiting up to `--bind-wait` for one an old porxy still holds) and serving them
//! with the API, the shared clients register and the stopper that closes them on a stop.
//!
//! In a takeover they are bound once the predecessor has confirmed it stops: it closes its own
//! then (they are not data path, so they are not handed over like the listeners).

use std::sync::Arc;
use std::time::Duration;

use super::api::Api;
use super::http::Limits;
use super::plan::{AdminPlan, DEFAULT_MAX_BODY, REQUEST_TIMEOUT};
use super::rpc::socket::{self as rpc_socket, RpcSettings};
use super::session::Settings;
use crate::clients::listener;
use crate::clients::{self, BoundAddr, ListenAddr, ListenSocket, Register};
use crate::error::CliError;
use crate::stopping::Stopper;

/// How long a takeover's successor waits at least for its predecessor to free the addresses.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// The front ends' sockets, bound and not yet served.
pub(crate) struct Sockets {
    admin: Option<(ListenSocket, BoundAddr)>,
    rpc: Option<(ListenSocket, BoundAddr)>,
    metrics: Option<(ListenSocket, BoundAddr)>,
}

/// The addresses the front ends are bound to, for the READY line.
#[derive(Default)]
pub(crate) struct Bound {
    pub(crate) admin: Option<BoundAddr>,
    pub(crate) rpc: Option<BoundAddr>,
    pub(crate) metrics: Option<BoundAddr>,
}

/// The metrics-only listener's name in errors and logs.
const METRICS_ROLE: &str = "metrics listener";

/// Binds what `admin`, `rpc` and `metrics` ask for, waiting up to `wait` for an address in
/// use (at least [`TAKEOVER_WAIT`] in a takeover).
pub(crate) fn bind(
    admin: Option<&AdminPlan>,
    rpc: Option<&ListenAddr>,
    metrics: Option<&ListenAddr>,
    wait: Duration,
    takeover: bool,
) -> Result<Sockets, CliError> {
    let wait = if takeover {
        wait.max(TAKEOVER_WAIT)
    } else {
        wait
    };
    let listen = |e| CliError::Listen(Box::new(e));
    Ok(Sockets {
        admin: admin
            .map(|admin| super::bind(&admin.addr, wait).map_err(listen))
            .transpose()?,
        rpc: rpc
            .map(|addr| rpc_socket::bind(addr, wait).map_err(listen))
            .transpose()?,
        metrics: metrics
            .map(|addr| super::server::bind_as(addr, METRICS_ROLE, wait).map_err(listen))
            .transpose()?,
    })
}

/// Serves the bound sockets; their addresses, for the READY line.
pub(crate) fn serve(
    sockets: Sockets,
    admin: Option<&AdminPlan>,
    api: Api,
    register: Arc<Register>,
    stopper: &Stopper,
) -> Result<Bound, CliError> {
    let listen = |e| CliError::Listen(Box::new(e));
    let limits = admin.map_or(
        Limits {
            max_body: DEFAULT_MAX_BODY,
            request_timeout: REQUEST_TIMEOUT,
        },
        |admin| admin.limits,
    );
    let idle_timeout = admin.map_or(clients::DEFAULT_IDLE_TIMEOUT, |admin| admin.idle_timeout);
    let deadlines = clients::Deadlines::new(idle_timeout);
    let rpc = match sockets.rpc {
        Some((socket, bound)) => {
            let settings = RpcSettings {
                api: api.clone(),
                max_line: limits.max_body,
                deadlines,
                register: register.clone(),
            };
            stopper.add_front(rpc_socket::serve(socket, bound.clone(), settings).map_err(listen)?);
            Some(bound)
        }
        None => None,
    };
    let settings = Settings {
        api,
        token: admin.and_then(|admin| admin.token.clone()),
        limits,
        deadlines,
        register,
        only_metrics: false,
    };
    let metrics = match sockets.metrics {
        Some((socket, bound)) => {
            // Read-only: no token asked of scrapers.
            let settings = Settings {
                token: None,
                only_metrics: true,
                ..settings.clone()
            };
            let closer = listener::serve(socket, bound.clone(), METRICS_ROLE, settings);
            stopper.add_front(closer.map_err(listen)?);
            Some(bound)
        }
        None => None,
    };
    let http = match (sockets.admin, admin) {
        (Some((socket, bound)), Some(_)) => {
            stopper.add_front(super::serve(socket, bound.clone(), settings).map_err(listen)?);
            Some(bound)
        }
        _ => None,
    };
    Ok(Bound {
        admin: http,
        rpc,
        metrics,
    })
}
