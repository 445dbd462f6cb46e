//! The backend: one TCP port whose first byte from the client picks a service.
//!
//! | byte | service |
//! |---|---|
//! | `E` | echo every byte back (request/response, idle connections) |
//! | `S` | sink: read and discard (bulk upload) |
//! | `R` | source: send without end (bulk download) |
//! | `O` | once: read 64 bytes, send them back, close (short connections) |
//! | `W` | who: the client the PROXY header named (`192.0.2.1:1024\n`) or `-\n`, then close (a check) |
//!
//! A PROXY protocol v2 header may come before the service byte (the `-proxy` kinds: the proxy
//! sends one); it is taken whole and its source kept, see [`crate::proxy_header`]. The first
//! byte tells whether one comes, so the plain kinds' connections pay one comparison for it.
//!
//! One port keeps every proxy's configuration to a single tunnel. `O` closes from the server
//! side, as HTTP/1.0 does, so no client-side port lingers in TIME_WAIT and a long run of short
//! connections does not exhaust the ephemeral ports.
//!
//! Each of the `threads` threads owns a `mio::Poll`, a slab of connections and its own
//! listening socket on the shared port (SO_REUSEPORT: the kernel spreads connections). Every
//! connection is drained until `WouldBlock` (edge-triggered), within a budget of syscalls per
//! event; one that used its budget is driven again before the next wait. The process exits
//! when its stdin closes, so it never outlives the harness.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{Domain, Socket, Type};

use crate::error::{Context, Result};
use crate::proxy_header::Preface;

/// Size of one request or response in the request/response and short-connection workloads.
pub const MESSAGE: usize = 64;
/// The service bytes.
pub const ECHO: u8 = b'E';
/// See the module table.
pub const SINK: u8 = b'S';
/// See the module table.
pub const SOURCE: u8 = b'R';
/// See the module table.
pub const ONCE: u8 = b'O';
/// See the module table.
pub const WHO: u8 = b'W';
/// The `W` service's reply for a connection that came without a PROXY header.
pub const NO_HEADER: &str = "-";

/// The token of the listening socket.
const LISTENER: Token = Token(usize::MAX);
/// Syscalls one connection may make per event before the others get a turn.
const BUDGET: usize = 64;
/// Bytes read or written per syscall.
const CHUNK: usize = 256 * 1024;

/// Runs the backend on 127.0.0.1 with `threads` threads; prints `READY addr=ADDR` once every
/// thread listens; returns (with the process exiting) when stdin closes.
pub fn serve(threads: usize) -> Result<()> {
    let addr = start(threads)?;
    println!("READY addr={addr}");
    io::stdout().flush()?;
    // The lifeline: returns at EOF (the harness exited or closed the pipe).
    let _ = io::copy(&mut io::stdin(), &mut io::sink());
    Ok(())
}

/// Starts `threads` server threads on one fresh port of 127.0.0.1 and returns it. The threads
/// run until the process exits.
fn start(threads: usize) -> Result<SocketAddr> {
    let first = reuseport_listener("127.0.0.1:0".parse().expect("a literal address"))?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..threads.max(1) {
        listeners.push(reuseport_listener(addr)?);
    }
    for (i, listener) in listeners.into_iter().enumerate() {
        thread::Builder::new()
            .name(format!("backend-{i}"))
            .spawn(move || {
                if let Err(err) = Server::new(listener).and_then(|mut s| s.run()) {
                    eprintln!("porxy-bench backend: thread {i}: {err}");
                    std::process::exit(1);
                }
            })
            .context(|| "starting a backend thread")?;
    }
    Ok(addr)
}

/// A backend in this process, for tests of the load generator.
#[cfg(test)]
pub fn start_for_test() -> SocketAddr {
    start(1).expect("a backend on 127.0.0.1:0")
}

/// A non-blocking listener with SO_REUSEADDR and SO_REUSEPORT.
/// Waits for events (not at all when connections from the last round want to go on): those
/// connections, to which the caller adds the ready ones; `None` after an interrupted wait.
pub(crate) fn wait(
    poll: &mut Poll,
    events: &mut Events,
    again: &mut Vec<usize>,
) -> Result<Option<Vec<usize>>> {
    let timeout = (!again.is_empty()).then_some(Duration::ZERO);
    match poll.poll(events, timeout) {
        Ok(()) => Ok(Some(std::mem::take(again))),
        Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(err) => Err(err.into()),
    }
}

pub(crate) fn reuseport_listener(addr: SocketAddr) -> Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .context(|| format!("binding {addr}"))?;
    socket.listen(4096)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// What a connection does, decided by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    /// The first byte has not come yet.
    Choosing,
    Echo,
    Sink,
    Source,
    /// Collecting the 64-byte request; then the reply, then close.
    Once {
        got: usize,
    },
    /// Saying the header's source; then close, whatever else comes.
    Who,
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
    service: Service,
    /// The PROXY header ahead of the service byte, if one comes.
    preface: Preface,
    /// Bytes to send before reading more (echo backpressure, the `O` reply).
    pending: Vec<u8>,
    /// Close once `pending` is sent (the `O` service).
    close_after_pending: bool,
}

/// One backend thread.
struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    scratch: Vec<u8>,
    source: Vec<u8>,
}

impl Server {
    fn new(mut listener: TcpListener) -> Result<Server> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener,
            conns: Slab::with_capacity(1024),
            scratch: vec![0; CHUNK],
            source: vec![0x5a; CHUNK],
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
                if event.token() == LISTENER {
                    self.accept();
                } else {
                    ready.push(event.token().0);
                }
            }
            for key in ready {
                let Some(conn) = self.conns.get_mut(key) else {
                    continue; // closed earlier in this batch
                };
                match drive(conn, &mut self.scratch, &self.source) {
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

    /// Accepts until `WouldBlock`; registers each socket before it enters the slab.
    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
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
                            service: Service::Choosing,
                            preface: Preface::Maybe,
                            pending: Vec::new(),
                            close_after_pending: false,
                        });
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    // Out of descriptors or similar: the harness sizes limits so this does not
                    // happen; say so and try again at the next event.
                    eprintln!("porxy-bench backend: accept: {err}");
                    return;
                }
            }
        }
    }
}

/// Moves a connection's bytes until `WouldBlock`, the end, or the budget.
fn drive(conn: &mut Conn, scratch: &mut [u8], source: &[u8]) -> Drive {
    for _ in 0..BUDGET {
        if !conn.pending.is_empty() {
            match conn.stream.write(&conn.pending) {
                Ok(n) => {
                    conn.pending.drain(..n);
                    continue;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Drive::Wait,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Drive::Close,
            }
        }
        if conn.close_after_pending {
            return Drive::Close;
        }
        if conn.service == Service::Source {
            match conn.stream.write(source) {
                Ok(_) => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    // Full: notice a client that went away, else wait for room.
                    return match conn.stream.read(scratch) {
                        Ok(0) => Drive::Close,
                        Err(err) if err.kind() != io::ErrorKind::WouldBlock => Drive::Close,
                        _ => Drive::Wait,
                    };
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Drive::Close,
            }
        }
        match conn.stream.read(scratch) {
            Ok(0) => return Drive::Close,
            Ok(n) => {
                if take(conn, &scratch[..n]).is_err() {
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

/// Handles bytes read from the client, according to the service.
fn take(conn: &mut Conn, mut data: &[u8]) -> io::Result<()> {
    if conn.service == Service::Choosing {
        match conn.preface.take(data)? {
            Some(rest) => data = rest,
            None => return Ok(()), // the header is not whole yet
        }
        let Some((&first, rest)) = data.split_first() else {
            return Ok(());
        };
        conn.service = match first {
            ECHO => Service::Echo,
            SINK => Service::Sink,
            SOURCE => Service::Source,
            ONCE => Service::Once { got: 0 },
            WHO => {
                let source = conn.preface.source();
                let said = source.map_or_else(|| NO_HEADER.to_owned(), |s| s.to_string());
                conn.pending
                    .extend_from_slice(format!("{said}\n").as_bytes());
                conn.close_after_pending = true;
                Service::Who
            }
            _ => return Err(io::Error::other("unknown service byte")),
        };
        data = rest;
    }
    match conn.service {
        Service::Choosing | Service::Sink | Service::Source | Service::Who => {}
        Service::Echo => {
            // Send at once; only what the socket does not take waits in `pending`.
            let sent = match conn.stream.write(data) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
                Err(err) => return Err(err),
            };
            conn.pending.extend_from_slice(&data[sent..]);
        }
        Service::Once { got } => {
            let wanted = (MESSAGE - got).min(data.len());
            conn.pending.extend_from_slice(&data[..wanted]);
            let got = got + wanted;
            conn.service = Service::Once { got };
            if got == MESSAGE {
                conn.close_after_pending = true;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use super::*;

    fn client(addr: SocketAddr, service: u8) -> TcpStream {
        let mut stream = TcpStream::connect(addr).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.write_all(&[service]).expect("writes");
        stream
    }

    #[test]
    fn echo_returns_every_byte() {
        let mut stream = client(start_for_test(), ECHO);
        let sent: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let writer = {
            let mut stream = stream.try_clone().expect("clones");
            let sent = sent.clone();
            thread::spawn(move || stream.write_all(&sent).expect("writes"))
        };
        let mut got = vec![0; sent.len()];
        stream.read_exact(&mut got).expect("echo");
        writer.join().expect("writer");
        assert_eq!(got, sent);
    }

    #[test]
    fn once_replies_then_closes() {
        let mut stream = client(start_for_test(), ONCE);
        stream.write_all(&[7; MESSAGE]).expect("writes");
        let mut got = Vec::new();
        stream
            .read_to_end(&mut got)
            .expect("reply and a clean close");
        assert_eq!(got, vec![7; MESSAGE]);
    }

    #[test]
    fn source_sends_and_sink_takes() {
        let addr = start_for_test();
        let mut source = client(addr, SOURCE);
        let mut got = vec![0; 4 * CHUNK];
        source.read_exact(&mut got).expect("source sends");
        let mut sink = client(addr, SINK);
        sink.write_all(&got).expect("sink takes");
    }

    #[test]
    fn who_says_the_source_of_the_proxy_header_or_that_there_was_none() {
        use crate::proxy_header::{header, CLIENT_V4};
        let addr = start_for_test();
        let who = |opening: &[u8]| {
            let mut stream = TcpStream::connect(addr).expect("connects");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            stream.write_all(opening).expect("writes");
            let mut said = String::new();
            stream
                .read_to_string(&mut said)
                .expect("a reply and a close");
            said
        };
        assert_eq!(who(&[WHO]), format!("{NO_HEADER}\n"));
        let mut opening = header(1234, addr);
        opening.push(WHO);
        assert_eq!(
            who(&opening),
            format!("{}\n", SocketAddr::from((CLIENT_V4, 1234)))
        );
    }

    #[test]
    fn the_bytes_after_a_proxy_header_go_to_the_service() {
        let addr = start_for_test();
        let mut opening = crate::proxy_header::header(1235, addr);
        opening.extend_from_slice(&[ECHO, 1, 2, 3]);
        // In one write, as the load generator sends it: the header and the service's first
        // bytes arrive in one read.
        let mut stream = TcpStream::connect(addr).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.write_all(&opening).expect("writes");
        let mut got = [0; 3];
        stream.read_exact(&mut got).expect("the echo");
        assert_eq!(got, [1, 2, 3]);
    }

    #[test]
    fn unknown_service_is_closed() {
        let mut stream = client(start_for_test(), b'?');
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        assert!(got.is_empty());
    }
}
