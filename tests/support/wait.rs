//! Bounded waits: poll a condition until it holds or a deadline passes, then fail loudly.
//!
//! Counters and socket states change asynchronously; tests never sleep and hope, they poll with
//! a deadline and say what they were waiting for when it passes.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// Polls `cond` until it returns true. Panics, naming `what`, if `timeout` passes first.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Polls `probe` until `done` accepts its value, and returns that value. Panics, naming `what`
/// and showing the last value seen, if `timeout` passes first.
#[track_caller]
pub fn wait_for<T: Debug>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let value = probe();
        if done(&value) {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {value:#?}");
        }
        std::thread::sleep(POLL_EVERY);
    }
}
