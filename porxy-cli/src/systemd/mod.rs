//! Life under systemd: readiness and state notifications (`Type=notify`), the watchdog, and
//! listening sockets passed by socket activation. Each does nothing when systemd did not ask
//! for it (no `NOTIFY_SOCKET`, no `WATCHDOG_USEC`, no `LISTEN_FDS`), so the same binary runs
//! the same way by hand.

pub(crate) mod activation;
pub(crate) mod notify;
pub(crate) mod watchdog;
