//! `porxy`: the command-line front of porxy-core.
//!
//! A thin binary in the ripgrep manner: clap reads the raw arguments ([`args`]), the TOML file
//! is lifted into validated core types ([`config_file`]), and everything meets here in a
//! [`Plan`]: the proxy-wide settings and the named tunnels, in the order they were given. Then
//! the plan is either checked (`--check`) or run.
//!
//! Contract with scripts and tests: during a run, stdout carries exactly one line,
//! `READY pid=<pid> tunnel.<name>=<bound addr> ...`, printed and flushed once every tunnel
//! listens; logs go to stderr. Exit codes: 0 stopped with every connection drained (or handed
//! over to a successor), 1 a
//! configuration or start error (printed once as `porxy: error: ...`), 2 a usage error (clap),
//! 3 the stop cut open connections.

// Unsafe code lives in upgrade/: owning the descriptors a takeover receives, and asking the
// kernel who a peer of the upgrade socket is.
#![deny(unsafe_code)]

mod admin;
mod args;
mod clients;
mod config_file;
mod control;
mod error;
mod logging;
mod preflight;
mod ready;
mod reload;
mod signals;
mod socket_path;
mod start;
mod state_file;
mod stopping;
mod upgrade;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use porxy_core::{ProxyConfig, TunnelSpec};

use crate::args::{Args, Command};
use crate::config_file::Overrides;
use crate::error::CliError;
use crate::reload::Reloader;
use crate::stopping::Stopper;

/// Where a control address given as a flag was written, for messages.
pub(crate) const CONTROL_FLAG: &str = "--control";

/// How long a graceful stop waits for connections to finish when nothing else is said.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A tunnel with the name it is known by and where it was written down, for messages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NamedTunnel {
    /// `demo` for `[listeners.demo]`, `cli-1` for the first `--tunnel`.
    pub(crate) name: String,
    /// What to open.
    pub(crate) spec: TunnelSpec,
    /// Where the listen address was written: `porxy.toml:8:10: listeners.demo.listen`.
    pub(crate) local_origin: String,
    /// Where each remote address was written, in the order of `spec.remotes`.
    pub(crate) remote_origins: Vec<String>,
}

/// Everything needed to check or run: validated settings and the tunnels in order.
#[derive(Debug)]
struct Plan {
    config: ProxyConfig,
    drain_timeout: Duration,
    tunnels: Vec<NamedTunnel>,
    control: Option<crate::clients::ListenAddr>,
    /// Where the control address was written: `--control`, or its place in the file.
    control_origin: String,
    /// How long a control client may take to complete a line.
    control_idle_timeout: Duration,
    /// For reloads: the file, the command-line tunnels and overrides to apply again.
    config_path: Option<std::path::PathBuf>,
    cli_tunnels: Vec<NamedTunnel>,
    overrides: Overrides,
    /// `--upgrade-socket`, `--takeover`, `--leave-connections`, `--bind-wait`.
    upgrade_socket: Option<std::path::PathBuf>,
    takeover: Option<std::path::PathBuf>,
    leave_connections: bool,
    bind_wait: Duration,
    /// The HTTP admin endpoint, if asked for.
    admin: Option<admin::plan::AdminPlan>,
    /// The JSON-RPC socket, if asked for.
    rpc: Option<crate::clients::ListenAddr>,
    /// Where runtime changes are kept, and the backend states the last run left there.
    state_file: Option<std::path::PathBuf>,
    saved_states: Vec<(String, String, porxy_core::BackendChange)>,
}

/// How a run ended.
enum Outcome {
    /// `--check` or `--help-tunnel` finished.
    Done,
    /// The proxy stopped; this many connections were cut instead of finishing.
    Stopped { cut: u64 },
}

fn main() -> ExitCode {
    let command = match args::parse() {
        Ok(command) => command,
        Err(clap_error) => {
            // Help and version land here too, with exit code 0.
            let _ = clap_error.print();
            return ExitCode::from(u8::try_from(clap_error.exit_code()).unwrap_or(2));
        }
    };
    match command.and_then(run) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Stopped { cut: 0 }) => ExitCode::SUCCESS,
        Ok(Outcome::Stopped { .. }) => ExitCode::from(3),
        Err(err) => {
            error::report(&err);
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<Outcome, CliError> {
    let args = match command {
        Command::HelpTunnel => {
            print_stdout(&args::tunnel_help())?;
            return Ok(Outcome::Done);
        }
        Command::Run(args) => *args,
    };
    logging::init(&args.log)?;
    let check = args.check;
    let plan = plan(args)?;
    preflight::check_tunnels(&plan.tunnels)?;
    if let Some(control) = &plan.control {
        preflight::check_control(control, &plan.control_origin)?;
    }
    if let Some(path) = &plan.upgrade_socket {
        preflight::check_upgrade(path)?;
    }
    if let Some(admin) = &plan.admin {
        admin.check_exposure()?;
    }
    if check {
        let count = plan.tunnels.len();
        let noun = if count == 1 { "tunnel" } else { "tunnels" };
        print_stdout(&format!("config OK: {count} {noun}\n"))?;
        return Ok(Outcome::Done);
    }
    serve(plan)
}

/// Lifts the arguments and the file into one plan: file settings, then command-line overrides;
/// file listeners in file order, then `--tunnel` ones.
fn plan(args: Args) -> Result<Plan, CliError> {
    let overrides = Overrides {
        reactors: args.reactors,
        max_connections: args.max_connections,
        max_accept_rate: args.max_accept_rate,
        accept: args.accept,
        control: args.control.clone(),
        control_idle_timeout: args.control_idle_timeout,
        busy_poll: args.busy_poll,
    };
    let (mut file_admin, mut file_state) = (None, None);
    let (config, file_drain, mut tunnels, control_settings) = match &args.config {
        Some(path) => {
            // The file's control settings come back with the flags' overrides applied.
            let file = config_file::load(path, &overrides)?;
            let control = (file.control, file.control_origin, file.control_idle_timeout);
            file_admin = file.admin;
            file_state = file.state_file;
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
        bind_wait: args.bind_wait.unwrap_or_default(),
        admin,
        rpc,
        state_file,
        saved_states,
    })
}

/// Starts the proxy, announces it, and waits until a signal has stopped it.
fn serve(plan: Plan) -> Result<Outcome, CliError> {
    let stop_signals = signals::StopSignals::register().map_err(CliError::Signals)?;
    let mut takeover = match &plan.takeover {
        Some(path) => {
            let taken = upgrade::take_over(path).map_err(CliError::Upgrade)?;
            tracing::info!(
                sockets = taken.tunnels.len(),
                "took the listening sockets of the running porxy"
            );
            Some(taken)
        }
        None => None,
    };
    let (tunnels, inherited) = upgrade::inherit(&plan.tunnels, takeover.as_mut());
    // Everything that can fail is done before the proxy accepts anybody and before a takeover
    // is confirmed: a successor that fails leaves its predecessor serving, and resets nobody.
    let control_socket = match &plan.control {
        Some(addr) => {
            let inherited = takeover
                .as_mut()
                .and_then(|t| t.control.take())
                .filter(|(bound, _)| upgrade::control_matches(addr, bound));
            Some(match inherited {
                Some((bound, socket)) => (socket, bound),
                None => crate::clients::ListenSocket::bind(addr, control::ROLE)
                    .map_err(|e| CliError::Listen(Box::new(e)))?,
            })
        }
        None => None,
    };
    // In a takeover the predecessor holds them until it confirms: bound after that, below.
    let mut fronts = match takeover {
        None => Some(admin::start::bind(
            plan.admin.as_ref(),
            plan.rpc.as_ref(),
            plan.bind_wait,
            false,
        )?),
        Some(_) => None,
    };
    let upgrade_socket = match &plan.upgrade_socket {
        // Bound beside the predecessor's socket, to replace it, only when taking over from
        // the porxy at that very path: any other live socket is refused.
        Some(path) => {
            let replaces = plan.takeover.as_deref() == Some(path.as_path());
            Some(upgrade::UpgradeSocket::bind(path, replaces).map_err(CliError::Upgrade)?)
        }
        None => None,
    };
    let proxy = start::start(&plan, &tunnels, &inherited)?;
    drop(inherited);
    // From here on, dropping `proxy` (on an early return) stops it at once.
    let stopper = Stopper::new(proxy.handle(), plan.drain_timeout);
    let reloader = Arc::new(Reloader {
        handle: proxy.handle(),
        config_path: plan.config_path.clone(),
        cli_tunnels: plan.cli_tunnels.clone(),
        overrides: plan.overrides.clone(),
        control: plan.control.clone(),
        bound: Mutex::new(
            tunnels
                .iter()
                .map(|t| t.name.clone())
                .zip(proxy.bound().iter().copied())
                .collect(),
        ),
        state_file: plan.state_file.clone(),
    });
    let bound_of = reloader
        .bound
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    state_file::restore_states(&proxy.handle(), &plan.saved_states, |name| {
        bound_of.get(name).copied()
    });
    let watcher = stop_signals
        .watch(stopper.clone(), reloader.clone())
        .map_err(CliError::Signals)?;
    let ctx = control::Context {
        stopper: stopper.clone(),
        reloader: reloader.clone(),
    };
    // One bound on admin clients, whichever front end they use.
    let register = Arc::new(clients::Register::default());
    let control = match control_socket {
        Some((socket, bound)) => {
            let closer = control::serve(
                socket,
                bound.clone(),
                proxy.handle(),
                ctx.clone(),
                plan.control_idle_timeout,
                register.clone(),
            )
            .map_err(|e| CliError::Listen(Box::new(e)))?;
            stopper.set_control(closer);
            Some(bound)
        }
        None => None,
    };
    let started = Arc::new(AtomicBool::new(false));
    let api = admin::api::Api {
        handle: proxy.handle(),
        ctx,
        started: started.clone(),
    };

    // The point of no return for a takeover: the predecessor stops accepting.
    let mut unconfirmed = None;
    if let Some(taken) = takeover {
        match taken.confirm() {
            Ok(confirmed) => {
                tracing::info!("took over: the previous porxy stops accepting");
                // Before the READY line: a successor of this process finds every connection
                // here.
                if plan.leave_connections {
                    confirmed.leave_connections();
                } else {
                    confirmed.take_connections(&proxy.handle());
                }
            }
            Err(e) => {
                // The predecessor gave up waiting and carries on: two processes must not go on
                // sharing the sockets, so this one lets its connections finish, prints no
                // READY line, and leaves with the error.
                tracing::error!(error = %e, "the takeover was not confirmed; stopping, the previous porxy carries on");
                stopper.graceful();
                unconfirmed = Some(e);
            }
        }
    }
    if let Some(e) = unconfirmed {
        let report = proxy.join();
        watcher.finish();
        if let Ok(report) = report {
            tracing::info!(cut = report.cut, "the unconfirmed porxy has drained");
        }
        return Err(CliError::Upgrade(e));
    }
    if let Some(socket) = upgrade_socket {
        socket.serve(proxy.handle(), stopper.clone(), reloader.clone());
    }
    let fronts = match fronts.take() {
        Some(bound) => Ok(bound),
        None => admin::start::bind(plan.admin.as_ref(), plan.rpc.as_ref(), plan.bind_wait, true),
    };
    // Once connections were taken over, the proxy serves them whatever becomes of its admin
    // front ends: a failure there is said, not fatal.
    let served = fronts.and_then(|fronts| {
        admin::start::serve(fronts, plan.admin.as_ref(), api, register, &stopper)
    });
    let (admin, rpc) = match served {
        Ok(bound) => bound,
        Err(e) if plan.takeover.is_some() => {
            tracing::error!(error = %error::chain(&e), "the admin front ends could not start; the proxy serves on without them");
            (None, None)
        }
        Err(e) => return Err(e),
    };

    let bound = proxy.bound();
    let ready = ready::ready_line(
        std::process::id(),
        &tunnels,
        bound,
        control.as_ref(),
        admin.as_ref(),
        rpc.as_ref(),
    );
    if let Err(err) = print_stdout(&ready) {
        // Nobody reads the line; the proxy is still useful, so keep going.
        tracing::warn!(error = %err, "cannot print the READY line on stdout");
    }
    started.store(true, Ordering::Release);
    let summary = tunnels
        .iter()
        .zip(bound)
        .map(|(t, addr)| format!("{}: {}", t.name, with_bound(&t.spec, *addr)))
        .collect::<Vec<_>>()
        .join("; ");
    tracing::info!(
        pid = std::process::id(),
        reactors = plan.config.reactors,
        accept = %plan.config.accept,
        tunnels = %summary,
        "porxy started"
    );

    let joined = proxy.join();
    watcher.finish();
    let report = joined.map_err(CliError::Join)?;
    if report.cut > 0 {
        tracing::warn!(
            cut = report.cut,
            "porxy stopped; {} connections were cut before they finished",
            report.cut
        );
    } else {
        tracing::info!("porxy stopped; every connection finished or was handed over");
    }
    Ok(Outcome::Stopped { cut: report.cut })
}

/// Writes and flushes; stdout is a protocol here, so a failed write is reported, not ignored.
fn print_stdout(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout)
}

/// The spec with the bound listen address in place of the one asked for, for the start log.
fn with_bound(spec: &TunnelSpec, addr: SocketAddr) -> TunnelSpec {
    let mut shown = spec.clone();
    shown.local = addr.into();
    shown
}
