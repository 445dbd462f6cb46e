//! `porxy top` in a real terminal: tmux runs it, the test sends keys and reads the pane as a
//! person would see it.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::client::{connect, round_trip};
use crate::support::control::{control_addr, ControlClient};
use crate::support::process::{Porxy, BIN};
use crate::support::{wait_until, Backend};

const WAIT: Duration = Duration::from_secs(10);

/// A tmux server of this test's own (its own socket name), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A session `columns` wide running `command`.
    fn run(command: &str) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "porxy-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Tmux { socket };
        tmux.cmd(&["new-session", "-d", "-x", "120", "-y", "24", command]);
        tmux
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux (tests/run.sh installs it)")
    }

    /// What the pane shows now.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// Waits until the pane shows something `check` accepts; the screen.
    #[track_caller]
    fn wait_screen(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        wait_until(WAIT, what, || {
            screen = self.screen();
            check(&screen)
        });
        screen
    }

    fn keys(&self, keys: &str) {
        assert!(self.cmd(&["send-keys", keys]).status.success());
    }

    fn running(&self) -> bool {
        self.cmd(&["has-session"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// The words of the pane's line that starts with `start` (after leading spaces).
fn row<'a>(screen: &'a str, start: &str) -> Vec<&'a str> {
    screen
        .lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no row {start} in:\n{screen}"))
        .split_whitespace()
        .collect()
}

/// Over the admin API: the tunnel by name with its open connections and rates, its backend
/// with its state; `s` changes the sort key, `q` quits.
#[test]
fn top_shows_tunnels_backends_and_rates_and_quits_on_q() {
    let echo = Backend::echo();
    let porxy = Porxy::start(&[
        "--admin",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--tunnel",
        &format!("127.0.0.1:0={}", echo.addr()),
    ]);
    let admin = porxy.admin().unwrap().to_string();
    let tunnel = porxy.tunnel("cli-1");
    let tmux = Tmux::run(&format!("{BIN} top --admin {admin} --interval 200ms"));
    tmux.wait_screen("the header", |s| s.contains("porxy top — admin"));

    let mut held = connect(tunnel);
    round_trip(&mut held, b"held open");
    let screen = tmux.wait_screen("one connection open", |s| {
        s.lines()
            .any(|l| l.starts_with("cli-1 ") && row(s, "cli-1")[2] == "1")
    });
    assert_eq!(
        &row(&screen, "TUNNEL")[..],
        ["TUNNEL", "/", "BACKEND", "STATE", "OPEN", "CONN/S", "UP/S", "DOWN/S", "FAIL/S"]
    );
    let backend = row(&screen, &echo.addr().to_string());
    assert_eq!(&backend[1..3], ["up", "1"], "{screen}");
    assert!(screen.contains("reactors (open)"), "{screen}");

    // Traffic shows as rates while it flows.
    let screen = tmux.wait_screen("a connection rate", |s| {
        for _ in 0..5 {
            let mut client = connect(tunnel);
            round_trip(&mut client, b"rate");
        }
        row(s, "cli-1")[3] != "0.0"
    });
    assert!(row(&screen, "cli-1")[4] != "0", "{screen}");

    // An operator's change of state shows.
    let mut control = ControlClient::connect(control_addr(&porxy));
    let drained = control.cmd(&format!("DRAIN {tunnel} {}", echo.addr()));
    assert!(drained.starts_with("OK draining"), "{drained}");
    tmux.wait_screen("the backend draining", |s| {
        row(s, &echo.addr().to_string())[1] == "draining"
    });

    assert!(tmux.screen().contains("sorted by name"));
    tmux.keys("s");
    tmux.wait_screen("the next sort key", |s| s.contains("sorted by open"));
    tmux.keys("q");
    wait_until(WAIT, "porxy top to quit on q", || !tmux.running());
}

/// Over the control socket (tunnels by address); a porxy that goes away is said on screen,
/// and top goes on trying.
#[test]
fn top_reads_the_control_socket_and_says_when_porxy_is_gone() {
    let echo = Backend::echo();
    let mut porxy = Porxy::start(&[
        "--control",
        "127.0.0.1:0",
        "--tunnel",
        &format!("127.0.0.1:0={}", echo.addr()),
    ]);
    let tunnel = porxy.tunnel("cli-1").to_string();
    let control = control_addr(&porxy);
    let tmux = Tmux::run(&format!("{BIN} top --control {control} --interval 200ms"));
    let screen = tmux.wait_screen("the tunnel by address", |s| {
        s.lines().any(|l| l.starts_with(&tunnel))
    });
    assert!(
        screen.contains(&format!("porxy top — control {control}")),
        "{screen}"
    );
    porxy.signal(libc::SIGTERM);
    porxy.wait_exit(WAIT);
    tmux.wait_screen("the failed reading", |s| s.contains("reading failed:"));
    assert!(tmux.running(), "top goes on");
    tmux.keys("q");
    wait_until(WAIT, "porxy top to quit on q", || !tmux.running());
}
