//! Handing established connections over in an upgrade: the old porxy exits at once, and every
//! connection it had goes on in the new one with exact bytes, its half-close state, and the
//! bytes that sat in the old process's buffers when it let go.
//!
//! Each test holds its connections still (the clients or the backend wait for the test) until
//! the old porxy has exited: it cannot have drained them, so they must have been handed over.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use super::chain::{assert_took_over, Chain};
use super::{connect_to, control_addr, field, finish, WAIT};
use crate::support::client::{connect, read_greeting, read_until_end, round_trip, End};
use crate::support::control::ControlClient;
use crate::support::payload::{assert_same, bytes, Expect, Noise};
use crate::support::process::Porxy;
use crate::support::{wait_for, Backend};

/// The longest the old porxy may take to exit once it has handed its connections over; none of
/// them can finish before the test lets it.
const PROMPT_EXIT: Duration = Duration::from_secs(5);
/// Streams open across the upgrade.
const STREAMS: usize = 6;
/// Bytes each stream sends before the upgrade, and again after.
pub(super) const HALF: usize = 256 * 1024;
/// Echoed bytes each stream reads before it pauses for the upgrade.
const PAUSE_AT: u64 = 64 * 1024;
/// Bytes per write.
const CHUNK: usize = 16 * 1024;
/// How long a blocked write means every buffer on the way is full.
const STALL: Duration = Duration::from_millis(500);
/// A stream stalls well before this many bytes (the buffers on loopback hold a few MB).
const STALL_LIMIT: u64 = 256 * 1024 * 1024;

/// The headline: streams in the middle of transfers both ways when the upgrade comes go on
/// through the new porxy to the last byte, while the old one exits at once (0). STATUS on the
/// new porxy shows them open, taken over, on their backend.
#[test]
fn streams_open_before_the_upgrade_complete_through_the_new_process() {
    let backend = Backend::echo();
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let control = control_addr(&old);
    let (streams, paused): (Vec<Echoing>, Vec<Receiver<()>>) = (0..STREAMS)
        .map(|i| Echoing::start(tunnel, i as u64 + 1))
        .unzip();
    for (i, paused) in paused.iter().enumerate() {
        paused
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("stream {i} echoed {PAUSE_AT} bytes before the upgrade"));
    }

    let _new = upgrade_handing_over(&mut chain, &mut old, STREAMS);
    // The log line says the sessions were handed to the reactors; they count them as they
    // take them in, a moment later.
    let mut client = ControlClient::connect(control);
    wait_for(
        WAIT,
        "the new porxy's reactors to count the imported streams",
        || client.cmd("STATUS"),
        |status| field(status, "open") == STREAMS.to_string(),
    );
    let full = client.block("STATUS FULL");
    let line = tunnel_line(&full);
    let want = STREAMS.to_string();
    assert_eq!(
        (
            field(line, "open"),
            field(line, "imported"),
            field(line, "accepted")
        ),
        (want.clone(), want.clone(), "0".to_string()),
        "{full:#?}"
    );
    let backend_line = full.iter().find(|l| l.starts_with("  backend ")).unwrap();
    assert_eq!(
        field(backend_line, "open"),
        want,
        "the backend's slots: {full:#?}"
    );

    Echoing::finish_all(streams);
    wait_for(
        WAIT,
        "the new porxy to count every stream complete",
        || tunnel_line(&ControlClient::connect(control).block("STATUS FULL")).to_string(),
        |line| line.contains(&format!("closes=completed:{STREAMS}")),
    );
}

/// A stream whose client has sent its end of stream, while the backend goes on sending, keeps
/// its half-close across the upgrade: the backend saw that end once (and nothing after it),
/// and the client gets every remaining byte, then its own end of stream.
#[test]
fn a_half_closed_stream_keeps_its_half_close() {
    let request = bytes(11, 50 * 1024);
    let before = bytes(12, 100 * 1024);
    let after = bytes(13, 300 * 1024);
    let (go, go_rx) = mpsc::channel::<()>();
    let (report_tx, report) = mpsc::channel();
    let backend = {
        let (before, after) = (before.clone(), after.clone());
        let go_rx = Mutex::new(go_rx);
        Backend::start(move |mut stream, _| {
            let _ = report_tx.send(answer_after_eof(&mut stream, &before, &after, &go_rx));
        })
    };
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let control = control_addr(&old);
    let mut client = connect(tunnel);
    client.write_all(&request).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    // The backend answers only once the client's end of stream has gone through the proxy.
    let mut got = vec![0u8; before.len()];
    client.read_exact(&mut got).unwrap();
    assert_same(&got, &before, "the answer before the upgrade");

    let new = chain.successor();
    assert_took_over(&new, &old);
    assert_exits_promptly(&mut old);
    // The stream went over half-closed.
    wait_log(&new, "half_closed=1");
    go.send(()).unwrap();
    let ending = read_until_end(&mut client);
    assert_eq!(ending.end, End::Eof, "{ending:?}");
    assert_same(&ending.bytes, &after, "the answer after the upgrade");
    let seen = report
        .recv_timeout(WAIT)
        .expect("the backend reports")
        .expect("the backend's exchange");
    assert_same(&seen, &request, "the request the backend received");
    wait_for(
        WAIT,
        "the new porxy to count the stream complete",
        || tunnel_line(&ControlClient::connect(control).block("STATUS FULL")).to_string(),
        |line| line.contains("closes=completed:1"),
    );
}

/// Bytes the old porxy had read from the client and not yet written to the backend (the backend
/// had stopped reading) are not lost: the new porxy writes them first, then the rest.
#[test]
fn bytes_buffered_in_the_old_process_are_delivered() {
    let seed = 21;
    let (go, go_rx) = mpsc::channel::<()>();
    let (report_tx, report) = mpsc::channel();
    let backend = {
        let go_rx = Mutex::new(go_rx);
        Backend::start(move |mut stream, _| {
            // Not a byte read until the test says so.
            let waited = go_rx.lock().unwrap().recv_timeout(WAIT);
            let mut got = Vec::new();
            let read = waited
                .map_err(|e| e.to_string())
                .and_then(|()| stream.read_to_end(&mut got).map_err(|e| e.to_string()));
            let _ = report_tx.send(read.map(|_| got));
        })
    };
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let mut client = Stalling::new(connect(old.tunnel("cli-1")), seed);
    client.write_until_stalled();

    let new = chain.successor();
    assert_exits_promptly(&mut old);
    let buffered = logged_number(&new, "buffered_bytes=");
    assert!(
        buffered > 0,
        "the old porxy held bytes in its buffers when it let go; stderr:\n{}",
        new.stderr()
    );
    go.send(()).unwrap();
    let sent = client.finish(4 * CHUNK as u64);
    let got = report
        .recv_timeout(Duration::from_secs(30))
        .expect("the backend reports")
        .expect("the backend read to the end");
    assert_eq!(got.len() as u64, sent, "{buffered} bytes were buffered");
    assert_same(&got, &bytes(seed, got.len()), "what the backend received");
}

/// A client waiting for a backend slot (the only one is taken) goes over as it is, and the new
/// porxy serves it once the slot frees up there.
#[test]
fn a_client_waiting_for_a_backend_goes_over_and_is_served() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::with_spec(format!("127.0.0.1:0={}[max_conns=1]", backend.addr()));
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let control = control_addr(&old);
    let holding = connect_to(tunnel, b'X', "holds the only slot");
    let mut waiting = connect(tunnel);
    wait_open(control, 2, "the old porxy to queue the second client");

    let new = chain.successor();
    assert_took_over(&new, &old);
    assert_exits_promptly(&mut old);
    let full = ControlClient::connect(control).block("STATUS FULL");
    assert_eq!(field(tunnel_line(&full), "imported"), "2", "{full:#?}");
    finish(holding);
    assert_eq!(
        read_greeting(&mut waiting),
        b'X',
        "the waiting client is served"
    );
    round_trip(&mut waiting, b"served by the new porxy");
    finish(waiting);
}

/// Waits until the porxy whose control socket is `control` says `open` connections are open.
#[track_caller]
fn wait_open(control: std::net::SocketAddr, open: usize, what: &str) {
    wait_for(
        WAIT,
        what,
        || ControlClient::connect(control).cmd("STATUS"),
        |status| field(status, "open") == open.to_string(),
    );
}

/// Checks the old porxy exits 0 within [`PROMPT_EXIT`].
#[track_caller]
/// Starts a successor that takes over from `old`, waits for `old` to exit promptly, and for
/// the successor to log that it took all `connections` over (none detached, none reset).
pub(super) fn upgrade_handing_over(
    chain: &mut Chain,
    old: &mut Porxy,
    connections: usize,
) -> Porxy {
    let new = chain.successor();
    assert_took_over(&new, old);
    assert_exits_promptly(old);
    wait_log(
        &new,
        &format!(
            "took over the established connections of the previous porxy \
             connections={connections} detached=0 reset=0"
        ),
    );
    new
}

pub(super) fn assert_exits_promptly(old: &mut Porxy) {
    let status = old.wait_exit(PROMPT_EXIT);
    assert_eq!(
        status.code(),
        Some(0),
        "the old porxy exit status; stderr:\n{}",
        old.stderr()
    );
}

/// The one `tunnel ...` line of a `STATUS FULL` reply.
#[track_caller]
pub(super) fn tunnel_line(status: &[String]) -> &str {
    status
        .iter()
        .find(|l| l.starts_with("tunnel "))
        .unwrap_or_else(|| panic!("no tunnel line in {status:#?}"))
}

/// Waits for `needle` in the porxy's log (its stderr reader may lag behind the process, which
/// logged before its READY line), and returns the log.
#[track_caller]
pub(super) fn wait_log(porxy: &Porxy, needle: &str) -> String {
    wait_for(
        WAIT,
        &format!("`{needle}` in the log"),
        || porxy.stderr(),
        |log| log.contains(needle),
    )
}

/// The number after `key` in the porxy's log.
#[track_caller]
pub(super) fn logged_number(porxy: &Porxy, key: &str) -> u64 {
    let stderr = wait_log(porxy, key);
    let at = stderr.find(key).expect("found by wait_log");
    let digits: String = stderr[at + key.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{key} without a number:\n{stderr}"))
}

/// The backend of the half-close test: reads the request to its end, answers `before`, waits
/// for the test, answers `after`, and checks the client's end of stream stayed the end (no
/// byte, no reset after it). Returns the request.
fn answer_after_eof(
    stream: &mut TcpStream,
    before: &[u8],
    after: &[u8],
    go: &Mutex<Receiver<()>>,
) -> Result<Vec<u8>, String> {
    let mut request = Vec::new();
    stream
        .read_to_end(&mut request)
        .map_err(|e| format!("reading the request: {e}"))?;
    stream
        .write_all(before)
        .map_err(|e| format!("answering before the upgrade: {e}"))?;
    go.lock()
        .unwrap_or_else(|p| p.into_inner())
        .recv_timeout(WAIT)
        .map_err(|e| format!("waiting for the upgrade: {e}"))?;
    stream
        .write_all(after)
        .map_err(|e| format!("answering after the upgrade: {e}"))?;
    let mut more = [0u8; 64];
    match stream.read(&mut more) {
        Ok(0) => {}
        other => return Err(format!("after the end of stream, a read gave {other:?}")),
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("ending: {e}"))?;
    Ok(request)
}

/// A client streaming a seeded byte pattern through an echo, checking every byte that comes
/// back. Both halves stop after a while (the writer after [`HALF`] bytes, the reader after
/// [`PAUSE_AT`]) until [`Echoing::go_on`].
pub(super) struct Echoing {
    go: [Sender<()>; 2],
    writer: JoinHandle<()>,
    reader: JoinHandle<u64>,
}

impl Echoing {
    /// Starts the stream; the receiver hears once the reader has paused.
    pub(super) fn start(addr: SocketAddr, seed: u64) -> (Echoing, Receiver<()>) {
        let stream = connect(addr);
        // The writer may block while the reader pauses: longer than the usual test timeout.
        stream
            .set_write_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut write_side = stream.try_clone().unwrap();
        let mut read_side = stream;
        let (go_writer, writer_go) = mpsc::channel::<()>();
        let (go_reader, reader_go) = mpsc::channel::<()>();
        let (paused_tx, paused) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            let mut noise = Noise::new(seed);
            let mut chunk = vec![0u8; CHUNK];
            for half in 0..2 {
                if half == 1 {
                    writer_go.recv_timeout(WAIT * 3).expect("told to go on");
                }
                for _ in 0..HALF / CHUNK {
                    noise.fill(&mut chunk);
                    write_side.write_all(&chunk).expect("write to the proxy");
                }
            }
            write_side.shutdown(Shutdown::Write).expect("half-close");
        });
        let reader = std::thread::spawn(move || {
            let mut expect = Expect::new(seed);
            let mut buf = vec![0u8; CHUNK];
            let mut paused_once = false;
            loop {
                if !paused_once && expect.seen() >= PAUSE_AT {
                    paused_once = true;
                    let _ = paused_tx.send(());
                    reader_go.recv_timeout(WAIT * 3).expect("told to go on");
                }
                match read_side.read(&mut buf) {
                    Ok(0) => return expect.seen(),
                    Ok(n) => expect.next(&buf[..n], "the echo"),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("reading the echo after {} bytes: {e}", expect.seen()),
                }
            }
        });
        let echoing = Echoing {
            go: [go_writer, go_reader],
            writer,
            reader,
        };
        (echoing, paused)
    }

    /// Lets every stream go on, and checks each gets every byte back.
    #[track_caller]
    pub(super) fn finish_all(streams: Vec<Echoing>) {
        for stream in &streams {
            stream.go_on();
        }
        for (i, stream) in streams.into_iter().enumerate() {
            assert_eq!(
                stream.join(),
                2 * HALF as u64,
                "stream {i}: every byte came back"
            );
        }
    }

    pub(super) fn go_on(&self) {
        for go in &self.go {
            let _ = go.send(());
        }
    }

    /// Waits for both halves; returns the bytes that came back, all checked.
    pub(super) fn join(self) -> u64 {
        self.writer.join().expect("the writer");
        self.reader.join().expect("the reader")
    }
}

/// A client writing a seeded byte pattern to a backend that does not read, until every buffer
/// on the way is full.
struct Stalling {
    stream: TcpStream,
    noise: Noise,
    chunk: Vec<u8>,
    /// Bytes of `chunk` written.
    at: usize,
    sent: u64,
}

impl Stalling {
    fn new(stream: TcpStream, seed: u64) -> Stalling {
        Stalling {
            stream,
            noise: Noise::new(seed),
            chunk: vec![0u8; CHUNK],
            at: CHUNK,
            sent: 0,
        }
    }

    /// Writes until two writes in a row have been blocked for [`STALL`] each: the proxy has
    /// stopped reading (its buffer is full), not merely paused.
    fn write_until_stalled(&mut self) {
        self.stream.set_write_timeout(Some(STALL)).unwrap();
        let mut stalls_in_a_row = 0;
        while stalls_in_a_row < 2 {
            stalls_in_a_row = if self.write_some() {
                0
            } else {
                stalls_in_a_row + 1
            };
            assert!(
                self.sent < STALL_LIMIT,
                "{} bytes went without a stall",
                self.sent
            );
        }
    }

    /// Writes the rest of the current chunk and `more` bytes, then ends the stream. Returns
    /// every byte sent.
    fn finish(mut self, more: u64) -> u64 {
        self.stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let target = self.sent + (CHUNK - self.at) as u64 + more;
        while self.sent < target {
            assert!(self.write_some(), "a write blocked for 30 s");
        }
        self.stream.shutdown(Shutdown::Write).unwrap();
        self.sent
    }

    /// One write; false when it was blocked for the write timeout.
    fn write_some(&mut self) -> bool {
        if self.at == CHUNK {
            self.noise.fill(&mut self.chunk);
            self.at = 0;
        }
        match self.stream.write(&self.chunk[self.at..]) {
            Ok(n) => {
                self.at += n;
                self.sent += n as u64;
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(e) => panic!("writing after {} bytes: {e}", self.sent),
        }
    }
}

/// A client still in its opening (half of its PROXY header sent) when the upgrade comes: what
/// the old porxy has read of the header has no place in a session, so the connection finishes
/// in the old porxy, which drains it while the new one takes every new client: the backend
/// gets the stream after the header exactly once, the client every byte back, and the old
/// porxy exits once the client is done.
#[test]
fn a_client_halfway_through_its_proxy_header_finishes_in_the_old_porxy() {
    let backend = Backend::echo();
    let mut chain = Chain::with_spec(format!("127.0.0.1:0={}[accept_proxy=v1]", backend.addr()));
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let control = control_addr(&old);
    let mut client = connect(tunnel);
    client.write_all(b"PROXY TCP4 192.0.2.7 ").unwrap();
    wait_open(
        control,
        1,
        "the old porxy to hold the client in its opening",
    );

    let new = chain.successor();
    assert_took_over(&new, &old);
    wait_log(
        &old,
        "handed the established connections over to the new porxy connections=0",
    );
    client
        .write_all(format!("{} 4711 {}\r\nhello across", tunnel.ip(), tunnel.port()).as_bytes())
        .unwrap();
    let mut back = [0u8; 12];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello across", "the stream after the header, once");
    round_trip(&mut client, b"still the old porxy");
    assert_eq!(
        old.exit_status(),
        None,
        "the old porxy serves its client to the end"
    );
    // New clients reach the new porxy meanwhile.
    let mut other = connect(tunnel);
    let header = format!(
        "PROXY TCP4 192.0.2.8 {} 4712 {}\r\n",
        tunnel.ip(),
        tunnel.port()
    );
    other.write_all(header.as_bytes()).unwrap();
    round_trip(&mut other, b"a new client");
    finish(client);
    assert_exits_promptly(&mut old);
    finish(other);
    assert_eq!(
        backend.accepted(),
        2,
        "one backend connection per client, never a second"
    );
}

/// A TLS connection cannot move its session to another process: at an upgrade it finishes in
/// the old porxy, byte-exact, while the new one takes the new clients (with the same
/// certificate), and the old one exits when its last TLS connection ends.
#[test]
fn a_tls_connection_finishes_in_the_old_porxy() {
    let ca = crate::support::tls::TestCa::new();
    let cert = ca.server("a", &["a.test"]);
    let backend = Backend::echo();
    let mut chain = Chain::with_spec(format!(
        "127.0.0.1:0={}[tls_cert={},tls_key={}]",
        backend.addr(),
        cert.cert.display(),
        cert.key.display()
    ));
    let mut old = chain.first();
    let tunnel = old.tunnel("cli-1");
    let mut client = ca.connect(tunnel, "a.test");
    client.write_all(b"before").unwrap();
    let mut back = [0u8; 6];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"before");

    let new = chain.successor();
    assert_took_over(&new, &old);
    wait_log(
        &old,
        "handed the established connections over to the new porxy connections=0",
    );
    client.write_all(b"after the upgrade").unwrap();
    let mut back = [0u8; 17];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"after the upgrade", "still served by the old porxy");
    assert_eq!(
        old.exit_status(),
        None,
        "the old porxy serves its TLS client"
    );
    let mut other = ca.connect(tunnel, "a.test");
    other.write_all(b"new").unwrap();
    let mut back = [0u8; 3];
    other.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"new", "the new porxy terminates TLS too");
    crate::support::tls::half_close(&mut client);
    assert_eq!(crate::support::tls::read_to_close_notify(&mut client), b"");
    assert_exits_promptly(&mut old);
}

/// A connection handed over in an upgrade is recorded once, by the process where it ends,
/// marked as taken over, with the bytes relayed there; the old process records nothing for
/// it (it counts it as handed over).
#[test]
fn a_handed_over_connection_is_recorded_once_where_it_ends() {
    let backend = Backend::echo();
    let dir = crate::support::process::TempDir::new();
    let (old_log, new_log) = (dir.path().join("old.log"), dir.path().join("new.log"));
    let mut chain = Chain::new(&backend);
    let mut old = chain.first_with(&["--access-log", old_log.to_str().unwrap()]);
    let mut client = connect(old.tunnel("cli-1"));
    round_trip(&mut client, b"before");
    let new = chain.successor_with(&["--access-log", new_log.to_str().unwrap()]);
    assert_took_over(&new, &old);
    assert_exits_promptly(&mut old);
    round_trip(&mut client, b"after the upgrade");
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_end(&mut client).end, End::Eof);
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    crate::support::wait_until(WAIT, "the record in the new process's log", || {
        !read(&new_log).is_empty()
    });
    let record = read(&new_log);
    assert_eq!(record.lines().count(), 1, "{record}");
    for pair in [
        "imported=true",
        "reason=completed",
        "bytes_to_upstream=17",
        "bytes_to_client=17",
    ] {
        assert!(
            record.split_whitespace().any(|p| p == pair),
            "{pair} in {record}"
        );
    }
    assert_eq!(read(&old_log), "", "the old process records nothing for it");
}
