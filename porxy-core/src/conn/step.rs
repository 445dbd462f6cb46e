//! The small steps every machine takes on a [`Transport`], with the readiness rules in one
//! place: one read into a buffer, one write of held bytes, one end of the writing side. The
//! relay's pipes and the fan-out machine both go through these, so a rule (what a short read
//! proves, what a short write proves, what `WouldBlock` clears) is written once.

use std::io::{self, ErrorKind};

use super::readiness::Readiness;
use super::transport::Transport;

/// What one read did.
#[derive(Debug)]
pub(crate) enum Read {
    /// `n` bytes came (at least one).
    Data(usize),
    /// End of stream.
    Eof,
    /// Nothing now: `WouldBlock` (readability cleared) or `Interrupted` (kept, to retry).
    Idle,
    Failed(io::Error),
}

/// What one write did.
#[derive(Debug)]
pub(crate) enum Write {
    /// `n` bytes went out (at least one).
    Wrote(usize),
    /// Nothing now: `WouldBlock` (writability cleared) or `Interrupted` (kept, to retry).
    Idle,
    Failed(io::Error),
}

/// What one attempt to end the writing side did.
#[derive(Debug)]
pub(crate) enum End {
    Done,
    /// Not yet: the transport could not take it now (writability cleared), or was interrupted.
    Idle,
    Failed(io::Error),
}

/// Reads once from `src` into `buf`.
///
/// A read that returns fewer bytes than `buf` holds has emptied a transport whose short reads
/// drain it (see [`Transport::short_read_drains`]), so `src` is not readable until the poller
/// says so again: bytes arriving later raise a new edge-triggered event. That saves the read
/// that would only say `WouldBlock`. The exception is a source that has reported a hang-up or
/// an error: its EOF or error is already queued and raises no new event, so it is read until it
/// shows.
#[inline]
pub(crate) fn read_into(src: &mut impl Transport, buf: &mut [u8], ready: &mut Readiness) -> Read {
    match src.read(buf) {
        Ok(0) => Read::Eof,
        Ok(n) => {
            if n < buf.len() && !ready.failed && src.short_read_drains() {
                ready.readable = false;
            }
            Read::Data(n)
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            ready.readable = false;
            Read::Idle
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => Read::Idle,
        Err(e) => Read::Failed(e),
    }
}

/// Writes `bytes` (not empty) to `dst` once. A short write means the transport is full: the
/// next writable event says when there is room again. A write of nothing is a failure.
#[inline]
pub(crate) fn write_from(dst: &mut impl Transport, bytes: &[u8], writable: &mut bool) -> Write {
    written(dst.write(bytes), bytes.len(), writable)
}

/// What a write (or a splice out) of `wanted` bytes that answered `result` did, with the same
/// rules as [`write_from`].
#[inline]
pub(crate) fn written(result: io::Result<usize>, wanted: usize, writable: &mut bool) -> Write {
    match result {
        Ok(0) => Write::Failed(ErrorKind::WriteZero.into()),
        Ok(n) => {
            if n < wanted {
                *writable = false;
            }
            Write::Wrote(n)
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            *writable = false;
            Write::Idle
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => Write::Idle,
        Err(e) => Write::Failed(e),
    }
}

/// Ends `dst`'s writing side, once what it holds inside is out (see [`Transport::flush`]).
#[inline]
pub(crate) fn end_stream(dst: &mut impl Transport, writable: &mut bool) -> End {
    let result = if dst.holds_output() {
        dst.flush().and_then(|()| dst.shutdown_write())
    } else {
        dst.shutdown_write()
    };
    match result {
        Ok(()) => End::Done,
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            *writable = false;
            End::Idle
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => End::Idle,
        Err(e) => End::Failed(e),
    }
}

/// Pushes out what `dst` holds inside, if anything: `Done` once nothing is held.
#[inline]
pub(crate) fn flush(dst: &mut impl Transport, writable: &mut bool) -> End {
    match dst.flush() {
        Ok(()) => End::Done,
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            *writable = false;
            End::Idle
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => End::Idle,
        Err(e) => End::Failed(e),
    }
}
