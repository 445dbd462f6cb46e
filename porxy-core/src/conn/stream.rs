//! The byte-stream operations the connection logic needs, and nothing more.
//!
//! The logic in [`conn`](super) is written against this trait, so tests drive it with a fake
//! stream that plays back chunks, `WouldBlock`, EOF and resets. A TLS layer or a PROXY-protocol
//! preamble would wrap a stream in another implementation of this trait.

use std::io::{self, Read, Write};
use std::net::Shutdown;

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
}
