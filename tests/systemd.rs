//! Life under systemd: a test plays the service manager (a Unix datagram socket as
//! `NOTIFY_SOCKET`, read in order), and `systemd-socket-activate` (Debian's systemd package)
//! is the real launcher of a socket-activated porxy.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::client::{connect, read_greeting, round_trip};
use crate::support::process::{Porxy, TempDir, BIN};
use crate::support::Backend;

const WAIT: Duration = Duration::from_secs(10);

/// A service manager's notification socket.
struct Manager {
    socket: UnixDatagram,
    _dir: TempDir,
    path: String,
}

impl Manager {
    fn new() -> Manager {
        let dir = TempDir::new();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        Manager {
            socket,
            path: path.display().to_string(),
            _dir: dir,
        }
    }

    /// The next notification, as text.
    #[track_caller]
    fn next(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notification within the wait");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Porxy with `NOTIFY_SOCKET` pointing here, and `env` besides.
    fn porxy(&self, env: &[(&str, &str)], args: &[&str]) -> Porxy {
        let mut command = Command::new(BIN);
        command.args(args).env("NOTIFY_SOCKET", &self.path);
        for (key, value) in env {
            command.env(key, value);
        }
        Porxy::spawn(command)
    }
}

/// `READY=1` once the tunnels listen, `RELOADING=1` with `MONOTONIC_USEC` and then `READY=1`
/// around a reload, `STOPPING=1` at a graceful stop, in that order.
#[test]
fn notifications_follow_the_service_through_reload_and_stop() {
    let echo = Backend::echo();
    let dir = TempDir::new();
    let config = dir.write(
        "porxy.toml",
        &format!(
            "[backends.echo]\naddress = \"{}\"\n[listeners.web]\nlisten = \"127.0.0.1:0\"\nbackends = [\"echo\"]\n",
            echo.addr()
        ),
    );
    let manager = Manager::new();
    let mut porxy = manager.porxy(&[], &["--config", config.to_str().unwrap()]);
    assert_eq!(manager.next(), "READY=1\nSTATUS=serving 1 tunnels\n");
    let mut client = connect(porxy.tunnel("web"));
    round_trip(&mut client, b"ready means serving");

    porxy.signal(libc::SIGHUP);
    let reloading = manager.next();
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines.len(), 3, "{reloading}");
    assert_eq!(lines[0], "RELOADING=1");
    let usec: u64 = lines[1]
        .strip_prefix("MONOTONIC_USEC=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{reloading}"));
    assert!(usec > 0);
    assert_eq!(lines[2], "STATUS=reloading");
    assert_eq!(manager.next(), "READY=1\nSTATUS=serving 1 tunnels\n");

    drop(client);
    porxy.signal(libc::SIGTERM);
    assert_eq!(manager.next(), "STOPPING=1\nSTATUS=stopping\n");
    assert_eq!(porxy.wait_exit(WAIT).code(), Some(0));
}

/// With `WATCHDOG_USEC`, `WATCHDOG=1` comes at about half that interval while the reactors
/// answer.
#[test]
fn the_watchdog_pings_at_half_its_interval() {
    let echo = Backend::echo();
    let manager = Manager::new();
    let spec = format!("127.0.0.1:0={}", echo.addr());
    let _porxy = manager.porxy(&[("WATCHDOG_USEC", "400000")], &["--tunnel", &spec]);
    assert!(manager.next().starts_with("READY=1\n"));
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(manager.next(), "WATCHDOG=1\n");
    }
    // Five pings at 200 ms apart: about a second, well under the 2 s five intervals allow.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(1900),
        "five pings took {took:?}"
    );
}

/// `systemd-socket-activate` holds the listening socket and execs porxy on the first client:
/// the socket named `web` goes to `[listeners.web]`, and that first client, which waited in
/// the backlog, is served.
#[test]
fn a_socket_systemd_passes_goes_to_its_listener_by_name() {
    let backend = Backend::greeting_echo(b"W");
    let dir = TempDir::new();
    let config = dir.write(
        "porxy.toml",
        &format!(
            "[backends.app]\naddress = \"{}\"\n[listeners.web]\nlisten = \"127.0.0.1:0\"\nbackends = [\"app\"]\n",
            backend.addr()
        ),
    );
    // A free port for the launcher to listen on (it takes no port 0).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new("systemd-socket-activate");
    command
        .args(["-l", &listen, "--fdname=web", BIN, "--config"])
        .arg(&config);
    let mut porxy = Porxy::spawn_unready(command);
    // The launcher listens before it execs porxy: the first client waits for porxy.
    let mut first = crate::support::wait::wait_for(
        WAIT,
        "systemd-socket-activate to listen",
        || std::net::TcpStream::connect(&listen).ok(),
        Option::is_some,
    )
    .unwrap();
    porxy.wait_ready(WAIT);
    assert_eq!(porxy.tunnel("web").to_string(), listen);
    assert_eq!(read_greeting(&mut first), b'W');
    round_trip(&mut first, b"the first client waited");
    assert!(porxy.stderr().contains(&format!(
        "listening on a socket systemd passed tunnel=web addr={listen}"
    )));
}
