//! Fan-out connections in an upgrade: the old porxy hands them over with every destination's
//! socket, and each destination goes on in the new process from exactly where it was, the
//! bytes the old process held for a lagging one included; a destination dropped before the
//! upgrade stays dropped.
//!
//! As in `handover.rs`, each test holds its connections still (the clients, or a destination
//! that reads nothing until told) until the old porxy has exited: it cannot have finished them,
//! so they must have been handed over.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::chain::Chain;
use super::handover::{logged_number, tunnel_line, upgrade_handing_over};
use super::{control_addr, field, WAIT};
use crate::support::backend::Backend;
use crate::support::client::{connect, read_until_end, End};
use crate::support::control::ControlClient;
use crate::support::fanout::{
    counting_collector, echoing_primary, gated_collector, recv, Digest, Gate, REPORT_WAIT,
};
use crate::support::payload::{assert_same, bytes};
use crate::support::{wait_for, wait_until};

/// Clients streaming across the upgrade.
const CLIENTS: usize = 3;
/// Bytes each client sends before the upgrade: more than the kernel buffers on the way to a
/// mirror that has stopped reading (porxy's send buffer alone grows to 4 MiB on loopback), so
/// that porxy holds some for it.
const BEFORE: usize = 8 << 20;
/// Bytes each client sends after it.
const AFTER: usize = 1 << 20;
/// Bytes of each connection the gated mirror reads before the upgrade.
const MIRROR_READS: u64 = 64 * 1024;
/// Bytes per round of the lag test.
const ROUND: usize = 1 << 20;

/// The headline: clients mid-stream to an echoing primary and a mirror that has stopped
/// reading (the old porxy holds what it lacks) go on through the new porxy once the old one has
/// exited: the mirror and the primary each get every client's exact stream, and each client its
/// exact echo.
#[test]
fn fanout_connections_move_with_every_destination_at_its_own_position() {
    let gate = Gate::new();
    let (primary, primary_rx) = echoing_primary();
    let (mirror, mirror_rx) = gated_collector(MIRROR_READS, gate.clone());
    let spec = format!(
        "127.0.0.1:0={},{}[mode=fanout,max_lag=16MiB]",
        primary.addr(),
        mirror.addr()
    );
    let mut chain = Chain::with_spec(spec);
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let control = control_addr(&old);
    let (clients, echoed): (Vec<FanClient>, Vec<Receiver<()>>) = (0..CLIENTS)
        .map(|i| FanClient::start(tunnel, 300 + i as u64))
        .unzip();
    for (i, echoed) in echoed.iter().enumerate() {
        echoed
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("client {i}: its first {BEFORE} bytes echoed"));
    }

    let new = upgrade_handing_over(&mut chain, &mut old, CLIENTS);
    let buffered = logged_number(&new, "buffered_bytes=");
    assert!(
        buffered > 0,
        "the old porxy held bytes for the mirror when it let go; stderr:\n{}",
        new.stderr()
    );
    let want = CLIENTS.to_string();
    // The log line comes once the connections are on their way to the reactors.
    let full = wait_for(
        WAIT,
        "the new porxy's reactors to take every connection in",
        || ControlClient::connect(control).block("STATUS FULL"),
        |full| {
            let line = tunnel_line(full);
            field(line, "open") == want && field(line, "imported") == want
        },
    );
    for addr in [primary.addr(), mirror.addr()] {
        assert_eq!(
            field(backend_line(&full, addr), "open"),
            want,
            "each destination holds its slots here: {full:#?}"
        );
    }

    gate.open();
    let mut sent = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let (payload, echo) = client.finish();
        assert_same(&echo, &payload, &format!("client {i}'s echo"));
        sent.push(Digest::of(&payload));
    }
    sent.sort();
    for (who, rx) in [("the primary", &primary_rx), ("the mirror", &mirror_rx)] {
        let mut got: Vec<Digest> = (0..CLIENTS).map(|_| recv(rx, who).expect(who)).collect();
        got.sort();
        assert_eq!(got, sent, "{who} got every client's exact stream");
    }
    wait_for(
        WAIT,
        "the new porxy to count every connection complete",
        || tunnel_line(&ControlClient::connect(control).block("STATUS FULL")).to_string(),
        |line| line.contains(&format!("closes=completed:{CLIENTS}")),
    );
    assert_eq!(
        (primary.accepted(), mirror.accepted()),
        (CLIENTS, CLIENTS),
        "one connection per client to each destination, all along"
    );
}

/// A mirror dropped for lag before the upgrade does not come back in the new porxy: the
/// connection goes on to the primary and the other mirror, which get the whole stream, and the
/// dropped one is never connected to again.
#[test]
fn a_mirror_dropped_for_lag_before_the_upgrade_stays_dropped() {
    let (primary, primary_rx) = echoing_primary();
    let (mirror, mirror_rx, mirror_read) = counting_collector();
    let stalled = Backend::start(|stream, ctx| {
        // Accepts and never reads: its receive buffer, then porxy's send buffer, fill up.
        let _ = socket2::SockRef::from(&stream).set_recv_buffer_size(4096);
        ctx.hold();
    });
    let spec = format!(
        "127.0.0.1:0={},{},{}[mode=fanout,max_lag=1MiB]",
        primary.addr(),
        mirror.addr(),
        stalled.addr()
    );
    let mut chain = Chain::with_spec(spec);
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let control = control_addr(&old);
    let mut client = connect(tunnel);
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut stream = Vec::new();
    let send_round = |client: &mut TcpStream, stream: &mut Vec<u8>| {
        let round = bytes(400 + (stream.len() / ROUND) as u64, ROUND);
        client.write_all(&round).expect("send a round");
        let mut echo = vec![0u8; ROUND];
        client.read_exact(&mut echo).expect("read the round's echo");
        assert_same(&echo, &round, "a round's echo");
        stream.extend_from_slice(&round);
        // The good mirror keeps up (so that a busy machine cannot make it look behind).
        let total = stream.len() as u64;
        wait_until(REPORT_WAIT, "the good mirror to read the round", || {
            mirror_read.load(Ordering::SeqCst) >= total
        });
    };
    // Rounds until the stalled mirror is dropped (a few MiB: max_lag and the kernel's buffers).
    for _ in 0..32 {
        send_round(&mut client, &mut stream);
        let full = ControlClient::connect(control).block("STATUS FULL");
        if field(backend_line(&full, stalled.addr()), "lag_drops") == "1" {
            break;
        }
    }
    let full = ControlClient::connect(control).block("STATUS FULL");
    assert_eq!(
        field(backend_line(&full, stalled.addr()), "lag_drops"),
        "1",
        "the stalled mirror was dropped before the upgrade: {full:#?}"
    );

    let _new = upgrade_handing_over(&mut chain, &mut old, 1);
    let open = |full: &[String]| -> Vec<String> {
        [primary.addr(), mirror.addr(), stalled.addr()]
            .iter()
            .map(|&a| field(backend_line(full, a), "open"))
            .collect()
    };
    // The log line comes once the connection is on its way to a reactor.
    wait_for(
        WAIT,
        "the new porxy to hold slots on the primary and the good mirror only",
        || ControlClient::connect(control).block("STATUS FULL"),
        |full| open(full) == ["1", "1", "0"],
    );

    for _ in 0..2 {
        send_round(&mut client, &mut stream);
    }
    client.shutdown(Shutdown::Write).expect("FIN to the proxy");
    let ending = read_until_end(&mut client);
    assert_eq!(ending.end, End::Eof, "{ending:?}");
    assert!(
        ending.bytes.is_empty(),
        "{} bytes after the last round",
        ending.bytes.len()
    );
    let whole = Digest::of(&stream);
    assert_eq!(recv(&primary_rx, "the primary"), Ok(whole));
    assert_eq!(recv(&mirror_rx, "the good mirror"), Ok(whole));
    let full = ControlClient::connect(control).block("STATUS FULL");
    assert_eq!(
        field(backend_line(&full, stalled.addr()), "bytes_sent"),
        "0",
        "the new porxy sent the dropped mirror nothing: {full:#?}"
    );
    assert_eq!(
        stalled.accepted(),
        1,
        "the dropped mirror was never connected again"
    );
}

/// The `  backend ADDR ...` line of a `STATUS FULL` reply.
#[track_caller]
fn backend_line(status: &[String], addr: SocketAddr) -> &str {
    let start = format!("  backend {addr} ");
    status
        .iter()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no line for backend {addr} in {status:#?}"))
}

/// A client streaming a seeded pattern through a fan-out tunnel to an echoing primary: it sends
/// [`BEFORE`] bytes, then waits for [`FanClient::finish`] to send [`AFTER`] more and its FIN,
/// while it reads the echo to its end all along.
struct FanClient {
    payload: Vec<u8>,
    go: Sender<()>,
    writer: JoinHandle<()>,
    reader: JoinHandle<Result<Vec<u8>, ErrorKind>>,
}

impl FanClient {
    /// Starts the client; the receiver hears once the first [`BEFORE`] bytes came back.
    fn start(addr: SocketAddr, seed: u64) -> (FanClient, Receiver<()>) {
        let payload = bytes(seed, BEFORE + AFTER);
        let stream = connect(addr);
        // Reads and writes wait across the upgrade: longer than the usual test timeout.
        let long = Some(Duration::from_secs(60));
        stream.set_read_timeout(long).unwrap();
        stream.set_write_timeout(long).unwrap();
        let mut write_side = stream.try_clone().unwrap();
        let mut read_side = stream;
        let (go, go_rx) = mpsc::channel::<()>();
        let (echoed_tx, echoed) = mpsc::channel();
        let writer = {
            let payload = payload.clone();
            std::thread::spawn(move || {
                write_side
                    .write_all(&payload[..BEFORE])
                    .expect("send the first part");
                go_rx.recv_timeout(WAIT * 6).expect("told to go on");
                write_side
                    .write_all(&payload[BEFORE..])
                    .expect("send the rest");
                write_side
                    .shutdown(Shutdown::Write)
                    .expect("FIN to the proxy");
            })
        };
        let reader = std::thread::spawn(move || {
            let mut echo = Vec::with_capacity(BEFORE + AFTER);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match read_side.read(&mut buf) {
                    Ok(0) => return Ok(echo),
                    Ok(n) => {
                        let before = echo.len();
                        echo.extend_from_slice(&buf[..n]);
                        if before < BEFORE && echo.len() >= BEFORE {
                            let _ = echoed_tx.send(());
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.kind()),
                }
            }
        });
        let client = FanClient {
            payload,
            go,
            writer,
            reader,
        };
        (client, echoed)
    }

    /// Sends the rest and the FIN; returns what was sent and the whole echo.
    fn finish(self) -> (Vec<u8>, Vec<u8>) {
        let _ = self.go.send(());
        self.writer.join().expect("the writer");
        let echo = self
            .reader
            .join()
            .expect("the reader")
            .expect("the echo reads to its end");
        (self.payload, echo)
    }
}
