//! A TLS session over a non-blocking socket as a [`Transport`]: the connection logic reads and
//! writes plaintext; ciphertext moves between the session and the socket here. The same for
//! both ends: a listener's session with its client, and a session porxy opens to a backend
//! (which may first send a PROXY header in the clear: the `preface`).
//!
//! Edge-triggered polling sets the rules (see the notes on rustls with mio): ciphertext is read
//! until the socket says `WouldBlock`, every batch is processed at once, and whatever the
//! session wants to send (handshake messages, alerts, tickets, key updates) is pushed out after
//! each step, not only when plaintext is written. A short plaintext read does not prove the
//! socket drained (`short_read_drains` is false). `Ok(0)` from `read` is the peer's
//! close_notify; a TCP end without it is `UnexpectedEof`, a possibly truncated stream, never
//! a clean end.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use rustls::{ClientConnection, Connection, ServerConnection};

use crate::conn::transport::Transport;

/// Plaintext the session holds for the socket at most: a short write is backpressure.
const SEND_LIMIT: usize = 64 * 1024;

/// A TLS session over its socket.
pub(crate) struct TlsStream {
    tcp: TcpStream,
    session: Connection,
    /// Bytes to write in the clear before the session's first record (a PROXY header).
    preface: Vec<u8>,
    /// The client's TCP end of stream came: no more ciphertext.
    eof: bool,
    /// The close_notify is queued.
    closing: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .field("handshaking", &self.session.is_handshaking())
            .finish_non_exhaustive()
    }
}

impl TlsStream {
    /// `session` over the accepted socket `tcp`; its handshake is still to do.
    pub(crate) fn server(tcp: TcpStream, session: ServerConnection) -> TlsStream {
        TlsStream::over(tcp, Connection::Server(session))
    }

    /// `session` over the socket `tcp` connected to a backend; its handshake is still to do.
    pub(crate) fn client(tcp: TcpStream, session: ClientConnection) -> TlsStream {
        TlsStream::over(tcp, Connection::Client(session))
    }

    fn over(tcp: TcpStream, mut session: Connection) -> TlsStream {
        session.set_buffer_limit(Some(SEND_LIMIT));
        TlsStream {
            tcp,
            session,
            preface: Vec::new(),
            eof: false,
            closing: false,
        }
    }

    /// `bytes` go to the socket in the clear before the session's first record.
    pub(crate) fn set_preface(&mut self, bytes: Vec<u8>) {
        self.preface = bytes;
    }

    /// The socket underneath.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(crate) fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// The socket, the session dropped (its state cannot leave this process).
    pub(crate) fn into_tcp(self) -> TcpStream {
        self.tcp
    }

    /// The server name the client asked for, once its hello is read.
    pub(crate) fn server_name(&self) -> Option<&str> {
        match &self.session {
            Connection::Server(server) => server.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// The protocol the peer and porxy agreed on by ALPN, if they did.
    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.session.alpn_protocol()
    }

    /// The subject of the certificate the client showed and porxy verified, if it showed one.
    pub(crate) fn client_subject(&self) -> Option<String> {
        let der = self.session.peer_certificates()?.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(cert.subject().to_string())
    }

    /// Reads ciphertext from the socket and processes it: true if anything came (or the end
    /// of stream), false if the socket has nothing now.
    fn receive(&mut self) -> io::Result<bool> {
        match self.session.read_tls(&mut self.tcp) {
            Ok(0) => {
                self.eof = true;
                Ok(true)
            }
            Ok(_) => {
                self.process()?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Processes what was received; a protocol error sends its alert (best effort) and fails.
    fn process(&mut self) -> io::Result<()> {
        if let Err(error) = self.session.process_new_packets() {
            let _ = self.send_out();
            return Err(io::Error::new(ErrorKind::InvalidData, error));
        }
        match self.send_out() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes the records the session holds to the socket, until none is left or the socket
    /// says `WouldBlock`.
    fn send_out(&mut self) -> io::Result<()> {
        // Bounded: each write takes at least a byte, or returns.
        while !self.preface.is_empty() {
            match self.tcp.write(&self.preface) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.preface.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.tcp) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Transport for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Bounded: each turn either returns or takes more ciphertext from the socket, which
        // ends at WouldBlock or its end of stream.
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.eof {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            if !self.receive()? {
                return Err(ErrorKind::WouldBlock.into());
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut taken = 0;
        // Bounded: each turn takes plaintext, or ends.
        while taken < buf.len() {
            let n = self.session.writer().write(&buf[taken..])?;
            taken += n;
            match self.send_out() {
                Ok(()) if n > 0 => {}
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if taken == 0 => return Err(e),
                // What was taken is the session's: the failure shows at the next call.
                Err(_) => break,
            }
        }
        if taken == 0 && !buf.is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.closing {
            self.session.send_close_notify();
            self.closing = true;
        }
        self.send_out()?;
        match self.tcp.shutdown(Shutdown::Write) {
            Err(e) if e.kind() == ErrorKind::NotConnected => Ok(()),
            result => result,
        }
    }

    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Before the handshake, what the socket holds is not the session's yet (a PROXY
        // header comes first).
        self.tcp.peek(buf)
    }

    fn handshake(&mut self, early: &mut Vec<u8>) -> io::Result<()> {
        // Bytes read past a preamble are the start of the client's hello.
        let mut given = &early[..];
        while !given.is_empty() {
            if self.session.read_tls(&mut given)? == 0 {
                break;
            }
            self.process()?;
        }
        early.clear();
        // Bounded: each turn sends what the session has, or takes ciphertext from the socket
        // (which ends at WouldBlock or its end of stream).
        while self.session.is_handshaking() {
            self.send_out()?;
            if !self.session.is_handshaking() {
                break;
            }
            if self.eof {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the client ended its stream during the handshake",
                ));
            }
            if !self.receive()? {
                return Err(ErrorKind::WouldBlock.into());
            }
        }
        match self.send_out() {
            Err(e) if e.kind() != ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_out()
    }

    fn holds_output(&self) -> bool {
        !self.preface.is_empty() || self.session.wants_write()
    }

    fn short_read_drains(&self) -> bool {
        false
    }

    fn close_ends_stream(&self) -> bool {
        false
    }
}
