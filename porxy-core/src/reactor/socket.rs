//! A connection's socket as the reactor holds it ([`Socket`]), and the kernel socket as a
//! connection's [`Transport`]: reads, writes and shutdowns are the socket's own, a short read
//! drains it, closing it sends the FIN, and bytes can be spliced in and out of kernel pipes.
//!
//! [`Socket`] is a kernel TCP socket or a TLS session over one ([`TlsStream`]); each place that
//! must treat the kinds apart (what can move to another process, what the poller watches) asks
//! the socket, not its kind.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::conn::transport::Transport;
use crate::splice::KernelPipe;
use crate::tls::stream::TlsStream;

/// One socket of a connection.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
    /// Boxed: a session is large, and a plain connection's slot must not pay for it.
    Tls(Box<TlsStream>),
}

impl Socket {
    /// Whether the socket can be handed to another process with nothing of it left here: a
    /// kernel socket can; a TLS session holds keys and records in this process.
    pub(crate) fn can_travel(&self) -> bool {
        match self {
            Socket::Tcp(_) => true,
            Socket::Tls(_) => false,
        }
    }

    /// The kernel socket, to hand to another process (see [`Socket::can_travel`]).
    pub(crate) fn into_std(self) -> std::net::TcpStream {
        match self {
            Socket::Tcp(stream) => stream.into(),
            Socket::Tls(tls) => tls.into_tcp().into(),
        }
    }

    /// The kernel socket underneath, for what only it can tell (its peer, a pending error).
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Socket::Tcp(stream) => stream,
            Socket::Tls(tls) => tls.tcp(),
        }
    }

    fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Socket::Tcp(stream) => stream,
            Socket::Tls(tls) => tls.tcp_mut(),
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp().as_fd()
    }
}

impl Source for Socket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp_mut().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.tcp_mut().deregister(registry)
    }
}

impl Transport for Socket {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => Read::read(stream, buf),
            Socket::Tls(tls) => tls.read(buf),
        }
    }

    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => Write::write(stream, buf),
            Socket::Tls(tls) => tls.write(buf),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(stream) => stream.shutdown(Shutdown::Write),
            Socket::Tls(tls) => tls.shutdown_write(),
        }
    }

    #[inline]
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => stream.peek(buf),
            Socket::Tls(tls) => tls.peek(buf),
        }
    }

    #[inline]
    fn short_read_drains(&self) -> bool {
        match self {
            Socket::Tcp(_) => true,
            Socket::Tls(tls) => tls.short_read_drains(),
        }
    }

    #[inline]
    fn close_ends_stream(&self) -> bool {
        match self {
            Socket::Tcp(_) => true,
            Socket::Tls(tls) => tls.close_ends_stream(),
        }
    }

    fn handshake(&mut self, early: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Socket::Tcp(_) => Ok(()),
            Socket::Tls(tls) => tls.handshake(early),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(_) => Ok(()),
            Socket::Tls(tls) => tls.flush(),
        }
    }

    #[inline]
    fn holds_output(&self) -> bool {
        match self {
            Socket::Tcp(_) => false,
            Socket::Tls(tls) => tls.holds_output(),
        }
    }

    fn splice_to_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => pipe.fill_from(stream.as_fd(), max),
            // The session must see its bytes: this direction copies.
            Socket::Tls(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    fn splice_from_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => pipe.drain_into(stream.as_fd(), max),
            Socket::Tls(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}
