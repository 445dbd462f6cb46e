//! `porxy`: the command-line front of porxy-core. The binary (`main.rs`) calls [`main`]; the
//! library is there for [`fuzzing`], which reaches the parsers of outside input.
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

mod access_log;
mod admin;
mod args;
mod clients;
mod config_file;
mod control;
mod error;
mod exit_hold;
pub mod fuzzing;
mod generated;
mod journal;
mod logging;
mod metrics;
mod named_tunnel;
mod plan;
mod preflight;
mod ready;
mod reload;
mod replay;
mod route_table;
mod signals;
mod socket_path;
mod start;
mod state_file;
mod stopping;
mod systemd;
mod top;
mod tunnel_help;
mod tunnel_names;
mod upgrade;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use porxy_core::TunnelSpec;

use crate::args::Command;
use crate::error::CliError;
use crate::plan::Plan;
use crate::reload::Reloader;
use crate::stopping::Stopper;

/// How a run ended.
enum Outcome {
    /// `--check` or `--help-tunnel` finished.
    Done,
    /// The proxy stopped; this many connections were cut instead of finishing.
    Stopped { cut: u64 },
}

/// Runs porxy with the process's arguments: what the `porxy` binary does.
pub fn main() -> ExitCode {
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
            print_stdout(&tunnel_help::tunnel_help())?;
            return Ok(Outcome::Done);
        }
        Command::Run(args) => *args,
        Command::Top(args) => {
            top::run(args).map_err(CliError::Top)?;
            return Ok(Outcome::Done);
        }
        Command::Completions(shell) => {
            print_bytes(&generated::completions(shell))?;
            return Ok(Outcome::Done);
        }
        Command::Man => {
            print_bytes(&generated::man_page().map_err(CliError::Stdout)?)?;
            return Ok(Outcome::Done);
        }
    };
    logging::init(&args.log)?;
    let check = args.check;
    let plan = plan::plan(args)?;
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

/// Starts the proxy, announces it, and waits until a signal has stopped it.
fn serve(plan: Plan) -> Result<Outcome, CliError> {
    let stop_signals = signals::StopSignals::register().map_err(CliError::Signals)?;
    let mut takeover = match &plan.takeover {
        Some(path) => {
            let taken =
                upgrade::take_over(path, !plan.takeover_config_only).map_err(CliError::Upgrade)?;
            tracing::info!(
                sockets = taken.tunnels.len(),
                "took the listening sockets of the running porxy"
            );
            Some(taken)
        }
        None => None,
    };
    // Listening sockets come from the porxy taken over, or else from systemd (socket
    // activation), if it passed any.
    let (tunnels, inherited) = match takeover.as_mut() {
        Some(taken) => upgrade::inherit(&plan.tunnels, Some(taken)),
        None => systemd::activation::inherit(plan.tunnels.clone(), systemd::activation::passed()),
    };
    // Everything that can fail is done before the proxy accepts anybody and before a takeover
    // is confirmed: a successor that fails leaves its predecessor serving, and resets nobody.
    // In a redeploy (`--bind-wait`, no takeover) the predecessor holds the control address
    // until it is told to stop: it is bound once the tunnels serve, below.
    let redeploy = takeover.is_none() && !plan.bind_wait.is_zero();
    let control_socket = match &plan.control {
        Some(_) if redeploy => None,
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
    // A predecessor may hold them: in a takeover until it confirms, in a redeploy
    // (`--bind-wait`) until it is told to stop, which it is once this one serves. So then they
    // are bound after the tunnels, below.
    let mut fronts = match takeover {
        None if plan.bind_wait.is_zero() => Some(admin::start::bind(
            plan.admin.as_ref(),
            plan.rpc.as_ref(),
            plan.metrics.as_ref(),
            plan.bind_wait,
            false,
        )?),
        _ => None,
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
    let names = tunnel_names::TunnelNames::default();
    let access_log = Arc::new(
        access_log::AccessLog::start(plan.access_log.clone(), names.clone())
            .map_err(CliError::AccessLog)?,
    );
    let proxy = start::start(&plan, &tunnels, &inherited, access_log.sink())?;
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
        counts: Default::default(),
        published: names,
        access_log: access_log.clone(),
        journal: Default::default(),
    });
    reloader.publish(&reloader.bound.lock().unwrap_or_else(|p| p.into_inner()));
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
    // What the operators of the porxy taken over changed at runtime, before anyone is served.
    let runtime = takeover.as_mut().and_then(|t| t.runtime.take());
    let replayed = runtime.map(|changes| replay::replay(changes, &proxy.handle(), &ctx));
    proxy.handle().start_accepting().map_err(CliError::Start)?;
    // One bound on admin clients, whichever front end they use.
    let register = Arc::new(clients::Register::default());
    let (control_ctx, control_register) = (ctx.clone(), register.clone());
    let serve_control = |(socket, bound): (clients::ListenSocket, clients::BoundAddr)| {
        let closer = control::serve(
            socket,
            bound.clone(),
            proxy.handle(),
            control_ctx.clone(),
            plan.control_idle_timeout,
            control_register.clone(),
        )
        .map_err(|e| CliError::Listen(Box::new(e)))?;
        stopper.set_control(closer);
        Ok::<_, CliError>(bound)
    };
    let mut control = control_socket.map(serve_control).transpose()?;
    let started = Arc::new(AtomicBool::new(false));
    let api = admin::api::Api {
        handle: proxy.handle(),
        ctx: ctx.clone(),
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
                let imported = if plan.leave_connections {
                    confirmed.leave_connections();
                    0
                } else {
                    confirmed.take_connections(&proxy.handle())
                };
                if let Some(replayed) = replayed {
                    replayed.finish(&proxy.handle(), &ctx, imported);
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
        access_log.finish();
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
        None => admin::start::bind(
            plan.admin.as_ref(),
            plan.rpc.as_ref(),
            plan.metrics.as_ref(),
            plan.bind_wait,
            plan.takeover.is_some(),
        ),
    };
    // Once it may have taken clients (connections taken over, or new ones on an address it
    // shares), the proxy serves them whatever becomes of its admin front ends: a failure
    // there is said, not fatal.
    let served = fronts.and_then(|fronts| {
        admin::start::serve(fronts, plan.admin.as_ref(), api, register, &stopper)
    });
    if let (Some(addr), true) = (&plan.control, redeploy) {
        let bound = admin::server::bind_as(addr, control::ROLE, plan.bind_wait)
            .map_err(|e| CliError::Listen(Box::new(e)))
            .and_then(serve_control);
        match bound {
            Ok(bound) => control = Some(bound),
            Err(e) => {
                tracing::error!(error = %error::chain(&e), "the control socket could not start; the proxy serves on without it");
            }
        }
    }
    let fronts = match served {
        Ok(bound) => bound,
        Err(e) if plan.takeover.is_some() || !plan.bind_wait.is_zero() => {
            tracing::error!(error = %error::chain(&e), "the admin front ends could not start; the proxy serves on without them");
            admin::start::Bound::default()
        }
        Err(e) => return Err(e),
    };

    let bound = proxy.bound();
    let ready = ready::ready_line(
        std::process::id(),
        &tunnels,
        bound,
        control.as_ref(),
        &[
            ("admin", fronts.admin.as_ref()),
            ("rpc", fronts.rpc.as_ref()),
            ("metrics", fronts.metrics.as_ref()),
        ],
    );
    if let Err(err) = print_stdout(&ready) {
        // Nobody reads the line; the proxy is still useful, so keep going.
        tracing::warn!(error = %err, "cannot print the READY line on stdout");
    }
    started.store(true, Ordering::Release);
    systemd::notify::ready(&format!("serving {} tunnels", tunnels.len()));
    systemd::watchdog::start(proxy.handle());
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
    // A successor may still be asking for the established connections (there are none left).
    if !stopper.wait_for_exit_holds(upgrade::STEP_TIMEOUT) {
        tracing::warn!("the new porxy did not finish taking over in time; exiting all the same");
    }
    watcher.finish();
    // Every reactor has ended: what they recorded is queued; write it out.
    access_log.finish();
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
    print_bytes(text.as_bytes())
}

fn print_bytes(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout)
}

/// The spec with the bound listen address in place of the one asked for, for the start log.
fn with_bound(spec: &TunnelSpec, addr: SocketAddr) -> TunnelSpec {
    let mut shown = spec.clone();
    shown.local = addr.into();
    shown
}
