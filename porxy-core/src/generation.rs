//! Configuration generations: which version of the configuration a connection started under.
//!
//! Every reload makes a new generation, and every tunnel version carries the generation it was
//! built in; a connection counts against its tunnel version's generation from accept to close.
//! Status lists the current generation and every older one that still holds connections, so an
//! operator sees the old configuration drain away after a reload.

use std::sync::atomic::{AtomicU64, Ordering};

/// One generation and the connections it holds now (on every reactor).
#[derive(Debug)]
pub(crate) struct Generation {
    pub(crate) id: u64,
    open: AtomicU64,
}

impl Generation {
    pub(crate) fn new(id: u64) -> Self {
        Generation {
            id,
            open: AtomicU64::new(0),
        }
    }

    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
}

/// A snapshot of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GenerationStatus {
    /// The generation: 1 at start, one more at every reload.
    pub id: u64,
    /// Connections that started under it and are still open.
    pub open: u64,
    /// True for the generation new connections start under.
    pub current: bool,
}

impl GenerationStatus {
    /// Generation `id` holding `open` connections (`current`: the one new connections start
    /// under). Made by the proxy; public for a front end's own tests.
    pub fn new(id: u64, open: u64, current: bool) -> GenerationStatus {
        GenerationStatus { id, open, current }
    }
}
