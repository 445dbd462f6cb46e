//! The plan of a run: the arguments and the configuration file lifted into one set of
//! validated settings (file settings, then command-line overrides), the tunnels in order (file
//! listeners in file order, then `--tunnel` ones, or the state file's in their place), and the
//! admin front ends asked for.

use std::time::Duration;

use porxy_core::ProxyConfig;

use crate::args::Args;
use crate::config_file::CONTROL_FLAG;
use crate::config_file::{self, Overrides};
use crate::error::CliError;
use crate::named_tunnel::NamedTunnel;
use crate::{admin, control, state_file};

/// How long a graceful stop waits for connections to finish when nothing else is said.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything needed to check or run: validated settings and the tunnels in order.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) config: ProxyConfig,
    pub(crate) drain_timeout: Duration,
    pub(crate) tunnels: Vec<NamedTunnel>,
    pub(crate) control: Option<crate::clients::ListenAddr>,
    /// Where the control address was written: `--control`, or its place in the file.
    pub(crate) control_origin: String,
    /// How long a control client may take to complete a line.
    pub(crate) control_idle_timeout: Duration,
    /// For reloads: the file, the command-line tunnels and overrides to apply again.
    pub(crate) config_path: Option<std::path::PathBuf>,
    pub(crate) cli_tunnels: Vec<NamedTunnel>,
    pub(crate) overrides: Overrides,
    /// `--upgrade-socket`, `--takeover`, `--leave-connections`, `--bind-wait`.
    pub(crate) upgrade_socket: Option<std::path::PathBuf>,
    pub(crate) takeover: Option<std::path::PathBuf>,
    pub(crate) leave_connections: bool,
    /// `--takeover-config-only`.
    pub(crate) takeover_config_only: bool,
    pub(crate) bind_wait: Duration,
    /// The HTTP admin endpoint, if asked for.
    pub(crate) admin: Option<admin::plan::AdminPlan>,
    /// The JSON-RPC socket, if asked for.
    pub(crate) rpc: Option<crate::clients::ListenAddr>,
    /// The metrics-only listener, if asked for.
    pub(crate) metrics: Option<crate::clients::ListenAddr>,
    /// Where runtime changes are kept, and the backend states the last run left there.
    pub(crate) state_file: Option<std::path::PathBuf>,
    pub(crate) saved_states: Vec<(String, String, porxy_core::BackendChange)>,
    /// Where connection records go.
    pub(crate) access_log: crate::access_log::Plan,
}

/// Lifts the arguments and the file into one plan: file settings, then command-line overrides;
/// file listeners in file order, then `--tunnel` ones.
pub(crate) fn plan(args: Args) -> Result<Plan, CliError> {
    let overrides = Overrides {
        reactors: args.reactors,
        max_connections: args.max_connections,
        max_accept_rate: args.max_accept_rate,
        accept: args.accept,
        control: args.control.clone(),
        control_idle_timeout: args.control_idle_timeout,
        busy_poll: args.busy_poll,
        reuse_port: args.reuse_port,
        access_log: args.access_log.clone(),
        access_log_format: args.access_log_format,
    };
    let (mut file_admin, mut file_state, mut file_metrics) = (None, None, None);
    let mut access_log = crate::access_log::Plan::default();
    if let Some(target) = &args.access_log {
        access_log.default.target = target.clone();
    }
    if let Some(format) = args.access_log_format {
        access_log.default.format = format;
    }
    let (config, file_drain, mut tunnels, control_settings) = match &args.config {
        Some(path) => {
            // The file's control settings come back with the flags' overrides applied.
            let file = config_file::load(path, &overrides)?;
            let control = (file.control, file.control_origin, file.control_idle_timeout);
            file_admin = file.admin;
            file_state = file.state_file;
            file_metrics = file.metrics;
            access_log = file.access_log;
            (file.proxy, file.drain_timeout, file.listeners, control)
        }
        None => {
            let mut config = ProxyConfig::default();
            if let Some(reactors) = args.reactors {
                config.reactors = reactors;
            }
            if let Some(max) = args.max_connections {
                config.max_connections = Some(max);
            }
            if let Some(rate) = args.max_accept_rate {
                config.max_accept_rate = Some(rate);
            }
            if let Some(accept) = args.accept {
                config.accept = accept;
            }
            if let Some(busy_poll) = args.busy_poll {
                config.busy_poll = busy_poll;
            }
            config.reuse_port = args.reuse_port;
            config.validate().map_err(|source| CliError::Setting {
                origin: match source {
                    porxy_core::Error::InvalidSetting {
                        name: "max_connections",
                        ..
                    } => "--max-connections".into(),
                    porxy_core::Error::InvalidSetting {
                        name: "max_accept_rate",
                        ..
                    } => "--max-accept-rate".into(),
                    porxy_core::Error::InvalidSetting {
                        name: "busy_poll", ..
                    } => "--busy-poll".into(),
                    _ => "--reactors".into(),
                },
                source,
            })?;
            (
                config,
                None,
                Vec::new(),
                (
                    args.control.clone(),
                    CONTROL_FLAG.to_string(),
                    args.control_idle_timeout,
                ),
            )
        }
    };
    for tunnel in &args.tunnels {
        if let Some(clash) = tunnels.iter().find(|t| t.name == tunnel.name) {
            return Err(CliError::NameClash {
                name: tunnel.name.clone(),
                origin: clash.local_origin.clone(),
            });
        }
    }
    let cli_tunnels = args.tunnels.clone();
    tunnels.extend(args.tunnels);
    // The routing table the last run kept replaces the configuration's.
    let state_file = args.state_file.clone().or(file_state);
    let mut saved_states = Vec::new();
    if let Some(saved) = state_file
        .as_deref()
        .map(state_file::load)
        .transpose()?
        .flatten()
    {
        tracing::info!(
            tunnels = saved.tunnels.len(),
            "starting from the state file"
        );
        tunnels = saved.tunnels;
        saved_states = saved.states;
    }
    let (control, control_origin, control_idle_timeout) = control_settings;
    let admin_flags = admin::plan::AdminFlags {
        addr: args.admin.clone(),
        token_file: args.admin_token_file.clone(),
        insecure: args.admin_insecure,
    };
    let rpc = admin::plan::rpc_plan(args.rpc.clone(), file_admin.as_ref(), args.admin_insecure)?;
    let admin = admin::plan::plan(admin_flags, file_admin)?;
    // With a control socket or an admin endpoint, tunnels can be opened later; without one
    // there is nothing to do.
    if tunnels.is_empty() && control.is_none() && admin.is_none() && rpc.is_none() {
        return Err(CliError::NothingToProxy);
    }
    Ok(Plan {
        config,
        drain_timeout: args
            .drain_timeout
            .or(file_drain)
            .unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        tunnels,
        control,
        control_origin,
        control_idle_timeout: control_idle_timeout.unwrap_or(control::DEFAULT_IDLE_TIMEOUT),
        config_path: args.config.clone(),
        cli_tunnels,
        overrides,
        upgrade_socket: args.upgrade_socket.clone(),
        takeover: args.takeover.clone(),
        leave_connections: args.leave_connections,
        takeover_config_only: args.takeover_config_only,
        bind_wait: args.bind_wait.unwrap_or_default(),
        admin,
        rpc,
        metrics: args.metrics.clone().or(file_metrics),
        state_file,
        saved_states,
        access_log,
    })
}
