//! Bandwidth limits: `max_rate_up` and `max_rate_down` hold each connection's reads to so
//! many bytes a second, `max_tunnel_rate_up` and `max_tunnel_rate_down` all of a tunnel's
//! connections together; every byte still arrives, in order. A limit is a floor on the time a
//! transfer takes: the tests check that floor (the transfer less one burst, at the rate) and
//! that nothing is lost.

use std::io::Write;
use std::net::Shutdown;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::client::{connect, read_until_end, End};
use crate::support::payload::bytes;
use crate::support::process::Porxy;
use crate::support::Backend;

/// 512 KiB a second: a burst of a tenth of that.
const RATE: u64 = 512 * 1024;
const BURST: u64 = RATE / 10;
/// 768 KiB: at least 1.4 s at the rate, after the burst.
const TRANSFER: usize = 768 * 1024;
const WAIT: Duration = Duration::from_secs(30);

/// The least a transfer of `bytes` takes at `RATE`, after a burst.
fn floor(bytes: usize) -> Duration {
    Duration::from_secs_f64((bytes as u64 - BURST) as f64 / RATE as f64)
}

fn porxy(backend: std::net::SocketAddr, options: &str) -> Porxy {
    Porxy::start(&["--tunnel", &format!("127.0.0.1:0={backend}[{options}]")])
}

#[test]
fn max_rate_down_holds_a_download_to_its_rate() {
    let payload = bytes(1, TRANSFER);
    let (report, _reported) = mpsc::channel();
    let backend = Backend::send_then_read(payload.clone(), report);
    let porxy = porxy(backend.addr(), "max_rate_down=512KiB");
    let started = Instant::now();
    let mut client = connect(porxy.tunnel("cli-1"));
    client.shutdown(Shutdown::Write).unwrap();
    let ending = read_until_end(&mut client);
    let took = started.elapsed();
    assert_eq!(ending.end, End::Eof);
    assert!(ending.bytes == payload, "every byte, in order");
    assert!(took >= floor(TRANSFER), "{TRANSFER} bytes in {took:?}");
}

#[test]
fn max_rate_up_holds_an_upload_to_its_rate_and_leaves_the_reply_alone() {
    let payload = bytes(2, TRANSFER);
    let (report, reported) = mpsc::channel();
    let reply = bytes(3, TRANSFER);
    let backend = Backend::send_then_read(reply.clone(), report);
    let porxy = porxy(backend.addr(), "max_rate_up=512KiB");
    let started = Instant::now();
    let mut client = connect(porxy.tunnel("cli-1"));
    let writer = {
        let mut client = client.try_clone().unwrap();
        let payload = payload.clone();
        std::thread::spawn(move || {
            client.write_all(&payload).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    // The reply is not limited: it is all there long before the upload is through.
    let ending = read_until_end(&mut client);
    assert!(ending.bytes == reply);
    let got = reported.recv_timeout(WAIT).expect("the backend's report");
    let took = started.elapsed();
    writer.join().unwrap();
    assert!(
        got.expect("read to the end") == payload,
        "every byte, in order"
    );
    assert!(took >= floor(TRANSFER), "{TRANSFER} bytes in {took:?}");
}

#[test]
fn max_tunnel_rate_down_is_shared_by_the_tunnels_connections() {
    let payload = bytes(4, TRANSFER / 2);
    let (report, _reported) = mpsc::channel();
    let backend = Backend::send_then_read(payload.clone(), report);
    let porxy = Porxy::start(&[
        "--tunnel",
        &format!(
            "127.0.0.1:0={}[max_tunnel_rate_down=512KiB]",
            backend.addr()
        ),
        "--reactors",
        "2",
    ]);
    let tunnel = porxy.tunnel("cli-1");
    let started = Instant::now();
    let downloads: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = connect(tunnel);
                client.shutdown(Shutdown::Write).unwrap();
                read_until_end(&mut client)
            })
        })
        .collect();
    for download in downloads {
        let ending = download.join().unwrap();
        assert_eq!(ending.end, End::Eof);
        assert!(ending.bytes == payload, "every byte, in order");
    }
    let took = started.elapsed();
    assert!(
        took >= floor(TRANSFER),
        "two downloads of {} bytes in {took:?}",
        TRANSFER / 2
    );
}
