//! Socket activation: the listening sockets systemd passes (`LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`; see `sd_listen_fds(3)`) go to the listeners they are for: by name
//! (`FileDescriptorName=` in the `.socket` unit, or `--fdname` to `systemd-socket-activate`)
//! when one is that listener's name, else by address. A socket no listener takes is closed,
//! with a warning. A restart then refuses nobody: systemd holds the sockets meanwhile.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::named_tunnel::NamedTunnel;

/// One socket systemd passed.
pub(crate) struct Passed {
    /// Its `LISTEN_FDNAMES` entry (systemd names unnamed ones `unknown`).
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) socket: TcpListener,
}

/// The TCP listening sockets passed to this process, if any; others (Unix, UDP) are closed
/// with a warning.
pub(crate) fn passed() -> Vec<Passed> {
    let fds: Vec<(RawFd, String)> = match sd_notify::listen_fds_with_names() {
        Ok(fds) => fds.collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the sockets systemd passed (LISTEN_FDS)");
            return Vec::new();
        }
    };
    let mut passed = Vec::new();
    for (fd, name) in fds {
        // SAFETY: systemd installed `fd` in this process for it to own (LISTEN_PID is ours,
        // checked by listen_fds_with_names); nothing else in the process refers to it.
        #[allow(unsafe_code)]
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let socket = TcpListener::from(owned);
        match socket.local_addr() {
            Ok(addr) => passed.push(Passed { name, addr, socket }),
            Err(e) => {
                tracing::warn!(fd, name = %name, error = %e, "a socket systemd passed is no TCP listening socket; closed")
            }
        }
    }
    passed
}

/// Gives each tunnel the passed socket for it: by name, else by address (a tunnel on port 0
/// takes one on its IP). Returns the tunnels, listening where their sockets are, and the
/// sockets to inherit.
pub(crate) fn inherit(
    tunnels: Vec<NamedTunnel>,
    mut passed: Vec<Passed>,
) -> (Vec<NamedTunnel>, Vec<(SocketAddr, TcpListener)>) {
    let mut tunnels = tunnels;
    let mut inherited = Vec::new();
    for tunnel in &mut tunnels {
        let local = tunnel.spec.local.resolve().ok();
        let found = passed
            .iter()
            .position(|p| p.name == tunnel.name)
            .or_else(|| {
                let local = local?;
                passed.iter().position(|p| {
                    p.addr == local || (local.port() == 0 && p.addr.ip() == local.ip())
                })
            });
        if let Some(index) = found {
            let Passed { addr, socket, .. } = passed.remove(index);
            tracing::info!(tunnel = %tunnel.name, %addr, "listening on a socket systemd passed");
            tunnel.spec.local = addr.into();
            inherited.push((addr, socket));
        }
    }
    for left in passed {
        tracing::warn!(name = %left.name, addr = %left.addr, "systemd passed a socket no listener is for; closed");
    }
    (tunnels, inherited)
}
