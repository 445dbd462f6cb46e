//! Load balancing, failover and health checks, end to end.
//!
//! Backends are greeting echoes named A, B, C, D: the first byte a client reads names the backend
//! it reached, so a test counts where connections went from the client's side and compares with
//! what the proxy's status says. Submodules:
//!
//! - `strategies`: how each strategy spreads connections.
//! - `hashing`: a client IP sticks to its backend; taking one out moves only its clients.
//! - `failover`: dead, unanswered and refusing backends; active checks taking one out and back.
//! - `operator`: drain, enable, remove with and without a deadline.
//! - `queue`: `max_conns` and the queue in front of full backends.
//! - `binary`: the same through the `porxy` binary: control socket commands and the TOML keys.

mod binary;
mod failover;
mod hashing;
mod operator;
mod queue;
mod strategies;

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use porxy_core::{BackendStatus, ProxyHandle, TunnelSpec};

use crate::support::client::{connect, read_greeting, try_connect, try_connect_from};
use crate::support::proxy::{builder, start, tunnel, TestProxy, COUNTERS_SETTLE};
use crate::support::{wait_for, Backend};

/// Greetings of the backends, by index: each names itself in its first byte.
const NAMES: [&[u8]; 4] = [b"A", b"B", b"C", b"D"];

/// Greeting backends A, B, ... (`n` of them, at most 4).
fn greeters(n: usize) -> Vec<Backend> {
    NAMES[..n]
        .iter()
        .map(|name| Backend::greeting_echo(name))
        .collect()
}

/// The backends' addresses as SPEC remotes.
fn remotes(backends: &[Backend]) -> Vec<String> {
    backends.iter().map(|b| b.addr().to_string()).collect()
}

/// Which backend a greeting names: 0 for A, 1 for B...
#[track_caller]
fn index_of(greeting: u8) -> usize {
    let index = greeting.wrapping_sub(b'A') as usize;
    assert!(
        index < NAMES.len(),
        "greeting {greeting:#04x} names no backend"
    );
    index
}

/// `127.0.0.1:0=REMOTE,...[OPTIONS]`; a remote may carry its `*WEIGHT`.
#[track_caller]
fn spec(remotes: &[String], options: &str) -> TunnelSpec {
    let options = if options.is_empty() {
        String::new()
    } else {
        format!("[{options}]")
    };
    let text = format!("127.0.0.1:0={}{options}", remotes.join(","));
    text.parse()
        .unwrap_or_else(|e| panic!("the test's own SPEC `{text}`: {e}"))
}

/// A proxy with the test defaults and one tunnel over `remotes` with `options`; returns it and
/// the tunnel's address.
#[track_caller]
fn start_balanced(remotes: &[String], options: &str) -> (TestProxy, SocketAddr) {
    let proxy = start(builder().tunnel(spec(remotes, options)));
    let local = proxy.bound()[0];
    (proxy, local)
}

/// One short connection: connect, read which backend answered, close. Returns its index.
#[track_caller]
fn reach(local: SocketAddr) -> usize {
    let mut stream = connect(local);
    index_of(read_greeting(&mut stream))
}

/// `n` short connections, spread over `threads` client threads; returns connections per
/// backend index.
fn tally(local: SocketAddr, n: usize, threads: usize) -> [usize; 4] {
    let per_thread: Vec<[usize; 4]> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                // The first `n % threads` threads make one connection more.
                let share = n / threads + usize::from(t < n % threads);
                s.spawn(move || {
                    let mut counts = [0; 4];
                    for _ in 0..share {
                        counts[reach(local)] += 1;
                    }
                    counts
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a client thread"))
            .collect()
    });
    let mut counts = [0; 4];
    for c in per_thread {
        for (sum, one) in counts.iter_mut().zip(c) {
            *sum += one;
        }
    }
    counts
}

/// Opens `n` connections one after the other and keeps them; each with the index of the
/// backend that answered it.
#[track_caller]
fn hold(local: SocketAddr, n: usize) -> Vec<(usize, TcpStream)> {
    (0..n)
        .map(|_| {
            let mut stream = connect(local);
            (index_of(read_greeting(&mut stream)), stream)
        })
        .collect()
}

/// Connections per backend index among `held`.
fn count(held: &[(usize, TcpStream)]) -> [usize; 4] {
    let mut counts = [0; 4];
    for (index, _) in held {
        counts[*index] += 1;
    }
    counts
}

/// One exchange as a user's client makes it: connect, read the greeting, have 4 bytes echoed,
/// close. Returns which backend answered, or what went wrong.
fn exchange(local: SocketAddr) -> Result<usize, String> {
    exchange_on(try_connect(local)).map_err(|(_, why)| why)
}

/// [`exchange`] from the local IP `source`.
fn exchange_from(source: IpAddr, local: SocketAddr) -> Result<usize, String> {
    exchange_on(try_connect_from(source, local)).map_err(|(_, why)| why)
}

/// [`exchange`] over a connect's outcome; on failure, also which backend greeted the client
/// before it went wrong, if one did.
fn exchange_on(connected: io::Result<TcpStream>) -> Result<usize, (Option<usize>, String)> {
    let mut stream = connected.map_err(|e| (None, format!("connect: {e}")))?;
    let mut hello = [0u8; 1];
    stream
        .read_exact(&mut hello)
        .map_err(|e| (None, format!("greeting: {e}")))?;
    let index = hello[0].wrapping_sub(b'A') as usize;
    if index >= NAMES.len() {
        return Err((None, format!("greeting {:#04x} names no backend", hello[0])));
    }
    let failed = |what: &str, e: io::Error| (Some(index), format!("{what}: {e}"));
    stream.write_all(b"ping").map_err(|e| failed("write", e))?;
    let mut back = [0u8; 4];
    stream
        .read_exact(&mut back)
        .map_err(|e| failed("echo", e))?;
    if &back != b"ping" {
        return Err((Some(index), format!("echo came back as {back:?}")));
    }
    Ok(index)
}

/// The status of backend `addr` of the tunnel on `local`; panics if the tunnel does not list
/// it.
#[track_caller]
fn backend_status(handle: &ProxyHandle, local: SocketAddr, addr: SocketAddr) -> BackendStatus {
    let status = tunnel(handle, local);
    *status
        .backends
        .iter()
        .find(|b| b.addr == addr)
        .unwrap_or_else(|| panic!("backend {addr} is not listed: {:#?}", status.backends))
}

/// Waits until the status of backend `addr` satisfies `done`, and returns it.
#[track_caller]
fn wait_backend(
    handle: &ProxyHandle,
    local: SocketAddr,
    addr: SocketAddr,
    what: &str,
    done: impl Fn(&BackendStatus) -> bool,
) -> BackendStatus {
    wait_for(
        COUNTERS_SETTLE,
        what,
        || backend_status(handle, local, addr),
        done,
    )
}
