//! Bytes go through exactly: many megabytes, many connections, odd chunk sizes, short reads.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;

use porxy_core::{CloseReason, Endpoint, TunnelSpec, TunnelStatus};

use crate::support::client::{
    connect, ipv6_loopback, read_greeting, read_until_end, round_trip, End, IO_TIMEOUT,
};
use crate::support::payload::{bytes, Expect, Noise};
use crate::support::proxy::{builder, spec_to, start, wait_tunnel, with_splice, TestProxy};
use crate::support::Backend;

/// Writes the noise stream `seed` in chunks of random sizes, then shuts down the write side.
fn write_noise(mut stream: TcpStream, seed: u64, len: usize, max_chunk: usize) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut data = Noise::new(seed);
        let mut sizes = Noise::new(!seed);
        let mut buf = vec![0; max_chunk];
        let mut left = len;
        while left > 0 {
            let n = sizes.between(1, max_chunk).min(left);
            data.fill(&mut buf[..n]);
            stream.write_all(&buf[..n]).expect("write to the proxy");
            left -= n;
        }
        stream.shutdown(Shutdown::Write).expect("shut down writing");
    })
}

/// Reads with buffers of random sizes until end of stream, checking every byte against the
/// noise stream `seed`; returns the byte count.
fn read_noise(mut stream: TcpStream, seed: u64, max_chunk: usize) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut expect = Expect::new(seed);
        let mut sizes = Noise::new(seed ^ 0x5555);
        let mut buf = vec![0; max_chunk];
        loop {
            let want = sizes.between(1, max_chunk);
            match stream.read(&mut buf[..want]) {
                Ok(0) => return expect.seen(),
                Ok(n) => expect.next(&buf[..n], &format!("connection {seed}")),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("connection {seed}: read after {} bytes: {e}", expect.seen()),
            }
        }
    })
}

/// Sends `len` bytes of noise through `local` to an echo and checks every byte that comes back.
/// Returns the number of bytes that came back.
fn echo_noise(local: SocketAddr, seed: u64, len: usize, max_chunk: usize) -> JoinHandle<u64> {
    let stream = connect(local);
    let writer = write_noise(stream.try_clone().expect("clone"), seed, len, max_chunk);
    let reader = read_noise(stream, seed, max_chunk);
    std::thread::spawn(move || {
        writer.join().expect("writer");
        reader.join().expect("reader")
    })
}

/// 16 connections × 4 MiB over 2 reactors, written in random chunks and read with short
/// reads: every byte comes back in order, and the counters add up. Spliced (the tunnel says
/// `splice=on`) and copied (`splice=off`).
#[test]
fn sixteen_connections_relay_four_mib_each_exactly_spliced() {
    sixteen_connections_relay_four_mib_each_exactly(true);
}

#[test]
fn sixteen_connections_relay_four_mib_each_exactly_copied() {
    sixteen_connections_relay_four_mib_each_exactly(false);
}

fn sixteen_connections_relay_four_mib_each_exactly(splice: bool) {
    const CONNS: u64 = 16;
    const LEN: usize = 4 * 1024 * 1024;
    let (report, reports) = mpsc::channel();
    let echo = Backend::echo_reporting(report);
    let spec = with_splice(spec_to(echo.addr()), splice);
    let proxy = start(builder().reactors(2).tunnel(spec));
    let local = proxy.bound()[0];
    let conns: Vec<_> = (0..CONNS)
        .map(|seed| echo_noise(local, seed, LEN, 64 * 1024))
        .collect();
    for (seed, conn) in conns.into_iter().enumerate() {
        let got = conn.join().expect("connection thread");
        assert_eq!(got, LEN as u64, "connection {seed}: bytes echoed");
    }
    for _ in 0..CONNS {
        let end = reports
            .recv_timeout(IO_TIMEOUT)
            .expect("a backend connection ends");
        assert_eq!(
            end,
            Ok(LEN as u64),
            "the backend reads every byte, then a clean EOF"
        );
    }
    let total = CONNS * LEN as u64;
    let status = wait_tunnel(
        &proxy.handle(),
        local,
        "every connection counted complete",
        |t| t.closes.get(CloseReason::Completed) == CONNS && t.open == 0,
    );
    assert_eq!(status.bytes_to_upstream, total);
    assert_eq!(status.bytes_to_client, total);
    assert_eq!(status.accepted, CONNS);
    assert_eq!(
        status.closes.total(),
        CONNS,
        "no other close reason: {:?}",
        status.closes
    );
    assert_eq!(echo.accepted(), CONNS as usize);
}

/// With the smallest buffer (1 KiB), a megabyte still goes through exactly: buffers (or pipes
/// that hold at most as much) refill, compact and drain many times per connection.
#[test]
fn smallest_buffer_relays_exactly_spliced() {
    smallest_buffer_relays_exactly(true);
}

#[test]
fn smallest_buffer_relays_exactly_copied() {
    smallest_buffer_relays_exactly(false);
}

fn smallest_buffer_relays_exactly(splice: bool) {
    let echo = Backend::echo();
    let proxy = start(
        builder()
            .buffer_size(porxy_core::MIN_BUFFER_SIZE)
            .splice(splice)
            .tunnel(spec_to(echo.addr())),
    );
    let local = proxy.bound()[0];
    let conn = echo_noise(local, 77, 1024 * 1024, 3000);
    assert_eq!(conn.join().expect("connection thread"), 1024 * 1024);
    let status = wait_tunnel(
        &proxy.handle(),
        local,
        "the connection counted complete",
        |t| t.closes.get(CloseReason::Completed) == 1,
    );
    assert_eq!(status.bytes_to_upstream, 1024 * 1024);
    assert_eq!(status.bytes_to_client, 1024 * 1024);
}

/// A connection that sends nothing and closes at once ends cleanly on both sides: the client
/// gets a plain end of stream and the proxy counts it complete.
#[test]
fn empty_connection_completes() {
    let echo = Backend::echo();
    let proxy = start(builder().tunnel(spec_to(echo.addr())));
    let local = proxy.bound()[0];
    let mut stream = connect(local);
    let status = fin_then_clean_end(&proxy, local, &mut stream);
    assert_eq!((status.bytes_to_upstream, status.bytes_to_client), (0, 0));
}

/// IPv6 on both sides: a tunnel on `[::1]:0` (the address it bound has a real port, and names
/// the tunnel in the status) relays exactly to a backend on `[::1]`, and counts the connection.
#[test]
fn ipv6_loopback_relays() {
    let Some(any6) = ipv6_loopback("ipv6_loopback_relays") else {
        return;
    };
    let backend = Backend::greeting_echo_at(any6, b"6", IO_TIMEOUT);
    assert!(backend.addr().is_ipv6());
    let proxy = start(builder().tunnel(TunnelSpec::new(any6, [Endpoint::Addr(backend.addr())])));
    let local = proxy.bound()[0];
    assert!(
        local.is_ipv6() && local.ip().is_loopback() && local.port() != 0,
        "bound {local}"
    );
    let mut stream = connect(local);
    assert_eq!(read_greeting(&mut stream), b'6', "the IPv6 backend answers");
    let msg = bytes(6, 100 * 1024);
    round_trip(&mut stream, &msg);
    let status = fin_then_clean_end(&proxy, local, &mut stream);
    assert_eq!(status.accepted, 1);
    assert_eq!(status.bytes_to_upstream, msg.len() as u64);
    assert_eq!(status.bytes_to_client, 1 + msg.len() as u64);
}

/// Sends `bytes` with `MSG_OOB`: TCP marks the last of them urgent.
#[track_caller]
fn send_urgent(stream: &TcpStream, bytes: &[u8]) {
    // SAFETY: a valid buffer of `bytes.len()` bytes and the stream's open descriptor.
    let sent = unsafe {
        libc::send(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_OOB,
        )
    };
    assert_eq!(sent, bytes.len() as isize, "send with MSG_OOB");
}

/// Runs 20 connections through a proxy to an echo on each data path; each sends "abc" with its
/// last byte urgent then "def" at once, and `finish` (given the stream and a label for
/// messages) does the rest. `after` checks the proxy once a path's connections are done.
fn urgent_rounds(
    finish: impl Fn(&mut TcpStream, &str),
    after: impl Fn(&TestProxy, SocketAddr, usize),
) {
    const ROUNDS: usize = 20;
    for splice in [true, false] {
        let echo = Backend::echo();
        let proxy = start(builder().tunnel(with_splice(spec_to(echo.addr()), splice)));
        let local = proxy.bound()[0];
        for round in 0..ROUNDS {
            let mut stream = connect(local);
            stream.set_nodelay(true).unwrap();
            send_urgent(&stream, b"abc");
            stream.write_all(b"def").unwrap();
            finish(&mut stream, &format!("round {round}, splice {splice}"));
        }
        after(&proxy, local, ROUNDS);
    }
}

/// TCP urgent data: a read stops at the urgent mark, short of the bytes queued behind it, and
/// no new event comes for them. They must still go through at once (the urgent byte itself is
/// not relayed: porxy never reads out of band, as HAProxy and nginx do not). Repeated, since
/// whether both sends are queued before porxy reads depends on timing.
#[test]
fn bytes_behind_urgent_data_are_relayed_at_once() {
    urgent_rounds(
        |stream, label| {
            let mut echoed = [0u8; 5];
            // `connect` sets read timeouts: a withheld "def" fails here, not in a hang.
            stream
                .read_exact(&mut echoed)
                .unwrap_or_else(|e| panic!("{label}: the bytes behind the urgent mark: {e}"));
            assert_eq!(&echoed, b"abdef", "{label}");
        },
        |_, _, _| {},
    );
}

/// Urgent data, more bytes and the FIN sent back to back: porxy may find all three queued at
/// once, a read stopping short at the mark with the peer's hang-up already reported. Every
/// byte behind the mark must still go through, then the end of stream. This guards any attempt
/// at saving the read that returns 0 after a hang-up: one built without the urgent-data
/// readiness reset these connections after "ab". Repeated, as timing decides what porxy finds
/// queued.
#[test]
fn bytes_between_urgent_data_and_a_fin_are_relayed_before_the_end() {
    urgent_rounds(
        |stream, label| {
            stream.shutdown(Shutdown::Write).unwrap();
            let ending = read_until_end(stream);
            assert_eq!(
                (ending.bytes.as_slice(), ending.end),
                (&b"abdef"[..], End::Eof),
                "{label}"
            );
        },
        |proxy, local, rounds| {
            wait_tunnel(&proxy.handle(), local, "every connection complete", |t| {
                t.closes.get(CloseReason::Completed) == rounds as u64
            });
        },
    );
}

/// Shuts down the client's writing on `stream`, a connection through `local` with nothing more
/// to receive: the client must then get a plain end of stream and no byte, and the proxy must
/// count the connection complete. Returns the tunnel's status then.
#[track_caller]
fn fin_then_clean_end(
    proxy: &TestProxy,
    local: SocketAddr,
    stream: &mut TcpStream,
) -> TunnelStatus {
    stream.shutdown(Shutdown::Write).unwrap();
    let ending = read_until_end(stream);
    assert_eq!(ending.end, End::Eof);
    assert!(ending.bytes.is_empty());
    wait_tunnel(
        &proxy.handle(),
        local,
        "the connection counted complete",
        |t| t.closes.get(CloseReason::Completed) == 1,
    )
}
