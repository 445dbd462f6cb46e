//! Both accept modes (`AcceptMode::Reactors`, the default, and `AcceptMode::Listener`) keep the
//! same promises: bytes relayed exactly, the connection limit, a closed tunnel's port freed when
//! `close` returns, a changed tunnel applied to the next clients of every reactor; and reactors
//! that accept do not spin on a listening socket they cannot accept from.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use porxy_core::{AcceptMode, CloseMode, CloseReason, Endpoint, TunnelSpec};

use crate::support::client::{
    connect, expect_echo, read_greeting, read_until_end, refused, round_trip, End,
};
use crate::support::payload::{assert_same, bytes};
use crate::support::process::{Porxy, TempDir};
use crate::support::proxy::{
    assert_all_completed, builder, spec_to, start, wait_all_closed, wait_tunnel,
};
use crate::support::Backend;

const MODES: [AcceptMode; 2] = [AcceptMode::Reactors, AcceptMode::Listener];

/// Many short connections (connect, 64 bytes each way, close), from several client threads at
/// once: every byte comes back exactly, and every connection is counted once, complete.
#[test]
fn short_connections_relay_exactly() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 300;
    for mode in MODES {
        let echo = Backend::echo();
        let proxy = start(
            builder()
                .reactors(2)
                .accept(mode)
                .tunnel(spec_to(echo.addr())),
        );
        let local = proxy.bound()[0];
        let clients: Vec<_> = (0..THREADS)
            .map(|thread| {
                std::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        short_exchange(local, thread * PER_THREAD + i);
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("a client thread");
        }
        let total = THREADS * PER_THREAD;
        let handle = proxy.handle();
        let status = wait_tunnel(&handle, local, "every connection counted complete", |t| {
            t.closes.get(CloseReason::Completed) == total
        });
        assert_eq!(status.accepted, total, "{mode}");
        assert_eq!(status.closes.total(), total, "{mode}: {:?}", status.closes);
        assert_eq!(status.bytes_to_upstream, total * 64, "{mode}");
        assert_eq!(status.bytes_to_client, total * 64, "{mode}");
        let adopted: u64 = handle.status().reactors.iter().map(|r| r.adopted).sum();
        assert_eq!(adopted, total, "{mode}: every client taken in once");
        wait_all_closed(&handle);
        assert_eq!(echo.accepted() as u64, total, "{mode}");
    }
}

/// One short connection: 64 bytes of its own, echoed exactly, then the client closes and sees
/// the proxy close too.
fn short_exchange(local: SocketAddr, seed: u64) {
    let mut stream = connect(local);
    let msg = bytes(seed, 64);
    stream.write_all(&msg).expect("write");
    let mut back = [0u8; 64];
    stream
        .read_exact(&mut back)
        .unwrap_or_else(|e| panic!("connection {seed}: {e}"));
    assert_same(&back, &msg, &format!("connection {seed}"));
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let ending = read_until_end(&mut stream);
    assert_eq!(ending.end, End::Eof, "connection {seed}");
}

/// At `max_connections`, clients past the limit wait in the listen backlog: neither served nor
/// reset, however many reactors could accept them, and served as soon as others leave.
#[test]
fn clients_past_the_limit_wait_and_are_not_reset() {
    const LIMIT: usize = 4;
    for mode in MODES {
        let echo = Backend::echo();
        let proxy = start(
            builder()
                .reactors(2)
                .max_connections(LIMIT)
                .accept(mode)
                .tunnel(spec_to(echo.addr())),
        );
        let local = proxy.bound()[0];
        let mut served: Vec<TcpStream> = (0..LIMIT)
            .map(|i| {
                let mut stream = connect(local);
                round_trip(&mut stream, format!("served {i}").as_bytes());
                stream
            })
            .collect();
        let mut waiting: Vec<TcpStream> = (0..LIMIT).map(|_| connect(local)).collect();
        for (i, stream) in waiting.iter_mut().enumerate() {
            stream.write_all(format!("waiting {i}").as_bytes()).unwrap();
        }
        // A measurement window: at the limit, no waiting client is served (nor reset).
        for stream in &mut waiting {
            stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let early = stream.read(&mut [0u8; 1]);
            assert!(
                matches!(&early, Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut),
                "{mode}: a client past the limit was served or reset: {early:?}"
            );
            stream
                .set_read_timeout(Some(crate::support::client::IO_TIMEOUT))
                .unwrap();
        }
        assert_eq!(proxy.handle().status().open_connections(), LIMIT as u64);
        // Half of the served ones leave: as many waiting ones get in, the others still wait.
        served.truncate(LIMIT / 2);
        for (i, stream) in waiting.iter_mut().enumerate().take(LIMIT / 2) {
            let sent = format!("waiting {i}");
            let what = format!("{mode}: waiting client {i}, after others left");
            expect_echo(stream, sent.as_bytes(), &what);
        }
        served.clear();
        for (i, stream) in waiting.iter_mut().enumerate().skip(LIMIT / 2) {
            let sent = format!("waiting {i}");
            let what = format!("{mode}: waiting client {i}, after others left");
            expect_echo(stream, sent.as_bytes(), &what);
        }
        drop(waiting);
        let handle = proxy.handle();
        wait_all_closed(&handle);
        assert_all_completed(&handle, local, 2 * LIMIT as u64, &mode.to_string());
    }
}

/// When `close` returns, the port is free: every thread that accepted from it has let go of the
/// socket, so another one can listen there. An established connection goes on.
#[test]
fn closed_tunnel_frees_its_port_when_close_returns() {
    for mode in MODES {
        let echo = Backend::echo();
        let proxy = start(
            builder()
                .reactors(3)
                .accept(mode)
                .tunnel(spec_to(echo.addr())),
        );
        let local = proxy.bound()[0];
        let handle = proxy.handle();
        let mut established = connect(local);
        round_trip(&mut established, b"before the close");
        handle.close(local, CloseMode::KeepConnections).unwrap();
        let again = TcpListener::bind(local)
            .unwrap_or_else(|e| panic!("{mode}: {local} is still held after close: {e}"));
        drop(again);
        round_trip(&mut established, b"after the close");
        // Open again on the same port: accepted from by every reactor anew.
        let reopened = handle
            .open(&TunnelSpec::new(local, [Endpoint::Addr(echo.addr())]))
            .unwrap();
        assert!(!reopened.replaced);
        for i in 0..10 {
            round_trip(&mut connect(local), format!("reopened {i}").as_bytes());
        }
    }
}

/// A changed tunnel applies to every client accepted after the change returned, whichever
/// reactor accepts it; established connections keep their backend.
#[test]
fn changed_tunnel_applies_to_every_reactor() {
    for mode in MODES {
        let old = Backend::greeting_echo(b"A");
        let new = Backend::greeting_echo(b"B");
        let proxy = start(
            builder()
                .reactors(3)
                .accept(mode)
                .tunnel(spec_to(old.addr())),
        );
        let local = proxy.bound()[0];
        let mut established: Vec<TcpStream> = (0..6).map(|_| connect(local)).collect();
        for stream in &mut established {
            assert_eq!(read_greeting(stream), b'A');
        }
        let changed = TunnelSpec::new(local, [Endpoint::Addr(new.addr())]);
        assert!(proxy.handle().open(&changed).unwrap().replaced);
        // Held open at once, so that they spread over the reactors.
        let mut fresh: Vec<TcpStream> = (0..30).map(|_| connect(local)).collect();
        for (i, stream) in fresh.iter_mut().enumerate() {
            assert_eq!(read_greeting(stream), b'B', "{mode}: new client {i}");
            round_trip(stream, b"to the new backend");
        }
        for stream in &mut established {
            round_trip(stream, b"still to the old backend");
        }
        assert_eq!((old.accepted(), new.accepted()), (6, 30), "{mode}");
    }
}

/// A listening socket broken under the reactors (here shut down through a duplicate taken over
/// the upgrade socket, as another process sharing it could) fails every accept and, watched
/// level-triggered, is reported again and again: the reactors set it aside for a while instead
/// of spinning, and the proxy's other tunnels go on.
#[test]
fn a_broken_listening_socket_does_not_make_reactors_spin() {
    let echo = Backend::echo();
    let dir = TempDir::new();
    let path = dir.path().join("up.sock");
    let spec = format!("127.0.0.1:0={}", echo.addr());
    let path_arg = path.display().to_string();
    let mut porxy = Porxy::start(&[
        "--accept",
        "reactors",
        "--reactors",
        "2",
        "--tunnel",
        &spec,
        "--tunnel",
        &spec,
        "--upgrade-socket",
        &path_arg,
    ]);
    let (broken, healthy) = (porxy.tunnel("cli-1"), porxy.tunnel("cli-2"));
    let sockets = take_listening_sockets(&path);
    let socket = sockets
        .iter()
        .find(|s| s.local_addr().ok() == Some(broken))
        .expect("the socket of cli-1");
    socket2::SockRef::from(socket)
        .shutdown(Shutdown::Both)
        .expect("shut the listening socket down");
    assert!(refused(broken), "cli-1 no longer listens");

    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let cpu_before = porxy.cpu_ticks();
    // A measurement window, not a wait for a condition: how busy is porxy meanwhile?
    std::thread::sleep(Duration::from_secs(1));
    let used = porxy.cpu_ticks() - cpu_before;
    assert!(
        used * 4 < ticks_per_second,
        "porxy used {used} of {ticks_per_second} CPU ticks in one second: it spins"
    );
    for i in 0..10 {
        round_trip(&mut connect(healthy), format!("healthy {i}").as_bytes());
    }
    assert!(porxy.exit_status().is_none(), "{}", porxy.stderr());
    assert!(
        porxy
            .stderr()
            .contains("accept failed; trying again shortly"),
        "{}",
        porxy.stderr()
    );
}

/// Asks the porxy serving the upgrade socket at `path` for its listening sockets, as a
/// successor would, then goes away without `READY` (so the porxy carries on).
fn take_listening_sockets(path: &Path) -> Vec<TcpListener> {
    use sendfd::RecvWithFd;
    use std::os::fd::FromRawFd;
    let mut conn = UnixStream::connect(path).expect("connect to the upgrade socket");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"TAKEOVER\n").unwrap();
    let mut text = vec![0u8; 4096];
    let mut fds = [-1; 8];
    let (mut len, count) = conn
        .recv_with_fd(&mut text, &mut fds)
        .expect("the handover");
    // SAFETY: the descriptors were just received, and nothing else owns them.
    let sockets = fds[..count]
        .iter()
        .map(|&fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
        .collect::<Vec<_>>();
    while !text[..len].ends_with(b"END\n") {
        let n = conn.read(&mut text[len..]).expect("the handover text");
        assert!(n > 0, "the handover text ends with END");
        len += n;
    }
    sockets.into_iter().map(TcpListener::from).collect()
}

/// `max_accept_rate`: over the proxy-wide rate, clients wait in the listen backlog and are
/// taken in turn, one per interval after the burst: none is reset, whoever accepts.
#[test]
fn clients_over_the_accept_rate_wait_their_turn() {
    // 10 a second: a burst of one, then one every 100 ms.
    const RATE: u32 = 10;
    const CLIENTS: usize = 5;
    for mode in MODES {
        let echo = Backend::echo();
        let proxy = start(
            builder()
                .reactors(2)
                .max_accept_rate(RATE)
                .accept(mode)
                .tunnel(spec_to(echo.addr())),
        );
        let local = proxy.bound()[0];
        // Every client connects (the kernel completes the handshake) and speaks at once.
        let started = std::time::Instant::now();
        let mut clients: Vec<TcpStream> = (0..CLIENTS)
            .map(|i| {
                let mut stream = connect(local);
                stream.write_all(format!("client {i}").as_bytes()).unwrap();
                stream
            })
            .collect();
        let mut served_at = Vec::new();
        for (i, stream) in clients.iter_mut().enumerate() {
            let sent = format!("client {i}");
            expect_echo(stream, sent.as_bytes(), &format!("{mode}: client {i}"));
            served_at.push(started.elapsed());
        }
        // Five accepts at 10 a second take four intervals (400 ms) from the first, whatever
        // the order; the margin is for the clock.
        let span = *served_at.last().unwrap();
        assert!(
            span >= Duration::from_millis(350),
            "{mode}: {CLIENTS} clients served within {span:?} at {RATE} a second"
        );
        drop(clients);
        let handle = proxy.handle();
        wait_all_closed(&handle);
        assert_all_completed(&handle, local, CLIENTS as u64, &mode.to_string());
    }
}

/// `accept_later`: the tunnels are open (clients wait in the backlog) but nobody is accepted
/// until `start_accepting`, in either accept mode; calling it twice changes nothing.
#[test]
fn a_proxy_started_to_accept_later_accepts_once_told() {
    for mode in MODES {
        let backend = Backend::echo();
        let proxy = start(
            builder()
                .accept(mode)
                .accept_later()
                .tunnel(spec_to(backend.addr())),
        );
        let local = proxy.bound()[0];
        let mut client = connect(local);
        client.write_all(b"waiting").unwrap();
        // A bounded look: nothing may answer while the proxy does not accept.
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut byte = [0u8; 1];
        let err = client.read(&mut byte).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{mode:?}: {err}"
        );
        assert_eq!(proxy.handle().status().tunnels[0].accepted, 0, "{mode:?}");
        proxy.handle().start_accepting().unwrap();
        proxy.handle().start_accepting().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut back = [0u8; 7];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"waiting", "{mode:?}");
        round_trip(&mut client, b"and on");
        assert_eq!(proxy.handle().status().tunnels[0].accepted, 1, "{mode:?}");
    }
}
