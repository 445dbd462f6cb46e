//! Relay buffers, and the per-reactor pool they come from.
//!
//! A connection holds a buffer only while bytes are in flight in that direction: an idle
//! connection holds none, so memory per idle connection stays small. A reactor keeps a bounded
//! stock of free buffers so that busy connections do not allocate on every burst.

/// Bytes read from one side and not yet written to the other.
///
/// `data[start..end]` is pending; `data[end..]` is free for reading into.
pub(crate) struct Buffer {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buffer {
    fn new(size: usize) -> Self {
        Buffer {
            data: vec![0; size].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Bytes waiting to be written.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// True when no byte more can be read in.
    #[cfg(test)]
    pub(crate) fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.data.len()
    }

    /// Room to read into; moves pending bytes to the front first when only the front has room.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    /// Records that `n` bytes were read into [`Buffer::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Records that `n` pending bytes were written out.
    pub(crate) fn consumed(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.data.len()
    }
}

/// A reactor's stock of free buffers, all of one size.
pub(crate) struct BufferPool {
    size: usize,
    free: Vec<Buffer>,
    max_free: usize,
    /// Buffers taken and not given back yet.
    #[cfg(test)]
    lent: usize,
}

/// How many bytes of free buffers a reactor keeps at most.
const POOL_BYTES: usize = 8 * 1024 * 1024;

impl BufferPool {
    pub(crate) fn new(size: usize) -> Self {
        BufferPool {
            size,
            free: Vec::new(),
            max_free: (POOL_BYTES / size).max(4),
            #[cfg(test)]
            lent: 0,
        }
    }

    /// An empty buffer, from the stock when there is one.
    pub(crate) fn take(&mut self) -> Buffer {
        #[cfg(test)]
        {
            self.lent += 1;
        }
        self.free.pop().unwrap_or_else(|| Buffer::new(self.size))
    }

    /// Returns an empty buffer to the stock (or frees it when the stock is full).
    pub(crate) fn give(&mut self, mut buffer: Buffer) {
        #[cfg(test)]
        {
            self.lent -= 1;
        }
        if self.free.len() < self.max_free && buffer.capacity() == self.size {
            buffer.start = 0;
            buffer.end = 0;
            self.free.push(buffer);
        }
    }

    #[cfg(test)]
    pub(crate) fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Buffers taken and not given back: held by connections (or dropped with them).
    #[cfg(test)]
    pub(crate) fn lent(&self) -> usize {
        self.lent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_compacts_only_when_the_tail_is_full() {
        let mut pool = BufferPool::new(8);
        let mut buf = pool.take();
        buf.spare()[..8].copy_from_slice(b"abcdefgh");
        buf.filled(8);
        assert!(buf.is_full());
        buf.consumed(3);
        assert_eq!(buf.pending(), b"defgh");
        assert_eq!(buf.spare().len(), 3, "compacted to the front");
        assert_eq!(buf.pending(), b"defgh");
        buf.consumed(5);
        assert!(buf.is_empty());
        assert_eq!(buf.spare().len(), 8);
        pool.give(buf);
        assert_eq!(pool.free_count(), 1);
    }
}
