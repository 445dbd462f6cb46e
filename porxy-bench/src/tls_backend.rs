//! The backend's TLS mode, for the SNI section: the proxies in front route TLS by server name
//! without terminating it, so the backend must. `porxy-bench backend --tls-cert C --tls-key K`
//! terminates TLS with the section's certificate (rustls with ring, as porxy and the load
//! generator: a session cache and stateless tickets, two after each handshake) on two ports of
//! 127.0.0.1, the one the routes send the load's server name to and the default one, and
//! serves the plain backend's services inside TLS: the first plaintext byte picks one.
//!
//! | byte | service |
//! |---|---|
//! | `E` | echo (idle connections) |
//! | `S` | sink (bulk up) |
//! | `R` | source (bulk down) |
//! | `O` | once: 64 bytes back, then `close_notify` and close (handshakes) |
//! | `W` | who: `-` (no PROXY header comes this way), then close (the TLS kinds' check) |
//! | `P` | port: which of the two ports took the connection, `routed` or `default`, then close (the check that the proxy routed by the name) |
//!
//! One mio thread drives both listeners and every connection, as the plain backend's thread
//! does: each connection is moved on until its socket says `WouldBlock` both ways
//! (edge-triggered), within a budget of system calls per event; one that used its budget is
//! driven again before the next wait. Ciphertext is read from the socket in 256 KiB calls and
//! fed to the session from the thread's own buffer (rustls reads 4 KiB per `read_tls`
//! otherwise), so a bulk transfer costs the backend few system calls: it shares a CPU with the
//! load generator.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use slab::Slab;

use crate::backend::{reuseport_listener, wait, ECHO, MESSAGE, NO_HEADER, ONCE, SINK, SOURCE, WHO};
use crate::error::{Context, Result};

/// The service byte that asks which port took the connection.
pub const PORT: u8 = b'P';

/// Syscalls one connection may make per event before the others get a turn.
const BUDGET: usize = 64;
/// Bytes per socket read, and per plaintext write of the source.
const CHUNK: usize = 256 * 1024;

/// One of the two ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Where the routes send the load's server name.
    Routed,
    /// Where every other name goes.
    Default,
}

impl Port {
    /// Its name in the `P` service's reply.
    pub fn name(self) -> &'static str {
        match self {
            Port::Routed => "routed",
            Port::Default => "default",
        }
    }

    /// Its listener's token.
    fn token(self) -> Token {
        match self {
            Port::Routed => Token(usize::MAX),
            Port::Default => Token(usize::MAX - 1),
        }
    }
}

/// Runs the TLS backend with the certificate chain and key of these PEM files; prints
/// `READY addr=ROUTED default=DEFAULT` once both ports listen; returns (with the process
/// exiting) when stdin closes.
pub fn serve(cert: &Path, key: &Path) -> Result<()> {
    let (routed, default) = start(config(cert, key)?)?;
    println!("READY addr={routed} default={default}");
    io::stdout().flush()?;
    // The lifeline: returns at EOF (the harness exited or closed the pipe).
    let _ = io::copy(&mut io::stdin(), &mut io::sink());
    Ok(())
}

/// rustls's server with ring, the run's certificate, and stateless tickets.
fn config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .context(|| format!("reading {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).context(|| format!("reading {}", key.display()))?;
    // ring, as porxy and the load generator use. (Deprecated since rustls 0.23.48 for lacking
    // post-quantum key exchange.)
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context(|| "the TLS backend's protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context(|| "the TLS backend's certificate")?;
    config.ticketer = rustls::crypto::ring::Ticketer::new().context(|| "a ticket key")?;
    Ok(Arc::new(config))
}

/// Starts the thread serving both ports on 127.0.0.1 and returns them (routed, default).
fn start(config: Arc<ServerConfig>) -> Result<(SocketAddr, SocketAddr)> {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("a literal address");
    let routed = reuseport_listener(any)?;
    let default = reuseport_listener(any)?;
    let addrs = (routed.local_addr()?, default.local_addr()?);
    let mut server = Server::new(config, [(Port::Routed, routed), (Port::Default, default)])?;
    thread::Builder::new()
        .name("tls-backend".into())
        .spawn(move || {
            if let Err(err) = server.run() {
                eprintln!("porxy-bench backend: TLS: {err}");
                std::process::exit(1);
            }
        })
        .context(|| "starting the TLS backend's thread")?;
    Ok(addrs)
}

/// A TLS backend in this process, for tests: its two ports (routed, default).
#[cfg(test)]
pub fn start_for_test(cert: &Path, key: &Path) -> (SocketAddr, SocketAddr) {
    start(config(cert, key).expect("a TLS configuration")).expect("a TLS backend")
}

/// What a connection does, decided by its first plaintext byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    /// The first byte has not come yet.
    Choosing,
    Echo,
    Sink,
    Source,
    /// Collecting the 64-byte request, echoing it as it comes.
    Once {
        got: usize,
    },
    /// Replied; closing.
    Replied,
}

/// What to do with a connection after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drive {
    /// Wait for the next readiness event.
    Wait,
    /// The budget ran out with work left: drive again before waiting.
    Again,
    /// Close it.
    Close,
}

struct Conn {
    stream: TcpStream,
    tls: ServerConnection,
    port: Port,
    service: Service,
    /// Close once the session has sent everything (its `close_notify` last).
    closing: bool,
}

/// The thread's buffers, shared by its connections.
struct Buffers {
    ciphertext: Vec<u8>,
    plaintext: Vec<u8>,
    source: Vec<u8>,
}

/// The backend's thread.
struct Server {
    poll: Poll,
    config: Arc<ServerConfig>,
    listeners: Vec<(Port, TcpListener)>,
    conns: Slab<Conn>,
    buffers: Buffers,
}

impl Server {
    fn new(config: Arc<ServerConfig>, listeners: [(Port, TcpListener); 2]) -> Result<Server> {
        let poll = Poll::new()?;
        let mut listeners = Vec::from(listeners);
        for (port, listener) in &mut listeners {
            poll.registry()
                .register(listener, port.token(), Interest::READABLE)?;
        }
        Ok(Server {
            poll,
            config,
            listeners,
            conns: Slab::with_capacity(1024),
            buffers: Buffers {
                ciphertext: vec![0; CHUNK],
                plaintext: vec![0; CHUNK],
                source: vec![0x5a; CHUNK],
            },
        })
    }

    fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut again: Vec<usize> = Vec::new();
        loop {
            let Some(mut ready) = wait(&mut self.poll, &mut events, &mut again)? else {
                continue;
            };
            for event in events.iter() {
                match self
                    .listeners
                    .iter()
                    .position(|(p, _)| p.token() == event.token())
                {
                    Some(i) => self.accept(i),
                    None => ready.push(event.token().0),
                }
            }
            for key in ready {
                let Some(conn) = self.conns.get_mut(key) else {
                    continue; // closed earlier in this batch
                };
                match drive(conn, &mut self.buffers) {
                    Drive::Wait => {}
                    Drive::Again => again.push(key),
                    Drive::Close => {
                        let mut conn = self.conns.remove(key);
                        let _ = self.poll.registry().deregister(&mut conn.stream);
                    }
                }
            }
            again.sort_unstable();
            again.dedup();
        }
    }

    /// Accepts on listener `i` until `WouldBlock`; each socket gets a session and is
    /// registered before it enters the slab.
    fn accept(&mut self, i: usize) {
        let (port, listener) = &self.listeners[i];
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let Ok(mut tls) = ServerConnection::new(Arc::clone(&self.config)) else {
                        continue;
                    };
                    // Unbounded: the source writes only when the socket took everything, and
                    // an echo's requests are small.
                    tls.set_buffer_limit(None);
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        entry.insert(Conn {
                            stream,
                            tls,
                            port: *port,
                            service: Service::Choosing,
                            closing: false,
                        });
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    eprintln!("porxy-bench backend: TLS accept: {err}");
                    return;
                }
            }
        }
    }
}

/// Moves a connection on until its socket says `WouldBlock`, the end, or the budget: first
/// what the session holds for the client (and more of the source, once the socket took it
/// all), then what the client sent.
fn drive(conn: &mut Conn, buffers: &mut Buffers) -> Drive {
    for _ in 0..BUDGET {
        let mut blocked = false;
        while conn.tls.wants_write() {
            match conn.tls.write_tls(&mut conn.stream) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Drive::Close,
            }
        }
        if !blocked {
            if conn.closing {
                return Drive::Close;
            }
            if conn.service == Service::Source && !conn.tls.is_handshaking() {
                if conn.tls.writer().write_all(&buffers.source).is_err() {
                    return Drive::Close;
                }
                continue;
            }
        }
        match conn.stream.read(&mut buffers.ciphertext) {
            Ok(0) => return Drive::Close,
            Ok(n) => {
                if take(conn, &buffers.ciphertext[..n], &mut buffers.plaintext).is_err() {
                    return Drive::Close;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Drive::Wait,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Drive::Close,
        }
    }
    Drive::Again
}

/// Feeds ciphertext to the session and serves the plaintext that comes out of it.
fn take(conn: &mut Conn, mut ciphertext: &[u8], plaintext: &mut [u8]) -> io::Result<()> {
    while !ciphertext.is_empty() {
        conn.tls.read_tls(&mut ciphertext)?;
        conn.tls
            .process_new_packets()
            .map_err(|err| io::Error::other(err.to_string()))?;
        loop {
            match conn.tls.reader().read(plaintext) {
                // The client's close_notify: answer it and close.
                Ok(0) => {
                    finish(conn, b"");
                    return Ok(());
                }
                Ok(n) => respond(conn, &plaintext[..n])?,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}

/// Handles plaintext from the client, according to the service.
fn respond(conn: &mut Conn, mut data: &[u8]) -> io::Result<()> {
    if conn.service == Service::Choosing {
        let Some((&first, rest)) = data.split_first() else {
            return Ok(());
        };
        conn.service = match first {
            ECHO => Service::Echo,
            SINK => Service::Sink,
            SOURCE => Service::Source,
            ONCE => Service::Once { got: 0 },
            WHO | PORT => {
                let said = if first == WHO {
                    NO_HEADER
                } else {
                    conn.port.name()
                };
                finish(conn, format!("{said}\n").as_bytes());
                return Ok(());
            }
            _ => return Err(io::Error::other("unknown service byte")),
        };
        data = rest;
    }
    match conn.service {
        Service::Echo => conn.tls.writer().write_all(data)?,
        Service::Once { got } => {
            let wanted = (MESSAGE - got).min(data.len());
            conn.tls.writer().write_all(&data[..wanted])?;
            conn.service = Service::Once { got: got + wanted };
            if got + wanted == MESSAGE {
                finish(conn, b"");
            }
        }
        Service::Choosing | Service::Sink | Service::Source | Service::Replied => {}
    }
    Ok(())
}

/// Sends `reply` and a `close_notify`, and closes once they are out: the server closes first,
/// as the plain backend's `O` service does.
fn finish(conn: &mut Conn, reply: &[u8]) {
    if !reply.is_empty() {
        // The session's buffer is unbounded: this cannot fall short.
        let _ = conn.tls.writer().write_all(reply);
    }
    conn.tls.send_close_notify();
    conn.service = Service::Replied;
    conn.closing = true;
}
