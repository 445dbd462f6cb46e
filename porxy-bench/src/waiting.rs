//! Waiting that an interrupt (Ctrl-C) cuts short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Sleeps, in short steps so that Ctrl-C is noticed quickly.
pub fn sleep_checked(length: Duration, interrupted: &AtomicBool) -> Result<()> {
    let end = Instant::now() + length;
    loop {
        if interrupted.load(Ordering::Relaxed) {
            return Err(Error::new("interrupted"));
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}
