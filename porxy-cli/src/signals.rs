//! Stop signals: the first SIGINT or SIGTERM starts a graceful stop, a second one stops now.
//!
//! Registration ([`StopSignals::register`]) happens before the proxy starts, so a signal that
//! arrives while tunnels open is queued rather than killing the process with the default
//! action; the watching thread starts once there is a proxy to stop ([`StopSignals::watch`]).

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use porxy_core::{ProxyHandle, StopMode};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

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
            signals: Signals::new([SIGINT, SIGTERM])?,
        })
    }

    /// Starts acting on the signals, queued ones included.
    pub(crate) fn watch(self, proxy: ProxyHandle, drain: Duration) -> io::Result<SignalWatcher> {
        let mut signals = self.signals;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("porxy-signals".into())
            .spawn(move || {
                for (count, signal) in signals.forever().enumerate() {
                    on_signal(&proxy, count, signal, drain);
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

/// Acts on the `count`th (0-based) stop signal.
fn on_signal(proxy: &ProxyHandle, count: usize, signal: i32, drain: Duration) {
    let name = match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    };
    match count {
        0 => {
            tracing::info!(
                signal = name,
                drain_timeout = %porxy_core::units::format_duration(drain),
                "stopping: no new connections, open ones may finish; \
                 send SIGINT or SIGTERM again to stop now"
            );
            proxy.stop(StopMode::Graceful { timeout: drain });
        }
        1 => {
            tracing::warn!(signal = name, "stopping now: cutting open connections");
            proxy.stop(StopMode::Now);
        }
        _ => tracing::debug!(signal = name, "already stopping now"),
    }
}
