//! How records reach the writer without a wake-up each: a busy writer comes back to the queue
//! on its own every [`BATCH`] and producers never wake it; only a writer that found the queue
//! empty and went to sleep is woken, by the first record after. A wake-up per record would cost
//! a thread switch per connection (measured: a third more CPU per short connection).

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

/// How long a busy writer lets records gather before it takes them.
pub(super) const BATCH: Duration = Duration::from_millis(10);

/// The writer's doorbell.
#[derive(Debug, Default)]
pub(super) struct Doorbell {
    /// The writer sleeps until rung (it found nothing to do).
    asleep: AtomicBool,
    writer: OnceLock<Thread>,
}

impl Doorbell {
    /// The writer thread, once it runs.
    pub(super) fn set_writer(&self, thread: Thread) {
        let _ = self.writer.set(thread);
    }

    /// A record was queued: wakes the writer only if it sleeps with nothing to do.
    #[inline]
    pub(super) fn ring(&self) {
        // Pairs with the fence in `sleep`: either the writer sees the record, or this sees
        // it asleep.
        fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::Relaxed) && self.asleep.swap(false, Ordering::AcqRel) {
            self.wake();
        }
    }

    /// Something that must not wait for the next batch (a reopen, a stop): wakes the writer.
    pub(super) fn ring_now(&self) {
        self.asleep.store(false, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        if let Some(writer) = self.writer.get() {
            writer.unpark();
        }
    }

    /// The writer, about to look at the queue one last time before it sleeps: from here on a
    /// record rings. `still_empty` is that look; the writer sleeps only if it says so.
    pub(super) fn sleep(&self, still_empty: impl FnOnce() -> bool) {
        self.asleep.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if still_empty() {
            std::thread::park();
        }
        self.asleep.store(false, Ordering::Relaxed);
    }
}
