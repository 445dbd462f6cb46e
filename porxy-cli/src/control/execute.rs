//! Carrying out an admin command on the proxy's public API ([`ProxyHandle`], [`Reloader`],
//! [`Stopper`]), for any front end: the result is typed ([`Outcome`] or [`AdminError`]), and
//! saying it to a client is the front end's ([`super::render`] for the line protocol).
//!
//! One thing is left to the front end: `STOP` only reports [`Outcome::Stopping`], and the front
//! end begins the stop once the client has its answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use porxy_core::{CloseMode, Endpoint, ProxyHandle, Remote};

use crate::reload::{ReloadMode, Reloader};
use crate::stopping::Stopper;

use super::command::{BackendAction, Command};
use super::outcome::{AdminError, Outcome, ServiceChange};

/// What the control commands need beside the handle.
#[derive(Clone)]
pub struct Context {
    pub stopper: Arc<Stopper>,
    pub reloader: Arc<Reloader>,
}

/// Carries out `command` on the proxy and says what came of it. A change of the routing table
/// that took effect goes in the runtime journal (see `journal.rs`).
pub fn execute(
    command: Command,
    handle: &ProxyHandle,
    ctx: &Context,
) -> Result<Outcome, AdminError> {
    let changes = matches!(
        command,
        Command::Open(_) | Command::Close { .. } | Command::Backend { .. }
    );
    let journaled = changes.then(|| command.clone());
    let result = carry_out(command, handle, ctx);
    if let (Some(command), Ok(outcome)) = (&journaled, &result) {
        let names = ctx.reloader.names();
        let name_of = |addr| names.get(&addr).cloned();
        let now = std::time::Instant::now();
        if let Some(change) = super::journaled::change_of(command, outcome, now, &name_of) {
            ctx.reloader.journal.record(change);
        }
    }
    result
}

fn carry_out(command: Command, handle: &ProxyHandle, ctx: &Context) -> Result<Outcome, AdminError> {
    match command {
        Command::Help => Ok(Outcome::Help),
        Command::Status { full: false } => Ok(Outcome::Status(handle.status())),
        Command::Status { full: true } => {
            let log = &ctx.reloader.access_log;
            let records = log.is_on().then(|| log.counts().snapshot());
            Ok(Outcome::StatusFull(handle.status(), records))
        }
        Command::Open(spec) => {
            let opened = handle.open(&spec)?;
            ctx.reloader.persist();
            Ok(Outcome::Opened(opened))
        }
        Command::Close { local, now } => {
            let local = local.resolve()?;
            let mode = if now {
                CloseMode::CloseConnections
            } else {
                CloseMode::KeepConnections
            };
            let closed = handle.close(local, mode)?;
            ctx.reloader.persist();
            Ok(Outcome::Closed {
                local,
                mode,
                closed,
            })
        }
        Command::Backend {
            local,
            remote,
            action,
        } => {
            let outcome = backend(handle, &local, remote, action)?;
            ctx.reloader.persist();
            Ok(outcome)
        }
        Command::Stop => Ok(Outcome::Stopping {
            open: handle.status().open_connections(),
            drain_timeout: ctx.stopper.drain_timeout(),
        }),
        Command::Reload { force } => {
            let mode = if force {
                ReloadMode::Force
            } else {
                ReloadMode::Guarded
            };
            Ok(Outcome::Reloaded(ctx.reloader.reload(mode)?))
        }
        Command::Reopen => ctx
            .reloader
            .access_log
            .reopen()
            .map(|files| Outcome::Reopened { files })
            .map_err(AdminError::ReopenFailed),
        Command::Exit => Ok(Outcome::Bye),
    }
}

/// Carries out ADD, REMOVE, DRAIN, ENABLE or DISABLE.
fn backend(
    handle: &ProxyHandle,
    local: &Endpoint,
    remote: Remote,
    action: BackendAction,
) -> Result<Outcome, AdminError> {
    let tunnel = local.resolve()?;
    let backend = remote.endpoint.resolve()?;
    let change = match action {
        BackendAction::Add => {
            let backend = handle.add_backend(tunnel, remote)?;
            return Ok(Outcome::BackendAdded { tunnel, backend });
        }
        BackendAction::Remove { deadline } => return remove(handle, tunnel, backend, deadline),
        BackendAction::Drain => ServiceChange::Drain,
        BackendAction::Enable => ServiceChange::Enable,
        BackendAction::Disable => ServiceChange::Disable,
    };
    let open = handle.change_backend(tunnel, backend, change.into())?;
    Ok(Outcome::BackendChanged {
        tunnel,
        backend,
        change,
        open,
    })
}

/// Carries out REMOVE; the outcome holds the deadline in force, which an earlier REMOVE may
/// have given (a deadline never moves later).
fn remove(
    handle: &ProxyHandle,
    tunnel: SocketAddr,
    backend: SocketAddr,
    asked: Option<Duration>,
) -> Result<Outcome, AdminError> {
    let removal = handle.remove_backend(tunnel, backend, asked)?;
    Ok(Outcome::Removed {
        tunnel,
        backend,
        asked,
        removal,
    })
}

/// Commands carried out on a real proxy (loopback, port 0): the outcomes hold what the proxy
/// did, and its refusals are sorted by kind.
#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::Mutex;

    use porxy_core::{Error, Proxy};

    use super::*;
    use crate::control::command::parse;
    use crate::control::render::render;
    use crate::reload::ReloadError;

    /// A proxy with one tunnel to two addresses nothing serves (kept bound, so that nothing
    /// else takes them), and what the commands need beside it.
    struct Fixture {
        proxy: Proxy,
        ctx: Context,
        tunnel: SocketAddr,
        backends: [SocketAddr; 2],
        _bound: [TcpListener; 2],
    }

    impl Fixture {
        fn new() -> Fixture {
            let bound = [(); 2].map(|_| TcpListener::bind("127.0.0.1:0").expect("a port"));
            let backends = [0, 1].map(|i| bound[i].local_addr().expect("an address"));
            let spec = format!("127.0.0.1:0={},{}", backends[0], backends[1]);
            let proxy = Proxy::builder()
                .reactors(1)
                .tunnel(spec.parse().expect("a tunnel"))
                .start()
                .expect("a proxy");
            let handle = proxy.handle();
            let ctx = Context {
                stopper: Stopper::new(handle.clone(), Duration::from_secs(30)),
                reloader: Arc::new(Reloader {
                    handle,
                    config_path: None,
                    cli_tunnels: Vec::new(),
                    overrides: Default::default(),
                    control: None,
                    bound: Mutex::new(Default::default()),
                    state_file: None,
                    counts: Default::default(),
                    published: Default::default(),
                    journal: Default::default(),
                    access_log: Arc::new(
                        crate::access_log::AccessLog::start(Default::default(), Default::default())
                            .expect("an access log that is off"),
                    ),
                }),
            };
            Fixture {
                tunnel: proxy.bound()[0],
                proxy,
                ctx,
                backends,
                _bound: bound,
            }
        }

        fn run(&self, line: &str) -> Result<Outcome, AdminError> {
            let command = parse(line.as_bytes()).expect("a command");
            execute(command, &self.proxy.handle(), &self.ctx)
        }

        fn text(&self, line: &str) -> String {
            render(&self.run(line)).text
        }
    }

    /// Status, metrics and the routing table never wait for a reload under way: they read the
    /// names the last reload published, not the lock a reload holds.
    #[test]
    fn readers_answer_while_a_reload_holds_its_lock() {
        let fixture = Fixture::new();
        let api = crate::admin::api::Api {
            handle: fixture.proxy.handle(),
            ctx: fixture.ctx.clone(),
            started: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        let held = fixture.ctx.reloader.bound.lock().unwrap();
        let (done, answered) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                use crate::admin::router::Endpoint;
                for endpoint in [Endpoint::Metrics, Endpoint::Status, Endpoint::ListRoutes] {
                    let answer = api.answer(endpoint, b"").map(|a| a.response.status);
                    done.send(answer).unwrap();
                }
            });
            for _ in 0..3 {
                let status = answered
                    .recv_timeout(Duration::from_secs(5))
                    .expect("an answer while the reload lock is held");
                assert_eq!(status, Ok(200));
            }
        });
        drop(held);
    }

    #[test]
    fn close_outcomes_hold_what_the_proxy_did() {
        let f = Fixture::new();
        let t = f.tunnel;
        let Ok(Outcome::Closed {
            local,
            mode,
            closed,
        }) = f.run(&format!("CLOSE {t} NOW"))
        else {
            panic!("not closed");
        };
        assert_eq!((local, mode), (t, CloseMode::CloseConnections));
        assert!(closed.listening);
        assert_eq!(closed.reset, 0);
        assert_eq!(
            render(&Ok(Outcome::Closed {
                local,
                mode,
                closed
            }))
            .text,
            format!("OK closed {t} and its connections\n")
        );
        assert!(matches!(
            f.run(&format!("CLOSE {t}")),
            Err(AdminError::NotFound(Error::NoSuchTunnel(a))) if a == t
        ));
        assert_eq!(
            f.text(&format!("CLOSE {t}")),
            format!("ERR: no tunnel listens on {t}\n")
        );
    }

    #[test]
    fn removal_outcomes_hold_the_deadline_in_force() {
        let f = Fixture::new();
        let (t, [a, b]) = (f.tunnel, f.backends);
        let removed = f.run(&format!("REMOVE {t} {a} 30s")).expect("removed");
        let Outcome::Removed {
            tunnel,
            backend,
            asked,
            removal,
        } = &removed
        else {
            panic!("{removed:?}");
        };
        assert_eq!((*tunnel, *backend), (t, a));
        assert_eq!(*asked, Some(Duration::from_secs(30)));
        assert_eq!(removal.open, 0);
        assert_eq!(
            render(&Ok(removed)).text,
            format!("OK removing {a} from {t}: 0 connections go on for at most 30s\n")
        );
        assert!(matches!(
            f.run(&format!("REMOVE {t} {b} NOW")),
            Err(AdminError::Conflict(Error::LastBackend { .. }))
        ));
    }

    #[test]
    fn refusals_are_sorted_by_kind() {
        let f = Fixture::new();
        let (t, [a, b]) = (f.tunnel, f.backends);
        assert!(matches!(
            f.run(&format!("ADD {t} {a}")),
            Err(AdminError::Conflict(Error::BackendExists { .. }))
        ));
        let in_use = TcpListener::bind("127.0.0.1:0").expect("a port");
        let taken = in_use.local_addr().expect("an address");
        assert!(matches!(
            f.run(&format!("OPEN {taken}={a}")),
            Err(AdminError::Conflict(Error::Bind { .. }))
        ));
        assert!(matches!(
            f.run(&format!("OPEN 127.0.0.1:0={t}")),
            Err(AdminError::Conflict(Error::SelfLoop { .. }))
        ));
        assert!(matches!(
            f.run(&format!("DRAIN {t} 127.0.0.1:1")),
            Err(AdminError::NotFound(Error::NoSuchBackend { .. }))
        ));
        assert!(matches!(
            f.run(&format!("OPEN 127.0.0.1:0={a},{a}")),
            Err(AdminError::Invalid(Error::DuplicateRemote { .. }))
        ));
        assert!(matches!(
            f.run("RELOAD"),
            Err(AdminError::ReloadRefused(ReloadError::NoConfigFile))
        ));
        assert!(matches!(
            f.run(&format!("DISABLE {t} {b}")),
            Ok(Outcome::BackendChanged {
                change: ServiceChange::Disable,
                open: 0,
                ..
            })
        ));
    }

    #[test]
    fn stop_is_only_reported_and_a_stopping_proxy_refuses_new_work() {
        let f = Fixture::new();
        assert_eq!(
            f.run("STOP").expect("an outcome"),
            Outcome::Stopping {
                open: 0,
                drain_timeout: Duration::from_secs(30),
            }
        );
        // Carrying STOP out left the stop to the front end.
        assert!(!f.proxy.handle().is_stopping());
        f.proxy.handle().stop(porxy_core::StopMode::Now);
        assert!(matches!(
            f.run(&format!("OPEN 127.0.0.1:0={}", f.backends[0])),
            Err(AdminError::Stopping(Error::Stopped))
        ));
        assert_eq!(f.run("EXIT").expect("an outcome"), Outcome::Bye);
    }
}
