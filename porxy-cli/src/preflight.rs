//! The checks a configuration passes before anything binds: at start, for `--check`, and at
//! every reload, so that `--check` refuses exactly what a start or a reload would.
//!
//! porxy-core checks each tunnel as it opens it: every address resolves, no remote is listed
//! twice, no two tunnels share a listen address. There, a fault can only be told against the
//! tunnel's SPEC; here the same rules run first, and a fault names where the address was written
//! (`porxy.toml:5:11: backends.b.address`, `--tunnel cli-1 ...`). A tunnel's options and its
//! list of remotes are checked where the tunnel is made (the file lift, the SPEC parser), which
//! locate their faults themselves. Whether a port is free is not checked: that is the host's
//! state, not the configuration's, and only binding can tell.

use std::net::SocketAddr;
use std::path::Path;

use porxy_core::RemoteFault;

use crate::clients::ListenAddr;
use crate::error::CliError;
use crate::named_tunnel::NamedTunnel;

/// Resolves every address once, so a bad host name is reported with where it was written;
/// refuses what porxy-core would refuse when it opens the tunnels: a tunnel that lists one
/// remote twice, a remote no server can have (a host name that resolves to `0.0.0.0`, say), a
/// remote that reaches one of the configuration's own listen addresses (porxy would forward to
/// itself), and two tunnels on one listen address (opening the second would replace the
/// first). Binds nothing.
pub(crate) fn check_tunnels(tunnels: &[NamedTunnel]) -> Result<(), CliError> {
    let mut locals: Vec<SocketAddr> = Vec::with_capacity(tunnels.len());
    for (index, tunnel) in tunnels.iter().enumerate() {
        let local = tunnel
            .spec
            .local
            .resolve()
            .map_err(|source| CliError::Resolve {
                origin: tunnel.local_origin.clone(),
                source,
            })?;
        let same = locals.iter().position(|l| l.port() != 0 && *l == local);
        if let Some(first) = same {
            return Err(CliError::SameListen {
                addr: local,
                first: tunnels[first].local_origin.clone(),
                second: tunnels[index].local_origin.clone(),
            });
        }
        locals.push(local);
    }
    for tunnel in tunnels {
        for (remote, origin) in check_remotes(tunnel)?
            .into_iter()
            .zip(&tunnel.remote_origins)
        {
            if let Some(listen) = porxy_core::reached_listener(remote, &locals) {
                let at = locals.iter().position(|l| *l == listen).unwrap_or_default();
                return Err(CliError::SelfLoop {
                    remote,
                    origin: origin.clone(),
                    listen,
                    listener: tunnels[at].local_origin.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Resolves a tunnel's remotes, and refuses one address twice and one no server can have, as
/// porxy-core does when it opens the tunnel. The resolved remotes, in order.
fn check_remotes(tunnel: &NamedTunnel) -> Result<Vec<SocketAddr>, CliError> {
    let mut remotes: Vec<SocketAddr> = Vec::with_capacity(tunnel.spec.remotes.len());
    for (index, (remote, origin)) in tunnel
        .spec
        .remotes
        .iter()
        .zip(&tunnel.remote_origins)
        .enumerate()
    {
        let addr = remote
            .endpoint
            .resolve()
            .map_err(|source| CliError::Resolve {
                origin: origin.clone(),
                source,
            })?;
        if let Some(fault) = RemoteFault::of(addr) {
            return Err(CliError::UnusableRemote {
                addr,
                fault,
                origin: origin.clone(),
            });
        }
        if let Some(first) = remotes.iter().position(|r| *r == addr) {
            return Err(CliError::SameRemote {
                addr,
                tunnel: tunnel.name.clone(),
                first: tunnel.remote_origins[first].clone(),
                second: tunnel.remote_origins[index].clone(),
            });
        }
        remotes.push(addr);
    }
    Ok(remotes)
}

/// Checks the control address as binding it would, short of binding: a TCP address resolves,
/// a Unix socket path fits. `origin` says where it was written.
pub(crate) fn check_control(addr: &ListenAddr, origin: &str) -> Result<(), CliError> {
    addr.check(crate::control::ROLE)
        .map_err(|source| CliError::ControlAddr {
            origin: origin.to_string(),
            source: Box::new(source),
        })
}

/// Checks the upgrade socket's path as binding it would, short of binding: it fits in a socket
/// address.
pub(crate) fn check_upgrade(path: &Path) -> Result<(), CliError> {
    crate::socket_path::check_len(path, crate::upgrade::ROLE)
        .map_err(|e| CliError::Upgrade(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, spec: &str) -> NamedTunnel {
        let spec: porxy_core::TunnelSpec = spec.parse().unwrap();
        NamedTunnel {
            name: name.into(),
            local_origin: format!("--tunnel {name}"),
            remote_origins: vec![format!("--tunnel {name}"); spec.remotes.len()],
            spec,
        }
    }

    #[test]
    fn two_tunnels_on_one_address_are_refused() {
        let tunnels = [named("a", "127.0.0.1:8000=7000"), named("b", "8000=7001")];
        let err = check_tunnels(&tunnels).unwrap_err().to_string();
        assert!(
            err.contains("--tunnel a") && err.contains("--tunnel b"),
            "{err}"
        );
        // Port 0 asks for a fresh port each time, so it may repeat.
        let tunnels = [named("a", "0=7000"), named("b", "0=7001")];
        assert!(check_tunnels(&tunnels).is_ok());
    }

    #[test]
    fn one_remote_twice_is_refused_once_resolved() {
        let err = check_tunnels(&[named("a", "0=7000,127.0.0.1:7000")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--tunnel a: lists 127.0.0.1:7000 twice; list it once, with a weight (`*N`) to \
             send it more"
        );
        let mut tunnel = named("web", "0=7000,7001,127.0.0.1:7000");
        tunnel.remote_origins = vec!["f:1:1: x".into(), "f:2:1: y".into(), "f:3:1: z".into()];
        assert_eq!(
            check_tunnels(&[tunnel]).unwrap_err().to_string(),
            "f:3:1: z: 127.0.0.1:7000 is also the address of f:1:1: x, and listener `web` uses \
             both; list one backend once, with a weight to send it more"
        );
        // Other tunnels may share a remote.
        assert!(check_tunnels(&[named("a", "0=7000"), named("b", "0=7000")]).is_ok());
    }
}
