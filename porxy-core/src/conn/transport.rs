//! The byte-stream operations the connection logic needs, and nothing more: the seam between a
//! connection's state machine and whatever carries its bytes.
//!
//! The logic in [`conn`](super) and in the fan-out machine is written against [`Transport`], so
//! tests drive it with a fake that plays back chunks, `WouldBlock`, EOF and resets, and a layer
//! that holds bytes of its own (a TLS session, a preamble such as a PROXY header) can sit
//! between a socket and the machine. The kernel socket's implementation lives with the reactor
//! (`reactor/socket.rs`); nothing here knows of mio.

use std::io;

use crate::splice::KernelPipe;

/// A non-blocking, bidirectional byte stream.
///
/// The contract is that of a non-blocking socket: `read` returning `Ok(0)` means EOF;
/// `ErrorKind::WouldBlock` means "not now" and the caller waits for readiness;
/// `ErrorKind::Interrupted` is retried. What differs between transports is said by the methods
/// below, each with what a kernel TCP socket answers.
pub(crate) trait Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;

    /// Ends the writing side: no more bytes will be written; reading goes on. May say
    /// `WouldBlock` (a TLS close_notify that does not fit yet): the caller calls it again once
    /// the transport is writable.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Copies up to `buf.len()` bytes the stream holds into `buf` without taking them: the
    /// next read returns them again (`MSG_PEEK`). `Ok(0)` is EOF. The default says
    /// `Unsupported`: the opening then reads, and keeps what came past a preamble for the
    /// upstream. A kernel socket peeks, so a PROXY header is taken exactly and the rest of the
    /// stream stays in the kernel (for splice).
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let _ = buf;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Drives the transport's own opening (a TLS handshake) as far as it can go now: `Ok(())`
    /// once it is complete, `WouldBlock` while it waits for the peer (any readiness calls it
    /// again). `early` holds bytes the connection read from the socket before (past a PROXY
    /// header): the transport takes from its front those that are its own. TCP has no
    /// handshake: it is complete at once, and takes nothing.
    fn handshake(&mut self, early: &mut Vec<u8>) -> io::Result<()> {
        let _ = early;
        Ok(())
    }

    /// Pushes out bytes that the transport holds inside (a TLS record written into the
    /// session but not yet onto the socket). `Ok(())` once nothing is held; `WouldBlock` while
    /// some still is. TCP holds nothing.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Whether [`flush`](Transport::flush) has anything to do. TCP: never.
    fn holds_output(&self) -> bool {
        false
    }

    /// Whether a read that returns fewer bytes than asked proves the transport drained, so that
    /// the next bytes raise a new readiness event. True for a kernel socket (the kernel copies
    /// until the room or the queue runs out); false for a layer that may hold decoded bytes
    /// back while its socket is drained (TLS).
    fn short_read_drains(&self) -> bool;

    /// Whether dropping the transport tells the peer the stream ended in order, as closing a
    /// TCP socket sends its FIN. Then a connection about to close need not shut the writing
    /// side down first; a TLS session must still send its close_notify.
    fn close_ends_stream(&self) -> bool;

    /// Moves up to `max` bytes from the stream into `pipe` without copying them to user space,
    /// as `read` would (`Ok(0)` is EOF). Bytes must enter the pipe through its methods, which
    /// count them.
    ///
    /// The default says `Unsupported`: the connection then copies this direction. A transport
    /// that has to see the bytes (TLS) keeps it.
    fn splice_to_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        let _ = (pipe, max);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Moves up to `max` bytes out of `pipe` into the stream, as `write` would. Bytes must
    /// leave the pipe through its methods, which count them.
    ///
    /// The default says `Unsupported`: the connection then copies this direction.
    fn splice_from_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        let _ = (pipe, max);
        Err(io::ErrorKind::Unsupported.into())
    }
}
