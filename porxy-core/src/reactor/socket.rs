//! The kernel socket as a connection's [`Transport`]: reads, writes and shutdowns are the
//! socket's own, a short read drains it, closing it sends the FIN, and bytes can be spliced in
//! and out of kernel pipes.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;

use mio::net::TcpStream;

use crate::conn::transport::Transport;
use crate::splice::KernelPipe;

impl Transport for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn short_read_drains(&self) -> bool {
        true
    }

    fn close_ends_stream(&self) -> bool {
        true
    }

    fn splice_to_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        pipe.fill_from(self.as_fd(), max)
    }

    fn splice_from_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        pipe.drain_into(self.as_fd(), max)
    }
}
