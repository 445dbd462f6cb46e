//! What became of the access log's records: written, dropped (the queue was full: the writer
//! could not keep up), or failed (the write returned an error). For the metrics and status.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counts {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
}

/// The counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub written: u64,
    pub dropped: u64,
    pub failed: u64,
}

impl Counts {
    pub fn snapshot(&self) -> RecordCounts {
        RecordCounts {
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}
