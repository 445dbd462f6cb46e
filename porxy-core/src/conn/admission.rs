//! Who may connect: the verdict on a client, given once its opening is over and its real
//! address is known (the one a PROXY header names, else its peer), before a backend is picked.
//!
//! A tunnel with no rules asks nothing. Rules (allowed and refused networks, per-client limits)
//! are one implementation of [`Admission`]; the reactor asks it at the one place every
//! connection passes before its pick, relayed or fan-out, and closes a refused client with the
//! reason the rules give.

use std::net::SocketAddr;

use super::close::CloseReason;

/// A tunnel's rules on who may connect.
pub(crate) trait Admission: Send + Sync {
    /// The verdict on `client` (its real address).
    fn admit(&self, client: SocketAddr) -> Verdict;
}

/// What [`Admission::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Admit,
    /// Refused: the client is closed for this reason.
    Refuse(CloseReason),
}
