//! The porxy binary: its READY line, `--check`, errors that point at the fault, signals and exit
//! codes, and how it holds up when a client stops reading or descriptors run out.

mod check;
mod config_file;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::client::{
    connect, connect_never_reading, expect_echo, expect_reset, ipv6_loopback, read_greeting,
    read_until_end, refused, round_trip, tcp_buffer_max, try_connect, End,
};
use crate::support::payload::bytes;
use crate::support::process::{run, Porxy, TempDir};
use crate::support::{wait_until, Backend};

/// The shipped, annotated example config.
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/porxy.toml");
/// The longest a `--check` or a failing start may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest porxy may take to exit once it has been told to.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn shipped() -> String {
    std::fs::read_to_string(SHIPPED).unwrap_or_else(|e| panic!("read {SHIPPED}: {e}"))
}

/// The key of a `key = value` line (not a comment, not a table header).
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    plain.then_some(key)
}

/// The config with every `listen` set to `127.0.0.1:0` and every backend `address` set to
/// `backend`. Fails if either key is missing, so a changed file format is noticed.
fn localized(config: &str, backend: SocketAddr) -> String {
    let (mut listens, mut addresses) = (0, 0);
    let lines: Vec<String> = config
        .lines()
        .map(|line| match key_of(line) {
            Some("listen") => {
                listens += 1;
                "listen = \"127.0.0.1:0\"".to_string()
            }
            Some("address") => {
                addresses += 1;
                format!("address = \"{backend}\"")
            }
            _ => line.to_string(),
        })
        .collect();
    assert!(
        listens > 0 && addresses > 0,
        "no `listen` or `address` key in:\n{config}"
    );
    lines.join("\n") + "\n"
}

/// How many `[listeners.NAME]` tables a config has.
fn listener_count(config: &str) -> usize {
    config
        .lines()
        .filter(|l| l.trim_start().starts_with("[listeners."))
        .count()
}

fn echo_spec(echo: &Backend) -> String {
    format!("127.0.0.1:0={}", echo.addr())
}

#[test]
fn check_accepts_shipped_config() {
    let out = run(&["--check", "--config", SHIPPED], RUN_TIMEOUT);
    assert_eq!(out.code, Some(0), "{out:?}");
    let tunnels = listener_count(&shipped());
    let noun = if tunnels == 1 { "tunnel" } else { "tunnels" };
    assert_eq!(
        out.stdout,
        format!("config OK: {tunnels} {noun}\n"),
        "{out:?}"
    );
}

/// The container image's configuration checks too (CI builds the image only where a
/// container engine runs).
#[test]
fn check_accepts_the_container_config() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/container/porxy.toml"
    );
    let out = run(&["--check", "--config", config], RUN_TIMEOUT);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "config OK: 1 tunnel\n")
    );
}

/// A typo'd key is an error that names the file and the line.
#[test]
fn check_names_line_of_unknown_key() {
    let config = shipped();
    let line = config
        .lines()
        .position(|l| key_of(l) == Some("listen"))
        .expect("a `listen` line in the shipped config")
        + 1;
    let broken: Vec<String> = config
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                l.replacen("listen", "lisen", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    let dir = TempDir::new();
    let path = dir.write("typo.toml", &broken.join("\n"));
    let out = run(
        &["--check", "--config", path.to_str().unwrap()],
        RUN_TIMEOUT,
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!("typo.toml:{line}:")),
        "the error names file and line {line}: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("lisen"),
        "the error names the key: {}",
        out.stderr
    );
    assert!(!out.stdout.contains("config OK"), "{out:?}");
}

#[test]
fn bad_tunnel_spec_names_column() {
    let out = run(&["--tunnel", "8000=foo:bar"], RUN_TIMEOUT);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("column 10"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "no READY line: {out:?}");
}

/// A zero control idle timeout would cut every control client before its first line: refused,
/// from the flag and from the file, naming where it was written.
#[test]
fn zero_control_idle_timeout_is_refused() {
    let out = run(
        &["--control", "127.0.0.1:0", "--control-idle-timeout", "0s"],
        RUN_TIMEOUT,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains(
            "invalid value '0s' for '--control-idle-timeout <DURATION>': must be more than zero"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "no READY line: {out:?}");

    let dir = TempDir::new();
    let config = dir.write(
        "porxy.toml",
        "[control]\nlisten = \"127.0.0.1:0\"\nidle_timeout = \"0s\"\n",
    );
    let out = run(&["--config", config.to_str().unwrap()], RUN_TIMEOUT);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "{}:3:16: control.idle_timeout: must be more than zero",
            config.display()
        )),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "no READY line: {out:?}");
}

#[test]
fn help_tunnel_explains_syntax() {
    let out = run(&["--help-tunnel"], RUN_TIMEOUT);
    assert_eq!(out.code, Some(0), "{out:?}");
    for word in [
        "LOCAL=REMOTE",
        "connect_timeout",
        "idle_timeout",
        "half_closed_timeout",
    ] {
        assert!(
            out.stdout.contains(word),
            "--help-tunnel mentions {word}: {}",
            out.stdout
        );
    }
}

/// Two `--tunnel`s, named cli-1 and cli-2 in the READY line, both relaying.
#[test]
fn tunnel_flags_relay() {
    let first = Backend::echo();
    let second = Backend::greeting_echo(b"2");
    let porxy = Porxy::start(&[
        "--reactors",
        "2",
        "--tunnel",
        &echo_spec(&first),
        "--tunnel",
        &format!("127.0.0.1:0={}", second.addr()),
    ]);
    assert_eq!(porxy.tunnels().len(), 2, "{:?}", porxy.tunnels());
    round_trip(&mut connect(porxy.tunnel("cli-1")), &bytes(10, 256 * 1024));
    let mut stream = connect(porxy.tunnel("cli-2"));
    let mut greeting = [0u8; 1];
    stream.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"2", "cli-2 forwards to the second backend");
    round_trip(&mut stream, b"second");
}

/// An IPv6 `--tunnel`: the bracketed literal in the SPEC, the bracketed address in the READY
/// line, bytes relayed to an IPv6 backend.
#[test]
fn tunnel_flag_relays_over_ipv6() {
    let Some(any6) = ipv6_loopback("tunnel_flag_relays_over_ipv6") else {
        return;
    };
    let echo = Backend::greeting_echo_at(any6, b"6", Duration::from_secs(5));
    let porxy = Porxy::start(&["--tunnel", &format!("[::1]:0={}", echo.addr())]);
    let local = porxy.tunnel("cli-1");
    assert!(
        local.is_ipv6() && local.port() != 0,
        "READY line gave {local}"
    );
    let mut stream = connect(local);
    assert_eq!(read_greeting(&mut stream), b'6');
    round_trip(&mut stream, &bytes(11, 64 * 1024));
}

#[test]
fn check_accepts_tunnel_flag() {
    let out = run(
        &["--check", "--tunnel", "127.0.0.1:0=127.0.0.1:9"],
        RUN_TIMEOUT,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "config OK: 1 tunnel\n", "{out:?}");
    let out = run(
        &[
            "--check",
            "--tunnel",
            "127.0.0.1:0=127.0.0.1:9",
            "--tunnel",
            "127.0.0.1:0=127.0.0.1:10",
        ],
        RUN_TIMEOUT,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "config OK: 2 tunnels\n", "{out:?}");
}

/// The shipped config, with its addresses moved to free ports and to our echo, relays on every
/// listener it declares.
#[test]
fn shipped_config_relays() {
    let echo = Backend::echo();
    let config = shipped();
    let dir = TempDir::new();
    let path = dir.write("porxy.toml", &localized(&config, echo.addr()));
    let porxy = Porxy::start(&["--config", path.to_str().unwrap()]);
    assert_eq!(
        porxy.tunnels().len(),
        listener_count(&config),
        "one READY entry per listener: {:?}",
        porxy.tunnels()
    );
    for (name, addr) in porxy.tunnels() {
        let mut stream = connect(*addr);
        round_trip(&mut stream, format!("through {name}").as_bytes());
    }
    // The shipped config also serves a control socket; it is reported bound, and accepts.
    if config.lines().any(|l| l.trim() == "[control]") {
        let control: SocketAddr = porxy
            .control()
            .expect("a control= word in the READY line")
            .parse()
            .expect("a TCP control address");
        assert!(
            control.ip().is_loopback() && control.port() != 0,
            "{control}"
        );
        connect(control);
    }
}

/// SIGTERM: the listener closes, the open connection completes, and porxy exits 0 having
/// printed nothing but the READY line on stdout.
#[test]
fn sigterm_lets_open_connection_finish() {
    let echo = Backend::echo();
    let mut porxy = Porxy::start(&["--tunnel", &echo_spec(&echo)]);
    let local = porxy.tunnel("cli-1");
    let mut stream = connect(local);
    round_trip(&mut stream, b"before the signal");

    porxy.signal(libc::SIGTERM);
    wait_until(Duration::from_secs(5), "porxy to stop listening", || {
        refused(local)
    });
    round_trip(&mut stream, b"during the drain");
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_end(&mut stream).end, End::Eof);
    let status = porxy.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", porxy.stderr());
    assert_eq!(porxy.stdout_after_ready(), Vec::<String>::new());
}

/// A connection that outlives `--drain-timeout` is cut (the client sees a reset); exit code 3.
#[test]
fn drain_timeout_cuts_and_exits_3() {
    let echo = Backend::echo();
    let mut porxy = Porxy::start(&["--drain-timeout", "300ms", "--tunnel", &echo_spec(&echo)]);
    let mut stream = connect(porxy.tunnel("cli-1"));
    round_trip(&mut stream, b"and it never ends");
    let start = Instant::now();
    porxy.signal(libc::SIGTERM);
    let status = porxy.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(3), "stderr:\n{}", porxy.stderr());
    assert!(start.elapsed() >= Duration::from_millis(300));
    expect_reset(&mut stream, Duration::from_secs(1));
}

/// A second SIGINT stops at once, without waiting for the (30 s default) drain.
#[test]
fn second_sigint_stops_at_once() {
    let echo = Backend::echo();
    let mut porxy = Porxy::start(&["--tunnel", &echo_spec(&echo)]);
    let local = porxy.tunnel("cli-1");
    let mut stream = connect(local);
    round_trip(&mut stream, b"open");
    porxy.signal(libc::SIGINT);
    wait_until(Duration::from_secs(5), "porxy to stop listening", || {
        refused(local)
    });
    let start = Instant::now();
    porxy.signal(libc::SIGINT);
    let status = porxy.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(3), "stderr:\n{}", porxy.stderr());
    assert!(start.elapsed() < Duration::from_secs(3));
    expect_reset(&mut stream, Duration::from_secs(1));
}

/// Clients that never read, from a backend that streams forever, with bytes spliced through
/// kernel pipes (the default): porxy stops reading the backend once its pipe or buffer is full.
#[test]
fn unread_clients_keep_memory_bounded() {
    unread_clients_keep_memory_bounded_with("");
}

/// The same with every byte copied through porxy's own buffers: its memory grows by at most
/// those buffers.
#[test]
fn unread_clients_keep_memory_bounded_copied() {
    unread_clients_keep_memory_bounded_with("[splice=off]");
}

/// Clients that never read, from a backend that streams forever, through a tunnel with
/// `options`: each backend connection stalls after a few MiB (backpressure: what is in flight
/// sits in socket buffers and porxy's buffer, not in an unbounded queue), and porxy's resident
/// memory grows by little more than its relay buffers.
fn unread_clients_keep_memory_bounded_with(options: &str) {
    const CONNS: u64 = 20;
    const BUFFER_KIB: u64 = (porxy_core::DEFAULT_BUFFER_SIZE / 1024) as u64; // per direction
                                                                             // Beyond the buffers: the connections' slab entries, allocator overhead, pages of the
                                                                             // reactors' stacks and heaps first touched while relaying.
    const SLACK_KIB: u64 = 1024;
    // What one connection may have in flight before the backend stalls: the backend's send
    // buffer, porxy's receive buffer, porxy's own buffer, porxy's send buffer and the client's
    // 8 KiB receive buffer. The kernel grows the socket buffers by autotuning up to the maxima
    // of tcp_wmem / tcp_rmem, so those bound it (with a MiB for skb overhead and the buffer).
    // Without backpressure it would be all of the source, twice that.
    let in_flight_max = 2 * tcp_buffer_max("tcp_wmem") + tcp_buffer_max("tcp_rmem") + (1 << 20);
    let source_bytes = (2 * in_flight_max).max(64 << 20);
    let (report, reports) = mpsc::channel();
    let source = Backend::source_until_stalled(Duration::from_millis(300), source_bytes, report);
    let spec = format!("{}{options}", echo_spec(&source));
    let porxy = Porxy::start(&["--reactors", "2", "--tunnel", &spec]);
    let local = porxy.tunnel("cli-1");
    let baseline = porxy.rss_kib();

    let _clients: Vec<TcpStream> = (0..CONNS).map(|_| connect_never_reading(local)).collect();
    let mut sent = Vec::new();
    for _ in 0..CONNS {
        match reports.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(n)) => sent.push(n),
            Ok(Err(n)) => panic!("{n} bytes went to a client that never reads: no backpressure"),
            Err(_) => panic!("a backend connection never stalled nor ended"),
        }
    }
    let most = sent.iter().copied().max().unwrap_or(0);
    assert!(
        most <= in_flight_max,
        "a backend sent {most} bytes to a client that never reads before it stalled \
         (at most {in_flight_max} expected; all: {sent:?})"
    );
    let rss = porxy.rss_kib();
    let bound = baseline + CONNS * 2 * BUFFER_KIB + SLACK_KIB;
    assert!(
        rss <= bound,
        "porxy grew from {baseline} KiB to {rss} KiB (bound {bound} KiB) while holding \
         {CONNS} stalled connections (bytes sent by each backend: {sent:?})"
    );
}

/// One exchange through `addr` with short timeouts; false on any failure.
fn relays(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let msg = b"are you back?";
    let mut back = [0u8; 13];
    stream.write_all(msg).is_ok() && stream.read_exact(&mut back).is_ok() && &back == msg
}

/// With 64 descriptors and more clients than that, porxy neither spins nor dies, and relays
/// again once the clients are gone. The listener thread accepts a waiting client whenever a
/// descriptor frees up, and the reactor resets it for want of an upstream descriptor: those
/// failures are warned about once a second, not one line each.
#[test]
fn descriptor_exhaustion_does_not_spin() {
    descriptor_exhaustion(1, &["--accept", "listener", "--reactors", "1"]);
}

/// The same when the reactors accept: each one pauses, out of its epoll, instead of being told
/// again and again of clients it cannot accept. A second tunnel (never used) takes one more
/// descriptor, so that the connections leave none free and the accepts themselves fail: with a
/// descriptor left over, each waiting client would be accepted and reset for want of an
/// upstream descriptor instead, and the backlog would not stay readable.
#[test]
fn descriptor_exhaustion_does_not_spin_when_reactors_accept() {
    descriptor_exhaustion(
        2,
        &[
            "--accept",
            "reactors",
            "--reactors",
            "2",
            "--tunnel",
            "127.0.0.1:0=127.0.0.1:9",
        ],
    );
}

/// The same when the reactors accept, with a descriptor left over: each reactor accepts the
/// waiting clients one after the other and resets each for want of an upstream descriptor.
/// It must not log a warning for each.
#[test]
fn descriptor_exhaustion_resets_quietly_when_reactors_accept() {
    descriptor_exhaustion(2, &["--accept", "reactors", "--reactors", "2"]);
}

/// Warning lines in porxy's log (stderr; the level is its own word).
fn warnings(log: &str) -> usize {
    log.lines()
        .filter(|l| l.split_whitespace().any(|w| w == "WARN"))
        .count()
}

/// Runs porxy with `reactors` reactors and `mode` under a limit of 64 descriptors, and more
/// clients than that.
fn descriptor_exhaustion(reactors: usize, mode: &[&str]) {
    const LIMIT: u32 = 64;
    // Each of porxy's log-rate limits (one per kind of failure per reactor, one for accepts
    // per thread that accepts) lets at most two lines through in a window of a second and a
    // bit; only connection failures of one kind and failed accepts are expected here.
    let max_warnings = 2 * (reactors + 1);
    let echo = Backend::echo();
    let spec = echo_spec(&echo);
    // A connection limit above what the descriptors allow, so that accepts do hit EMFILE.
    let mut args = vec!["--max-connections", "10000", "--tunnel", &spec];
    args.extend(mode);
    let mut porxy = Porxy::start_with_fd_limit(LIMIT, &args);
    let local = porxy.tunnel("cli-1");

    // Some clients are reset at once (porxy has no descriptor for their upstream), so fast that
    // the connect itself may report it: keep those that connect.
    let clients: Vec<TcpStream> = (0..LIMIT).filter_map(|_| try_connect(local).ok()).collect();
    assert!(!clients.is_empty());
    wait_until(
        Duration::from_secs(5),
        "porxy to use up its descriptors",
        || porxy.open_fds() >= LIMIT as usize - 2,
    );
    // Clients porxy has no descriptor to accept: they wait in the backlog, so the listening
    // socket stays readable through the window (level-triggered, it would be reported again
    // and again to a reactor that did not pause).
    let waiting: Vec<TcpStream> = (0..8).filter_map(|_| try_connect(local).ok()).collect();
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let cpu_before = porxy.cpu_ticks();
    let log_before = porxy.stderr().len();
    // A measurement window, not a wait for a condition: how busy is porxy while starved, and
    // how much does it log?
    std::thread::sleep(Duration::from_secs(1));
    let used = porxy.cpu_ticks() - cpu_before;
    let log = porxy.stderr();
    let window = &log[log_before..];
    assert!(
        used * 4 < ticks_per_second,
        "porxy used {used} of {ticks_per_second} CPU ticks in one second: it spins"
    );
    assert!(
        warnings(window) <= max_warnings,
        "porxy logged {} warnings in one second (at most {max_warnings} expected):\n{window}",
        warnings(window)
    );
    assert!(
        porxy.exit_status().is_none(),
        "porxy died: {}",
        porxy.stderr()
    );

    drop(clients);
    drop(waiting);
    wait_until(Duration::from_secs(10), "a new connection to relay", || {
        relays(local)
    });
    assert!(
        porxy.exit_status().is_none(),
        "porxy died: {}",
        porxy.stderr()
    );
}

/// With the default connection limit (what `ulimit -n` allows: (128 - 64 - 2 × 8 splice pipes)
/// / 2 = 24 here; (128 - 64) / 2 = 32 without splice), clients past the limit wait in the listen
/// backlog instead of being accepted and reset, are served as soon as others leave, and porxy
/// does not spin meanwhile.
#[test]
fn clients_past_the_connection_limit_wait_and_are_not_reset() {
    clients_past_the_connection_limit(&["--accept", "listener", "--reactors", "1"]);
}

/// The same when the reactors accept: none of them spins on the listening socket it does not
/// accept from.
#[test]
fn clients_past_the_connection_limit_wait_when_reactors_accept() {
    clients_past_the_connection_limit(&["--accept", "reactors", "--reactors", "2"]);
}

fn clients_past_the_connection_limit(mode: &[&str]) {
    const SERVED: usize = if cfg!(target_os = "linux") { 24 } else { 32 };
    let echo = Backend::echo();
    let spec = echo_spec(&echo);
    let mut args = mode.to_vec();
    args.extend(["--tunnel", &spec]);
    let porxy = Porxy::start_with_fd_limit(128, &args);
    let local = porxy.tunnel("cli-1");
    let mut served: Vec<TcpStream> = (0..SERVED)
        .map(|i| {
            let mut stream = connect(local);
            round_trip(&mut stream, format!("served {i}").as_bytes());
            stream
        })
        .collect();
    let mut waiting: Vec<TcpStream> = (0..8).map(|_| connect(local)).collect();
    for (i, stream) in waiting.iter_mut().enumerate() {
        stream.write_all(format!("waiting {i}").as_bytes()).unwrap();
    }
    // A measurement window: at the limit, no waiting client is served (nor reset), and porxy
    // is idle.
    let mut byte = [0u8; 1];
    waiting[0]
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let cpu_before = porxy.cpu_ticks();
    let early = waiting[0].read(&mut byte);
    let used = porxy.cpu_ticks() - cpu_before;
    assert!(
        matches!(&early, Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut),
        "a client past the limit was served or reset: {early:?}"
    );
    assert!(
        used * 8 < ticks_per_second,
        "porxy used {used} CPU ticks in half a second at the limit: it spins"
    );
    waiting[0]
        .set_read_timeout(Some(crate::support::client::IO_TIMEOUT))
        .unwrap();
    served.truncate(SERVED - 8);
    for (i, stream) in waiting.iter_mut().enumerate() {
        let sent = format!("waiting {i}");
        let what = format!("waiting client {i}, after others left");
        expect_echo(stream, sent.as_bytes(), &what);
    }
    for stream in &mut served {
        round_trip(stream, b"still here");
    }
}

/// A client reset reaches the backend through the binary too (the same library underneath, but
/// this checks the binary does not swallow signals or change socket options).
#[test]
fn client_reset_reaches_backend_through_binary() {
    let (report, reports) = mpsc::channel();
    let echo = Backend::echo_reporting(report);
    let porxy = Porxy::start(&["--tunnel", &echo_spec(&echo)]);
    let mut stream = connect(porxy.tunnel("cli-1"));
    round_trip(&mut stream, b"then die");
    crate::support::client::abort(stream);
    let end = reports
        .recv_timeout(Duration::from_secs(5))
        .expect("the backend's connection ends");
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
}

/// `--version` names the commit; `completions` and `man` print what is generated from the
/// arguments' definition (a script bash can load, a page man can render); a shell porxy
/// does not know is a usage error naming the ones it does.
#[test]
fn version_completions_and_man_page() {
    let version = run(&["--version"], RUN_TIMEOUT);
    assert_eq!(version.code, Some(0));
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_string(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        });
    assert_eq!(
        version.stdout.trim(),
        format!("porxy {} ({commit})", env!("CARGO_PKG_VERSION"))
    );

    let bash = run(&["completions", "bash"], RUN_TIMEOUT);
    assert_eq!(bash.code, Some(0));
    assert!(bash.stdout.contains("--access-log"), "{}", bash.stdout);
    // bash itself loads it and knows the function.
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{}\ncomplete -p porxy", bash.stdout))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("-F _porxy porxy"),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    let man = run(&["man"], RUN_TIMEOUT);
    assert_eq!(man.code, Some(0));
    assert!(man.stdout.contains(".TH porxy 1"), "{}", man.stdout);
    assert!(man.stdout.contains("access\\-log"), "every flag is in it");

    let wrong = run(&["completions", "nosh"], RUN_TIMEOUT);
    assert_eq!(wrong.code, Some(2));
    assert!(wrong
        .stderr
        .contains("possible values: bash, elvish, fish, powershell, zsh"));
}
