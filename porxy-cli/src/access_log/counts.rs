//! What became of the access log's records: written, dropped (the queue was full: the writer
//! could not keep up), or failed (the write returned an error). For the metrics and status.

use std::sync::atomic::AtomicU64;

#[derive(Debug, Default)]
pub struct Counts {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
}
