//! The upgrade socket under hostile or unlucky use: peers that flood, trickle or say nothing,
//! a second takeover while one runs, a path that holds a file, and a predecessor whose frame
//! announces a huge body. None of them may cost memory, delay a real takeover, or destroy a
//! file; each is told why it is refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use porxy_core::session::wire::{FORMAT, MAX_FRAME_BODY};
use sendfd::{RecvWithFd, SendWithFd};

use super::chain::{assert_exits_cleanly, assert_took_over, Chain};
use super::{spec_to, WAIT};
use crate::support::process::{run, Porxy, TempDir};
use crate::support::{wait_until, Backend};

/// The longest a failing start may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// Most bytes a flooding peer tries to send.
const FLOOD: usize = 64 << 20;

/// Runs `porxy ARGS...`, which must exit 1 naming `fragment` on stderr.
#[track_caller]
fn refused(args: &[&str], fragment: &str) {
    let out = run(args, RUN_TIMEOUT);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(fragment),
        "{fragment:?} in: {}",
        out.stderr
    );
}

/// A peer of the upgrade socket at `path`, with timeouts on both ways.
fn peer(path: &std::path::Path) -> UnixStream {
    let conn = UnixStream::connect(path).expect("connect to the upgrade socket");
    conn.set_read_timeout(Some(WAIT)).unwrap();
    conn.set_write_timeout(Some(WAIT)).unwrap();
    conn
}

/// Everything the running porxy answers, up to its end of stream.
fn answer(conn: &mut UnixStream) -> String {
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .expect("the answer, then end of stream");
    text
}

/// Regression: the running porxy read a line without bound, so 400 MiB without a newline grew
/// it by as much, and it logged the whole buffer as one warning line; junk connections each
/// logged a warning. Now the line is cut at its bound, the warning quotes a few dozen bytes,
/// junk is answered `ERR` and warned about at most once a second, and a takeover still works.
#[test]
fn a_flood_without_a_newline_is_cut_and_costs_no_memory() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let rss_before = old.rss_kib();

    let mut flood = peer(chain.path());
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < FLOOD {
        match flood.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(
        sent < 4 << 20,
        "the running porxy took {sent} bytes of a line it should cut at 64"
    );
    drop(flood);
    wait_until(WAIT, "the warning about the overlong line", || {
        old.stderr().contains("a line longer than 64 bytes")
    });
    let stderr = old.stderr();
    let warning = stderr
        .lines()
        .find(|l| l.contains("a line longer than 64 bytes"))
        .unwrap();
    assert!(
        warning.contains(&format!("starting \"{}\"...", "x".repeat(32))) && warning.len() < 400,
        "a short warning quoting a few bytes: {warning}"
    );
    let grown = old.rss_kib().saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "resident memory grew by {grown} KiB");

    let started = Instant::now();
    for i in 0..300 {
        let mut junk = peer(chain.path());
        junk.write_all(b"JUNK\n").unwrap();
        let reply = answer(&mut junk);
        if i == 0 {
            assert_eq!(reply, "ERR expected TAKEOVER, got \"JUNK\"\n");
        }
    }
    // One more bad request after the period shows the count of those not logged.
    wait_until(WAIT, "a warning that counts the junk requests", || {
        let mut junk = peer(chain.path());
        junk.write_all(b"JUNK\n").unwrap();
        answer(&mut junk);
        junk_warnings(&old.stderr()).iter().any(|&times| times > 1)
    });
    let warned = junk_warnings(&old.stderr());
    let allowed = started.elapsed().as_secs() as usize + 2;
    assert!(
        warned.len() <= allowed && warned.iter().sum::<u64>() >= 300,
        "at most one warning a second ({allowed}), counting every junk request: {warned:?}"
    );

    let new = chain.successor();
    assert_took_over(&new, &old);
    assert_exits_cleanly(&mut old, "the old porxy");
}

/// The `times=` of each warning about a bad request on the upgrade socket.
fn junk_warnings(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter(|l| l.contains("upgrade socket: ") && l.contains("; refused"))
        .filter_map(|l| l.rsplit("times=").next()?.trim().parse().ok())
        .collect()
}

/// Sends a byte of `line` every `pace` until the line is sent, the peer is cut, or `stop`.
fn trickle(mut conn: UnixStream, line: &'static [u8], pace: Duration, stop: Arc<AtomicBool>) {
    for byte in line {
        if stop.load(Ordering::Relaxed) || conn.write_all(&[*byte]).is_err() {
            return;
        }
        std::thread::sleep(pace);
    }
}

/// Regression: the running porxy served one conversation at a time with a 30-second timeout
/// per read, so a peer that sent a byte every 20 s made a real takeover fail after 31 s, and
/// three peers holding a partial line blocked one for more than 25 s. Now peers that trickle,
/// hold a partial line or say nothing (more of them than may wait at once) do not delay a
/// takeover.
#[test]
fn silent_and_trickling_peers_do_not_delay_a_takeover() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<_> = (0..3)
        .map(|_| {
            let conn = peer(chain.path());
            let stop = stop.clone();
            std::thread::spawn(move || {
                trickle(conn, b"TAKEOVER\n", Duration::from_millis(700), stop)
            })
        })
        .collect();
    let mut holding = Vec::new();
    for _ in 0..3 {
        let mut conn = peer(chain.path());
        conn.write_all(b"TAKE").unwrap();
        holding.push(conn);
    }
    let silent: Vec<_> = (0..20).map(|_| peer(chain.path())).collect();

    let started = Instant::now();
    let new = chain.successor();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the takeover took {took:?} among silent and trickling peers"
    );
    assert_took_over(&new, &old);
    assert_exits_cleanly(&mut old, "the old porxy");
    stop.store(true, Ordering::Relaxed);
    for trickler in tricklers {
        trickler.join().unwrap();
    }
    drop((holding, silent));
}

/// A peer says TAKEOVER and then holds on: a second successor is refused, and both sides say
/// why. Once the first goes away, a takeover works again.
#[test]
fn a_second_takeover_is_refused_with_the_reason_on_both_sides() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let mut first = peer(chain.path());
    first.write_all(b"TAKEOVER\n").unwrap();
    let mut text = [0u8; 4096];
    let mut fds = [-1; 8];
    let (len, count) = first.recv_with_fd(&mut text, &mut fds).unwrap();
    for fd in &fds[..count] {
        // The test holds them no longer than the conversation needs.
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(*fd) });
    }
    assert!(
        String::from_utf8_lossy(&text[..len]).starts_with("tunnel cli-1 "),
        "the first peer got the sockets"
    );

    let args = chain.successor_args();
    let out = run(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        RUN_TIMEOUT,
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "upgrade socket {}: the running porxy refused the takeover: another takeover is under way (pid {}",
            chain.path().display(),
            std::process::id()
        )),
        "the successor says why: {}",
        out.stderr
    );
    wait_until(WAIT, "the running porxy to say why it refused", || {
        old.stderr()
            .contains("upgrade socket: another takeover is under way")
    });

    drop(first);
    wait_until(WAIT, "the old porxy to give up the first takeover", || {
        old.stderr().contains("takeover abandoned; carrying on")
    });
    let new = chain.successor();
    assert_took_over(&new, &old);
    assert_exits_cleanly(&mut old, "the old porxy");
}

/// Regression: `--upgrade-socket PATH` replaced whatever file was at PATH with a socket, even
/// the config file itself. Now a path that is not a socket is refused and left as it was; so
/// is a socket a running porxy serves.
#[test]
fn a_path_that_is_not_a_socket_is_left_untouched() {
    let backend = Backend::greeting_echo(b"X");
    let dir = TempDir::new();
    let config = dir.write(
        "porxy.toml",
        &format!(
            "[backends.b]\naddress = \"{}\"\n\n[listeners.l]\nlisten = \"127.0.0.1:0\"\n\
             backends = [\"b\"]\n",
            backend.addr()
        ),
    );
    let before = std::fs::read_to_string(&config).unwrap();
    let shown = config.display().to_string();
    refused(
        &["--config", &shown, "--upgrade-socket", &shown],
        &format!(
            "upgrade socket {shown}: the path exists and is not a socket; it is left untouched"
        ),
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);

    let mut chain = Chain::new(&backend);
    let _serving = chain.first();
    let path = chain.path().display().to_string();
    refused(
        &["--tunnel", &spec_to(&backend), "--upgrade-socket", &path],
        &format!("upgrade socket {path} is in use by a running process"),
    );
}

/// Regression: the new porxy allocated what a frame header announced (up to about 1.2 GiB)
/// before a byte of the body came. Now a frame that announces the largest body and brings ten
/// bytes costs ten bytes; the transfer fails with the reason, and the new porxy serves on.
#[test]
fn a_frame_announcing_a_huge_body_costs_only_what_came() {
    let backend = Backend::greeting_echo(b"X");
    let super::FakePredecessor {
        dir: _dir,
        path,
        upgrade,
        tunnel,
        tunnel_addr,
    } = super::FakePredecessor::bind();
    let (at_frame, measured) = (mpsc::channel(), mpsc::channel::<()>());
    let predecessor = std::thread::spawn(move || {
        let (conn, _) = upgrade.accept().unwrap();
        conn.set_read_timeout(Some(RUN_TIMEOUT)).unwrap();
        let mut lines = BufReader::new(conn.try_clone().unwrap());
        let mut out = &conn;
        let mut expect = |want: &str| {
            let mut line = String::new();
            lines.read_line(&mut line).unwrap();
            assert_eq!(line, want);
        };
        expect("TAKEOVER\n");
        let text = format!("tunnel cli-1 {tunnel_addr}\nEND\n");
        conn.send_with_fd(text.as_bytes(), &[tunnel.as_raw_fd()])
            .unwrap();
        expect("READY\n");
        out.write_all(b"OK\n").unwrap();
        expect(&format!("SESSIONS {FORMAT}\n"));
        out.write_all(format!("SESSIONS {FORMAT}\n").as_bytes())
            .unwrap();
        at_frame.0.send(()).unwrap();
        measured.1.recv().unwrap();
        let mut header = b"PXS2".to_vec();
        for word in [1u32, 0, MAX_FRAME_BODY as u32] {
            header.extend(word.to_be_bytes());
        }
        out.write_all(&header).unwrap();
        out.write_all(&[0u8; 10]).unwrap();
        // Closes here, ten bytes into the body.
    });

    let path_arg = path.display().to_string();
    // The fake predecessor speaks the takeover without the runtime journal.
    let mut new = Porxy::launch(&[
        "--tunnel",
        &spec_to(&backend),
        "--takeover",
        &path_arg,
        "--takeover-config-only",
    ]);
    at_frame
        .1
        .recv_timeout(WAIT)
        .expect("the new porxy asks for connections");
    let peak_before = new.peak_vm_kib();
    measured.0.send(()).unwrap();
    predecessor.join().unwrap();
    new.wait_ready(WAIT);
    let grown = new.peak_vm_kib().saturating_sub(peak_before);
    assert!(
        grown < 256 * 1024,
        "the new porxy's virtual memory peaked {grown} KiB higher for a ten-byte body"
    );
    // Logged before the READY line, but on stderr: its reader may still be behind.
    let why = format!("the transfer ended inside a frame (10 of its {MAX_FRAME_BODY} bytes came)");
    wait_until(
        WAIT,
        "the new porxy to say why the transfer stopped",
        || new.stderr().contains(&why),
    );
    assert_eq!(new.tunnel("cli-1"), tunnel_addr);
    super::finish(super::connect_to(
        tunnel_addr,
        b'X',
        "after the failed transfer",
    ));
}

/// Regression: a successor bound its upgrade socket beside `--upgrade-socket PATH` and renamed
/// it over whatever socket was there, even one another running porxy serves (a typo in PATH),
/// so that porxy could no longer be upgraded and a takeover there reached the wrong process.
/// Only the socket of the porxy taken over is replaced; any other live one is refused, and the
/// running porxy carries on.
#[test]
fn a_successor_never_replaces_another_live_upgrade_socket() {
    let backend = Backend::greeting_echo(b"X");
    let mut chain = Chain::new(&backend);
    let mut old = chain.first();
    let mut other = Chain::new(&backend);
    let _other_porxy = other.first();
    let other_path = other.path().display().to_string();

    let mut args = chain.successor_args();
    let at = args.iter().position(|a| a == "--upgrade-socket").unwrap() + 1;
    args[at] = other_path.clone();
    refused(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &format!("upgrade socket {other_path} is in use by a running process"),
    );
    wait_until(WAIT, "the old porxy to log the abandoned takeover", || {
        old.stderr().contains("takeover abandoned; carrying on")
    });
    // The other porxy still answers at its path, and the first can still be taken over.
    let mut probe = peer(other.path());
    probe.write_all(b"JUNK\n").unwrap();
    assert_eq!(answer(&mut probe), "ERR expected TAKEOVER, got \"JUNK\"\n");
    let new = chain.successor();
    assert_took_over(&new, &old);
    assert_exits_cleanly(&mut old, "the old porxy");
}
