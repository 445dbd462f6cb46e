//! Where a direction keeps the bytes it has read and not yet written: a user-space buffer (the
//! copy path) or a kernel pipe (the splice path), and the per-reactor pools both come from.
//!
//! [`Pipe`](super::pipe::Pipe) decides what to do; this says how much is held and how much more
//! fits, the same way for both, so that one logic serves both paths.

use crate::buffer::{Buffer, BufferPool};
use crate::splice::{KernelPipe, PipePool};

/// A read of at least this many bytes marks a direction as carrying bulk data (see
/// [`Pools::bulk_read`]).
const BULK_READ: usize = 8 * 1024;

/// A reactor's stocks of what directions hold while bytes are in flight.
pub(crate) struct Pools {
    pub(crate) buffers: BufferPool,
    pub(crate) pipes: PipePool,
    /// On the splice path, a read of at least this many bytes, or one that filled all the room
    /// it was given, marks the direction as carrying bulk data, and its next bytes go through a
    /// pipe; after a smaller read they go through a buffer. For a small message two splices
    /// cost more than two copies (the kernel copies small socket data into a page to splice it,
    /// and every splice locks the pipe), so request/response traffic is copied and bulk
    /// transfers are spliced. 0: always splice.
    pub(crate) bulk_read: usize,
}

impl Pools {
    /// Buffers of `buffer_size` bytes, and at most `max_pipes` pipes of `pipe_size` bytes.
    pub(crate) fn new(buffer_size: usize, pipe_size: usize, max_pipes: usize) -> Self {
        Pools {
            buffers: BufferPool::new(buffer_size),
            pipes: PipePool::new(pipe_size, max_pipes),
            bulk_read: BULK_READ,
        }
    }

    /// Buffers and pipes taken and not given back.
    #[cfg(test)]
    pub(crate) fn lent(&self) -> usize {
        self.buffers.lent() + self.pipes.lent()
    }

    /// Free buffers and pipes in stock.
    #[cfg(test)]
    pub(crate) fn stocked(&self) -> usize {
        self.buffers.free_count() + self.pipes.free_count()
    }
}

/// How a direction moves its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// read(2) into a buffer, write(2) out of it.
    Copy,
    /// splice(2) into a kernel pipe and out of it; the bytes never enter user space.
    Splice,
}

/// The bytes one direction has read and not yet written, and where they wait.
pub(crate) enum Held {
    /// Nothing in flight: the direction holds neither a buffer nor a pipe.
    Nothing,
    Buffer(Buffer),
    Pipe(KernelPipe),
}

impl Held {
    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        match self {
            Held::Nothing => 0,
            Held::Buffer(buf) => buf.pending().len(),
            Held::Pipe(pipe) => pipe.len(),
        }
    }

    /// Bytes that may still be read in (0 when full). Nothing held means a whole buffer's worth:
    /// whichever is taken next has that room.
    pub(crate) fn room(&self) -> usize {
        match self {
            Held::Nothing => usize::MAX,
            Held::Buffer(buf) => buf.capacity() - buf.pending().len(),
            Held::Pipe(pipe) => pipe.capacity().saturating_sub(pipe.len()),
        }
    }

    /// True when the bytes wait in a kernel pipe.
    pub(crate) fn is_pipe(&self) -> bool {
        matches!(self, Held::Pipe(_))
    }

    /// Gives the buffer or pipe back to its pool when it holds no byte: a direction holds one
    /// only while bytes are in flight.
    pub(crate) fn release_if_empty(&mut self, pools: &mut Pools) {
        if self.len() > 0 {
            return;
        }
        match std::mem::replace(self, Held::Nothing) {
            Held::Nothing => {}
            Held::Buffer(buf) => pools.buffers.give(buf),
            Held::Pipe(pipe) => pools.pipes.give(pipe),
        }
    }
}
