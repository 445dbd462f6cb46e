//! Reload: make the running tunnels what a new configuration says, all of it or none of it.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::loops::refuse_remotes;
use super::open::Version;
use super::{bind, CloseMode, ProxyHandle};
use crate::config::ProxyConfig;
use crate::error::Error;
use crate::spec::TunnelSpec;
use crate::tunnel::loaded::Loaded;
use crate::tunnel::reach::{LocalAddrs, OwnListener};

/// What a [`ProxyHandle::reload`] did, tunnel by tunnel (bound listen addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The generation new connections now start under.
    pub generation: u64,
    /// Tunnels opened.
    pub opened: Vec<SocketAddr>,
    /// Tunnels whose remotes or options changed (for new connections).
    pub changed: Vec<SocketAddr>,
    /// Tunnels listed again as they were.
    pub unchanged: Vec<SocketAddr>,
    /// Tunnels no longer listed: they stopped listening; their connections go on.
    pub closed: Vec<SocketAddr>,
    /// The bound address of each tunnel given, in the order given.
    pub bound: Vec<SocketAddr>,
    /// Proxy-wide settings given to [`ProxyHandle::reload_with`] that differ from the running
    /// ones but cannot change in a running process (`reactors`, `buffer_size`, ...): they
    /// wait for the next start.
    pub restart_only: Vec<&'static str>,
}

/// One tunnel of the new configuration, resolved, its files read.
struct Planned<'a> {
    spec: &'a TunnelSpec,
    local: SocketAddr,
    remotes: Vec<SocketAddr>,
    loaded: Loaded,
}

impl ProxyHandle {
    /// Makes the running tunnels exactly those of `specs`: opens the new ones, changes the
    /// changed ones for new connections, and stops listening on those no longer listed (their
    /// connections go on). A tunnel is the same tunnel when its listen address is the same.
    ///
    /// All or nothing: every name is resolved and every new port bound before anything
    /// changes, so an error (a typo'd host, a port in use, two tunnels on one address) leaves
    /// the proxy exactly as it was. Every tunnel, changed or not, moves to a new generation;
    /// established connections keep the one they started with.
    pub fn reload(&self, specs: &[TunnelSpec]) -> Result<ReloadReport, Error> {
        self.reload_with(&self.config(), specs)
    }

    /// [`ProxyHandle::reload`] under new proxy-wide settings, all of it or none of it. Of
    /// `config`, what a running proxy can change takes effect: the tunnels' defaults
    /// (timeouts, `splice`, `allow`, `deny`) for the connections that start from now on, and
    /// `max_accept_rate` at once. The rest (`reactors`, `buffer_size`, `pipe_size`, `backlog`,
    /// `max_connections`, `accept`, `busy_poll`) waits for the next start, and the report
    /// names what differed ([`ReloadReport::restart_only`]).
    pub fn reload_with(
        &self,
        config: &ProxyConfig,
        specs: &[TunnelSpec],
    ) -> Result<ReloadReport, Error> {
        if self.is_stopping() {
            return Err(Error::Stopped);
        }
        config.validate()?;
        let (config, restart_only) = self.config().with_runtime_settings(config);
        let planned = resolve_all(specs)?;
        let mut tunnels = self.tunnels();
        for plan in &planned {
            if let Some(old) = tunnels.get(&plan.local).filter(|_| plan.local.port() != 0) {
                old.can_take_back(&plan.remotes)
                    .map_err(|source| Error::Tunnel {
                        spec: plan.spec.to_string(),
                        source: Box::new(source),
                    })?;
            }
        }

        // No remote may reach a listening socket of the new configuration: the tunnels it
        // keeps, and the new ones on the ports they ask for (on port 0, once bound, below).
        let kept_listeners: Vec<OwnListener> = planned
            .iter()
            .filter(|p| p.local.port() != 0)
            .filter_map(|p| tunnels.get(&p.local).map(|t| t.own_listener()))
            .collect();
        let mut listeners = kept_listeners.clone();
        listeners.extend(
            planned
                .iter()
                .filter(|p| p.local.port() != 0 && !tunnels.contains_key(&p.local))
                .map(|p| OwnListener::to_bind(p.local)),
        );
        let addrs: Vec<SocketAddr> = planned.iter().map(|p| p.local).collect();
        refuse_loops(&planned, &addrs, &listeners)?;

        // Bind every new port first: a failure here drops what was bound, and nothing changed.
        let mut fresh = Vec::new();
        for (index, plan) in planned.iter().enumerate() {
            if plan.local.port() != 0 && tunnels.contains_key(&plan.local) {
                continue;
            }
            let failed = |source| Error::Tunnel {
                spec: plan.spec.to_string(),
                source: Box::new(source),
            };
            let socket = match self.take_inherited(plan.local) {
                Some(socket) => socket,
                None => bind(plan.local, config.backlog, config.reuse_port).map_err(failed)?,
            };
            let listening = OwnListener::of(&socket).map_err(|source| {
                failed(Error::Bind {
                    addr: plan.local,
                    source,
                })
            })?;
            fresh.push((index, socket, listening));
        }
        // Again with what the new sockets got: the port of port 0, and their stack.
        let mut listeners = kept_listeners;
        let mut addrs = addrs;
        for (index, _, listening) in &fresh {
            listeners.push(*listening);
            addrs[*index] = listening.addr;
        }
        refuse_loops(&planned, &addrs, &listeners)?;

        // From here on nothing can fail but a stopped proxy.
        self.set_config(config);
        let generation = self.next_generation();
        let mut report = ReloadReport {
            generation: generation.id,
            restart_only,
            ..ReloadReport::default()
        };
        let kept: BTreeSet<SocketAddr> = planned
            .iter()
            .filter(|p| tunnels.contains_key(&p.local))
            .map(|p| p.local)
            .collect();
        let gone: Vec<SocketAddr> = tunnels
            .keys()
            .filter(|a| !kept.contains(a))
            .copied()
            .collect();
        for local in gone {
            self.close_locked(&mut tunnels, local, CloseMode::KeepConnections)?;
            report.closed.push(local);
        }
        for plan in planned.iter().filter(|p| kept.contains(&p.local)) {
            let old = tunnels[&plan.local].clone();
            let mut shown = plan.spec.clone();
            shown.local = plan.local.into();
            let same = old.spec == shown;
            let version = Version {
                spec: plan.spec,
                remotes: &plan.remotes,
                loaded: plan.loaded.clone(),
            };
            self.replace(&mut tunnels, &old, version, generation.clone())?;
            if same {
                report.unchanged.push(plan.local);
            } else {
                report.changed.push(plan.local);
            }
        }
        report.bound = planned.iter().map(|p| p.local).collect();
        for (index, socket, listening) in fresh {
            let plan = &planned[index];
            report.bound[index] = listening.addr;
            let version = Version {
                spec: plan.spec,
                remotes: &plan.remotes,
                loaded: plan.loaded.clone(),
            };
            self.install(&mut tunnels, version, listening, socket, generation.clone())?;
            report.opened.push(listening.addr);
        }
        tracing::info!(
            generation = report.generation,
            opened = report.opened.len(),
            changed = report.changed.len(),
            unchanged = report.unchanged.len(),
            closed = report.closed.len(),
            "configuration reloaded"
        );
        Ok(report)
    }
}

/// Refuses a configuration in which a remote of `planned` (listening on `addrs`, in order)
/// reaches one of `listeners`, its listening sockets; the error names the tunnel's spec.
fn refuse_loops(
    planned: &[Planned<'_>],
    addrs: &[SocketAddr],
    listeners: &[OwnListener],
) -> Result<(), Error> {
    let mut local = LocalAddrs::default();
    for (plan, addr) in planned.iter().zip(addrs) {
        refuse_remotes(*addr, &plan.remotes, listeners, &mut local).map_err(|source| {
            Error::Tunnel {
                spec: plan.spec.to_string(),
                source: Box::new(source),
            }
        })?;
    }
    Ok(())
}

/// Resolves every tunnel, and refuses two on one listen address.
fn resolve_all(specs: &[TunnelSpec]) -> Result<Vec<Planned<'_>>, Error> {
    let mut planned: Vec<Planned<'_>> = Vec::with_capacity(specs.len());
    for spec in specs {
        let failed = |source| Error::Tunnel {
            spec: spec.to_string(),
            source: Box::new(source),
        };
        if spec.remotes.is_empty() {
            return Err(failed(Error::NoRemotes {
                local: spec.local.to_string(),
            }));
        }
        let local = spec.local.resolve().map_err(failed)?;
        let remotes = super::resolve_remotes(spec).map_err(failed)?;
        if local.port() != 0 && planned.iter().any(|p| p.local == local) {
            return Err(failed(Error::AlreadyListening(local)));
        }
        // Certificates are read now, before anything changes: all or nothing.
        let loaded = Loaded::read(spec).map_err(failed)?;
        planned.push(Planned {
            spec,
            local,
            remotes,
            loaded,
        });
    }
    Ok(planned)
}
