//! Routing by server name without terminating (`sni_routes`): porxy peeks at each client's
//! ClientHello, picks the backends its SNI is routed to, and relays the TLS stream untouched.
//! porxy holds no certificate and no key: the clients verify the backends' own certificates
//! end to end, which only works if not a byte of the TLS stream was changed.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::support::client::connect;
use crate::support::payload::bytes;
use crate::support::process::Porxy;
use crate::support::tls::{
    connect_with, half_close, read_to_close_notify, tls_backend, TestCa, TlsClient,
};
use crate::support::{wait_until, Backend};

const WAIT: Duration = Duration::from_secs(10);

/// Three TLS backends, each with its own certificate and greeting: `a.test` (`A`), any name
/// under `b.test` (`B`), and `c.test` (`C`).
struct Backends {
    ca: TestCa,
    a: Backend,
    b: Backend,
    c: Backend,
}

fn backends() -> Backends {
    let ca = TestCa::new();
    let a = tls_backend(&ca.server("a", &["a.test"]), b"A");
    let b = tls_backend(&ca.server("b", &["*.b.test"]), b"B");
    let c = tls_backend(&ca.server("c", &["c.test", "other.test"]), b"C");
    Backends { ca, a, b, c }
}

/// porxy routing over `backends` by `routes` (`{a}`, `{b}`, `{c}` stand for their addresses),
/// with `options` besides. It is given no certificate and no key.
fn routing_porxy(backends: &Backends, routes: &str, options: &str) -> Porxy {
    let (a, b, c) = (backends.a.addr(), backends.b.addr(), backends.c.addr());
    let routes = routes
        .replace("{a}", &a.to_string())
        .replace("{b}", &b.to_string())
        .replace("{c}", &c.to_string());
    let spec = format!("127.0.0.1:0={a},{b},{c}[sni_routes={routes}{options}]");
    Porxy::start(&[
        "--tunnel",
        &spec,
        "--log",
        "warn,porxy_core::reactor::close_log=debug",
    ])
}

/// A TLS client of `tunnel` for `name`, verifying the backend's certificate with the test CA;
/// the greeting its backend sent.
fn greeted(ca: &TestCa, tunnel: SocketAddr, name: &str) -> (TlsClient, u8) {
    let mut client = connect_with(ca.client(&[]), tunnel, name).expect("a TLS session");
    let mut greeting = [0u8; 1];
    client.read_exact(&mut greeting).expect("the greeting");
    (client, greeting[0])
}

#[test]
fn three_names_reach_three_tls_backends_untouched_and_exact() {
    let backends = backends();
    let porxy = routing_porxy(&backends, "a.test>{a};*.b.test>{b};*>{c}", "");
    let tunnel = porxy.tunnel("cli-1");
    for (name, want) in [
        ("a.test", b'A'),
        ("x.b.test", b'B'),
        ("y.b.test", b'B'),
        ("c.test", b'C'),
        ("other.test", b'C'),
    ] {
        let (mut client, greeting) = greeted(&backends.ca, tunnel, name);
        assert_eq!(greeting, want, "{name} went to its route");
        client.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
    }

    // A quarter mebibyte each way, then the TLS half-close both ways.
    let (mut client, _) = greeted(&backends.ca, tunnel, "x.b.test");
    let payload = bytes(3, 256 * 1024);
    for chunk in payload.chunks(32 * 1024) {
        client.write_all(chunk).unwrap();
        let mut back = vec![0u8; chunk.len()];
        client.read_exact(&mut back).unwrap();
        assert!(back == chunk, "exact bytes");
    }
    half_close(&mut client);
    assert!(read_to_close_notify(&mut client).is_empty());

    // A real client: openssl s_client verifies the routed backend's certificate.
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &tunnel.to_string()])
        .args(["-servername", "z.b.test", "-verify_return_error"])
        .args(["-verify_hostname", "z.b.test", "-CAfile"])
        .arg(&backends.ca.ca_pem)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client (the openssl package)");
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let output = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(
        out.contains("s:CN = b"),
        "the b backend's certificate: {out}"
    );
}

/// A ClientHello written a few bytes at a time is read whole before the pick, and the
/// handshake then goes on over the same connection.
#[test]
fn a_client_hello_in_many_pieces_is_routed() {
    let backends = backends();
    let porxy = routing_porxy(&backends, "a.test>{a};*.b.test>{b}", "");
    let tcp = connect(porxy.tunnel("cli-1"));
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("p.b.test").unwrap();
    let mut session = ClientConnection::new(backends.ca.client(&[]), name).unwrap();
    let mut hello = Vec::new();
    session.write_tls(&mut hello).unwrap();
    let mut stream = StreamOwned::new(session, tcp);
    for piece in hello.chunks(7) {
        stream.sock.write_all(piece).unwrap();
        // Shapes the input into separate segments; nothing waits on porxy here.
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut greeting = [0u8; 1];
    stream
        .read_exact(&mut greeting)
        .expect("the handshake completes");
    assert_eq!(&greeting, b"B");
}

/// Garbage, a name no route takes, and a client that never finishes its ClientHello are each
/// closed with their reason, without touching a backend; the listener goes on serving.
#[test]
fn garbage_or_an_unrouted_name_is_closed_with_its_reason_and_others_go_on() {
    let backends = backends();
    let porxy = routing_porxy(
        &backends,
        "a.test>{a};*.b.test>{b}",
        ",tls_handshake_timeout=300ms",
    );
    let tunnel = porxy.tunnel("cli-1");

    let mut garbage = connect(tunnel);
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = garbage.read_to_end(&mut got);
    assert!(got.is_empty(), "no backend answered garbage");
    wait_until(WAIT, "garbage closed as tls_handshake", || {
        porxy.stderr().contains("reason=tls_handshake")
    });
    assert!(
        porxy
            .stderr()
            .contains("error=\"TLS ClientHello: not a TLS ClientHello: "),
        "the close says what was wrong: {}",
        porxy.stderr()
    );

    let unrouted = connect_with(backends.ca.client(&[]), tunnel, "c.test");
    assert!(unrouted.is_err(), "no route for c.test");
    wait_until(WAIT, "the unrouted name closed as sni_unknown", || {
        porxy.stderr().contains("reason=sni_unknown")
    });
    assert!(
        porxy
            .stderr()
            .contains("error=\"no route takes the server name \\\"c.test\\\"\""),
        "{}",
        porxy.stderr()
    );

    // Half a ClientHello, then nothing: cut off at tls_handshake_timeout.
    let name = ServerName::try_from("a.test").unwrap();
    let mut session = ClientConnection::new(backends.ca.client(&[]), name).unwrap();
    let mut hello = Vec::new();
    session.write_tls(&mut hello).unwrap();
    let mut stalled = connect(tunnel);
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(rest.is_empty());
    let handshake_closes = || porxy.stderr().matches("reason=tls_handshake").count();
    wait_until(WAIT, "the stalled client closed as tls_handshake", || {
        handshake_closes() >= 2
    });
    assert!(
        porxy
            .stderr()
            .contains("error=\"TLS ClientHello: not complete within the timeout\""),
        "{}",
        porxy.stderr()
    );

    let (_, greeting) = greeted(&backends.ca, tunnel, "a.test");
    assert_eq!(greeting, b'A', "others go on");
}

/// The routes of a config file name its backends; `*` takes clients that send no name.
#[test]
fn routes_from_a_config_file_take_clients_without_a_name_to_the_default() {
    let backends = backends();
    let dir = crate::support::process::TempDir::new();
    let config = format!(
        r#"
[backends.a]
address = "{a}"
[backends.c]
address = "{c}"

[listeners.edge]
listen = "127.0.0.1:0"
backends = ["a", "c"]
[listeners.edge.sni_routes]
"a.test" = ["a"]
"*" = ["c"]
"#,
        a = backends.a.addr(),
        c = backends.c.addr()
    );
    let path = dir.write("porxy.toml", &config);
    let porxy = Porxy::start(&["--config", path.to_str().unwrap()]);
    let tunnel = porxy.tunnel("edge");
    let (_, greeting) = greeted(&backends.ca, tunnel, "a.test");
    assert_eq!(greeting, b'A');
    // A client that names no server (an IP address is no SNI): the default route, whose
    // certificate also holds the name the client checks.
    let mut config = (*backends.ca.client(&[])).clone();
    config.enable_sni = false;
    let mut client = connect_with(Arc::new(config), tunnel, "other.test").expect("a session");
    let mut greeting = [0u8; 1];
    client.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"C");
}
