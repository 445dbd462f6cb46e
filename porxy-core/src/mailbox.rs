//! A channel paired with a mio [`Waker`]: how threads hand work to a thread blocked in `poll`.
//!
//! Sending and waking are separate so that a sender handing over a batch (the listener after an
//! accept burst) wakes the receiver once, not once per message.

use std::io;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::{Registry, Token, Waker};

/// The token every thread's waker is registered with; socket tokens never reach it.
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// The sending half: messages for one polling thread.
pub(crate) struct Mailbox<T> {
    tx: Sender<T>,
    waker: Arc<Waker>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }
}

/// A new mailbox whose waker is registered with `registry` under [`WAKER_TOKEN`].
pub(crate) fn mailbox<T>(registry: &Registry) -> io::Result<(Mailbox<T>, Receiver<T>)> {
    let waker = Arc::new(Waker::new(registry, WAKER_TOKEN)?);
    let (tx, rx) = crossbeam_channel::unbounded();
    Ok((Mailbox { tx, waker }, rx))
}

impl<T> Mailbox<T> {
    /// Queues a message without waking the receiver; call [`Mailbox::wake`] after the batch.
    /// Gives the message back if the receiving thread is gone.
    pub(crate) fn queue(&self, msg: T) -> Result<(), T> {
        self.tx.send(msg).map_err(|e| e.0)
    }

    /// Wakes the receiving thread. A failed wake is harmless when the thread has gone.
    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::debug!(error = %e, "waker failed");
        }
    }

    /// Queues a message and wakes the receiver.
    pub(crate) fn send(&self, msg: T) -> Result<(), T> {
        self.queue(msg)?;
        self.wake();
        Ok(())
    }
}
