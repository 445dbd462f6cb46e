//! Fan-out destinations: collectors, and a primary that echoes, which read each connection to
//! its end and report a digest of what they got, so a test compares exact byte streams without
//! keeping them.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use porxy_core::TunnelSpec;

use crate::support::backend::Backend;

/// `127.0.0.1:0=A,B,...[mode=fanout,OPTIONS]`.
pub fn fanout_spec(remotes: &[SocketAddr], options: &str) -> TunnelSpec {
    fanout_spec_on("127.0.0.1:0".parse().unwrap(), remotes, options)
}

/// `LOCAL=A,B,...[mode=fanout,OPTIONS]`.
pub fn fanout_spec_on(local: SocketAddr, remotes: &[SocketAddr], options: &str) -> TunnelSpec {
    let list: Vec<String> = remotes.iter().map(|r| r.to_string()).collect();
    let sep = if options.is_empty() { "" } else { "," };
    format!("{local}={}[mode=fanout{sep}{options}]", list.join(","))
        .parse()
        .expect("a valid fan-out spec")
}

/// What a destination got on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Digest {
    pub len: u64,
    pub hash: u64,
}

impl Digest {
    pub fn of(data: &[u8]) -> Digest {
        let mut h = DefaultHasher::new();
        h.write(data);
        Digest {
            len: data.len() as u64,
            hash: h.finish(),
        }
    }
}

/// Where a destination reports each connection's digest, or the error that ended it.
pub type Reports = Receiver<Result<Digest, ErrorKind>>;

/// How long a test waits for a destination's report.
pub const REPORT_WAIT: Duration = Duration::from_secs(20);

/// The next report of `who`; panics if none comes within [`REPORT_WAIT`].
#[track_caller]
pub fn recv(rx: &Reports, who: &str) -> Result<Digest, ErrorKind> {
    rx.recv_timeout(REPORT_WAIT)
        .unwrap_or_else(|_| panic!("{who} reported nothing within {REPORT_WAIT:?}"))
}

/// A destination that reads each connection to its end (sending `chatter` first, which the
/// proxy must throw away unless this is the primary) and reports a digest of what it read.
pub fn collector(chatter: &'static [u8]) -> (Backend, Reports) {
    let (backend, rx, _) = destination(chatter, false, None);
    (backend, rx)
}

/// A collector that also shows how many bytes it has read so far (all connections together).
pub fn counting_collector() -> (Backend, Reports, Arc<AtomicU64>) {
    destination(b"", false, None)
}

/// A primary that echoes every byte and, at the end, reports a digest of what it read.
pub fn echoing_primary() -> (Backend, Reports) {
    let (backend, rx, _) = destination(b"", true, None);
    (backend, rx)
}

/// A collector that reads `at` bytes of each connection, then nothing more until `gate` opens.
/// (Its receive buffer keeps the usual size: a small one would crawl on delayed ACKs even once
/// the gate is open, for the window does not grow back.)
pub fn gated_collector(at: u64, gate: Arc<Gate>) -> (Backend, Reports) {
    let (backend, rx, _) = destination(b"", false, Some((at, gate)));
    (backend, rx)
}

/// The destination behind the helpers above.
fn destination(
    chatter: &'static [u8],
    echo: bool,
    pause: Option<(u64, Arc<Gate>)>,
) -> (Backend, Reports, Arc<AtomicU64>) {
    let (tx, rx) = channel();
    let progress = Arc::new(AtomicU64::new(0));
    let read = progress.clone();
    let backend = Backend::start(move |mut stream, _| {
        let _ = stream.write_all(chatter);
        let digest = digest_stream(&mut stream, echo, &read, pause.as_ref());
        let _ = tx.send(digest);
        let _ = stream.shutdown(Shutdown::Write);
    });
    (backend, rx, progress)
}

/// Reads `stream` to its end (echoing if asked, waiting at a gate if asked), hashing as it goes
/// and adding what it reads to `progress`.
fn digest_stream(
    stream: &mut TcpStream,
    echo: bool,
    progress: &AtomicU64,
    pause: Option<&(u64, Arc<Gate>)>,
) -> Result<Digest, ErrorKind> {
    let mut h = DefaultHasher::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut passed = false;
    loop {
        let limit = match pause {
            Some((at, gate)) if !passed && len >= *at => {
                if !gate.wait() {
                    return Err(ErrorKind::TimedOut);
                }
                passed = true;
                buf.len()
            }
            // Not a byte past the gate before it opens.
            Some((at, _)) if !passed => buf.len().min((at - len) as usize),
            _ => buf.len(),
        };
        match stream.read(&mut buf[..limit]) {
            Ok(0) => {
                return Ok(Digest {
                    len,
                    hash: h.finish(),
                })
            }
            Ok(n) => {
                h.write(&buf[..n]);
                len += n as u64;
                progress.fetch_add(n as u64, Ordering::SeqCst);
                if echo {
                    stream.write_all(&buf[..n]).map_err(|e| e.kind())?;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.kind()),
        }
    }
}

/// A gate destinations wait at until the test opens it (at most a minute).
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

/// The longest a destination waits at a gate.
const GATE_AT_MOST: Duration = Duration::from_secs(60);

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Lets every destination waiting here go on, and any that comes later pass.
    pub fn open(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.opened.notify_all();
    }

    /// Waits for the gate to open; false if it did not in time.
    fn wait(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (open, _) = self
            .opened
            .wait_timeout_while(open, GATE_AT_MOST, |open| !*open)
            .unwrap_or_else(|p| p.into_inner());
        *open
    }
}

/// Connects to `local`, sends `data` and a FIN from a thread; the thread, and the stream to
/// read the replies from.
pub fn exchange(
    local: SocketAddr,
    data: Vec<u8>,
) -> (std::thread::JoinHandle<()>, std::net::TcpStream) {
    use std::io::Write;
    let stream = super::client::connect(local);
    let mut writer = stream.try_clone().expect("clone the client socket");
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).expect("send to the proxy");
        writer
            .shutdown(std::net::Shutdown::Write)
            .expect("FIN to the proxy");
    });
    (sender, stream)
}
