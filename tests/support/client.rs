//! The client side: connect with timeouts, exchange bytes, and tell how a connection ended.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::payload::assert_same;

/// Read and write timeout of every test socket: long enough for a loaded machine, short enough
/// that a hung test fails instead of hanging the suite.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `addr` (panics on failure) and sets the test socket timeouts.
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Connects to `addr` with a timeout and sets the test socket timeouts.
pub fn try_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    set_timeouts(&stream);
    Ok(stream)
}

/// Connects to `addr` from the local IP `source` (any port), with a timeout, and sets the test
/// socket timeouts. On loopback any `127.0.0.0/8` source works: a way to be many clients.
pub fn try_connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), CONNECT_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    set_timeouts(&stream);
    Ok(stream)
}

/// Like [`try_connect_from`]; panics on failure.
#[track_caller]
pub fn connect_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    try_connect_from(source, addr)
        .unwrap_or_else(|e| panic!("connect from {source} to {addr}: {e}"))
}

/// Reads the one byte a [`Backend::greeting_echo`](super::Backend::greeting_echo) sends
/// first: which backend answered.
#[track_caller]
pub fn read_greeting(stream: &mut TcpStream) -> u8 {
    let mut hello = [0u8; 1];
    stream
        .read_exact(&mut hello)
        .unwrap_or_else(|e| panic!("reading the backend's greeting: {e}"));
    hello[0]
}

/// Gives a socket the test read and write timeouts, and disables Nagle.
pub fn set_timeouts(stream: &TcpStream) {
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set write timeout");
    let _ = stream.set_nodelay(true);
}

/// Connects with a small receive buffer, for a client that never reads: what the other side
/// sends soon fills every buffer on the way.
#[track_caller]
pub fn connect_never_reading(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    socket
        .connect_timeout(&addr.into(), CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let stream: TcpStream = socket.into();
    set_timeouts(&stream);
    stream
}

/// The largest size the kernel lets a TCP socket buffer grow to: the third figure of
/// `/proc/sys/net/ipv4/<name>` (`tcp_rmem` or `tcp_wmem`), or Linux's usual 6 MiB / 4 MiB.
pub fn tcp_buffer_max(name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()
        .and_then(|text| text.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(if name == "tcp_rmem" { 6 << 20 } else { 4 << 20 })
}

/// True once the peer has reset the connection (or it has otherwise failed or hung up), seen
/// without reading: bytes waiting to be read do not hide it.
pub fn hung_up(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: poll(2) writes only the one pollfd it is given; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    assert!(ready >= 0, "poll: {}", io::Error::last_os_error());
    poll.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// `[::1]:0` when this host can listen on the IPv6 loopback; otherwise `None`, after printing
/// that `test` is skipped and why (a host or container without IPv6).
pub fn ipv6_loopback(test: &str) -> Option<SocketAddr> {
    let any: SocketAddr = "[::1]:0".parse().expect("an IPv6 address");
    match std::net::TcpListener::bind(any) {
        Ok(_) => Some(any),
        Err(e) => {
            eprintln!("note: {test} skipped: cannot listen on [::1] here ({e})");
            None
        }
    }
}

/// True when a connect to `addr` is refused (nobody listens there).
pub fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

/// Writes `msg` to an echo and checks the same bytes come back.
#[track_caller]
pub fn round_trip(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).expect("write to the proxy");
    expect_echo(stream, msg, "echo");
}

/// Reads `sent.len()` bytes and checks they are `sent`, echoed; `what` names the stream.
#[track_caller]
pub fn expect_echo(stream: &mut TcpStream, sent: &[u8], what: &str) {
    let mut back = vec![0; sent.len()];
    stream
        .read_exact(&mut back)
        .unwrap_or_else(|e| panic!("{what}: reading the echo of {} bytes: {e}", sent.len()));
    assert_same(&back, sent, what);
}

/// How the read side of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A clean end of stream (FIN).
    Eof,
    /// A read error, such as `ConnectionReset`.
    Error(ErrorKind),
}

/// What a read until the end saw.
#[derive(Debug)]
pub struct Ending {
    /// Bytes read before the end.
    pub bytes: Vec<u8>,
    /// How the stream ended.
    pub end: End,
    /// Time from the call to the end.
    pub after: Duration,
}

/// Reads until end of stream or an error. The socket's read timeout passing is a test failure.
#[track_caller]
pub fn read_until_end(stream: &mut TcpStream) -> Ending {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let end = loop {
        match stream.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                "the connection did not end within {:?} ({} bytes read)",
                start.elapsed(),
                bytes.len()
            ),
            Err(e) => break End::Error(e.kind()),
        }
    };
    Ending {
        bytes,
        end,
        after: start.elapsed(),
    }
}

/// Connects to `local`, makes one exchange, then waits for the idle timeout: checks that the
/// connection ends gracefully, with no byte, and not before `idle` (less 50 ms for the echo's
/// last hop). Returns how long after the exchange it ended.
#[track_caller]
pub fn closed_when_idle(local: SocketAddr, idle: Duration) -> Duration {
    let mut stream = connect(local);
    round_trip(&mut stream, b"one exchange, then silence");
    let start = Instant::now();
    let ending = read_until_end(&mut stream);
    let after = start.elapsed();
    assert_eq!(
        ending.end,
        End::Eof,
        "closed gracefully, by the idle timeout"
    );
    assert!(ending.bytes.is_empty());
    assert!(
        after >= idle - Duration::from_millis(50),
        "closed after {after:?}, before the {idle:?} idle timeout"
    );
    after
}

/// Reads until the end and checks it is a reset arriving within `within`.
#[track_caller]
pub fn expect_reset(stream: &mut TcpStream, within: Duration) -> Ending {
    let ending = read_until_end(stream);
    assert_eq!(
        ending.end,
        End::Error(ErrorKind::ConnectionReset),
        "expected a reset, saw {ending:?}"
    );
    assert!(
        ending.after < within,
        "the reset came after {:?}, expected within {within:?}",
        ending.after
    );
    ending
}

/// Connects and expects the connection to be reset within `within`. The reset may come so fast
/// that the connect itself reports it (it lands before the connect's completion is checked).
#[track_caller]
pub fn connect_expect_reset(addr: SocketAddr, within: Duration) {
    let start = Instant::now();
    match try_connect(addr) {
        Ok(mut stream) => {
            expect_reset(&mut stream, within);
        }
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::ConnectionReset,
            "connect to {addr}: {e}"
        ),
    }
    assert!(
        start.elapsed() < within,
        "reset after {:?}",
        start.elapsed()
    );
}

/// Closes `stream` with a reset (SO_LINGER 0), as a crashing peer would.
pub fn abort(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    drop(stream);
}
