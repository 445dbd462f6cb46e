//! Stopping the running proxy, from a signal or from the control socket, the same way.
//!
//! A graceful stop closes every listening socket (the control socket and the admin endpoint
//! included: sessions already open stay, so an operator can watch the drain), lets connections finish up to the
//! drain timeout, and logs how many are left every few seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use porxy_core::{ProxyHandle, StopMode};

use crate::clients::Closer;
use crate::exit_hold::{ExitHold, ExitHolds};

/// How often a draining porxy logs the connections it still holds.
const DRAIN_REPORT_EVERY: Duration = Duration::from_secs(5);

/// Everything a stop needs; shared by the signal thread and the control sessions.
pub(crate) struct Stopper {
    handle: ProxyHandle,
    drain_timeout: Duration,
    control: OnceLock<Closer>,
    /// The other front ends' sockets (admin endpoint, JSON-RPC, metrics).
    fronts: Mutex<Vec<Closer>>,
    reporting: AtomicBool,
    /// Work the process finishes before it exits, stopped or not.
    exit_holds: Arc<ExitHolds>,
}

impl Stopper {
    pub(crate) fn new(handle: ProxyHandle, drain_timeout: Duration) -> Arc<Stopper> {
        Arc::new(Stopper {
            handle,
            drain_timeout,
            control: OnceLock::new(),
            fronts: Mutex::new(Vec::new()),
            reporting: AtomicBool::new(false),
            exit_holds: Arc::default(),
        })
    }

    /// Holds the process's exit until the guard is dropped (see `exit_hold.rs`).
    pub(crate) fn hold_exit(&self) -> ExitHold {
        self.exit_holds.hold()
    }

    /// Waits, at most `limit`, for the holds on the exit; whether none is left.
    pub(crate) fn wait_for_exit_holds(&self, limit: Duration) -> bool {
        self.exit_holds.wait(limit)
    }

    /// The control socket to close when a stop begins.
    pub(crate) fn set_control(&self, closer: Closer) {
        let _ = self.control.set(closer);
    }

    /// A front end's socket to close when a stop begins (the admin endpoint, JSON-RPC,
    /// metrics: a redeploy's new porxy waits for their addresses).
    pub(crate) fn add_front(&self, closer: Closer) {
        self.fronts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(closer);
    }

    pub(crate) fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// Stops accepting everywhere and lets connections finish, up to the drain timeout.
    pub(crate) fn graceful(&self) {
        crate::systemd::notify::stopping();
        self.handle.stop(StopMode::Graceful {
            timeout: self.drain_timeout,
        });
        self.close_control();
        self.report_drain();
    }

    /// Stops accepting and cuts every connection now.
    pub(crate) fn now(&self) {
        self.handle.stop(StopMode::Now);
        self.close_control();
    }

    /// The control socket's address and a duplicate of it, for a new process to take over.
    pub(crate) fn control_handover(
        &self,
    ) -> Option<(crate::clients::BoundAddr, std::os::fd::OwnedFd)> {
        let closer = self.control.get()?;
        match closer.hand_over() {
            Ok(pair) => Some(pair),
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand over the control socket");
                None
            }
        }
    }

    /// The takeover failed: this process keeps its control socket as it was.
    pub(crate) fn cancel_control_handover(&self) {
        if let Some(closer) = self.control.get() {
            closer.cancel_hand_over();
        }
    }

    /// Closes the control socket and the admin endpoint (their open sessions go on, so that
    /// an operator can watch the drain).
    fn close_control(&self) {
        if let Some(closer) = self.control.get() {
            closer.close();
        }
        for closer in self.fronts.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            closer.close();
        }
    }

    /// Logs the connections left every few seconds, until the process ends.
    fn report_drain(&self) {
        if self.reporting.swap(true, Ordering::SeqCst) {
            return;
        }
        let handle = self.handle.clone();
        let spawned = std::thread::Builder::new()
            .name("porxy-drain-report".into())
            .spawn(move || loop {
                // A periodic report, not a wait for a condition: the process ends under it.
                std::thread::sleep(DRAIN_REPORT_EVERY);
                let left = handle.status().open_connections();
                tracing::info!(connections_left = left, "draining");
                crate::systemd::notify::status(&format!("draining: {left} connections left"));
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the drain report");
        }
    }
}
