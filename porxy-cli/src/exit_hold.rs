//! Work the process must finish before it exits, even once the proxy has stopped: an upgrade
//! conversation answering its successor's request for the established connections. With
//! nothing to drain, a taken-over porxy stops at once; without a hold it would exit while its
//! successor waits for the answer, and the successor would log a failed transfer that never
//! was one.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The holds on the process's exit.
#[derive(Debug, Default)]
pub(crate) struct ExitHolds {
    held: Mutex<usize>,
    released: Condvar,
}

/// One hold: the exit waits while it lives.
#[derive(Debug)]
pub(crate) struct ExitHold(Arc<ExitHolds>);

impl ExitHolds {
    /// A hold on the exit, until the guard is dropped.
    pub(crate) fn hold(self: &Arc<Self>) -> ExitHold {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        ExitHold(self.clone())
    }

    /// Waits until no hold is left, for at most `limit`; whether none is.
    pub(crate) fn wait(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while *held > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            held = self
                .released
                .wait_timeout(held, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl Drop for ExitHold {
    fn drop(&mut self) {
        let mut held = self.0.held.lock().unwrap_or_else(|p| p.into_inner());
        *held = held.saturating_sub(1);
        self.0.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_waits_for_every_hold_and_no_longer() {
        let holds = Arc::new(ExitHolds::default());
        assert!(holds.wait(Duration::ZERO), "nothing held");
        let hold = holds.hold();
        assert!(!holds.wait(Duration::from_millis(10)), "held");
        let released = std::thread::spawn(move || drop(hold));
        assert!(holds.wait(Duration::from_secs(10)));
        released.join().unwrap();
    }
}
