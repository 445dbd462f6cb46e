//! In-process upstream servers: one thread accepts, one thread per connection plays a behaviour.
//!
//! [`Backend::start`] takes any behaviour; the constructors below are the ones the tests use.
//! Behaviours report what they saw over channels the test holds. Dropping a backend stops
//! accepting, shuts down every connection it still has, wakes behaviours that hold a connection
//! open, and joins every thread.
//!
//! Two upstreams that never serve are here too: [`Refusing`] (connects are refused) and
//! [`Unanswered`] (connects never complete), for the connect-failure tests.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::client::set_timeouts;
use super::payload::Noise;

/// Stack of a connection thread: behaviours keep their buffers on the heap.
const CONN_STACK: usize = 256 * 1024;
/// The longest a behaviour holds a connection open when nobody stops the backend.
const HOLD_AT_MOST: Duration = Duration::from_secs(60);
/// Listen backlog: std's 128 overflows when a thousand connects arrive at once, and a dropped
/// SYN would show up as the proxy's connect timeout.
const BACKLOG: i32 = 1024;

/// A behaviour: what a backend does with each accepted connection.
type Behaviour = dyn Fn(TcpStream, &Ctx) + Send + Sync + 'static;

/// A running upstream server on `127.0.0.1:0`.
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// A second handle on the listening socket, to shut it down (which wakes `accept`).
    listener: TcpListener,
    acceptor: Option<JoinHandle<()>>,
}

/// What a behaviour may ask of its backend.
pub struct Ctx {
    shared: Arc<Shared>,
}

struct Shared {
    accepted: AtomicUsize,
    stopping: Mutex<bool>,
    stopped: Condvar,
    /// Clones of the live connections, by number, so `Drop` can shut them down.
    conns: Mutex<HashMap<usize, TcpStream>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn is_stopping(&self) -> bool {
        *lock(&self.stopping)
    }
}

impl Ctx {
    /// Blocks until the backend is dropped (at most a minute): for behaviours that keep a
    /// connection open without reading or writing.
    pub fn hold(&self) {
        let stopping = lock(&self.shared.stopping);
        let _ = self
            .shared
            .stopped
            .wait_timeout_while(stopping, HOLD_AT_MOST, |stopping| !*stopping);
    }
}

impl Backend {
    /// Starts a backend that runs `behaviour` on a thread for each connection. Sockets it hands
    /// to the behaviour have the test read and write timeouts.
    pub fn start(behaviour: impl Fn(TcpStream, &Ctx) + Send + Sync + 'static) -> Backend {
        Backend::serve(listen(BACKLOG), behaviour)
    }

    /// Like [`Backend::start`], on a listening socket the caller made.
    fn serve(
        listener: TcpListener,
        behaviour: impl Fn(TcpStream, &Ctx) + Send + Sync + 'static,
    ) -> Backend {
        let addr = listener.local_addr().expect("backend address");
        let shared = Arc::new(Shared {
            accepted: AtomicUsize::new(0),
            stopping: Mutex::new(false),
            stopped: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
        });
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        let acceptor = {
            let listener = listener.try_clone().expect("clone the backend listener");
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("backend-{addr}"))
                .spawn(move || accept_loop(listener, shared, behaviour))
                .expect("spawn the backend acceptor")
        };
        Backend {
            addr,
            shared,
            listener,
            acceptor: Some(acceptor),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Sends back every byte; at end of stream, shuts down its write side and closes.
    pub fn echo() -> Backend {
        Backend::start(|mut stream, _| {
            let _ = echo(&mut stream);
        })
    }

    /// [`Backend::greeting_echo`] on a given address, such as the one a dropped backend had, to
    /// bring "the same server" back. Binds with `SO_REUSEADDR` (the old connections may linger
    /// in TIME_WAIT), retrying while the port is still taken, for at most `within`.
    pub fn greeting_echo_at(
        addr: SocketAddr,
        greeting: &'static [u8],
        within: Duration,
    ) -> Backend {
        Backend::start_at(addr, within, greet_then_echo(greeting))
    }

    /// Stops the backend as dropping it does, but keeps its port: a socket stays bound to the
    /// address without listening, so connects are refused as by a dead server, and no other
    /// socket (another test's ephemeral port, say) can take the port before
    /// [`HeldPort::revive`] listens on it again.
    pub fn go_down(self) -> HeldPort {
        let socket = reusable_socket(self.addr);
        socket
            .bind(&self.addr.into())
            .unwrap_or_else(|e| panic!("hold {} beside its listener: {e}", self.addr));
        let addr = self.addr;
        drop(self);
        HeldPort { addr, socket }
    }

    /// [`Backend::start`] on a given address, bound as [`Backend::greeting_echo_at`] binds.
    fn start_at(
        addr: SocketAddr,
        within: Duration,
        behaviour: impl Fn(TcpStream, &Ctx) + Send + Sync + 'static,
    ) -> Backend {
        Backend::serve(listen_at(addr, within), behaviour)
    }

    /// [`Backend::greeting_echo`] that counts in `gauge` the connections it holds at once. A
    /// connection stops counting when the client's end of stream arrives, before the backend
    /// answers with its own: whoever learns of the close through the backend's FIN (the proxy,
    /// freeing a `max_conns` slot) learns it after the gauge does.
    pub fn greeting_echo_gauged(greeting: &'static [u8], gauge: Arc<Gauge>) -> Backend {
        Backend::start(move |mut stream, _| {
            let held = gauge.enter();
            if stream.write_all(greeting).is_ok() {
                let _ = echo_until_eof(&mut stream);
            }
            drop(held);
            let _ = stream.shutdown(Shutdown::Write);
        })
    }

    /// An echo that reports how each connection ended: bytes echoed, or the read or write error.
    pub fn echo_reporting(report: Sender<Result<u64, ErrorKind>>) -> Backend {
        Backend::start(move |mut stream, _| {
            let _ = report.send(echo(&mut stream).map_err(|e| e.kind()));
        })
    }

    /// Sends `greeting` first, then echoes: tells a client which backend it reached.
    pub fn greeting_echo(greeting: &'static [u8]) -> Backend {
        Backend::start(greet_then_echo(greeting))
    }

    /// Reads until end of stream, then sends `reply(everything read)` and closes.
    pub fn reply_after_eof(reply: fn(&[u8]) -> Vec<u8>) -> Backend {
        Backend::start(move |mut stream, _| {
            let mut request = Vec::new();
            if stream.read_to_end(&mut request).is_ok() {
                let _ = stream.write_all(&reply(&request));
            }
        })
    }

    /// Reads until end of stream, then holds the connection open, silent, until dropped.
    pub fn hold_after_eof() -> Backend {
        Backend::start(|mut stream, ctx| {
            let mut request = Vec::new();
            if stream.read_to_end(&mut request).is_ok() {
                ctx.hold();
            }
        })
    }

    /// Sends `payload`, shuts down its write side, then reads until end of stream and reports
    /// what it read (or the error that ended the read).
    pub fn send_then_read(payload: Vec<u8>, report: Sender<Result<Vec<u8>, ErrorKind>>) -> Backend {
        Backend::start(move |mut stream, _| {
            let result = stream
                .write_all(&payload)
                .and_then(|()| stream.shutdown(Shutdown::Write))
                .and_then(|()| {
                    let mut got = Vec::new();
                    stream.read_to_end(&mut got).map(|_| got)
                });
            let _ = report.send(result.map_err(|e| e.kind()));
        })
    }

    /// Reads exactly `n` bytes, reports them, then closes with a reset (SO_LINGER 0).
    pub fn reset_after(n: usize, report: Sender<Vec<u8>>) -> Backend {
        Backend::start(move |mut stream, _| {
            let mut got = vec![0; n];
            if stream.read_exact(&mut got).is_ok() {
                let _ = report.send(got);
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
        })
    }

    /// Streams pseudo-random bytes until a write has been blocked for `stall` (the reader has
    /// stopped reading and every buffer on the way is full), reports the bytes sent, then holds
    /// the connection until dropped. Reports `Err(sent)` if `limit` bytes went without a stall.
    /// Its send buffer is small, so that what is in flight sits in the proxy, not here.
    pub fn source_until_stalled(
        stall: Duration,
        limit: u64,
        report: Sender<Result<u64, u64>>,
    ) -> Backend {
        Backend::start(move |mut stream, ctx| {
            stream
                .set_write_timeout(Some(stall))
                .expect("write timeout");
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(16 * 1024);
            let mut noise = Noise::new(limit);
            let mut buf = vec![0; 16 * 1024];
            let mut sent = 0u64;
            while sent < limit {
                noise.fill(&mut buf);
                match stream.write(&buf) {
                    Ok(n) => sent += n as u64,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        let _ = report.send(Ok(sent));
                        ctx.hold();
                        return;
                    }
                    Err(_) => return,
                }
            }
            let _ = report.send(Err(sent));
        })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        *lock(&self.shared.stopping) = true;
        self.shared.stopped.notify_all();
        // Shutting down a listening socket wakes the thread blocked in `accept` (Linux).
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Read);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for conn in lock(&self.shared.conns).values() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        let workers = std::mem::take(&mut *lock(&self.shared.workers));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, behaviour: Arc<Behaviour>) {
    for number in 0.. {
        let accepted = listener.accept();
        if shared.is_stopping() {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                // Out of descriptors, most likely: give the others a moment instead of spinning.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        set_timeouts(&stream);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.conns).insert(number, clone);
        }
        let ctx = Ctx {
            shared: shared.clone(),
        };
        let behaviour = behaviour.clone();
        let worker = std::thread::Builder::new()
            .name(format!("backend-conn-{number}"))
            .stack_size(CONN_STACK)
            .spawn(move || {
                behaviour(stream, &ctx);
                lock(&ctx.shared.conns).remove(&number);
            })
            .expect("spawn a backend connection thread");
        let mut workers = lock(&shared.workers);
        workers.retain(|w| !w.is_finished());
        workers.push(worker);
    }
}

/// Echoes until end of stream, then shuts down the write side. Returns the bytes echoed.
fn echo(stream: &mut TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.write_all(&buf[..n])?;
        total += n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    Ok(total)
}

/// Echoes until end of stream and returns the bytes echoed; unlike [`echo`], leaves the write
/// side open.
fn echo_until_eof(stream: &mut TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Connections a backend holds at once: now, and the most it ever held.
#[derive(Debug, Default)]
pub struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

/// One connection counted in a [`Gauge`], until dropped.
pub struct Held<'a>(&'a Gauge);

impl Gauge {
    /// A gauge at zero, to share with a backend.
    pub fn new() -> Arc<Gauge> {
        Arc::new(Gauge::default())
    }

    /// Connections held now.
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// The most connections held at once so far.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    fn enter(&self) -> Held<'_> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        Held(self)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads `stream` a byte at a time until what came ends with `end` (taking nothing past it),
/// at most `max` bytes; `None` if the stream ended or failed first, or `max` came without it.
pub fn read_through(stream: &mut TcpStream, end: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(end) {
        if got.len() >= max {
            return None;
        }
        match stream.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => return None,
        }
    }
    Some(got)
}

/// The behaviour of [`Backend::greeting_echo`].
fn greet_then_echo(greeting: &'static [u8]) -> impl Fn(TcpStream, &Ctx) + Send + Sync + 'static {
    move |mut stream, _| {
        if stream.write_all(greeting).is_ok() {
            let _ = echo(&mut stream);
        }
    }
}

/// A socket listening on `addr` with `SO_REUSEADDR`; while the address is in use, tries again
/// until `within` has passed, then fails the test.
fn listen_at(addr: SocketAddr, within: Duration) -> TcpListener {
    let deadline = std::time::Instant::now() + within;
    loop {
        let socket = tcp_socket(addr);
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        let listening = socket
            .bind(&addr.into())
            .and_then(|()| socket.listen(BACKLOG));
        match listening {
            Ok(()) => return socket.into(),
            Err(e) if e.kind() == ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                // Bounded: the deadline above ends the retries.
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("listen on {addr} again: {e}"),
        }
    }
}

/// A socket bound to `127.0.0.1:0` and listening with `backlog`, with `SO_REUSEPORT` so that
/// [`Backend::go_down`] can hold its port.
fn listen(backlog: i32) -> TcpListener {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let socket = reusable_socket(any);
    socket.bind(&any.into()).expect("bind 127.0.0.1:0");
    socket.listen(backlog).expect("listen");
    socket.into()
}

/// A TCP socket for `addr`'s family with `SO_REUSEPORT`: two such sockets may be bound to one
/// address, and only listening ones are given connections.
fn reusable_socket(addr: SocketAddr) -> socket2::Socket {
    let socket = tcp_socket(addr);
    socket.set_reuse_port(true).expect("SO_REUSEPORT");
    socket
}

/// A TCP socket for `addr`'s family.
fn tcp_socket(addr: SocketAddr) -> socket2::Socket {
    socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket")
}

/// The port of a backend that went down ([`Backend::go_down`]), bound and not listening.
pub struct HeldPort {
    addr: SocketAddr,
    socket: socket2::Socket,
}

impl HeldPort {
    /// The address held.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Brings "the same server" back: listens on the held port and serves `behaviour`.
    pub fn revive(self, behaviour: impl Fn(TcpStream, &Ctx) + Send + Sync + 'static) -> Backend {
        self.socket
            .listen(BACKLOG)
            .unwrap_or_else(|e| panic!("listen on {} again: {e}", self.addr));
        Backend::serve(self.socket.into(), behaviour)
    }

    /// [`HeldPort::revive`] as a [`Backend::greeting_echo`].
    pub fn revive_greeting_echo(self, greeting: &'static [u8]) -> Backend {
        self.revive(greet_then_echo(greeting))
    }
}

/// A TCP socket bound to `127.0.0.1:0`.
fn bound_socket() -> socket2::Socket {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let socket = tcp_socket(any);
    socket.bind(&any.into()).expect("bind 127.0.0.1:0");
    socket
}

/// Locks a mutex, ignoring poisoning: a panicking behaviour must not hide the test's own failure.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// An address where connects are refused: a socket bound to `127.0.0.1:0` that never listens,
/// kept alive so that no one else takes the port.
pub struct Refusing {
    addr: SocketAddr,
    _socket: socket2::Socket,
}

impl Refusing {
    /// Binds the socket.
    pub fn new() -> Refusing {
        let socket = bound_socket();
        let addr = socket
            .local_addr()
            .expect("local address")
            .as_socket()
            .expect("an IP address");
        Refusing {
            addr,
            _socket: socket,
        }
    }

    /// Where connects are refused.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// An address where connects never complete: a listener with the smallest backlog, never
/// accepting, whose queue is already full of dummy connections, so new SYNs are dropped.
pub struct Unanswered {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

impl Unanswered {
    /// Sets it up: fills the accept queue until a probe connect times out.
    pub fn new() -> Unanswered {
        let listener = bound_socket();
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .expect("local address")
            .as_socket()
            .expect("an IP address");
        let mut fillers = Vec::new();
        loop {
            // A probe that times out proves the queue full: its SYN was dropped.
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(filler) => fillers.push(filler),
                Err(e) if e.kind() == ErrorKind::TimedOut => break,
                Err(e) => panic!("filling the accept queue of {addr}: {e}"),
            }
            assert!(
                fillers.len() < 16,
                "the accept queue of {addr} never filled up"
            );
        }
        Unanswered {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }

    /// Where connects hang.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
