//! The control socket's front end: its socket (`crate::clients::listener`, shared with the
//! HTTP admin endpoint) hands each client to a line-protocol session ([`super::session`]);
//! sessions share nothing but the proxy handle, so a slow client delays no other.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use porxy_core::ProxyHandle;

use super::execute::Context;
use super::session;
use crate::clients::listener::{self, Starter};
use crate::clients::{
    reachable_from_outside, BoundAddr, ClientStream, Closer, Deadlines, ListenError, ListenSocket,
    Register,
};

/// The socket's name in errors and logs.
pub const ROLE: &str = "control socket";

/// Starts line-protocol sessions.
struct Sessions {
    handle: ProxyHandle,
    ctx: Context,
    register: Arc<Register>,
    deadlines: Deadlines,
}

impl Starter for Sessions {
    fn start<S: ClientStream>(&self, stream: S) -> io::Result<()> {
        session::start(
            stream,
            &self.handle,
            &self.ctx,
            &self.register,
            self.deadlines,
        )
    }
}

/// Serves a bound control socket on a thread of its own; a client that completes no line
/// within `idle_timeout` is disconnected. `register` bounds its clients together with the
/// admin endpoint's.
pub fn serve(
    socket: ListenSocket,
    bound: BoundAddr,
    handle: ProxyHandle,
    ctx: Context,
    idle_timeout: Duration,
    register: Arc<Register>,
) -> Result<Closer, ListenError> {
    if reachable_from_outside(&bound) {
        tracing::warn!(
            control = %bound,
            "the control socket listens beyond loopback: whoever reaches it controls the proxy"
        );
    }
    let sessions = Sessions {
        handle,
        ctx,
        register,
        deadlines: Deadlines::new(idle_timeout),
    };
    listener::serve(socket, bound, ROLE, sessions)
}
