//! What the poller reported for a socket, as every machine keeps it.

/// What the poller reported for one socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// An error or hang-up (or urgent data, see `reactor::SOCKET_INTEREST`): the next read or
    /// write will say what happened. Once reported it stays: the EOF or error waits in the
    /// socket and raises no new event, so reads go on until it shows (a read that runs short
    /// proves nothing then; see `pipe.rs`).
    pub(crate) failed: bool,
}

impl Readiness {
    /// Adds what the poller reported. Readiness is only ever added here; it is cleared by the
    /// steps that get `WouldBlock` (see `step.rs`). On an error or hang-up both directions try
    /// their call: it reports the cause.
    #[inline]
    pub(crate) fn merge(&mut self, reported: Readiness) {
        self.readable |= reported.readable || reported.failed;
        self.writable |= reported.writable || reported.failed;
        self.failed |= reported.failed;
    }
}
