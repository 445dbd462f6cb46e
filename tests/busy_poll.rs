//! Busy polling (`--busy-poll`, `ProxyBuilder::busy_poll`): bytes go through unchanged, an idle
//! proxy goes back to sleep once the window has passed, timers fire on time while reactors
//! spin, and a window that is surely a typo is refused with the flag or key named.

use std::time::{Duration, Instant};

use porxy_core::CloseReason;

use crate::support::client::{closed_when_idle, connect, round_trip};
use crate::support::payload::bytes;
use crate::support::process::{run, Porxy, TempDir};
use crate::support::proxy::{builder, spec_to, start, wait_tunnel};
use crate::support::wait::wait_for;
use crate::support::Backend;

/// The longest a `--check` may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// With `--busy-poll 1ms`, every byte comes back as sent; once traffic stops, porxy spins for
/// at most a millisecond and then sleeps: over 300 ms of idleness it uses (nearly) no CPU. A
/// reactor that never stopped spinning would use the whole 300 ms.
#[test]
fn busy_polling_porxy_relays_then_sleeps_when_idle() {
    let echo = Backend::echo();
    let spec = format!("127.0.0.1:0={}", echo.addr());
    let porxy = Porxy::start(&["--busy-poll", "1ms", "--tunnel", &spec]);
    let mut stream = connect(porxy.tunnel("cli-1"));
    for i in 0..100 {
        round_trip(&mut stream, format!("message {i}").as_bytes());
    }
    round_trip(&mut stream, &bytes(42, 256 * 1024));

    // The connection stays open and idle. A measurement window, not a wait for a condition:
    // how much CPU does porxy use while nothing happens?
    let before = porxy.cpu_ticks();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let used_ms = (porxy.cpu_ticks() - before) * 1000 / ticks_per_second();
    let idle = started.elapsed();
    assert!(
        used_ms < 20,
        "porxy used {used_ms} ms of CPU in {idle:?} of idleness: it went on spinning"
    );

    // Asleep, it still wakes for the next message.
    round_trip(&mut stream, b"after the idle spell");
    assert!(
        !porxy.stderr().contains("ERROR"),
        "porxy logged an error:\n{}",
        porxy.stderr()
    );
}

/// The other side of the bargain: within the window after traffic, porxy does not sleep. With
/// `--busy-poll 1s`, within 900 ms of a round trip it spends at least 60 ms on a CPU (a share,
/// not all: other tests compete for the CPUs); a sleeping porxy spends next to none.
#[test]
fn busy_polling_porxy_stays_awake_within_the_window() {
    let echo = Backend::echo();
    let spec = format!("127.0.0.1:0={}", echo.addr());
    let porxy = Porxy::start(&["--busy-poll", "1s", "--reactors", "1", "--tunnel", &spec]);
    let mut stream = connect(porxy.tunnel("cli-1"));
    let before = porxy.cpu_ticks();
    round_trip(&mut stream, b"wake up");
    // Awaited within the busy-poll window that the round trip started.
    wait_for(
        Duration::from_millis(900),
        "porxy to spend 60 ms of CPU after traffic (it slept instead)",
        || (porxy.cpu_ticks() - before) * 1000 / ticks_per_second(),
        |&used_ms| used_ms >= 60,
    );
}

/// Clock ticks per second, the unit of [`Porxy::cpu_ticks`].
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf(3) only reads a system constant.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as u64 }
}

/// A connection's idle timeout fires on time when the busy-poll window is shorter than the
/// timeout (the reactor has gone back to a blocking poll).
#[test]
fn idle_timeout_fires_on_time_after_a_short_spin() {
    idle_timeout_fires_on_time_with(Duration::from_millis(1));
}

/// ... and when the deadline falls within the window, while the reactor spins: spinning must
/// neither starve the timers nor hold them until the window is over.
#[test]
fn idle_timeout_fires_on_time_while_spinning() {
    idle_timeout_fires_on_time_with(Duration::from_secs(1));
}

fn idle_timeout_fires_on_time_with(window: Duration) {
    const IDLE: Duration = Duration::from_millis(300);
    let echo = Backend::echo();
    let proxy = start(
        builder()
            .busy_poll(window)
            .idle_timeout(IDLE)
            .tunnel(spec_to(echo.addr())),
    );
    let local = proxy.bound()[0];
    let after = closed_when_idle(local, IDLE);
    // Held until a 1 s spin ended, it would close after about a second.
    assert!(
        after < IDLE + Duration::from_millis(400),
        "closed after {after:?}, late for the {IDLE:?} idle timeout (busy poll {window:?})"
    );
    wait_tunnel(&proxy.handle(), local, "the idle timeout counted", |t| {
        t.closes.get(CloseReason::IdleTimeout) == 1 && t.closes.total() == 1
    });
}

/// More than a second of busy polling is refused, naming the flag or the file's key; `0s` is
/// accepted (off).
#[test]
fn too_long_a_busy_poll_is_refused_by_name() {
    let reason = "invalid setting `busy_poll`: 2s is more than 1s; a reactor spins a CPU for \
                  this long after every burst of traffic, so this is probably a typo";
    let out = run(
        &["--check", "--busy-poll", "2s", "--tunnel", "0=127.0.0.1:9"],
        RUN_TIMEOUT,
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .starts_with(&format!("porxy: error: --busy-poll: {reason}")),
        "{}",
        out.stderr
    );

    let dir = TempDir::new();
    let config = dir.write(
        "porxy.toml",
        "[proxy]\nbusy_poll = \"2s\"\n\n[backends.b]\naddress = \"127.0.0.1:9\"\n\n\
         [listeners.l]\nlisten = \"127.0.0.1:0\"\nbackends = [\"b\"]\n",
    );
    let config = config.to_str().unwrap();
    let out = run(&["--check", "--config", config], RUN_TIMEOUT);
    assert_eq!(out.code, Some(1), "{out:?}");
    let reason = reason.trim_start_matches("invalid setting `busy_poll`: ");
    assert!(
        out.stderr.starts_with(&format!(
            "porxy: error: {config}:2:13: proxy.busy_poll: {reason}"
        )),
        "{}",
        out.stderr
    );

    // The flag overrides the file: `0s` turns busy polling off, and the file is fine then.
    let out = run(
        &["--check", "--config", config, "--busy-poll", "0s"],
        RUN_TIMEOUT,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "config OK: 1 tunnel\n", "{out:?}");
}
