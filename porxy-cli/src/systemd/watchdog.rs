//! The systemd watchdog (`WatchdogSec=`): a thread pings at half the interval systemd asked
//! for, but only while every reactor answers a probe in time; a reactor stuck longer than that
//! stops the pings, and systemd restarts the service as it was told to.

use std::time::Duration;

use porxy_core::ProxyHandle;

/// Starts the watchdog thread if systemd asked for one (`WATCHDOG_USEC`, and `WATCHDOG_PID`
/// naming this process if set). The thread ends with the process.
pub(crate) fn start(handle: ProxyHandle) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = interval / 2;
    let spawned = std::thread::Builder::new()
        .name("porxy-watchdog".into())
        .spawn(move || run(&handle, every));
    match spawned {
        Ok(_) => tracing::info!(
            interval_ms = interval.as_millis() as u64,
            "systemd watchdog on"
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the watchdog thread; systemd will restart porxy")
        }
    }
}

fn run(handle: &ProxyHandle, every: Duration) {
    let mut stuck_before = false;
    loop {
        // The probe waits at most `every`: it paces the pings too.
        let started = std::time::Instant::now();
        let stuck = handle.unresponsive_reactors(every);
        if stuck.is_empty() {
            super::notify::alive();
            stuck_before = false;
        } else if !stuck_before {
            tracing::error!(reactors = ?stuck, "reactors do not answer: the watchdog pings stop");
            stuck_before = true;
        }
        if handle.is_stopping() && stuck.len() == handle.status().reactors.len() {
            return; // Every reactor has ended: the process is on its way out.
        }
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
}
