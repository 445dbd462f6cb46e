//! The proxy-wide families: accept pauses by cause, descriptor shortages by what porxy was
//! doing, and splice fallbacks by reactor and cause, each provoked and then read back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::sample;
use crate::support::client::{connect, round_trip, try_connect};
use crate::support::curl::{curl, url};
use crate::support::process::Porxy;
use crate::support::{wait_until, Backend};

const WAIT: Duration = Duration::from_secs(10);

/// A scrape of `addr`'s `/metrics`.
fn scrape(addr: &str) -> String {
    let reply = curl(&[&url(addr, "/metrics")]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// The counter `line_start` in a fresh scrape, as a number.
fn counter(addr: &str, line_start: &str) -> u64 {
    sample(&scrape(addr), line_start).parse().unwrap()
}

/// A client past `max_connections` waits, and so does one past `max_accept_rate`: each pause
/// is counted under its cause, and the clients are served afterwards.
#[test]
fn accept_pauses_are_counted_by_cause() {
    let echo = Backend::echo();
    let mut porxy = Porxy::start(&[
        "--admin",
        "127.0.0.1:0",
        "--reactors",
        "1",
        "--max-connections",
        "1",
        "--tunnel",
        &format!("127.0.0.1:0={}", echo.addr()),
    ]);
    let admin = porxy.admin().unwrap().to_string();
    let limit = "porxy_accept_pauses_total{cause=\"connection_limit\"}";
    assert_eq!(counter(&admin, limit), 0);
    let mut first = connect(porxy.tunnel("cli-1"));
    round_trip(&mut first, b"first");
    let mut second = connect(porxy.tunnel("cli-1"));
    second.write_all(b"second").unwrap();
    wait_until(WAIT, "a pause at the connection limit", || {
        counter(&admin, limit) >= 1
    });
    let status = curl(&[&url(&admin, "/status")]).json();
    assert!(
        status["accept_pauses"]["connection_limit"]
            .as_u64()
            .unwrap()
            >= 1
    );
    drop(first);
    let mut back = [0u8; 6];
    second.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"second", "served once the first left");
    let text = scrape(&admin);
    for cause in ["accept_rate", "resource_shortage"] {
        assert_eq!(
            sample(
                &text,
                &format!("porxy_accept_pauses_total{{cause=\"{cause}\"}}")
            ),
            "0"
        );
    }
    porxy.signal(libc::SIGTERM);

    let mut porxy = Porxy::start(&[
        "--admin",
        "127.0.0.1:0",
        "--max-accept-rate",
        "2",
        "--tunnel",
        &format!("127.0.0.1:0={}", echo.addr()),
    ]);
    let admin = porxy.admin().unwrap().to_string();
    // A burst of a tenth of a second's worth (one client), then one every half second.
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(porxy.tunnel("cli-1"))).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        round_trip(client, format!("client {i}").as_bytes());
    }
    assert!(counter(&admin, "porxy_accept_pauses_total{cause=\"accept_rate\"}") >= 1);
    porxy.signal(libc::SIGTERM);
}

/// Under a descriptor limit so low that porxy may open no pipe and holds few connections:
/// every bulk read copies instead of splicing (counted as `budget`), and clients past the
/// descriptors make accepts or upstream connects fail for want of one (counted, and each
/// accept that failed paused accepting).
#[test]
fn descriptor_shortages_and_splice_fallbacks_are_counted() {
    let echo = Backend::echo();
    // 70 descriptors: 64 kept for porxy itself, 6 left, a quarter of which makes no pipe.
    let porxy = Porxy::start_with_fd_limit(
        70,
        &[
            "--metrics",
            "127.0.0.1:0",
            "--reactors",
            "1",
            "--max-connections",
            "1000",
            "--tunnel",
            &format!("127.0.0.1:0={}[splice=on]", echo.addr()),
        ],
    );
    let metrics = porxy.ready_field("metrics").unwrap().to_string();
    let budget = "porxy_splice_fallbacks_total{reactor=\"0\",cause=\"budget\"}";
    assert_eq!(counter(&metrics, budget), 0);
    let mut client = connect(porxy.tunnel("cli-1"));
    let bulk = vec![b'b'; 1 << 20];
    let mut back = vec![0u8; bulk.len()];
    std::thread::scope(|s| {
        let mut writer = client.try_clone().unwrap();
        s.spawn(move || writer.write_all(&bulk).unwrap());
        client.read_exact(&mut back).unwrap();
    });
    assert!(back.iter().all(|&b| b == b'b'));
    assert!(counter(&metrics, budget) >= 1, "bulk reads copied");
    drop(client);

    // More clients than descriptors; the metrics listener itself waits for one, so read it
    // once they are gone.
    let clients: Vec<TcpStream> = (0..40)
        .filter_map(|_| try_connect(porxy.tunnel("cli-1")).ok())
        .collect();
    wait_until(WAIT, "porxy to use up its descriptors", || {
        porxy.open_fds() >= 68
    });
    drop(clients);
    wait_until(WAIT, "the shortage to be counted", || {
        let text = scrape(&metrics);
        let during = |what: &str| -> u64 {
            sample(
                &text,
                &format!("porxy_descriptor_shortages_total{{during=\"{what}\"}}"),
            )
            .parse()
            .unwrap()
        };
        let paused: u64 = sample(
            &text,
            "porxy_accept_pauses_total{cause=\"resource_shortage\"}",
        )
        .parse()
        .unwrap();
        assert_eq!(paused, during("accept"), "each failed accept pauses");
        during("accept") + during("connection") >= 1
    });
}
