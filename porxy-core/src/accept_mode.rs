//! Which threads accept new clients: a setting of the proxy, named in configuration files and
//! on the command line. A leaf: the configuration uses it without the accepting machinery.

use std::fmt;
use std::str::FromStr;

/// Which threads accept new clients.
///
/// Both modes keep the same guarantees: the connection limit (clients past it wait in the listen
/// backlog), the pause when descriptors run out, process-wide connection ids, per-tunnel counts
/// and a graceful stop that accepts nobody after it has begun. They differ in cost and in how
/// clients are spread over the reactors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptMode {
    /// The listener thread accepts every client and deals them to the reactors strictly in turn.
    /// Each connection costs a hand-over: a channel message and a wake-up of the reactor (a
    /// thread switch when they share a CPU).
    Listener,
    /// Every reactor accepts from every listening socket (each socket is in every reactor's
    /// epoll with `EPOLLEXCLUSIVE`, so the kernel wakes one reactor per new client, not all).
    /// No hand-over: measured with `bench/run.sh`, about a quarter less CPU per short
    /// connection.
    /// A reactor that holds more than its share of the open connections (the average over the
    /// reactors plus a few) steps aside until the others catch up, so the spread stays even
    /// within a few connections. Linux only; elsewhere this means [`AcceptMode::Listener`].
    #[default]
    Reactors,
}

impl AcceptMode {
    /// The mode's name in configuration files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptMode::Listener => "listener",
            AcceptMode::Reactors => "reactors",
        }
    }

    /// The mode this platform runs when `self` is asked for: reactors accept only where the
    /// kernel has epoll with `EPOLLEXCLUSIVE` (Linux).
    pub(crate) fn effective(self) -> AcceptMode {
        if cfg!(any(target_os = "linux", target_os = "android")) {
            self
        } else {
            AcceptMode::Listener
        }
    }
}

impl fmt::Display for AcceptMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no [`AcceptMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown accept mode `{0}`; expected `reactors` or `listener`")]
pub struct AcceptModeError(String);

impl FromStr for AcceptMode {
    type Err = AcceptModeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "listener" => Ok(AcceptMode::Listener),
            "reactors" => Ok(AcceptMode::Reactors),
            other => Err(AcceptModeError(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for mode in [AcceptMode::Listener, AcceptMode::Reactors] {
            assert_eq!(mode.as_str().parse::<AcceptMode>(), Ok(mode));
            assert_eq!(mode.to_string(), mode.as_str());
        }
        let err = "kernel".parse::<AcceptMode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown accept mode `kernel`; expected `reactors` or `listener`"
        );
    }
}
