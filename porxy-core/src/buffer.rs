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

    /// The size of every buffer it gives.
    pub(crate) fn buffer_size(&self) -> usize {
        self.size
    }

    /// An empty buffer, from the stock when there is one.
    pub(crate) fn take(&mut self) -> Buffer {
        #[cfg(test)]
        {
            self.lent += 1;
        }
        self.free.pop().unwrap_or_else(|| Buffer::new(self.size))
    }

    /// An empty buffer with room for at least `len` bytes: one from the stock when `len` fits
    /// the pool's size, otherwise one of its own size, which [`BufferPool::give`] frees instead
    /// of stocking (for bytes that come from something larger than a buffer: a kernel pipe, or
    /// another process's larger buffers).
    pub(crate) fn take_at_least(&mut self, len: usize) -> Buffer {
        if len <= self.size {
            return self.take();
        }
        #[cfg(test)]
        {
            self.lent += 1;
        }
        Buffer::new(len)
    }

    /// A buffer holding `bytes` as pending, for a connection taken over from another process.
    pub(crate) fn take_filled(&mut self, bytes: &[u8]) -> Buffer {
        let mut buffer = self.take_at_least(bytes.len());
        buffer.data[..bytes.len()].copy_from_slice(bytes);
        buffer.start = 0;
        buffer.end = bytes.len();
        buffer
    }

    /// Frees the stock: a quiet reactor keeps no free buffer (a busy one fills it again).
    pub(crate) fn trim(&mut self) {
        self.free = Vec::new();
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

    #[test]
    fn take_filled_holds_the_bytes_whatever_their_size() {
        let mut pool = BufferPool::new(8);
        let small = pool.take_filled(b"abc");
        assert_eq!(small.pending(), b"abc");
        assert_eq!(small.capacity(), 8, "a stock buffer");
        let big = pool.take_filled(b"0123456789");
        assert_eq!(big.pending(), b"0123456789");
        assert!(big.is_full());
        assert_eq!(pool.lent(), 2);
        pool.give(small);
        pool.give(big);
        assert_eq!(pool.lent(), 0);
        assert_eq!(
            pool.free_count(),
            1,
            "the odd-sized buffer is freed, not stocked"
        );
    }
}
