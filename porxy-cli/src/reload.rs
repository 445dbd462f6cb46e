//! Reload (SIGHUP, control `RELOAD`): read the configuration file again and apply it.
//!
//! The file and the original `--tunnel` arguments make the new set of tunnels, checked like at
//! start (located errors, resolved names, no two tunnels on one address), then handed to
//! [`ProxyHandle::reload_with`] with the file's `[proxy]` settings, which applies all of it or
//! none. Of those, the tunnels' defaults (timeouts, splice, allow, deny) and `max_accept_rate`
//! change at once; the others (reactors, buffer size, ...) and the control address cannot
//! change in a running process: a change to them is logged and kept for the next start.
//!
//! A file that defines no listener while the running one defines some is refused, unless the
//! reload is forced ([`ReloadMode::Force`], control `RELOAD FORCE`): it is what an editor or
//! `cp` leaves while it writes the file (empty, or cut short, and still valid TOML), and
//! applying it would close every listener, and give a port-0 listener another port when it
//! comes back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use porxy_core::{Endpoint, ProxyHandle, ReloadReport, TunnelSpec};

use crate::access_log::{AccessLog, OpenError};
use crate::clients::ListenAddr;
use crate::config_file::{self, ConfigError, Overrides};
use crate::error::{chain, CliError};
use crate::journal::Journal;
use crate::named_tunnel::NamedTunnel;
use crate::tunnel_names::TunnelNames;

/// Whether a reload may close every listener the file defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReloadMode {
    /// A file without listeners is refused while the running one has some (SIGHUP, `RELOAD`).
    Guarded,
    /// The file is applied even if that closes every listener (`RELOAD FORCE`).
    Force,
}

/// Why a reload changed nothing. The message of each (with its causes, [`chain`]) is what
/// the log and the control socket's `ERR:` line say.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// Porxy was started without a configuration file.
    #[error("nothing to reload: porxy was started without --config")]
    NoConfigFile,
    /// The file defines no listener while porxy runs some of the file's, and the reload was
    /// not forced: most likely a file caught while it was being written.
    #[error(
        "{} defines no listener: reloading it would close every listener the file had ({}). \
         If the file was being written, reload once it is complete (replace it atomically: \
         write a temp file, then mv); to close them all on purpose, {remedy}",
        path.display(),
        running.join(", ")
    )]
    NoListener {
        /// The file.
        path: PathBuf,
        /// The names of the file's listeners running now, sorted.
        running: Vec<String>,
        /// How to close them all on purpose.
        remedy: &'static str,
    },
    /// The file is unreadable or wrong.
    #[error(transparent)]
    Config(ConfigError),
    /// A file listener has the name a `--tunnel` gets.
    #[error("--tunnel {name}: the name is taken by {origin}")]
    NameTaken {
        /// The shared name.
        name: String,
        /// Where the file's listener was written.
        origin: String,
    },
    /// The new set of tunnels fails a check a start runs too (boxed: rare, and large).
    #[error(transparent)]
    Check(Box<CliError>),
    /// The proxy refused the new set of tunnels (a port in use, a stopping proxy, ...).
    #[error(transparent)]
    Core(porxy_core::Error),
    /// A file of the new access log could not be opened.
    #[error(transparent)]
    AccessLog(OpenError),
}

/// What a reload needs to know about how porxy was started.
pub(crate) struct Reloader {
    pub(crate) handle: ProxyHandle,
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) cli_tunnels: Vec<NamedTunnel>,
    pub(crate) overrides: Overrides,
    pub(crate) control: Option<ListenAddr>,
    /// The bound address of every tunnel by name, so that a listener on port 0 keeps the port
    /// it got across reloads. Also serialises reloads (SIGHUP and RELOAD may come together).
    pub(crate) bound: Mutex<HashMap<String, SocketAddr>>,
    /// Where the routing table is kept after each change, if anywhere.
    pub(crate) state_file: Option<PathBuf>,
    /// How reloads went, for the metrics.
    pub(crate) counts: ReloadCounts,
    /// Tunnel names by bound address as the last reload left them, for readers (status,
    /// metrics, the routing table, the access log) that must not wait while a reload holds
    /// `bound`.
    pub(crate) published: TunnelNames,
    /// The access log, which a reload reconfigures.
    pub(crate) access_log: Arc<AccessLog>,
    /// The changes made at runtime since the configuration was last applied.
    pub(crate) journal: Journal,
}

/// Reloads (from the file, or of the routing table through the admin API) by how they went.
#[derive(Debug, Default)]
pub(crate) struct ReloadCounts {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// When the last one that worked was done, in seconds since the epoch (0: none yet).
    pub(crate) last_ok: AtomicU64,
}

impl ReloadCounts {
    fn count<T, E>(&self, result: &Result<T, E>) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.last_ok.store(now, Ordering::Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Reloader {
    /// Tunnel names by bound address.
    /// Never waits for a reload under way: it reads what the last one published.
    pub(crate) fn names(&self) -> Arc<HashMap<SocketAddr, String>> {
        self.published.get()
    }

    /// Publishes the names of `bound` for [`Reloader::names`].
    pub(crate) fn publish(&self, bound: &HashMap<String, SocketAddr>) {
        self.published.publish(bound);
    }

    /// Reloads; on error nothing changed and the error says why.
    pub(crate) fn reload(&self, mode: ReloadMode) -> Result<ReloadReport, ReloadError> {
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        crate::systemd::notify::reloading();
        let result = self.try_reload(&mut bound, mode);
        let serving = format!("serving {} tunnels", bound.len());
        drop(bound);
        // Ready again either way: a failed reload changed nothing.
        crate::systemd::notify::ready(&serving);
        self.counts.count(&result);
        if result.is_ok() {
            self.persist();
        }
        // A reload that worked is logged by the core, with what it changed.
        if let Err(why) = &result {
            tracing::warn!(error = %chain(why), "reload failed; the running configuration is unchanged");
        }
        result
    }

    fn try_reload(
        &self,
        bound: &mut HashMap<String, SocketAddr>,
        mode: ReloadMode,
    ) -> Result<ReloadReport, ReloadError> {
        let Some(path) = &self.config_path else {
            return Err(ReloadError::NoConfigFile);
        };
        let file = config_file::load(path, &self.overrides).map_err(ReloadError::Config)?;
        if file.listeners.is_empty() && mode == ReloadMode::Guarded {
            let mut running: Vec<&str> = bound
                .keys()
                .map(String::as_str)
                .filter(|name| !self.cli_tunnels.iter().any(|t| t.name == *name))
                .collect();
            if !running.is_empty() {
                running.sort_unstable();
                let remedy = if self.control.is_some() {
                    "send RELOAD FORCE on the control socket"
                } else {
                    "stop porxy (RELOAD FORCE needs a control socket)"
                };
                return Err(ReloadError::NoListener {
                    path: path.clone(),
                    running: running.into_iter().map(str::to_owned).collect(),
                    remedy,
                });
            }
        }
        let mut tunnels = file.listeners;
        for tunnel in &self.cli_tunnels {
            if let Some(clash) = tunnels.iter().find(|t| t.name == tunnel.name) {
                return Err(ReloadError::NameTaken {
                    name: tunnel.name.clone(),
                    origin: clash.local_origin.clone(),
                });
            }
        }
        tunnels.extend(self.cli_tunnels.iter().cloned());
        if file.control.as_ref() != self.control.as_ref() && self.control.is_some() {
            tracing::warn!("[control] changed; it takes effect at the next start");
        }
        let access_log = self
            .access_log
            .prepare(file.access_log)
            .map_err(ReloadError::AccessLog)?;
        let report = self.apply_locked(bound, tunnels, &file.proxy)?;
        self.access_log.commit(access_log);
        self.journal.clear();
        Ok(report)
    }

    /// Makes the running tunnels exactly `tunnels` (the HTTP admin's routing table), with the
    /// proxy-wide settings running now; all or nothing, as a reload.
    pub(crate) fn apply(&self, tunnels: Vec<NamedTunnel>) -> Result<ReloadReport, ReloadError> {
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        let config = self.handle.config();
        let result = self.apply_locked(&mut bound, tunnels, &config);
        drop(bound);
        if result.is_ok() {
            let running = self.running();
            let routes = crate::route_table::show::routes(&running, &self.handle.status().tunnels);
            self.journal.set_routes(routes);
        }
        self.counts.count(&result);
        if result.is_ok() {
            self.persist();
        }
        result
    }

    /// Writes the running routing table to the state file, if there is one: after any change
    /// made at runtime. A failure is logged (the change stands; the file is the one before).
    pub(crate) fn persist(&self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let running = self.running();
        if let Err(e) = crate::state_file::save(path, &running, &self.handle.status()) {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the state file; the change stands, the file is the one before it");
        }
    }

    /// The tunnels running now, each with its name (its address, for one opened unnamed on
    /// the control socket), in the order status lists them.
    pub(crate) fn running(&self) -> Vec<NamedTunnel> {
        let names = self.names();
        self.handle
            .specs()
            .into_iter()
            .map(|spec| {
                let local = spec.local.to_string();
                let name = spec
                    .local
                    .resolve()
                    .ok()
                    .and_then(|addr| names.get(&addr).cloned())
                    .unwrap_or_else(|| local.clone());
                NamedTunnel {
                    name,
                    remote_origins: spec.remotes.iter().map(|r| r.to_string()).collect(),
                    local_origin: local,
                    spec,
                }
            })
            .collect()
    }

    /// [`Reloader::apply`] with the reload lock held.
    fn apply_locked(
        &self,
        bound: &mut HashMap<String, SocketAddr>,
        tunnels: Vec<NamedTunnel>,
        proxy: &porxy_core::ProxyConfig,
    ) -> Result<ReloadReport, ReloadError> {
        crate::preflight::check_tunnels(&tunnels).map_err(|e| ReloadError::Check(Box::new(e)))?;
        let names: Vec<String> = tunnels.iter().map(|t| t.name.clone()).collect();
        let specs: Vec<_> = tunnels
            .into_iter()
            .map(|t| keep_port(t.spec, bound.get(&t.name)))
            .collect();
        let report = self
            .handle
            .reload_with(proxy, &specs)
            .map_err(ReloadError::Core)?;
        if !report.restart_only.is_empty() {
            tracing::warn!(
                settings = %report.restart_only.join(", "),
                "[proxy] settings changed that take effect at the next start"
            );
        }
        *bound = names
            .into_iter()
            .zip(report.bound.iter().copied())
            .collect();
        self.publish(bound);
        Ok(report)
    }
}

/// A listener that asks for port 0 and already has a port (same name, same IP) keeps it.
fn keep_port(mut spec: TunnelSpec, bound: Option<&SocketAddr>) -> TunnelSpec {
    if let (Endpoint::Addr(asked), Some(bound)) = (&spec.local, bound) {
        if asked.port() == 0 && asked.ip() == bound.ip() {
            spec.local = Endpoint::Addr(*bound);
        }
    }
    spec
}
