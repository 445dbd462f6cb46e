//! Every connection ends with one record, written in one place for relayed and fan-out
//! connections alike: the close line, with its reason and how long it lasted.

use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use crate::support::client::{connect, read_until_end, round_trip, End};
use crate::support::process::Porxy;
use crate::support::{wait_until, Backend};

const WAIT: Duration = Duration::from_secs(10);

/// A round trip through `tunnel`, then a polite end; how long the connection was open.
fn one_connection(tunnel: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut stream = connect(tunnel);
    round_trip(&mut stream, b"hello through porxy");
    stream.shutdown(Shutdown::Write).unwrap();
    let ending = read_until_end(&mut stream);
    assert_eq!(ending.end, End::Eof, "{ending:?}");
    started.elapsed()
}

/// The `duration_ms` of the close line logged for a connection of `tunnel`, once there is one.
fn closed_duration(porxy: &Porxy, tunnel: SocketAddr) -> u64 {
    let marker = format!("tunnel={tunnel}");
    let mut found = None;
    wait_until(WAIT, "the close line of the connection", || {
        found = porxy
            .stderr()
            .lines()
            .filter(|l| l.contains(&marker) && l.contains(" closed "))
            .find_map(|l| {
                let value = l.split("duration_ms=").nth(1)?;
                value.split_whitespace().next()?.parse::<u64>().ok()
            });
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn relayed_and_fan_out_connections_end_with_the_same_record() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let relay = format!("127.0.0.1:0={}", a.addr());
    let fanout = format!("127.0.0.1:0={},{}[mode=fanout]", a.addr(), b.addr());
    let porxy = Porxy::start(&[
        "--tunnel",
        &relay,
        "--tunnel",
        &fanout,
        "--log",
        "porxy_core::reactor::close_log=debug",
    ]);
    for name in ["cli-1", "cli-2"] {
        let tunnel = porxy.tunnel(name);
        let started = Instant::now();
        let lasted = one_connection(tunnel);
        let logged = closed_duration(&porxy, tunnel);
        let until_logged = started.elapsed();
        // Logged once porxy saw the end: no longer than from the client's connect to the line,
        // give or take the millisecond the log rounds to.
        assert!(
            u128::from(logged) <= until_logged.as_millis() + 1,
            "{name}: logged {logged} ms, the line seen {until_logged:?} after the connect"
        );
        // A relayed connection ends when its client sees the end. (A fan-out one may outlive
        // it: its client hears the primary's end, while the others still finish.)
        if name == "cli-1" {
            assert!(
                u128::from(logged) <= lasted.as_millis() + 1,
                "{name}: logged {logged} ms for a connection open {lasted:?}"
            );
        }
    }
}
