//! Signals: the first SIGINT or SIGTERM starts a graceful stop, a second one stops now; SIGHUP
//! reloads the configuration file; SIGUSR1 reopens the access log's files (for logrotate).
//!
//! Registration ([`StopSignals::register`]) happens before the proxy starts, so a signal that
//! arrives while tunnels open is queued rather than killing the process with the default
//! action; the watching thread starts once there is a proxy to stop ([`StopSignals::watch`]).

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::{Handle, Signals};

use crate::reload::{ReloadMode, Reloader};
use crate::stopping::Stopper;

/// SIGINT and SIGTERM, registered and queued, not yet acted on.
pub(crate) struct StopSignals {
    signals: Signals,
}

/// The thread that turns stop signals into [`ProxyHandle::stop`] calls.
pub(crate) struct SignalWatcher {
    handle: Handle,
    thread: JoinHandle<()>,
}

impl StopSignals {
    /// Takes over SIGINT and SIGTERM.
    pub(crate) fn register() -> io::Result<StopSignals> {
        Ok(StopSignals {
            signals: Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?,
        })
    }

    /// Starts acting on the signals, queued ones included.
    pub(crate) fn watch(
        self,
        stopper: Arc<Stopper>,
        reloader: Arc<Reloader>,
    ) -> io::Result<SignalWatcher> {
        let mut signals = self.signals;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("porxy-signals".into())
            .spawn(move || {
                let mut stops = 0;
                for signal in signals.forever() {
                    if signal == SIGUSR1 {
                        reopen_access_log(&reloader);
                        continue;
                    }
                    if signal == SIGHUP {
                        tracing::info!(signal = "SIGHUP", "reloading the configuration");
                        // The reloader logs its outcome.
                        let _ = reloader.reload(ReloadMode::Guarded);
                        continue;
                    }
                    on_stop_signal(&stopper, stops, signal);
                    stops += 1;
                }
            })?;
        Ok(SignalWatcher { handle, thread })
    }
}

impl SignalWatcher {
    /// Stops watching and waits for the thread (after the proxy has stopped).
    pub(crate) fn finish(self) {
        self.handle.close();
        if self.thread.join().is_err() {
            tracing::error!("the signal thread panicked");
        }
    }
}

/// SIGUSR1: the access log's files are opened again by path; a failure is logged and the
/// old files stay in use.
fn reopen_access_log(reloader: &Reloader) {
    match reloader.access_log.reopen() {
        Ok(files) => tracing::info!(signal = "SIGUSR1", files, "access log reopened"),
        Err(e) => {
            tracing::warn!(signal = "SIGUSR1", error = %e, "cannot reopen the access log; writing on to the old file")
        }
    }
}

/// Acts on the `count`th (0-based) stop signal.
fn on_stop_signal(stopper: &Stopper, count: usize, signal: i32) {
    let name = if signal == SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    match count {
        0 => {
            tracing::info!(
                signal = name,
                drain_timeout = %porxy_core::units::format_duration(stopper.drain_timeout()),
                "stopping: no new connections, open ones may finish; \
                 send SIGINT or SIGTERM again to stop now"
            );
            stopper.graceful();
        }
        1 => {
            tracing::warn!(signal = name, "stopping now: cutting open connections");
            stopper.now();
        }
        _ => tracing::debug!(signal = name, "already stopping now"),
    }
}
