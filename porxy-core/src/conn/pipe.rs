//! One direction of a relay: bytes read from a source stream, buffered, written to a sink.
//!
//! A pipe knows nothing of sockets or polling. The caller tells it what the source and the sink
//! are ready for; it reads and writes until one of them would block, its buffer is full, or the
//! iteration budget runs out, and it clears a readiness flag only when a call said `WouldBlock`
//! (or a short write proved the sink full). A FIN from the source is passed on as
//! `shutdown_write` on the sink once every buffered byte is written.

use std::io::{self, ErrorKind};

use crate::buffer::{Buffer, BufferPool};
use crate::conn::stream::Stream;

/// How far the pipe has got towards passing on the source's EOF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PipeState {
    /// Bytes flow.
    Open,
    /// The source sent EOF; buffered bytes are still being written.
    Draining,
    /// EOF was passed on: the sink's write side is shut down.
    Done,
}

/// Which end of a pipe failed.
#[derive(Debug)]
pub(crate) enum PipeError {
    Source(io::Error),
    Sink(io::Error),
}

/// What one [`Pipe::pump`] call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pumped {
    /// Bytes written to the sink.
    pub(crate) moved: u64,
    /// Bytes read from the source (activity, even if not yet written).
    pub(crate) read: u64,
    /// The source's EOF arrived in this call.
    pub(crate) finished: bool,
    /// The budget ran out while there was still work to do.
    pub(crate) yielded: bool,
}

/// What a pipe holds in user space, taken out to carry the connection to another process:
/// how far the source's end of stream has got, and the bytes read and not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PipeSnapshot {
    pub(crate) state: PipeState,
    pub(crate) pending: Vec<u8>,
}

/// One direction of a relay.
pub(crate) struct Pipe {
    state: PipeState,
    buf: Option<Buffer>,
    /// The other direction is over too, so the connection closes as soon as this one is: the
    /// close sends the FIN, and a `shutdown_write` first would be a syscall for nothing.
    last: bool,
}

impl Pipe {
    pub(crate) fn new() -> Self {
        Pipe {
            state: PipeState::Open,
            buf: None,
            last: false,
        }
    }

    /// A pipe that goes on from `snapshot` (taken by [`Pipe::freeze`], maybe in another
    /// process): the pending bytes are written first, and the end of stream stays as far as it
    /// had got.
    pub(crate) fn restore(snapshot: &PipeSnapshot, pool: &mut BufferPool) -> Self {
        Pipe {
            state: snapshot.state,
            buf: (!snapshot.pending.is_empty()).then(|| pool.take_filled(&snapshot.pending)),
            last: false,
        }
    }

    /// Takes the pipe's state out, and gives its buffer back to `pool`. The pipe is left empty:
    /// it must not be pumped again.
    pub(crate) fn freeze(&mut self, pool: &mut BufferPool) -> PipeSnapshot {
        let pending = match self.buf.take() {
            Some(buf) => {
                let pending = buf.pending().to_vec();
                pool.give(buf);
                pending
            }
            None => Vec::new(),
        };
        PipeSnapshot {
            state: self.state,
            pending,
        }
    }

    /// Tells the pipe whether the other direction is over (see [`Pipe::last`]).
    pub(crate) fn set_last(&mut self, last: bool) {
        self.last = last;
    }

    pub(crate) fn state(&self) -> PipeState {
        self.state
    }

    /// Bytes read and not yet written.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.pending().len())
    }

    /// Moves bytes from `src` to `dst` while readiness allows, spending at most `budget`
    /// syscalls (each read, write or shutdown costs one).
    ///
    /// What was done is returned even when a call failed: bytes written before the failure
    /// were relayed and must be counted.
    pub(crate) fn pump(
        &mut self,
        src: &mut impl Stream,
        src_readable: &mut bool,
        dst: &mut impl Stream,
        dst_writable: &mut bool,
        pool: &mut BufferPool,
        budget: &mut u32,
    ) -> (Pumped, Result<(), PipeError>) {
        let mut done = Pumped::default();
        let result = self.pump_inner(
            src,
            src_readable,
            dst,
            dst_writable,
            pool,
            budget,
            &mut done,
        );
        // A buffer is held only while bytes are in flight.
        if self.buf.as_ref().is_some_and(Buffer::is_empty) {
            if let Some(buf) = self.buf.take() {
                pool.give(buf);
            }
        }
        (done, result)
    }

    #[allow(clippy::too_many_arguments)]
    fn pump_inner(
        &mut self,
        src: &mut impl Stream,
        src_readable: &mut bool,
        dst: &mut impl Stream,
        dst_writable: &mut bool,
        pool: &mut BufferPool,
        budget: &mut u32,
        done: &mut Pumped,
    ) -> Result<(), PipeError> {
        loop {
            let pending = self.buffered() > 0;
            let can_write = pending && *dst_writable;
            let room = !self.buf.as_ref().is_some_and(Buffer::is_full);
            let can_read = self.state == PipeState::Open && *src_readable && room;
            let can_finish = self.state == PipeState::Draining && !pending;
            if !(can_write || can_read || can_finish) {
                return Ok(());
            }
            if *budget == 0 {
                done.yielded = true;
                return Ok(());
            }
            *budget -= 1;
            if can_write {
                let buf = self.buf.as_mut().expect("pending bytes live in a buffer");
                let want = buf.pending().len();
                match dst.write(buf.pending()) {
                    Ok(0) => return Err(PipeError::Sink(ErrorKind::WriteZero.into())),
                    Ok(n) => {
                        buf.consumed(n);
                        done.moved += n as u64;
                        // A short write means the socket's send buffer is full: the next
                        // writable event says when there is room again.
                        if n < want {
                            *dst_writable = false;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => *dst_writable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(PipeError::Sink(e)),
                }
            } else if can_read {
                let buf = self.buf.get_or_insert_with(|| pool.take());
                match src.read(buf.spare()) {
                    Ok(0) => {
                        self.state = PipeState::Draining;
                        done.finished = true;
                    }
                    Ok(n) => {
                        buf.filled(n);
                        done.read += n as u64;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => *src_readable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(PipeError::Source(e)),
                }
            } else {
                if !self.last {
                    dst.shutdown_write().map_err(PipeError::Sink)?;
                }
                self.state = PipeState::Done;
            }
        }
    }
}
