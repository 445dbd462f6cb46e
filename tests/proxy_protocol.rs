//! Accepting the PROXY protocol (`accept_proxy`): the header is taken exactly, the stream
//! after it reaches the backend byte for byte, the close record names the client the header
//! named; a bad, late or cut header closes the client without touching a backend. Headers are
//! written by hand from the spec (v1 and v2), sent by curl (`--haproxy-protocol`, v1) and by
//! HAProxy (`send-proxy`, `send-proxy-v2`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::backend::read_through;
use crate::support::client::{connect, read_until_end, set_timeouts, End};
use crate::support::haproxy::Haproxy;
use crate::support::process::{Porxy, TempDir};
use crate::support::{wait_until, Backend};

const WAIT: Duration = Duration::from_secs(10);

/// porxy with one tunnel to `backend` with `options`, its close records logged.
fn porxy(backend: SocketAddr, options: &str) -> Porxy {
    let tunnel = format!("127.0.0.1:0={backend}[{options}]");
    Porxy::start(&[
        "--tunnel",
        &tunnel,
        "--log",
        "porxy_core::reactor::close_log=debug",
    ])
}

/// The first close line of `porxy` that holds `what`, once there is one.
fn close_line(porxy: &Porxy, what: &str) -> String {
    let mut found = None;
    wait_until(WAIT, "the close line", || {
        found = porxy
            .stderr()
            .lines()
            .find(|l| l.contains(what) && (l.contains(" closed ") || l.contains("failed")))
            .map(str::to_string);
        found.is_some()
    });
    found.unwrap()
}

/// Sends `header` then `payload` through `tunnel` to an echo backend; what comes back.
fn through(tunnel: SocketAddr, header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut stream = connect(tunnel);
    let mut first = header.to_vec();
    first.extend_from_slice(payload);
    stream.write_all(&first).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let ending = read_until_end(&mut stream);
    assert_eq!(ending.end, End::Eof, "{ending:?}");
    ending.bytes
}

/// A v2 header for a TCP over IPv4 client `source` to `destination`.
fn v2_tcp4(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (source, destination) else {
        panic!("IPv4 addresses");
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&s.ip().octets());
    header.extend_from_slice(&d.ip().octets());
    header.extend_from_slice(&s.port().to_be_bytes());
    header.extend_from_slice(&d.port().to_be_bytes());
    header
}

#[test]
fn a_v1_header_is_taken_exactly_and_names_the_client() {
    let backend = Backend::echo();
    let porxy = porxy(backend.addr(), "accept_proxy=v1");
    let tunnel = porxy.tunnel("cli-1");
    let header = format!(
        "PROXY TCP4 192.0.2.7 {} 4711 {}\r\n",
        tunnel.ip(),
        tunnel.port()
    );
    let echoed = through(tunnel, header.as_bytes(), b"hello after the header");
    assert_eq!(echoed, b"hello after the header");
    let line = close_line(&porxy, "client=192.0.2.7:4711");
    assert!(line.contains("reason=completed"), "{line}");
}

#[test]
fn a_v2_header_is_taken_exactly_and_names_the_client() {
    let backend = Backend::echo();
    let porxy = porxy(backend.addr(), "accept_proxy=any");
    let tunnel = porxy.tunnel("cli-1");
    let source: SocketAddr = "198.51.100.9:40000".parse().unwrap();
    // Bytes that look like another header must reach the backend as they are.
    let payload = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nnot a header any more";
    let echoed = through(tunnel, &v2_tcp4(source, tunnel), payload);
    assert_eq!(echoed, payload);
    close_line(&porxy, "client=198.51.100.9:40000");
}

#[test]
fn a_header_over_many_small_writes_is_read_whole() {
    let backend = Backend::echo();
    let porxy = porxy(backend.addr(), "accept_proxy=v2");
    let tunnel = porxy.tunnel("cli-1");
    let mut stream = connect(tunnel);
    stream.set_nodelay(true).unwrap();
    let header = v2_tcp4("203.0.113.5:1234".parse().unwrap(), tunnel);
    for piece in header.chunks(3) {
        stream.write_all(piece).unwrap();
        // Apart, so that each piece arrives on its own (part of the scenario, not a wait).
        std::thread::sleep(Duration::from_millis(5));
    }
    stream.write_all(b"ping").unwrap();
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ping");
    drop(stream);
    close_line(&porxy, "client=203.0.113.5:1234");
}

#[test]
fn a_bad_header_closes_the_client_without_touching_a_backend() {
    let backend = Backend::echo();
    let porxy = porxy(backend.addr(), "accept_proxy=any");
    let tunnel = porxy.tunnel("cli-1");
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
        b"PROXY TCP4 999.0.2.7 10.0.0.1 4711 80\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c",
    ] {
        let mut stream = connect(tunnel);
        stream.write_all(bad).unwrap();
        let ending = read_until_end(&mut stream);
        assert_ne!(ending.end, End::Eof, "{bad:?}: {ending:?}");
        assert!(ending.bytes.is_empty());
    }
    close_line(&porxy, "reason=proxy_header");
    assert_eq!(backend.accepted(), 0, "no backend was contacted");
    // The proxy and its other clients go on.
    let header = format!(
        "PROXY TCP4 192.0.2.1 {} 1 {}\r\n",
        tunnel.ip(),
        tunnel.port()
    );
    assert_eq!(
        through(tunnel, header.as_bytes(), b"still here"),
        b"still here"
    );
}

#[test]
fn a_silent_client_is_closed_at_proxy_timeout() {
    let backend = Backend::echo();
    let porxy = porxy(backend.addr(), "accept_proxy=v1,proxy_timeout=300ms");
    let tunnel = porxy.tunnel("cli-1");
    let started = Instant::now();
    let mut stream = connect(tunnel);
    set_timeouts(&stream);
    stream.write_all(b"PROXY TCP4 192.0.2.7").unwrap();
    let ending = read_until_end(&mut stream);
    let after = started.elapsed();
    assert_ne!(ending.end, End::Eof, "{ending:?}");
    assert!(
        after >= Duration::from_millis(300),
        "closed after {after:?}"
    );
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
    let line = close_line(&porxy, "reason=proxy_header");
    assert!(line.contains("connection failed"), "{line}");
    assert_eq!(backend.accepted(), 0);
}

#[test]
fn curl_sends_a_v1_header_porxy_takes() {
    // An HTTP backend that answers with what it was sent first, so that a header left in the
    // stream would show.
    let backend = Backend::start(|mut stream, _| {
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let first = String::from_utf8_lossy(&request)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let body = format!("{first}\n");
        let reply = format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes());
    });
    let porxy = porxy(backend.addr(), "accept_proxy=v1");
    let tunnel = porxy.tunnel("cli-1");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--haproxy-protocol"])
        .arg(format!("http://{tunnel}/through"))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "GET /through HTTP/1.1\n"
    );
    // curl names its own address: the client's.
    close_line(&porxy, "client=127.0.0.1:");
}

/// HAProxy in front of porxy, sending the header (`send-proxy` or `send-proxy-v2`): porxy
/// takes it, and names the client HAProxy saw, the test's own socket.
fn behind_haproxy(accept: &str, send: &str) {
    let backend = Backend::echo();
    let porxy = porxy(backend.addr(), &format!("accept_proxy={accept}"));
    let haproxy = Haproxy::start("", porxy.tunnel("cli-1"), send);
    let mut stream = connect(haproxy.addr());
    let client = stream.local_addr().unwrap();
    stream.write_all(b"through haproxy and porxy").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let ending = read_until_end(&mut stream);
    assert_eq!(ending.end, End::Eof, "{ending:?}");
    assert_eq!(ending.bytes, b"through haproxy and porxy");
    close_line(&porxy, &format!("client={client} "));
}

#[test]
fn haproxy_send_proxy_v1_names_the_client_it_saw() {
    behind_haproxy("v1", "send-proxy");
}

#[test]
fn haproxy_send_proxy_v2_names_the_client_it_saw() {
    behind_haproxy("v2", "send-proxy-v2");
}

/// Connects to `tunnel`, sends `payload` and ends; the client's address and all it got back.
fn exchange(tunnel: SocketAddr, payload: &[u8]) -> (SocketAddr, String) {
    let mut stream = connect(tunnel);
    let client = stream.local_addr().unwrap();
    stream.write_all(payload).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let ending = read_until_end(&mut stream);
    (client, String::from_utf8_lossy(&ending.bytes).into_owned())
}

/// The v1 header naming `client` and the address it reached, `tunnel`.
fn v1_line(client: SocketAddr, tunnel: SocketAddr) -> String {
    format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        client.ip(),
        tunnel.ip(),
        client.port(),
        tunnel.port()
    )
}

/// A backend that answers with the first line it was sent (a v1 PROXY header), then echoes.
fn first_line_then_echo() -> Backend {
    Backend::start(|mut stream, _| {
        let Some(line) = read_through(&mut stream, b"\r\n", 200) else {
            return;
        };
        if stream.write_all(&line).is_err() {
            return;
        }
        let _ = std::io::copy(&mut stream.try_clone().unwrap(), &mut stream);
    })
}

#[test]
fn send_proxy_puts_the_header_first_byte_for_byte() {
    let backend = first_line_then_echo();
    let porxy = porxy(backend.addr(), "send_proxy=v1");
    let tunnel = porxy.tunnel("cli-1");
    let (client, got) = exchange(tunnel, b"payload");
    assert_eq!(got, format!("{}payload", v1_line(client, tunnel)));
}

#[test]
fn haproxy_accept_proxy_takes_porxys_v2_header() {
    // client -> porxy (send_proxy=v2) -> HAProxy (accept-proxy; sends v1 on) -> a backend that
    // answers with the header HAProxy sent: the client and address porxy named.
    let backend = first_line_then_echo();
    let haproxy = Haproxy::start("accept-proxy", backend.addr(), "send-proxy");
    let porxy = porxy(haproxy.addr(), "send_proxy=v2");
    let tunnel = porxy.tunnel("cli-1");
    let (client, got) = exchange(tunnel, b"after the headers");
    assert_eq!(got, format!("{}after the headers", v1_line(client, tunnel)));
}

#[test]
fn a_header_accepted_is_the_one_sent_on() {
    // A chain of two porxy: the first sends v2, the second accepts it and sends v1 to a
    // backend that shows it: the client the first saw reaches the backend.
    let backend = first_line_then_echo();
    let second = porxy(backend.addr(), "accept_proxy=v2,send_proxy=v1");
    let first = porxy(second.tunnel("cli-1"), "send_proxy=v2");
    let (client, line) = exchange(first.tunnel("cli-1"), b"x");
    assert!(
        line.starts_with(&format!("PROXY TCP4 {} ", client.ip()))
            && line.contains(&format!(" {} ", client.port())),
        "{line:?} should name {client}"
    );
    assert!(line.ends_with("\r\nx"), "{line:?}");
}

#[test]
fn fan_out_sends_every_destination_the_header() {
    // The primary answers with the header it got; the other reports every byte it got.
    let primary = first_line_then_echo();
    let (report, reported) = std::sync::mpsc::channel();
    let other = Backend::send_then_read(Vec::new(), report);
    let spec = format!(
        "127.0.0.1:0={},{}[mode=fanout,send_proxy=v1]",
        primary.addr(),
        other.addr()
    );
    let porxy = Porxy::start(&["--tunnel", &spec]);
    let tunnel = porxy.tunnel("cli-1");
    let (client, got) = exchange(tunnel, b"copied");
    let expected = format!("{}copied", v1_line(client, tunnel));
    assert_eq!(got, expected);
    let other_got = reported
        .recv_timeout(WAIT)
        .expect("the other destination's bytes");
    assert_eq!(
        String::from_utf8_lossy(&other_got.expect("read to the end")),
        expected
    );
}

/// A config file with backends `a` and `b` (the `[backends.NAME]` extra lines given) behind one
/// listener `edge` (its extra lines given); porxy started on it.
fn two_backends(a: (SocketAddr, &str), b: (SocketAddr, &str), edge: &str) -> (TempDir, Porxy) {
    let dir = TempDir::new();
    let config = dir.write(
        "porxy.toml",
        &format!(
            "[backends.a]\naddress = \"{}\"\n{}\n\n\
             [backends.b]\naddress = \"{}\"\n{}\n\n\
             [listeners.edge]\nlisten = \"127.0.0.1:0\"\nbackends = [\"a\", \"b\"]\n{edge}\n",
            a.0, a.1, b.0, b.1
        ),
    );
    let porxy = Porxy::start(&["--config", config.to_str().unwrap()]);
    (dir, porxy)
}

/// `[backends.NAME] send_proxy`: a backend of its own version gets the header, one without
/// (and a listener without) gets the client's bytes alone; each connection gets the header of
/// the backend it reached, whatever the other's.
#[test]
fn a_backends_own_send_proxy_is_the_one_it_gets() {
    let (report_a, from_a) = std::sync::mpsc::channel();
    let (report_b, from_b) = std::sync::mpsc::channel();
    let a = Backend::send_then_read(b"A".to_vec(), report_a);
    let b = Backend::send_then_read(b"B".to_vec(), report_b);
    let (_dir, porxy) = two_backends(
        (a.addr(), "send_proxy = \"v1\""),
        (b.addr(), ""),
        "strategy = \"round_robin\"",
    );
    let tunnel = porxy.tunnel("edge");
    for _ in 0..2 {
        let (client, greeting) = exchange(tunnel, b"payload");
        let got = match greeting.as_str() {
            "A" => from_a.recv_timeout(WAIT).expect("A's report"),
            "B" => from_b.recv_timeout(WAIT).expect("B's report"),
            other => panic!("reached neither backend: {other:?}"),
        };
        let got = String::from_utf8_lossy(&got.expect("read to the end")).into_owned();
        let expected = match greeting.as_str() {
            "A" => format!("{}payload", v1_line(client, tunnel)),
            _ => "payload".to_owned(),
        };
        assert_eq!(got, expected, "backend {greeting}");
    }
    assert_eq!((a.accepted(), b.accepted()), (1, 1), "one each, in turn");
}

/// `check_send_proxy`: active checks of a backend that gets headers send it one first, v2
/// `LOCAL` (they speak for no client); a backend that gets none is checked with a bare
/// connect. Without it, checks send nothing.
#[test]
fn checks_send_a_local_header_to_backends_that_get_headers() {
    // The v2 signature, version 2 with LOCAL, UNSPEC, and no address.
    const LOCAL: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    for (check_send_proxy, a_gets) in [(true, LOCAL), (false, &b""[..])] {
        let (report_a, from_a) = std::sync::mpsc::channel();
        let (report_b, from_b) = std::sync::mpsc::channel();
        let a = Backend::send_then_read(Vec::new(), report_a);
        let b = Backend::send_then_read(Vec::new(), report_b);
        let (_dir, _porxy) = two_backends(
            (a.addr(), "send_proxy = \"v2\""),
            (b.addr(), ""),
            &format!(
                "[listeners.edge.check]\ninterval = \"100ms\"\nsend_proxy = {check_send_proxy}"
            ),
        );
        let check_a = from_a.recv_timeout(WAIT).expect("a check of A");
        assert_eq!(check_a.expect("A's check read to the end"), a_gets);
        let check_b = from_b.recv_timeout(WAIT).expect("a check of B");
        assert_eq!(check_b.expect("B's check read to the end"), b"");
    }
}
