//! A connection's socket as the reactor holds it ([`Socket`]), and the kernel socket as a
//! connection's [`Transport`]: reads, writes and shutdowns are the socket's own, a short read
//! drains it, closing it sends the FIN, and bytes can be spliced in and out of kernel pipes.
//!
//! [`Socket`] has one kind today, a kernel TCP socket; a TLS session over one is the next, and
//! each place that must treat the kinds apart (what can move to another process, what the
//! poller watches) asks the socket, not its kind.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::conn::transport::Transport;
use crate::splice::KernelPipe;

/// One socket of a connection.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
}

impl Socket {
    /// Whether the socket can be handed to another process with nothing of it left here: a
    /// kernel socket can; a TLS session holds keys and records in this process.
    pub(crate) fn can_travel(&self) -> bool {
        match self {
            Socket::Tcp(_) => true,
        }
    }

    /// The kernel socket, to hand to another process (see [`Socket::can_travel`]).
    pub(crate) fn into_std(self) -> std::net::TcpStream {
        match self {
            Socket::Tcp(stream) => stream.into(),
        }
    }

    /// The kernel socket underneath, for what only it can tell (its peer, a pending error).
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Socket::Tcp(stream) => stream,
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
        match self {
            Socket::Tcp(stream) => stream.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Tcp(stream) => stream.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Socket::Tcp(stream) => stream.deregister(registry),
        }
    }
}

impl Transport for Socket {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => Read::read(stream, buf),
        }
    }

    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => Write::write(stream, buf),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(stream) => stream.shutdown(Shutdown::Write),
        }
    }

    #[inline]
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => stream.peek(buf),
        }
    }

    #[inline]
    fn short_read_drains(&self) -> bool {
        match self {
            Socket::Tcp(_) => true,
        }
    }

    #[inline]
    fn close_ends_stream(&self) -> bool {
        match self {
            Socket::Tcp(_) => true,
        }
    }

    fn splice_to_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => pipe.fill_from(stream.as_fd(), max),
        }
    }

    fn splice_from_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => pipe.drain_into(stream.as_fd(), max),
        }
    }
}
