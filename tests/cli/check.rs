//! `--check` runs every check a start runs (short of binding): what it passes, a start does not
//! refuse for the configuration's sake, and what a start refuses, it refuses with the same
//! error, naming the file, the line, the column and the key.

use std::time::Duration;

use crate::support::process::{run, TempDir};

/// The longest a refused `--check` or start may take: refusing needs no waiting at all.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `porxy --check ARGS` and `porxy ARGS`: both exit 1 with the same one-line error, which
/// holds `fragment`, and neither says `config OK` or prints a READY line.
#[track_caller]
fn check_and_start_refuse(args: &[&str], fragment: &str) {
    let mut check = vec!["--check"];
    check.extend_from_slice(args);
    let checked = run(&check, REFUSE_TIMEOUT);
    let started = run(args, REFUSE_TIMEOUT);
    for out in [&checked, &started] {
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(
            out.stderr.starts_with("porxy: error: ") && out.stderr.contains(fragment),
            "{args:?}: the error lacks {fragment:?}: {}",
            out.stderr
        );
    }
    assert_eq!(checked.stderr, started.stderr, "{args:?}");
}

/// `[backends.NAME]` tables `a` and `b`, each at its address, and a listener on port 0.
fn config(a: &str, b: &str, listener_backends: &str) -> String {
    format!(
        "[backends.a]\naddress = \"{a}\"\n\n[backends.b]\naddress = \"{b}\"\n\n\
         [listeners.web]\nlisten = \"127.0.0.1:0\"\nbackends = {listener_backends}\n"
    )
}

/// Regression: a listener naming one backend twice, or two backends with one address, got
/// `config OK` from `--check`, while the start failed with an error naming no file, line or
/// key (porxy-core refuses a tunnel with a remote twice when it opens it).
#[test]
fn check_refuses_a_listener_with_one_backend_twice() {
    let dir = TempDir::new();
    let twice = dir.write(
        "twice.toml",
        &config("127.0.0.1:7000", "127.0.0.1:7001", r#"["a", "b", "a"]"#),
    );
    check_and_start_refuse(
        &["--config", twice.to_str().unwrap()],
        &format!(
            "{}:9:23: listeners.web.backends: backend \"a\" is listed twice",
            twice.display()
        ),
    );

    // Two names, one address (written differently): found once resolved.
    let same = dir.write(
        "same.toml",
        &config("127.0.0.1:7000", "7000", r#"["a", "b"]"#),
    );
    check_and_start_refuse(
        &["--config", same.to_str().unwrap()],
        &format!(
            "{0}:5:11: backends.b.address: 127.0.0.1:7000 is also the address of \
             {0}:2:11: backends.a.address, and listener `web` uses both",
            same.display()
        ),
    );
}

/// The same for a `--tunnel` that lists one remote twice.
#[test]
fn check_refuses_a_tunnel_flag_with_one_remote_twice() {
    check_and_start_refuse(
        &["--tunnel", "127.0.0.1:0=7000,127.0.0.1:7000"],
        "--tunnel cli-1 `127.0.0.1:0=7000,127.0.0.1:7000`: lists 127.0.0.1:7000 twice",
    );
}

/// A control socket path too long for a Unix socket: `--check` passed it, the start failed.
#[test]
fn check_refuses_a_control_path_that_cannot_be_bound() {
    let long = format!("unix:/tmp/{}.sock", "x".repeat(120));
    check_and_start_refuse(
        &["--tunnel", "127.0.0.1:0=7000", "--control", &long],
        "--control: control socket /tmp/xxx",
    );
    let dir = TempDir::new();
    let path = dir.write("porxy.toml", &format!("[control]\nlisten = \"{long}\"\n"));
    check_and_start_refuse(
        &["--config", path.to_str().unwrap()],
        &format!(
            "{}:2:10: control.listen: control socket /tmp/xxx",
            path.display()
        ),
    );
}

/// An upgrade socket path too long for a socket address is refused by `--check` as by a start,
/// before anything binds.
#[test]
fn check_refuses_an_upgrade_socket_path_too_long() {
    let dir = TempDir::new();
    let long = dir.path().join("u".repeat(120));
    let shown = long.display().to_string();
    check_and_start_refuse(
        &[
            "--tunnel",
            "127.0.0.1:0=127.0.0.1:9",
            "--upgrade-socket",
            &shown,
        ],
        &format!(
            "upgrade socket {shown}: the path is {} bytes, longer than a Unix socket path can be \
             (107 bytes)",
            shown.len()
        ),
    );
    assert!(!long.exists(), "nothing was bound");
}

/// Regression: a file listener whose backend is its own listen address got `config OK` from
/// `--check`, while the start failed naming no file, line or key. Now both name the backend's
/// address and the listener it reaches; a wildcard listener counts for a loopback remote.
#[test]
fn check_refuses_a_remote_that_reaches_porxy_itself() {
    // Held, so that nothing else takes the port meanwhile; porxy refuses before binding.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = TempDir::new();
    let looped = dir.write(
        "loop.toml",
        &format!(
            "[backends.self]\naddress = \"127.0.0.1:{port}\"\n\n[listeners.l]\n\
             listen = \"127.0.0.1:{port}\"\nbackends = [\"self\"]\n"
        ),
    );
    let shown = looped.display();
    check_and_start_refuse(
        &["--config", looped.to_str().unwrap()],
        &format!(
            "{shown}:2:11: backends.self.address: 127.0.0.1:{port} reaches porxy's own \
             listener on 127.0.0.1:{port} ({shown}:5:10: listeners.l.listen), so porxy would \
             forward to itself"
        ),
    );
    let wildcard = format!("0.0.0.0:{port}=127.0.0.1:9");
    let into_it = format!("127.0.0.1:0=127.0.0.1:{port}");
    check_and_start_refuse(
        &["--tunnel", &wildcard, "--tunnel", &into_it],
        &format!(
            "--tunnel cli-2 `{into_it}`: 127.0.0.1:{port} reaches porxy's own listener on \
             0.0.0.0:{port} (--tunnel cli-1 `{wildcard}`)"
        ),
    );
}
