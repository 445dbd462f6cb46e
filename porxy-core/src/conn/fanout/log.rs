//! The bytes a fan-out client sent that some destination has not been sent yet: held once,
//! whatever the number of destinations, each of which keeps its own position in it.
//!
//! Positions are absolute byte offsets in the client's stream. The log is a queue of pool
//! buffers ("chunks"), all full but the last; `base` is the position of the first chunk's first
//! byte. Once every destination is past a chunk, it goes back to the pool; once every
//! destination has caught up, the log holds no buffer at all.

use std::collections::VecDeque;

use crate::buffer::{Buffer, BufferPool};

/// The client's bytes not yet sent to every destination.
pub(crate) struct Log {
    chunks: VecDeque<Buffer>,
    /// Position of the first byte of `chunks[0]`.
    base: u64,
    /// Position just past the last byte read from the client.
    head: u64,
}

impl Log {
    pub(crate) fn new() -> Self {
        Log {
            chunks: VecDeque::new(),
            base: 0,
            head: 0,
        }
    }

    /// Position just past the last byte read from the client.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Bytes held from position `from` on, as one contiguous slice: up to the end of the chunk
    /// `from` falls in. Empty when `from` is at the head (or outside the log).
    pub(crate) fn from(&self, from: u64) -> &[u8] {
        if from < self.base || from >= self.head {
            return &[];
        }
        let Some(size) = self.chunks.front().map(Buffer::capacity) else {
            return &[];
        };
        let offset = (from - self.base) as usize;
        match self.chunks.get(offset / size) {
            Some(chunk) => chunk.pending().get(offset % size..).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Room to read more client bytes into (a fresh chunk from `pool` when the last is full).
    pub(crate) fn spare(&mut self, pool: &mut BufferPool) -> &mut [u8] {
        if self.chunks.back().is_none_or(Buffer::is_full) {
            self.chunks.push_back(pool.take());
        }
        match self.chunks.back_mut() {
            Some(chunk) => chunk.spare(),
            None => &mut [],
        }
    }

    /// Records that `n` bytes were read into [`Log::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        if let Some(chunk) = self.chunks.back_mut() {
            chunk.filled(n);
            self.head += n as u64;
        }
    }

    /// Gives back every chunk that lies wholly before `keep_from` (the position of the
    /// destination furthest behind); every chunk when `keep_from` is the head.
    pub(crate) fn trim(&mut self, keep_from: u64, pool: &mut BufferPool) {
        if keep_from >= self.head {
            self.release(pool);
            return;
        }
        while let Some(front) = self.chunks.front() {
            let end = self.base + front.capacity() as u64;
            if end > keep_from || self.chunks.len() == 1 {
                break;
            }
            if let Some(chunk) = self.chunks.pop_front() {
                pool.give(chunk);
            }
            self.base = end;
        }
    }

    /// Gives every chunk back; the log is empty at the head.
    pub(crate) fn release(&mut self, pool: &mut BufferPool) {
        for chunk in self.chunks.drain(..) {
            pool.give(chunk);
        }
        self.base = self.head;
    }

    /// A log that goes on from another process's: `bytes` are the client's bytes from position
    /// `base` to the head, in chunks from `pool`.
    pub(crate) fn restored(base: u64, bytes: &[u8], pool: &mut BufferPool) -> Self {
        let size = pool.buffer_size();
        Log {
            // Every chunk full but the last, as the reads fill them.
            chunks: bytes.chunks(size).map(|c| pool.take_filled(c)).collect(),
            base,
            head: base.saturating_add(bytes.len() as u64),
        }
    }

    /// A copy of every byte from position `from` to the head; `None` if the log does not hold
    /// them all (`from` outside it).
    pub(crate) fn copy_from(&self, mut from: u64) -> Option<Vec<u8>> {
        let len = usize::try_from(self.head.checked_sub(from)?).ok()?;
        let mut out = Vec::with_capacity(len);
        // Bounded: each round takes at least a byte, or returns.
        while from < self.head {
            let bytes = self.from(from);
            if bytes.is_empty() {
                return None;
            }
            out.extend_from_slice(bytes);
            from += bytes.len() as u64;
        }
        Some(out)
    }

    /// Bytes of buffer memory held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.chunks.iter().map(Buffer::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(log: &mut Log, pool: &mut BufferPool, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let spare = log.spare(pool);
            let n = spare.len().min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            log.filled(n);
            rest = &rest[n..];
        }
    }

    /// Reads everything from `from` to the head, as a destination would.
    fn read_all(log: &Log, mut from: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while from < log.head() {
            let slice = log.from(from);
            assert!(
                !slice.is_empty(),
                "bytes at {from} below head {}",
                log.head()
            );
            out.extend_from_slice(slice);
            from += slice.len() as u64;
        }
        out
    }

    #[test]
    fn readers_at_different_positions_see_the_same_bytes() {
        let mut pool = BufferPool::new(8);
        let mut log = Log::new();
        let data: Vec<u8> = (0..30).collect();
        push(&mut log, &mut pool, &data);
        assert_eq!(log.head(), 30);
        assert_eq!(log.held(), 32, "four chunks of 8");
        assert_eq!(read_all(&log, 0), data);
        assert_eq!(read_all(&log, 13), &data[13..]);
        assert_eq!(log.from(13), &data[13..16], "up to the end of its chunk");
        assert!(log.from(30).is_empty());
    }

    #[test]
    fn trimming_frees_what_every_reader_has_passed() {
        let mut pool = BufferPool::new(8);
        let mut log = Log::new();
        let data: Vec<u8> = (0..30).collect();
        push(&mut log, &mut pool, &data);
        log.trim(17, &mut pool);
        assert_eq!(log.held(), 16, "chunks [0,8) and [8,16) are gone");
        assert_eq!(read_all(&log, 17), &data[17..]);
        assert!(log.from(3).is_empty(), "trimmed bytes are not served");
        log.trim(30, &mut pool);
        assert_eq!(log.held(), 0, "all caught up: no buffer held");
        assert_eq!(pool.lent(), 0);
        push(&mut log, &mut pool, b"more");
        assert_eq!(log.head(), 34);
        assert_eq!(read_all(&log, 30), b"more");
        log.release(&mut pool);
        assert_eq!(pool.lent(), 0);
    }

    #[test]
    fn a_copy_restores_into_a_log_of_another_chunk_size() {
        let mut pool = BufferPool::new(8);
        let mut log = Log::new();
        let data: Vec<u8> = (0..30).collect();
        push(&mut log, &mut pool, &data);
        log.trim(13, &mut pool);
        assert_eq!(log.copy_from(13).as_deref(), Some(&data[13..]));
        assert_eq!(log.copy_from(3), None, "trimmed bytes cannot be copied");
        assert_eq!(log.copy_from(30).as_deref(), Some(&[][..]));
        assert_eq!(log.copy_from(31), None, "beyond the head");

        let mut other = BufferPool::new(5);
        let mut restored = Log::restored(13, &data[13..], &mut other);
        assert_eq!(restored.head(), 30);
        assert_eq!(read_all(&restored, 13), &data[13..]);
        assert_eq!(read_all(&restored, 21), &data[21..]);
        push(&mut restored, &mut other, b"more");
        assert_eq!(read_all(&restored, 28), [&data[28..], b"more"].concat());
        restored.release(&mut other);
        log.release(&mut pool);
        assert_eq!((pool.lent(), other.lent()), (0, 0));
    }
}
