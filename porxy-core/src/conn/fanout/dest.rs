//! One destination of a fan-out connection: where it stands, how far it has been sent the
//! client's stream, and how it left.

use std::time::Instant;

use crate::conn::close::CloseReason;
use crate::conn::{Closing, Readiness};

/// Why a destination left a connection before the end, or that it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DestEnd {
    /// It got every byte and the FIN, and sent its EOF.
    Finished,
    /// It fell more than `max_lag` behind.
    Lagged,
    /// Its connect failed.
    ConnectFailed(CloseReason),
    /// It reset the connection or its socket failed.
    Failed,
    /// Not connected: out of service or full when the client arrived.
    Skipped,
    /// The connection ended (a timeout) before it had every byte and the FIN: reset, so that
    /// it cannot take a cut-short stream for a whole one.
    CutShort,
    /// It had left (for any reason but [`DestEnd::Finished`]) in the process the connection
    /// was handed over from; it never comes back.
    Left,
}

/// Where one destination stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DestPhase {
    Connecting { since: Instant },
    Open,
    Ended(DestEnd),
}

/// One destination of a fan-out connection.
#[derive(Debug)]
pub(super) struct Dest {
    pub(super) phase: DestPhase,
    pub(super) ready: Readiness,
    /// Position in the client's stream up to which it has been sent everything.
    pub(super) sent: u64,
    pub(super) fin_sent: bool,
    /// It sent EOF: its replies are over.
    pub(super) eof: bool,
    /// Bytes written to it and not yet counted.
    pub(super) unreported: u64,
}

impl Dest {
    pub(super) fn live(&self) -> bool {
        !matches!(self.phase, DestPhase::Ended(_))
    }

    pub(super) fn open(&self) -> bool {
        self.phase == DestPhase::Open
    }
}

/// A destination that has just left, for the reactor to close and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Departure {
    pub(crate) dest: usize,
    pub(crate) end: DestEnd,
    pub(crate) closing: Closing,
}
