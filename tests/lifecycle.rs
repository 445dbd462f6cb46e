//! The life of a porxy process as an operator drives it: a zero-downtime upgrade to a new
//! process (`--upgrade-socket` / `--takeover`) that takes the established connections over too,
//! a start that waits for a port (`--bind-wait`), reloading the configuration (control
//! `RELOAD`, SIGHUP), and a graceful stop.
//!
//! Every test runs the `porxy` binary and checks what a user would: the READY lines, the control
//! socket's replies, exit codes, and whether clients were refused, reset or answered by the
//! right backend.

mod bind_wait;
mod chain;
mod fanout_handover;
mod handover;
mod handover_failure;
mod reload;
mod runtime_state;
mod stop;
mod takeover_failure;
mod upgrade;
mod upgrade_socket;

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::client::{read_greeting, read_until_end, round_trip, End};
use crate::support::Backend;
// Shared with the submodules, which import them from here.
use crate::support::control::{control_addr, field};

/// The longest a condition about a running porxy may take to come true.
const WAIT: Duration = Duration::from_secs(10);
/// The longest a porxy may take to exit once nothing holds it any more.
const EXIT: Duration = Duration::from_secs(10);

/// What a test that plays the running porxy holds: its upgrade socket (at `path`, in `dir`)
/// and the listening socket it hands over.
struct FakePredecessor {
    dir: crate::support::process::TempDir,
    path: std::path::PathBuf,
    upgrade: std::os::unix::net::UnixListener,
    tunnel: std::net::TcpListener,
    tunnel_addr: SocketAddr,
}

impl FakePredecessor {
    fn bind() -> FakePredecessor {
        let dir = crate::support::process::TempDir::new();
        let path = dir.path().join("up.sock");
        let upgrade = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let tunnel = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tunnel_addr = tunnel.local_addr().unwrap();
        FakePredecessor {
            dir,
            path,
            upgrade,
            tunnel,
            tunnel_addr,
        }
    }
}

/// `127.0.0.1:0=BACKEND`.
fn spec_to(backend: &Backend) -> String {
    format!("127.0.0.1:0={}", backend.addr())
}

/// The `generation ...` lines of a `STATUS FULL` reply.
fn generations(status: &[String]) -> Vec<String> {
    status
        .iter()
        .filter(|l| l.starts_with("generation "))
        .cloned()
        .collect()
}

/// Connects to `addr`, checks the greeting says `backend`, and does one echo round trip.
#[track_caller]
fn connect_to(addr: SocketAddr, backend: u8, msg: &str) -> TcpStream {
    let mut stream = crate::support::client::connect(addr);
    assert_eq!(
        read_greeting(&mut stream) as char,
        backend as char,
        "the backend that answered on {addr}"
    );
    round_trip(&mut stream, msg.as_bytes());
    stream
}

/// Ends a connection the polite way: half-close, then the backend's end of stream, no more
/// bytes.
#[track_caller]
fn finish(mut stream: TcpStream) {
    stream.shutdown(Shutdown::Write).expect("half-close");
    let ending = read_until_end(&mut stream);
    assert_eq!(ending.end, End::Eof, "{ending:?}");
    assert!(ending.bytes.is_empty(), "{ending:?}");
}
