//! What a connection's machine tells the reactor to do after an input ([`Action`]), and how a
//! socket is to be closed ([`Closing`]).

use std::net::SocketAddr;

use super::close::CloseReason;

/// How the reactor must close one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Plain close: FIN if not already sent.
    Graceful,
    /// Close with a reset (SO_LINGER 0), so the peer sees what it would see without the proxy.
    Reset,
}

/// What the reactor must do after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing until the next readiness or deadline.
    Wait,
    /// The drive budget ran out with work left: drive again after other connections.
    Again,
    /// The connection is ready for a backend (its opening is over, or it had none): pick
    /// one and connect, or queue while every backend is full. `source`: the client its
    /// opening named (a PROXY header's), which the pick and the logs take for the peer.
    Pick { source: Option<SocketAddr> },
    /// The upstream connect failed (refused, timed out or failed, or porxy ran short of its
    /// own resources: [`CloseReason::LocalResource`]). The glue counts it against the backend
    /// (not porxy's own shortage), gives the backend's slot back, then does what `next` says.
    ConnectFailed(ConnectFailure),
    /// The connection is over: close the sockets this way.
    Close {
        reason: CloseReason,
        client: Closing,
        upstream: Closing,
    },
}

/// A failed upstream connect: why, and what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectFailure {
    pub(crate) failed: CloseReason,
    pub(crate) next: AfterConnectFailure,
}

/// What follows a failed upstream connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterConnectFailure {
    /// Attempts remain: connect to another backend and call [`Conn::restart_connect`], or
    /// [`Conn::give_up`] if there is none.
    TryAnother,
    /// None remain: the connection is over (closed with the failure as its reason); close its
    /// sockets this way.
    Close { client: Closing, upstream: Closing },
}

impl Action {
    /// For [`Action::Close`]: why, and how to close the client and the upstream side(s).
    pub(crate) fn closing(self) -> Option<(CloseReason, Closing, Closing)> {
        match self {
            Action::Close {
                reason,
                client,
                upstream,
            } => Some((reason, client, upstream)),
            _ => None,
        }
    }
}
