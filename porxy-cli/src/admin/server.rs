//! The HTTP admin endpoint's front end: its socket (TCP or Unix, `crate::clients::listener`,
//! as the control socket's) hands each client to an HTTP session ([`super::session`]).

use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

use super::session::{self, Settings};
use crate::clients::listener::{self, Starter};
use crate::clients::{BoundAddr, ClientStream, Closer, ListenAddr, ListenError, ListenSocket};

/// The socket's name in errors and logs.
pub const ROLE: &str = "admin endpoint";

/// How often a bind that finds the address in use tries again, within `--bind-wait`.
const BIND_RETRY: Duration = Duration::from_millis(50);

impl Starter for Settings {
    fn start<S: ClientStream>(&self, stream: S) -> io::Result<()> {
        session::start(stream, self)
    }
}

/// Binds the endpoint at `addr`; an address in use is tried again until `wait` has passed (a
/// redeploy: the old porxy frees it when told to stop).
pub fn bind(addr: &ListenAddr, wait: Duration) -> Result<(ListenSocket, BoundAddr), ListenError> {
    bind_as(addr, ROLE, wait)
}

/// [`bind`] for the `role` socket.
pub(crate) fn bind_as(
    addr: &ListenAddr,
    role: &'static str,
    wait: Duration,
) -> Result<(ListenSocket, BoundAddr), ListenError> {
    let deadline = Instant::now() + wait;
    let mut told = false;
    // Bounded by `wait`: each turn binds, or sleeps a little.
    loop {
        match ListenSocket::bind(addr, role) {
            Err(ListenError::Bind {
                source, addr: at, ..
            }) if source.kind() == ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !told {
                    tracing::info!(
                        addr = %at,
                        wait = %porxy_core::units::format_duration(wait),
                        "the {role}'s address is in use (an old porxy?); waiting for it to be released"
                    );
                    told = true;
                }
                // A retry loop on a resource another process holds: nothing to wait on.
                std::thread::sleep(BIND_RETRY);
            }
            result => return result,
        }
    }
}

/// Serves a bound admin endpoint on a thread of its own.
pub fn serve(
    socket: ListenSocket,
    bound: BoundAddr,
    settings: Settings,
) -> Result<Closer, ListenError> {
    listener::serve(socket, bound, ROLE, settings)
}
