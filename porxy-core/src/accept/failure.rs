//! What a failed `accept` means for the thread that called it, the same for the listener thread
//! and the reactors.

use std::io::{self, ErrorKind};

/// An accept error, by what the accepting thread does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptFailure {
    /// Nobody is waiting (`WouldBlock`): wait for the next readiness.
    NoneWaiting,
    /// The error concerns one client only (it went away, a firewall refused it, a signal came):
    /// try the next one.
    OneClient,
    /// porxy is out of descriptors or memory: pause accepting for a while instead of spinning.
    Shortage,
    /// The listening socket itself failed: stop accepting from it for now.
    Broken,
}

impl AcceptFailure {
    pub(crate) fn of(error: &io::Error) -> AcceptFailure {
        match error.kind() {
            ErrorKind::WouldBlock => AcceptFailure::NoneWaiting,
            ErrorKind::Interrupted | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset => {
                AcceptFailure::OneClient
            }
            _ if matches!(error.raw_os_error(), Some(libc::EPROTO | libc::EPERM)) => {
                AcceptFailure::OneClient
            }
            _ if crate::conn::is_resource_shortage(error) => AcceptFailure::Shortage,
            _ => AcceptFailure::Broken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_classified_by_what_to_do() {
        let cases = [
            (
                io::Error::from(ErrorKind::WouldBlock),
                AcceptFailure::NoneWaiting,
            ),
            (
                io::Error::from(ErrorKind::ConnectionAborted),
                AcceptFailure::OneClient,
            ),
            (
                io::Error::from(ErrorKind::Interrupted),
                AcceptFailure::OneClient,
            ),
            (
                io::Error::from_raw_os_error(libc::EPROTO),
                AcceptFailure::OneClient,
            ),
            (
                io::Error::from_raw_os_error(libc::EPERM),
                AcceptFailure::OneClient,
            ),
            (
                io::Error::from_raw_os_error(libc::EMFILE),
                AcceptFailure::Shortage,
            ),
            (
                io::Error::from_raw_os_error(libc::ENFILE),
                AcceptFailure::Shortage,
            ),
            (
                io::Error::from_raw_os_error(libc::ENOBUFS),
                AcceptFailure::Shortage,
            ),
            (
                io::Error::from_raw_os_error(libc::EBADF),
                AcceptFailure::Broken,
            ),
            (
                io::Error::from_raw_os_error(libc::EINVAL),
                AcceptFailure::Broken,
            ),
        ];
        for (error, want) in cases {
            assert_eq!(AcceptFailure::of(&error), want, "{error:?}");
        }
    }
}
