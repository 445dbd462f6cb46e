//! Starting the proxy on the plan's tunnels: on the sockets a takeover brought where there are
//! some, and, with `--bind-wait`, waiting for a port another process still holds.

use std::net::SocketAddr;
use std::time::Duration;

use porxy_core::Proxy;

use crate::error::CliError;
use crate::named_tunnel::NamedTunnel;
use crate::plan::Plan;

/// How often a port still held by another process is tried again (`--bind-wait`).
const BIND_RETRY: Duration = Duration::from_millis(200);

/// Starts the proxy, on the inherited sockets where there are some. With `--bind-wait`, a
/// port still held by another process (an old porxy draining) is tried again until it is free.
pub(crate) fn start(
    plan: &Plan,
    tunnels: &[NamedTunnel],
    inherited: &[(SocketAddr, std::net::TcpListener)],
    access: std::sync::Arc<dyn porxy_core::AccessSink>,
) -> Result<Proxy, CliError> {
    let deadline = std::time::Instant::now() + plan.bind_wait;
    let mut told = false;
    loop {
        // Backends' states (a state file's, a predecessor's runtime changes) are put back
        // before the first client is accepted.
        let mut builder = Proxy::builder()
            .config(plan.config.clone())
            .access_sink(access.clone())
            .accept_later();
        for tunnel in tunnels {
            builder = builder.tunnel(tunnel.spec.clone());
        }
        for (addr, socket) in inherited {
            let socket = socket.try_clone().map_err(|source| {
                CliError::Start(porxy_core::Error::Bind {
                    addr: *addr,
                    source,
                })
            })?;
            builder = builder.inherit(*addr, socket);
        }
        match builder.start() {
            Ok(proxy) => return Ok(proxy),
            Err(e) => match port_in_use(&e) {
                Some(addr) if std::time::Instant::now() < deadline => {
                    if !told {
                        tracing::warn!(
                            %addr,
                            wait = %porxy_core::units::format_duration(plan.bind_wait),
                            "port in use (an old porxy draining?); waiting for it to be released"
                        );
                        told = true;
                    }
                    // A retry loop on a resource another process holds: nothing to wait on.
                    std::thread::sleep(BIND_RETRY);
                }
                _ => return Err(CliError::Start(e)),
            },
        }
    }
}

/// The address, when starting failed because a port is taken.
fn port_in_use(error: &porxy_core::Error) -> Option<SocketAddr> {
    match error {
        porxy_core::Error::Tunnel { source, .. } => port_in_use(source),
        porxy_core::Error::Bind { addr, source }
            if source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            Some(*addr)
        }
        _ => None,
    }
}
