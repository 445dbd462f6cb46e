//! The successor's side of what it inherits: which of the listening sockets and the control
//! socket a takeover brought go to which of its own tunnels and control address.

use std::net::SocketAddr;

use super::Takeover;
use crate::named_tunnel::NamedTunnel;

/// Matches the listening sockets a takeover brought to the tunnels: by address, or, for a
/// tunnel asking for port 0, by name (it gets the port the old one had). Returns the tunnels
/// (listening where they will) and the sockets to inherit. With a runtime journal to replay,
/// the sockets no tunnel takes are inherited too: a tunnel the journal opens takes its own.
pub(crate) fn inherit(
    tunnels: &[NamedTunnel],
    takeover: Option<&mut Takeover>,
) -> (Vec<NamedTunnel>, Vec<(SocketAddr, std::net::TcpListener)>) {
    let mut tunnels = tunnels.to_vec();
    let mut inherited = Vec::new();
    let Some(takeover) = takeover else {
        return (tunnels, inherited);
    };
    let mut offered = std::mem::take(&mut takeover.tunnels);
    for tunnel in &mut tunnels {
        let Ok(local) = tunnel.spec.local.resolve() else {
            continue;
        };
        let found = offered.iter().position(|(name, addr, _)| {
            *addr == local || (local.port() == 0 && *name == tunnel.name && addr.ip() == local.ip())
        });
        if let Some(index) = found {
            let (_, addr, socket) = offered.remove(index);
            tunnel.spec.local = addr.into();
            inherited.push((addr, socket));
        }
    }
    if takeover.runtime.is_some() {
        // The proxy closes, with a warning, those no replayed OPEN took.
        inherited.extend(offered.into_iter().map(|(_, addr, socket)| (addr, socket)));
        return (tunnels, inherited);
    }
    for (name, addr, _) in &offered {
        tracing::warn!(
            tunnel = %name,
            %addr,
            "the running porxy listens there but this configuration does not; \
             clients there are refused once it stops"
        );
    }
    (tunnels, inherited)
}

/// True when an inherited control socket is the one `addr` asks for.
pub(crate) fn control_matches(
    addr: &crate::clients::ListenAddr,
    bound: &crate::clients::BoundAddr,
) -> bool {
    match (addr, bound) {
        (crate::clients::ListenAddr::Tcp(endpoint), crate::clients::BoundAddr::Tcp(had)) => {
            endpoint
                .resolve()
                .is_ok_and(|want| want == *had || (want.port() == 0 && want.ip() == had.ip()))
        }
        (crate::clients::ListenAddr::Unix(want), crate::clients::BoundAddr::Unix(had)) => {
            want == had
        }
        _ => false,
    }
}
