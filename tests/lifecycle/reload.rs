//! Reload: control `RELOAD` and SIGHUP read `--config` again and apply the difference, all of it
//! or none of it. Established connections keep the generation (and the backend) they started
//! with; `STATUS FULL` shows each generation that still holds connections.

use std::net::{SocketAddr, TcpListener};

use super::{connect_to, control_addr, field, finish, generations, WAIT};
use crate::support::client::{refused, round_trip};
use crate::support::control::ControlClient;
use crate::support::process::{Porxy, TempDir};
use crate::support::{wait_for, wait_until, Backend};

/// One `[listeners.NAME]` of a test config: its name, listen address and backend.
type Listener<'a> = (&'a str, &'a str, &'a Backend);

/// A config file with two reactors and, for each listener, a backend table of its own.
fn config(listeners: &[Listener<'_>]) -> String {
    let mut text = String::from("[proxy]\nreactors = 2\n");
    for (name, listen, backend) in listeners {
        text.push_str(&format!(
            "\n[backends.{name}-backend]\naddress = \"{}\"\n\n\
             [listeners.{name}]\nlisten = \"{listen}\"\nbackends = [\"{name}-backend\"]\n",
            backend.addr()
        ));
    }
    text
}

/// Starts porxy on the config file at `path`, with a control socket.
fn start(path: &std::path::Path) -> Porxy {
    Porxy::start(&[
        "--config",
        path.to_str().unwrap(),
        "--control",
        "127.0.0.1:0",
    ])
}

/// The listen address of the tunnel that forwards to `backend`, from `STATUS FULL`.
#[track_caller]
fn tunnel_to(status: &[String], backend: &Backend) -> SocketAddr {
    let remotes = backend.addr().to_string();
    status
        .iter()
        .filter(|l| l.starts_with("tunnel "))
        .find(|l| field(l, "remotes") == remotes)
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no tunnel to {remotes} in {status:#?}"))
        .parse()
        .expect("a tunnel address")
}

/// Waits until the `generation` lines of `STATUS FULL` are exactly `want`.
#[track_caller]
fn wait_generations(control: &mut ControlClient, want: &[&str]) {
    wait_for(
        WAIT,
        &format!("STATUS FULL to show the generations {want:?}"),
        || generations(&control.block("STATUS FULL")),
        |lines| lines == want,
    );
}

/// `one` changes backend (same port), `two` goes away, `three` comes: new connections follow the
/// new file, established ones keep their backend and their generation until they close.
#[test]
fn reload_over_control_applies_the_difference() {
    let a = Backend::greeting_echo(b"A");
    let b = Backend::greeting_echo(b"B");
    let c = Backend::greeting_echo(b"C");
    let d = Backend::greeting_echo(b"D");
    let any = "127.0.0.1:0";
    let dir = TempDir::new();
    let path = dir.write("porxy.toml", &config(&[("one", any, &a), ("two", any, &c)]));
    let porxy = start(&path);
    let one = porxy.tunnel("one");
    let two = porxy.tunnel("two");
    let old_one = connect_to(one, b'A', "one, before the reload");
    let mut old_two = connect_to(two, b'C', "two, before the reload");

    dir.write(
        "porxy.toml",
        &config(&[("one", any, &b), ("three", any, &d)]),
    );
    let mut control = ControlClient::connect(control_addr(&porxy));
    assert_eq!(
        control.cmd("RELOAD"),
        "OK reloaded: generation 2, opened 1, changed 1, unchanged 0, closed 1"
    );
    let status = control.block("STATUS FULL");
    assert_eq!(tunnel_to(&status, &b), one, "`one` keeps its port");
    let three = tunnel_to(&status, &d);

    let new_one = connect_to(one, b'B', "one, after the reload");
    let mut old_one = old_one;
    round_trip(
        &mut old_one,
        b"one, established before the reload, still to A",
    );
    assert!(refused(two), "`two` no longer listens");
    round_trip(&mut old_two, b"two, established before the reload");
    let new_three = connect_to(three, b'D', "three, opened by the reload");
    assert_eq!((a.accepted(), b.accepted()), (1, 1));

    wait_generations(
        &mut control,
        &["generation 1 open=2", "generation 2 open=2 current"],
    );
    finish(old_one);
    finish(old_two);
    wait_generations(&mut control, &["generation 2 open=2 current"]);
    finish(new_one);
    finish(new_three);
}

/// A file with a typo'd key, then one with a listener on a port in use: `RELOAD` says why and
/// nothing changes, although both files also change and remove the listeners that work.
#[test]
fn broken_reload_changes_nothing() {
    let a = Backend::greeting_echo(b"A");
    let b = Backend::greeting_echo(b"B");
    let c = Backend::greeting_echo(b"C");
    let d = Backend::greeting_echo(b"D");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let any = "127.0.0.1:0";
    let dir = TempDir::new();
    let path = dir.write("porxy.toml", &config(&[("one", any, &a), ("two", any, &c)]));
    let porxy = start(&path);
    let one = porxy.tunnel("one");
    let two = porxy.tunnel("two");
    let mut control = ControlClient::connect(control_addr(&porxy));
    let mut established = connect_to(one, b'A', "before the reloads");
    let unchanged = |control: &mut ControlClient| {
        finish(connect_to(one, b'A', "one, as before"));
        finish(connect_to(two, b'C', "two, as before"));
        wait_generations(control, &["generation 1 open=1 current"]);
    };

    let typo = config(&[("one", any, &b), ("three", any, &d)])
        .replace("[listeners.three]\nlisten", "[listeners.three]\nlisen");
    let line = typo
        .lines()
        .position(|l| l.starts_with("lisen"))
        .expect("the typo'd line")
        + 1;
    dir.write("porxy.toml", &typo);
    let reply = control.cmd("RELOAD");
    let prefix = format!(
        "ERR: reload failed, nothing changed: {}:{line}:",
        path.display()
    );
    assert!(
        reply.starts_with(&prefix) && reply.contains("lisen"),
        "expected `{prefix}...lisen...`: {reply}"
    );
    unchanged(&mut control);

    dir.write(
        "porxy.toml",
        &config(&[("one", any, &b), ("three", &taken_addr, &d)]),
    );
    let reply = control.cmd("RELOAD");
    assert!(
        reply.starts_with("ERR: reload failed, nothing changed: ") && reply.contains(&taken_addr),
        "the error names the port in use, {taken_addr}: {reply}"
    );
    unchanged(&mut control);
    round_trip(&mut established, b"through both failed reloads");
    finish(established);
    drop(taken);
}

/// Regression: a reload read the config path without a limit, so a path that came to name
/// `/dev/zero` made porxy eat memory until it was killed. A reload reads like a start: a path
/// that is not a regular file, or a file past 16 MiB, is refused and nothing changes.
#[test]
fn reload_of_an_endless_or_huge_file_is_refused() {
    let a = Backend::greeting_echo(b"A");
    let b = Backend::greeting_echo(b"B");
    let any = "127.0.0.1:0";
    let dir = TempDir::new();
    let real = dir.write("real.toml", &config(&[("one", any, &a)]));
    let path = dir.path().join("porxy.toml");
    std::os::unix::fs::symlink(&real, &path).unwrap();
    let porxy = start(&path);
    let one = porxy.tunnel("one");
    let mut control = ControlClient::connect(control_addr(&porxy));
    // The next file would change the backend, if it were read.
    dir.write("real.toml", &config(&[("one", any, &b)]));
    let huge = dir.path().join("huge.toml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(16 * 1024 * 1024 + 1)
        .unwrap();
    for (target, fragment) in [
        (std::path::Path::new("/dev/zero"), "is a character device"),
        (huge.as_path(), "is larger than 16 MiB"),
    ] {
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(target, &path).unwrap();
        let reply = control.cmd("RELOAD");
        assert!(
            reply.starts_with("ERR: reload failed, nothing changed: ")
                && reply.contains(&format!("{} {fragment}", path.display())),
            "{reply}"
        );
        finish(connect_to(one, b'A', "as before the reload"));
    }
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&real, &path).unwrap();
    assert!(control.cmd("RELOAD").starts_with("OK reloaded: "));
    finish(connect_to(one, b'B', "after a good reload"));
}

/// Regression: a reload that came while an editor or `cp` was writing the file read it empty
/// or cut short, still valid TOML, and closed every listener (a port-0 one came back on another
/// port at the next reload). A reload of a file that defines no listener, when the running one
/// defines some, is refused, by `RELOAD` and by SIGHUP alike; `RELOAD FORCE` does it on purpose.
#[test]
fn reload_of_a_file_without_listeners_is_refused_unless_forced() {
    let a = Backend::greeting_echo(b"A");
    let c = Backend::greeting_echo(b"C");
    let any = "127.0.0.1:0";
    let dir = TempDir::new();
    let whole = config(&[("one", any, &a), ("two", any, &c)]);
    let path = dir.write("porxy.toml", &whole);
    let mut porxy = start(&path);
    let (one, two) = (porxy.tunnel("one"), porxy.tunnel("two"));
    let mut control = ControlClient::connect(control_addr(&porxy));
    let unchanged = |control: &mut ControlClient| {
        finish(connect_to(one, b'A', "one, as before"));
        finish(connect_to(two, b'C', "two, as before"));
        wait_generations(control, &["generation 1 open=0 current"]);
    };

    dir.write("porxy.toml", "");
    let reply = control.cmd("RELOAD");
    assert!(
        reply.starts_with(&format!(
            "ERR: reload failed, nothing changed: {} defines no listener",
            path.display()
        )) && reply.contains("RELOAD FORCE")
            && reply.contains("write a temp file, then mv"),
        "{reply}"
    );
    unchanged(&mut control);

    // Cut short before the first listener: the proxy table and a backend.
    let cut = &whole[..whole.find("[listeners.").expect("a listener table")];
    dir.write("porxy.toml", cut);
    porxy.signal(libc::SIGHUP);
    wait_until(WAIT, "porxy to log that it refused the reload", || {
        porxy.stderr().contains("defines no listener")
    });
    unchanged(&mut control);

    assert_eq!(
        control.cmd("RELOAD FORCE"),
        "OK reloaded: generation 2, opened 0, changed 0, unchanged 0, closed 2"
    );
    assert!(refused(one) && refused(two), "every listener closed");

    // With nothing listening, a file without listeners needs no force.
    assert!(control
        .cmd("RELOAD")
        .starts_with("OK reloaded: generation 3, "));
    dir.write("porxy.toml", &whole);
    assert!(control
        .cmd("reload force")
        .starts_with("OK reloaded: generation 4, opened 2, "));
}

/// SIGHUP reloads like `RELOAD`.
#[test]
fn sighup_reloads_the_config_file() {
    let a = Backend::greeting_echo(b"A");
    let b = Backend::greeting_echo(b"B");
    let any = "127.0.0.1:0";
    let dir = TempDir::new();
    let path = dir.write("porxy.toml", &config(&[("one", any, &a)]));
    let mut porxy = start(&path);
    let one = porxy.tunnel("one");
    let mut control = ControlClient::connect(control_addr(&porxy));
    let mut established = connect_to(one, b'A', "before SIGHUP");

    dir.write("porxy.toml", &config(&[("one", any, &b)]));
    porxy.signal(libc::SIGHUP);
    wait_generations(
        &mut control,
        &["generation 1 open=1", "generation 2 open=0 current"],
    );
    finish(connect_to(one, b'B', "after SIGHUP"));
    round_trip(&mut established, b"still to A");
    finish(established);
}

/// SIGHUP without `--config` has nothing to read: porxy says so and goes on as it was.
#[test]
fn sighup_without_config_changes_nothing() {
    let a = Backend::greeting_echo(b"A");
    let mut porxy = Porxy::start(&["--reactors", "2", "--tunnel", &super::spec_to(&a)]);
    let tunnel = porxy.tunnel("cli-1");
    let mut established = connect_to(tunnel, b'A', "before SIGHUP");
    porxy.signal(libc::SIGHUP);
    wait_until(WAIT, "porxy to log that it has nothing to reload", || {
        porxy
            .stderr()
            .contains("nothing to reload: porxy was started without --config")
    });
    assert!(
        porxy.exit_status().is_none(),
        "porxy exited on SIGHUP; stderr:\n{}",
        porxy.stderr()
    );
    round_trip(&mut established, b"after SIGHUP");
    finish(established);
    finish(connect_to(tunnel, b'A', "a new client after SIGHUP"));
}
