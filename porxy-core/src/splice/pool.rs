//! A reactor's pipes: a bounded stock of free ones, and a cap on how many are open at once.
//!
//! As with relay buffers, a direction holds a pipe only while bytes are in it, so an idle
//! connection holds none. Each pipe costs two descriptors, so a reactor keeps at most `cap` open
//! (lent and in stock), and the automatic connection limit leaves room for them (see
//! [`crate::config::MAX_PIPES_PER_REACTOR`]); at the cap a direction copies that burst instead.
//! Falling back to copying is counted here and logged once per cause, then only at powers of two.

use std::io;
use std::sync::Arc;

use super::fallback::{Fallback, FallbackCounts};
use super::kernel::KernelPipe;

/// Free pipes a reactor keeps at most; more are closed when given back.
const MAX_FREE: usize = 16;

/// A reactor's stock of free pipes, all of one size.
pub(crate) struct PipePool {
    /// Bytes asked of each pipe: the configured pipe size.
    size: usize,
    free: Vec<KernelPipe>,
    /// Most pipes open at once, lent and free.
    cap: usize,
    /// Every open pipe holds a clone: the strong count less one is the number open.
    token: Arc<()>,
    /// Fallbacks so far, shared with the reactor's status.
    fallbacks: Arc<FallbackCounts>,
    /// Makes the next creation fail with this OS error, to test the fallback.
    #[cfg(test)]
    pub(crate) fail_next: Option<i32>,
}

impl PipePool {
    /// A pool of pipes of `size` bytes, at most `cap` of them open at once.
    pub(crate) fn new(size: usize, cap: usize) -> Self {
        PipePool {
            size,
            free: Vec::new(),
            cap,
            token: Arc::new(()),
            fallbacks: Arc::default(),
            #[cfg(test)]
            fail_next: None,
        }
    }

    /// An empty pipe, from the stock when there is one. `Ok(None)` when the reactor already
    /// has `cap` pipes open (counted as a [`Fallback::Budget`]); an error when the kernel would
    /// not make one.
    pub(crate) fn take(&mut self) -> io::Result<Option<KernelPipe>> {
        if let Some(pipe) = self.free.pop() {
            return Ok(Some(pipe));
        }
        if self.open() >= self.cap {
            self.fell_back(Fallback::Budget, None);
            return Ok(None);
        }
        #[cfg(test)]
        if let Some(errno) = self.fail_next.take() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        KernelPipe::new(self.size, self.token.clone()).map(Some)
    }

    /// Takes a pipe back: into the stock when it is empty, never failed and the stock has room;
    /// otherwise it is closed.
    pub(crate) fn give(&mut self, pipe: KernelPipe) {
        if pipe.is_reusable() && self.free.len() < MAX_FREE {
            self.free.push(pipe);
        }
    }

    /// Counts a fallback to copying, and logs it: the first of each cause on this reactor at
    /// warn level (debug for the budget, which is expected under load), later ones at debug
    /// level when the count reaches a power of two.
    pub(crate) fn fell_back(&mut self, why: Fallback, error: Option<&io::Error>) {
        let count = self.fallbacks.record(why);
        let error = error.map(|e| e.to_string());
        let error = error.as_deref().unwrap_or("");
        match why {
            Fallback::Budget if count == 1 => tracing::debug!(
                cap = self.cap,
                "every pipe of this reactor is in use: copying instead of splicing"
            ),
            Fallback::Create if count == 1 => tracing::warn!(
                error,
                "cannot create a pipe for splice(2): copying instead; later cases are logged at debug level"
            ),
            Fallback::Unsupported if count == 1 => tracing::warn!(
                error,
                "a socket does not take splice(2): copying instead; later cases are logged at debug level"
            ),
            _ if count.is_power_of_two() => {
                tracing::debug!(cause = ?why, count, error, "copying instead of splicing")
            }
            _ => {}
        }
    }

    /// Pipes open now, lent and free.
    pub(crate) fn open(&self) -> usize {
        Arc::strong_count(&self.token) - 1
    }

    /// Fallbacks counted so far for `why`.
    #[cfg(test)]
    pub(crate) fn fallbacks(&self, why: Fallback) -> u64 {
        self.fallbacks.get(why)
    }

    /// The fallback counts, for the reactor's status.
    pub(crate) fn fallback_counts(&self) -> Arc<FallbackCounts> {
        self.fallbacks.clone()
    }

    #[cfg(test)]
    pub(crate) fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Pipes taken and not given back: held by directions (or dropped with them, which closes
    /// them).
    #[cfg(test)]
    pub(crate) fn lent(&self) -> usize {
        self.open() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_reused_and_capped() {
        let mut pool = PipePool::new(4096, 2);
        let a = pool.take().unwrap().expect("under the cap");
        let b = pool.take().unwrap().expect("under the cap");
        assert_eq!(pool.open(), 2);
        assert!(pool.take().unwrap().is_none(), "at the cap");
        assert_eq!(pool.fallbacks(Fallback::Budget), 1);
        pool.give(a);
        assert_eq!((pool.lent(), pool.free_count()), (1, 1));
        let again = pool.take().unwrap().expect("from the stock");
        assert_eq!(pool.open(), 2, "reused, not created");
        drop(again);
        drop(b);
        assert_eq!(pool.open(), 0, "a dropped pipe is closed and uncounted");
    }

    #[test]
    fn a_pipe_with_bytes_or_an_error_is_closed_not_stocked() {
        let mut pool = PipePool::new(4096, 4);
        let mut full = pool.take().unwrap().unwrap();
        full.push(b"stale").unwrap();
        pool.give(full);
        let mut failed = pool.take().unwrap().unwrap();
        failed.mark_failed();
        pool.give(failed);
        assert_eq!((pool.open(), pool.free_count()), (0, 0));
    }

    #[test]
    fn a_failed_creation_is_an_error() {
        let mut pool = PipePool::new(4096, 4);
        pool.fail_next = Some(libc::EMFILE);
        let err = pool.take().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE));
        assert!(pool.take().unwrap().is_some(), "the next one is made");
    }
}
