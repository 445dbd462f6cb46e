//! Backends whose connections are to be closed at a deadline: an operator removed a backend
//! with a drain deadline, and what still runs on it then is cut.

use std::sync::Arc;
use std::time::Instant;

use crate::balance::backend::Backend;

#[derive(Default)]
pub(super) struct Removals {
    due: Vec<(Instant, Arc<Backend>)>,
}

impl Removals {
    /// Closes `backend`'s connections at `at`.
    pub(super) fn schedule(&mut self, at: Instant, backend: Arc<Backend>) {
        self.due.push((at, backend));
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.due.iter().map(|(at, _)| *at).min()
    }

    /// The backends whose deadline has come at `now`; the others stay.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Arc<Backend>> {
        if self.due.iter().all(|(at, _)| *at > now) {
            return Vec::new();
        }
        let (due, later) = std::mem::take(&mut self.due)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.due = later;
        due.into_iter().map(|(_, backend)| backend).collect()
    }
}
