//! The byte-stream operations the connection logic needs, and nothing more.
//!
//! The logic in [`conn`](super) is written against this trait, so tests drive it with a fake
//! stream that plays back chunks, `WouldBlock`, EOF and resets. A TLS layer or a PROXY-protocol
//! preamble would wrap a stream in another implementation of this trait (and, needing to see
//! the bytes, keep the default splice methods, which make the connection copy).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;

use crate::splice::KernelPipe;

/// A non-blocking, bidirectional byte stream.
///
/// The contract is that of a non-blocking socket: `read` returning `Ok(0)` means EOF;
/// `ErrorKind::WouldBlock` means "not now" and the caller waits for readiness;
/// `ErrorKind::Interrupted` is retried.
pub(crate) trait Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Sends FIN: no more bytes will be written; reading goes on.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Moves up to `max` bytes from the stream into `pipe` without copying them to user space,
    /// as `read` would (`Ok(0)` is EOF). Bytes must enter the pipe through its methods, which
    /// count them.
    ///
    /// The default says `Unsupported`: the connection then copies this direction.
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

impl Stream for mio::net::TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn splice_to_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        pipe.fill_from(self.as_fd(), max)
    }

    fn splice_from_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        pipe.drain_into(self.as_fd(), max)
    }
}
