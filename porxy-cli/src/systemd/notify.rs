//! `sd_notify` messages (see `systemd.service(5)`, `Type=notify` and `Type=notify-reload`):
//! `READY=1` once every tunnel listens, `RELOADING=1` with `MONOTONIC_USEC` then `READY=1`
//! around a reload, `STOPPING=1` when a graceful stop begins, `STATUS=` with what porxy is
//! doing. Sent only when `NOTIFY_SOCKET` is set; a failure to send is logged, never fatal.

use sd_notify::NotifyState;

/// Sends `states` to the service manager, if one listens.
fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Every tunnel listens: the service is up.
pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading"),
        ]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("reloading")]),
    }
}

/// A graceful stop begins.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// What porxy is doing, in words (`systemctl status` shows it).
pub(crate) fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// The watchdog's ping.
pub(crate) fn alive() {
    send(&[NotifyState::Watchdog]);
}
