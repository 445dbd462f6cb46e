//! A handover of established connections that fails half-way: the old porxy must not lose a
//! connection, silently or otherwise. What the new one did not acknowledge, the old one takes
//! back and finishes itself.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use porxy_core::session::wire::FORMAT;
use sendfd::RecvWithFd;

use super::chain::{assert_exits_cleanly, Chain};
use super::handover::{Echoing, HALF};
use super::WAIT;
use crate::support::{wait_until, Backend};

/// Streams open across the failed handover.
const STREAMS: usize = 3;

/// The successor dies as soon as the first frame of connections reaches it, before it
/// acknowledges them: the old porxy takes them back, relays them to the last byte, and exits 0
/// once they have finished.
#[test]
fn connections_a_dying_successor_did_not_acknowledge_finish_on_the_old_process() {
    let backend = Backend::echo();
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let (streams, paused): (Vec<Echoing>, Vec<_>) = (0..STREAMS)
        .map(|i| Echoing::start(tunnel, 100 + i as u64))
        .unzip();
    for paused in &paused {
        paused
            .recv_timeout(WAIT)
            .expect("every stream echoes first");
    }

    let frame_sockets = successor_dying_at_first_frame(chain.path());
    assert!(
        frame_sockets > 0 && frame_sockets.is_multiple_of(2),
        "the first frame held streams, two sockets each: {frame_sockets}"
    );
    wait_until(WAIT, "the old porxy to take its connections back", || {
        old.stderr().contains(&format!(
            "connections taken back; they finish here connections={STREAMS} reset=0"
        ))
    });
    assert!(
        old.exit_status().is_none(),
        "the old porxy exited with connections to finish; stderr:\n{}",
        old.stderr()
    );
    Echoing::finish_all(streams);
    assert_exits_cleanly(&mut old, "the old porxy");
}

/// A successor that reads another format of connections (here the previous one, before fan-out
/// connections travelled) is told so, clearly, and the old porxy keeps its connections and
/// finishes them.
#[test]
fn a_successor_asking_for_another_format_leaves_the_connections_with_the_old_process() {
    let backend = Backend::echo();
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let (stream, paused) = Echoing::start(old.tunnel("cli-1"), 200);
    paused.recv_timeout(WAIT).expect("the stream echoes first");

    let mut conn = confirmed_successor(chain.path());
    conn.write_all(b"SESSIONS porxy-sessions/1\n").unwrap();
    let answer = line(&mut conn);
    assert_eq!(
        answer,
        format!("ERR this porxy sends connections as {FORMAT}, not porxy-sessions/1\n"),
        "the old porxy says which format it speaks"
    );
    drop(conn);
    wait_until(WAIT, "the old porxy to log the format mismatch", || {
        old.stderr()
            .contains("the new porxy reads another session format")
    });
    stream.go_on();
    assert_eq!(stream.join(), 2 * HALF as u64, "every byte came back");
    assert_exits_cleanly(&mut old, "the old porxy");
}

/// Plays a new porxy that takes the listening sockets, confirms, asks for the established
/// connections, and dies (closes everything, says nothing) as soon as the first frame of them
/// arrives. Returns how many sockets that frame brought.
fn successor_dying_at_first_frame(path: &Path) -> usize {
    let mut conn = confirmed_successor(path);
    conn.write_all(format!("SESSIONS {FORMAT}\n").as_bytes())
        .unwrap();
    assert_eq!(line(&mut conn), format!("SESSIONS {FORMAT}\n"));
    let mut header = [0u8; 16];
    let mut fds: Vec<RawFd> = vec![-1; 256];
    let (n, count) = conn.recv_with_fd(&mut header, &mut fds).unwrap();
    assert!(n > 0, "a frame of connections");
    // Closed plainly on return, as a crash would: the old porxy still holds them.
    let _frame = own(&fds[..count]);
    count
}

/// Plays a new porxy up to the old one's `OK`: it takes (and closes) the listening sockets.
/// Returns the connection to the old porxy.
fn confirmed_successor(path: &Path) -> UnixStream {
    let mut conn = UnixStream::connect(path).expect("connect to the upgrade socket");
    conn.set_read_timeout(Some(WAIT)).unwrap();
    conn.write_all(b"TAKEOVER\n").unwrap();
    let mut text = vec![0u8; 64 * 1024];
    let mut fds: Vec<RawFd> = vec![-1; 256];
    let (mut len, count) = conn.recv_with_fd(&mut text, &mut fds).unwrap();
    let _listening = own(&fds[..count]);
    while !text[..len].ends_with(b"END\n") {
        let n = conn.read(&mut text[len..]).unwrap();
        assert!(n > 0, "the old porxy closed before END");
        len += n;
    }
    conn.write_all(b"READY\n").unwrap();
    assert_eq!(line(&mut conn), "OK\n");
    conn
}

/// One line, read a byte at a time so that no descriptor sent after it is swallowed.
fn line(conn: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        assert_eq!(
            conn.read(&mut byte).expect("read a line"),
            1,
            "end of stream in a line"
        );
        line.push(byte[0]);
        assert!(line.len() < 1024, "no end of line");
    }
    String::from_utf8(line).expect("a text line")
}

/// Owns descriptors received by `recvmsg`, so that they are closed on drop.
fn own(fds: &[RawFd]) -> Vec<OwnedFd> {
    fds.iter()
        // SAFETY: each was installed in this process by recvmsg(2) for this message; nothing
        // else refers to it.
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}
