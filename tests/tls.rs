//! TLS termination: porxy's listener speaks TLS with its clients (real ones: `openssl
//! s_client`, curl, and an in-process rustls client for exact bytes) and plaintext with its
//! backends.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::backend::read_through;
use crate::support::client::connect;
use crate::support::payload::bytes;
use crate::support::process::Porxy;
use crate::support::tls::{half_close, read_to_close_notify, ServerCert, TestCa};
use crate::support::{wait_until, Backend};

const WAIT: Duration = Duration::from_secs(10);

/// porxy with one tunnel to `backend` terminating TLS with `cert`, and `options` besides.
fn tls_porxy(backend: SocketAddr, cert: &ServerCert, options: &str) -> Porxy {
    let spec = format!(
        "127.0.0.1:0={backend}[tls_cert={},tls_key={}{options}]",
        cert.cert.display(),
        cert.key.display()
    );
    Porxy::start(&[
        "--tunnel",
        &spec,
        "--log",
        "warn,porxy_core::reactor::close_log=debug",
    ])
}

/// Runs `openssl s_client` against `addr` with `args`, `input` on its stdin; its stdout and
/// stderr together, and whether it exited 0.
fn s_client(addr: SocketAddr, args: &[&str], input: &[u8]) -> (String, bool) {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client (the openssl package)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().expect("s_client's output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (text, output.status.success())
}

/// A new TLS client of `tunnel` (for `a.test`) sends `msg` and gets it back from the backend:
/// the listener still serves.
fn tls_round_trip(ca: &TestCa, tunnel: SocketAddr, msg: &[u8]) {
    let mut client = ca.connect(tunnel, "a.test");
    client.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    client.read_exact(&mut back).unwrap();
    assert_eq!(back, msg, "served through TLS");
}

/// A backend that sends back the first line it gets, then ends its stream: porxy passes the
/// end on as its close_notify, and s_client (`-ign_eof`) exits.
fn line_then_close() -> Backend {
    Backend::start(|mut stream, _| {
        if let Some(line) = read_through(&mut stream, b"\n", 1024) {
            let _ = stream.write_all(&line);
        }
    })
}

#[test]
fn openssl_s_client_is_relayed_through_a_tls_listener() {
    let ca = TestCa::new();
    let cert = ca.server("a", &["a.test"]);
    let backend = line_then_close();
    let porxy = tls_porxy(backend.addr(), &cert, "");
    let ca_file = ca.ca_pem.to_str().unwrap();
    let (out, ok) = s_client(
        porxy.tunnel("cli-1"),
        &[
            "-servername",
            "a.test",
            "-CAfile",
            ca_file,
            "-verify_return_error",
            "-ign_eof",
        ],
        b"hello through TLS\n",
    );
    assert!(ok, "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(
        out.contains("hello through TLS\n"),
        "the echo came back: {out}"
    );
    assert!(
        out.contains("subject=CN=a") || out.contains("subject=CN = a"),
        "{out}"
    );
}

#[test]
fn alpn_and_the_oldest_version_are_the_listeners() {
    let ca = TestCa::new();
    let cert = ca.server("a", &["a.test"]);
    let backend = Backend::echo();
    let porxy = tls_porxy(
        backend.addr(),
        &cert,
        ",tls_alpn=h2;http/1.1,tls_min_version=1.3",
    );
    let tunnel = porxy.tunnel("cli-1");
    let ca_file = ca.ca_pem.to_str().unwrap();
    let (out, ok) = s_client(
        tunnel,
        &[
            "-servername",
            "a.test",
            "-CAfile",
            ca_file,
            "-alpn",
            "http/1.1,h2",
        ],
        b"",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("ALPN protocol: h2"),
        "the listener's choice first: {out}"
    );
    assert!(out.contains("TLSv1.3"), "{out}");
    let (out, ok) = s_client(tunnel, &["-servername", "a.test", "-tls1_2"], b"");
    assert!(!ok, "TLS 1.2 is refused with tls_min_version=1.3: {out}");
    wait_until(WAIT, "the failed handshake logged", || {
        porxy.stderr().contains("reason=tls_handshake")
    });
}

#[test]
fn curl_gets_its_reply_through_a_tls_listener() {
    let ca = TestCa::new();
    let cert = ca.server("web", &["web.test"]);
    let backend = Backend::start(|mut stream, _| {
        if read_through(&mut stream, b"\r\n\r\n", 8192).is_none() {
            return;
        }
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nhello, curl!\n",
        );
    });
    let porxy = tls_porxy(backend.addr(), &cert, "");
    let port = porxy.tunnel("cli-1").port();
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .arg("--cacert")
        .arg(&ca.ca_pem)
        .arg("--resolve")
        .arg(format!("web.test:{port}:127.0.0.1"))
        .arg(format!("https://web.test:{port}/"))
        .output()
        .expect("curl");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"hello, curl!\n");
}

/// A mebibyte each way, then a half-close from the client: every byte comes back exactly,
/// and the client's close_notify reaches the backend as its end of stream, the backend's end
/// as porxy's close_notify.
#[test]
fn a_mebibyte_each_way_with_half_close_is_exact() {
    let ca = TestCa::new();
    let cert = ca.server("a", &["a.test"]);
    let backend = Backend::echo();
    let porxy = tls_porxy(backend.addr(), &cert, "");
    let mut client = ca.connect(porxy.tunnel("cli-1"), "a.test");
    let payload = bytes(7, 1 << 20);
    // A chunk written, its echo read: one session, and no buffer on the way ever fills.
    let mut echoed = Vec::with_capacity(payload.len());
    for chunk in payload.chunks(64 * 1024) {
        client.write_all(chunk).unwrap();
        let mut back = vec![0u8; chunk.len()];
        client.read_exact(&mut back).unwrap();
        echoed.extend_from_slice(&back);
    }
    assert!(echoed == payload, "every byte back, in order");
    half_close(&mut client);
    assert_eq!(read_to_close_notify(&mut client), b"", "a clean TLS end");
    wait_until(WAIT, "the close counted as completed", || {
        porxy.stderr().contains("reason=completed")
    });
    assert!(
        !porxy.stderr().contains("splice"),
        "a TLS connection copies from the start: {}",
        porxy.stderr()
    );
}

/// Not TLS, or a client that stops mid-handshake: closed with their reason, and the listener
/// goes on serving.
#[test]
fn a_bad_handshake_closes_with_its_reason_and_others_go_on() {
    let ca = TestCa::new();
    let cert = ca.server("a", &["a.test"]);
    let backend = Backend::echo();
    let porxy = tls_porxy(backend.addr(), &cert, ",tls_handshake_timeout=500ms");
    let tunnel = porxy.tunnel("cli-1");
    let mut garbage = connect(tunnel);
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = garbage.read_to_end(&mut rest);
    assert!(
        !rest.windows(4).any(|w| w == b"HTTP"),
        "nothing of a backend came back: {rest:?}"
    );
    let silent = connect(tunnel);
    wait_until(WAIT, "both refusals logged", || {
        porxy.stderr().matches("reason=tls_handshake").count() >= 2
    });
    drop(silent);
    let err = porxy.stderr();
    assert!(
        err.contains("error=\"handshake: received corrupt message")
            && err.contains("error=\"handshake: not complete within the timeout\""),
        "each close says why: {err}"
    );
    assert_eq!(backend.accepted(), 0, "no backend was touched");
    tls_round_trip(&ca, tunnel, b"still serving");
}

/// Three certificates in `[[listeners.NAME.tls.certs]]`: the client's SNI picks the exact one,
/// else the wildcard one, else the first (the default), as `openssl s_client` sees it.
#[test]
fn sni_picks_the_exact_then_the_wildcard_then_the_default_certificate() {
    let ca = TestCa::new();
    let default = ca.server("default", &["default.test"]);
    let wild = ca.server("wild", &["*.example.test"]);
    let exact = ca.server("exact", &["www.example.test"]);
    let backend = line_then_close();
    let dir = crate::support::process::TempDir::new();
    let pair = |c: &ServerCert| {
        format!(
            "[[listeners.site.tls.certs]]\ncert = \"{}\"\nkey = \"{}\"\n",
            c.cert.display(),
            c.key.display()
        )
    };
    let config = dir.write(
        "porxy.toml",
        &format!(
            "[backends.app]\naddress = \"{}\"\n\n\
             [listeners.site]\nlisten = \"127.0.0.1:0\"\nbackends = [\"app\"]\n\n{}{}{}",
            backend.addr(),
            pair(&default),
            pair(&wild),
            pair(&exact)
        ),
    );
    let porxy = Porxy::start(&["--config", config.to_str().unwrap()]);
    let site = porxy.tunnel("site");
    let ca_file = ca.ca_pem.to_str().unwrap();
    for (name, subject) in [
        ("www.example.test", "exact"),
        ("api.example.test", "wild"),
        ("default.test", "default"),
        ("unknown.test", "default"),
    ] {
        let (out, _) = s_client(
            site,
            &["-servername", name, "-CAfile", ca_file, "-ign_eof"],
            b"ping\n",
        );
        assert!(
            out.contains(&format!("subject=CN={subject}"))
                || out.contains(&format!("subject=CN = {subject}")),
            "{name} should get {subject}: {out}"
        );
        assert!(out.contains("ping\n"), "{out}");
    }
}

/// A certificate that has expired, or a key that is not its certificate's, is refused at start
/// with the file and the reason: nothing listens.
#[test]
fn a_bad_certificate_is_refused_at_start_with_its_file() {
    let ca = TestCa::new();
    let good = ca.server("good", &["a.test"]);
    let other = ca.server("other", &["b.test"]);
    let spec = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "127.0.0.1:0=127.0.0.1:9[tls_cert={},tls_key={}]",
            cert.display(),
            key.display()
        )
    };
    let finished = crate::support::process::run(&["--tunnel", &spec(&good.cert, &other.key)], WAIT);
    assert_eq!(finished.code, Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.contains(&format!(
            "{} does not go with {}",
            other.key.display(),
            good.cert.display()
        )),
        "{}",
        finished.stderr
    );
    let missing = good.cert.with_file_name("missing.pem");
    let finished = crate::support::process::run(&["--tunnel", &spec(&missing, &good.key)], WAIT);
    assert_eq!(finished.code, Some(1));
    assert!(
        finished.stderr.contains(&missing.display().to_string()),
        "{}",
        finished.stderr
    );
}

/// Mutual TLS: with `tls_client_ca`, a client showing a certificate that CA signed is
/// served, one showing none or another CA's is refused in its handshake (`tls_handshake`),
/// unless `tls_client_auth=optional` lets one without a certificate in.
#[test]
fn client_certificates_are_required_or_optional() {
    let ca = TestCa::new();
    let server = ca.server("a", &["a.test"]);
    let clients = TestCa::new();
    let alice = clients.client_cert("alice", "alice");
    let other_ca = TestCa::new();
    let stranger = other_ca.client_cert("mallory", "mallory");
    let backend = line_then_close();
    let ca_file = ca.ca_pem.to_str().unwrap();
    let client_ca = format!(",tls_client_ca={}", clients.ca_pem.display());
    let with = |cert: &ServerCert| {
        vec![
            "-cert".to_string(),
            cert.cert.display().to_string(),
            "-key".to_string(),
            cert.key.display().to_string(),
        ]
    };
    let talk = |porxy: &Porxy, extra: &[String]| {
        let mut args = vec!["-servername", "a.test", "-CAfile", ca_file, "-ign_eof"];
        args.extend(extra.iter().map(String::as_str));
        let (out, _) = s_client(porxy.tunnel("cli-1"), &args, b"mutual\n");
        out.contains("mutual\n")
    };

    let required = tls_porxy(backend.addr(), &server, &client_ca);
    assert!(
        talk(&required, &with(&alice)),
        "alice's certificate verifies"
    );
    assert!(!talk(&required, &[]), "no certificate: refused");
    assert!(!talk(&required, &with(&stranger)), "another CA's: refused");
    wait_until(WAIT, "the refusals logged", || {
        required.stderr().matches("reason=tls_handshake").count() >= 2
    });

    let optional = tls_porxy(
        backend.addr(),
        &server,
        &format!("{client_ca},tls_client_auth=optional"),
    );
    assert!(talk(&optional, &[]), "no certificate: let in");
    assert!(talk(&optional, &with(&alice)));
    assert!(!talk(&optional, &with(&stranger)), "one shown must verify");
}

/// Bad input in the handshake: a record announcing more than TLS allows, and a flood of
/// clients sending garbage at once. Each is closed with its reason; a good client is served
/// meanwhile and after.
#[test]
fn oversized_records_and_a_flood_of_bad_handshakes_leave_the_listener_serving() {
    let ca = TestCa::new();
    let cert = ca.server("a", &["a.test"]);
    let backend = Backend::echo();
    let porxy = tls_porxy(backend.addr(), &cert, ",tls_handshake_timeout=2s");
    let tunnel = porxy.tunnel("cli-1");
    let mut good = ca.connect(tunnel, "a.test");
    // A handshake record header announcing 65,535 bytes: more than a record may hold.
    let mut oversized = connect(tunnel);
    oversized
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff])
        .unwrap();
    // Refused on its header, the client may be reset before the rest is written.
    let _ = oversized.write_all(&[0u8; 1024]);
    let mut rest = Vec::new();
    let _ = oversized.read_to_end(&mut rest);
    let flood: Vec<_> = (0..100u8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut stream = connect(tunnel);
                let _ = stream.write_all(&[0x16, 0x03, 0x03, 0x00, 0x10, i, 0xff, 0x00]);
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
            })
        })
        .collect();
    for client in flood {
        client.join().unwrap();
    }
    good.write_all(b"after the flood").unwrap();
    let mut back = [0u8; 15];
    good.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"after the flood");
    wait_until(WAIT, "every bad handshake closed", || {
        porxy.stderr().matches("reason=tls_handshake").count() >= 1
    });
    assert_eq!(
        backend.accepted(),
        1,
        "only the good client reached a backend"
    );
}

/// The certificate a TLS connection got, as its DER bytes.
fn served_certificate(client: &crate::support::tls::TlsClient) -> Vec<u8> {
    client
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| der.to_vec())
        .expect("the server's certificate")
}

/// A reload reads the certificate files again: new handshakes get the new certificate, an
/// established connection goes on with its session; a broken file is refused with the reason
/// and changes nothing.
#[test]
fn a_reload_takes_new_certificates_for_new_handshakes_only() {
    let ca = TestCa::new();
    let first = ca.server("first", &["a.test"]);
    let second = ca.server("second", &["a.test"]);
    let backend = Backend::echo();
    let dir = crate::support::process::TempDir::new();
    let (cert, key) = (dir.path().join("site.pem"), dir.path().join("site.key"));
    let install = |from: &ServerCert| {
        std::fs::copy(&from.cert, &cert).unwrap();
        std::fs::copy(&from.key, &key).unwrap();
    };
    install(&first);
    let config = dir.write(
        "porxy.toml",
        &format!(
            "[backends.app]\naddress = \"{}\"\n\n[listeners.site]\nlisten = \"127.0.0.1:0\"\n\
             backends = [\"app\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            backend.addr(),
            cert.display(),
            key.display()
        ),
    );
    let porxy = Porxy::start(&[
        "--config",
        config.to_str().unwrap(),
        "--control",
        "127.0.0.1:0",
    ]);
    let site = porxy.tunnel("site");
    let mut control =
        crate::support::control::ControlClient::connect(porxy.control().unwrap().parse().unwrap());
    let mut before = ca.connect(site, "a.test");
    let first_der = served_certificate(&before);

    // New clients keep coming through the reload: every handshake and round trip succeeds,
    // with one certificate or the other.
    let (started_tx, started) = std::sync::mpsc::channel();
    let load = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let mut served = 0;
            for i in 0..60u32 {
                let msg = format!("load {i}\n");
                tls_round_trip(&ca, site, msg.as_bytes());
                served += 1;
                if i == 10 {
                    started_tx.send(()).unwrap();
                }
            }
            served
        });
        started.recv_timeout(WAIT).expect("the load under way");
        install(&second);
        let reply = control.cmd("RELOAD");
        assert!(reply.starts_with("OK reloaded"), "{reply}");
        load.join().expect("no client failed during the reload")
    });
    assert_eq!(load, 60);
    let after = ca.connect(site, "a.test");
    let second_der = served_certificate(&after);
    assert_ne!(
        first_der, second_der,
        "a new handshake gets the new certificate"
    );
    before.write_all(b"kept").unwrap();
    let mut back = [0u8; 4];
    before.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"kept", "the established session goes on");
    // Status shows the certificate now held, by its serial, and when it expires.
    let shown = status_serial(&mut control, &cert);
    assert_eq!(
        shown,
        openssl_serial(&second.cert),
        "status names the new one"
    );
    assert_ne!(shown, openssl_serial(&first.cert));

    std::fs::write(&key, "not a key\n").unwrap();
    let reply = control.cmd("RELOAD");
    assert!(
        reply.starts_with("ERR") && reply.contains(&key.display().to_string()),
        "{reply}"
    );
    let still = ca.connect(site, "a.test");
    assert_eq!(
        served_certificate(&still),
        second_der,
        "a refused reload changed nothing"
    );
}

/// The serial status shows for the listener's certificate read from `path`, in upper-case hex
/// without leading zeros (as openssl prints it); its line also says when it expires.
fn status_serial(
    control: &mut crate::support::control::ControlClient,
    path: &std::path::Path,
) -> String {
    let lines = control.block("STATUS FULL");
    let prefix = format!("  certificate listener {} ", path.display());
    let line = lines
        .iter()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no certificate line in {lines:?}"));
    assert!(line.contains(" names=a.test "), "{line}");
    assert!(line.contains(" not_after=4096-01-01T00:00:00Z "), "{line}");
    let serial = crate::support::control::field(line, "serial");
    serial.trim_start_matches('0').to_ascii_uppercase()
}

/// The serial of the certificate in `path`, as `openssl x509 -serial` prints it.
fn openssl_serial(path: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(path)
        .output()
        .expect("openssl x509");
    let text = String::from_utf8_lossy(&out.stdout);
    let serial = text.trim().strip_prefix("serial=").expect("serial=...");
    serial.trim_start_matches('0').to_ascii_uppercase()
}

/// porxy with one plain listener to TLS `backends`, with `options`.
fn to_tls_backends(backends: &[SocketAddr], options: &str) -> Porxy {
    let remotes: Vec<String> = backends.iter().map(|b| b.to_string()).collect();
    let spec = format!("127.0.0.1:0={}[backend_tls=on{options}]", remotes.join(","));
    Porxy::start(&[
        "--tunnel",
        &spec,
        "--log",
        "warn,porxy_core::reactor::close_log=debug",
    ])
}

/// Origination: a plain client, porxy speaking TLS to its backend: the backend's certificate
/// is verified against `tls_ca` for `tls_server_name`, and a quarter mebibyte each way comes
/// back exact, with the backend's close_notify passed on as the end of stream.
#[test]
fn tls_to_a_backend_is_verified_and_exact() {
    let ca = TestCa::new();
    let cert = ca.server("backend", &["backend.test"]);
    let backend = crate::support::tls::tls_backend(&cert, b"T");
    let options = format!(
        ",tls_ca={},tls_server_name=backend.test",
        ca.ca_pem.display()
    );
    let porxy = to_tls_backends(&[backend.addr()], &options);
    let mut client = connect(porxy.tunnel("cli-1"));
    let mut greeting = [0u8; 1];
    client.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"T");
    let payload = bytes(9, 256 * 1024);
    for chunk in payload.chunks(32 * 1024) {
        client.write_all(chunk).unwrap();
        let mut back = vec![0u8; chunk.len()];
        client.read_exact(&mut back).unwrap();
        assert!(back == chunk, "exact bytes");
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let ending = crate::support::client::read_until_end(&mut client);
    assert_eq!(ending.end, crate::support::client::End::Eof);
    assert!(ending.bytes.is_empty());
}

/// A backend whose certificate does not verify (a name it is not for, a CA not trusted) fails
/// its connect like a refused one: the next backend serves the client. With no good backend
/// the client is reset (`upstream_tls`); `tls_verify=off` takes any certificate.
#[test]
fn a_backend_certificate_that_does_not_verify_fails_over() {
    let ca = TestCa::new();
    let wrong_name = ca.server("wrong", &["wrong.test"]);
    let good = ca.server("good", &["backend.test"]);
    let stranger_ca = TestCa::new();
    let stranger = stranger_ca.server("stranger", &["backend.test"]);
    let (a, b) = (
        crate::support::tls::tls_backend(&wrong_name, b"A"),
        crate::support::tls::tls_backend(&good, b"B"),
    );
    let trusted = format!(
        ",tls_ca={},tls_server_name=backend.test,strategy=first",
        ca.ca_pem.display()
    );
    let porxy = to_tls_backends(&[a.addr(), b.addr()], &trusted);
    let mut client = connect(porxy.tunnel("cli-1"));
    let mut greeting = [0u8; 1];
    client.read_exact(&mut greeting).unwrap();
    assert_eq!(
        &greeting, b"B",
        "the wrong name failed over to the good backend"
    );

    let c = crate::support::tls::tls_backend(&stranger, b"C");
    let only_stranger = to_tls_backends(&[c.addr()], &trusted.replace(",strategy=first", ""));
    let mut client = connect(only_stranger.tunnel("cli-1"));
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "nothing of an unverified backend reached the client"
    );
    wait_until(WAIT, "the failed TLS connect logged", || {
        only_stranger.stderr().contains("reason=upstream_tls")
    });

    let unverified = to_tls_backends(&[c.addr()], ",tls_verify=off");
    let mut client = connect(unverified.tunnel("cli-1"));
    client.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"C", "tls_verify=off takes any certificate");
    assert!(
        unverified.stderr().contains("tls_verify=off"),
        "and says so"
    );
}

/// A TLS 1.2 client asking to renegotiate is refused (rustls never renegotiates) without
/// harm: the session goes on or ends, and the listener serves other clients.
#[test]
fn a_renegotiation_attempt_is_refused_and_the_listener_goes_on() {
    let ca = TestCa::new();
    let cert = ca.server("a", &["a.test"]);
    let backend = line_then_close();
    let porxy = tls_porxy(backend.addr(), &cert, "");
    let tunnel = porxy.tunnel("cli-1");
    let ca_file = ca.ca_pem.to_str().unwrap();
    // `R` on a line of its own asks s_client to renegotiate.
    let (out, _) = s_client(
        tunnel,
        &["-servername", "a.test", "-CAfile", ca_file, "-tls1_2"],
        b"R\nafter\n",
    );
    assert!(out.contains("RENEGOTIATING"), "{out}");
    tls_round_trip(&ca, tunnel, b"others go on\n");
}

/// Origination to a real TLS server, `openssl s_server -rev` (it sends each line back
/// reversed), on a port the test found free on 127.0.0.1.
#[test]
fn tls_to_openssl_s_server() {
    let ca = TestCa::new();
    let cert = ca.server("backend", &["backend.test"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let server = Command::new("openssl")
        .args(["s_server", "-rev", "-quiet"])
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert.cert)
        .arg("-key")
        .arg(&cert.key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    // Stopped (by its PID, through the handle) whatever happens to the test.
    let _server = Stopped(server);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until(WAIT, "s_server to listen", || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
    });
    let options = format!(
        ",tls_ca={},tls_server_name=backend.test",
        ca.ca_pem.display()
    );
    let porxy = to_tls_backends(&[addr], &options);
    let mut client = connect(porxy.tunnel("cli-1"));
    client.write_all(b"hello s_server\n").unwrap();
    let mut back = [0u8; 15];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"revres_s olleh\n");
}

/// A child process killed and reaped when dropped.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A backend that requires a client certificate gets the one `backend_tls_cert` names; without
/// it, the backend refuses the session (in TLS 1.3 after porxy's side of the handshake is done,
/// so porxy learns it as the backend's reset) and the client gets nothing of it.
#[test]
fn a_backend_requiring_a_client_certificate_gets_porxys() {
    let ca = TestCa::new();
    let cert = ca.server("backend", &["backend.test"]);
    let clients = TestCa::new();
    let porxy_cert = clients.client_cert("porxy", "porxy");
    let backend = crate::support::tls::tls_backend_with(&cert, Some(&clients), b"M");
    let base = format!(
        ",tls_ca={},tls_server_name=backend.test",
        ca.ca_pem.display()
    );
    let with_cert = format!(
        "{base},backend_tls_cert={},backend_tls_key={}",
        porxy_cert.cert.display(),
        porxy_cert.key.display()
    );
    let porxy = to_tls_backends(&[backend.addr()], &with_cert);
    let mut client = connect(porxy.tunnel("cli-1"));
    client.write_all(b"x").unwrap();
    let mut back = [0u8; 2];
    client.read_exact(&mut back).unwrap();
    assert_eq!(
        &back, b"Mx",
        "greeted and echoed by the backend that checked porxy"
    );

    let without = to_tls_backends(&[backend.addr()], &base);
    let mut client = connect(without.tunnel("cli-1"));
    let _ = client.write_all(b"x");
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"M"),
        "no session without porxy's certificate: {got:?}"
    );
}

/// A TLS listener that sends PROXY v2 headers puts the server name the client asked for in
/// the header's authority TLV (type 0x02), ahead of the client's decrypted bytes.
#[test]
fn a_v2_header_sent_by_a_tls_listener_names_the_sni_as_its_authority() {
    let ca = TestCa::new();
    let cert = ca.server("a", &["a.test"]);
    let (report, reported) = std::sync::mpsc::channel();
    let backend = Backend::send_then_read(Vec::new(), report);
    let porxy = tls_porxy(backend.addr(), &cert, ",send_proxy=v2");
    let mut client = ca.connect(porxy.tunnel("cli-1"), "a.test");
    client.write_all(b"x").unwrap();
    half_close(&mut client);
    let got = reported
        .recv_timeout(WAIT)
        .expect("the backend's report")
        .expect("read to the end");
    assert!(
        got.starts_with(b"\r\n\r\n\0\r\nQUIT\n\x21\x11"),
        "a v2 PROXY TCP4 header: {got:?}"
    );
    let tlv = [&[0x02, 0x00, 0x06][..], b"a.test"].concat();
    assert!(
        got.windows(tlv.len()).any(|w| w == tlv.as_slice()),
        "the authority TLV: {got:?}"
    );
    assert!(got.ends_with(b"x"), "then the client's bytes");
    // The header's length field covers the addresses and the TLV: the stream starts right
    // after it.
    let len = u16::from_be_bytes([got[14], got[15]]) as usize;
    assert_eq!(&got[16 + len..], b"x");
}

/// The access log names what the TLS handshake said: the server name the client asked for
/// and the subject of the certificate it showed.
#[test]
fn the_access_log_names_the_server_name_and_the_client_certificate() {
    let ca = TestCa::new();
    let server = ca.server("a", &["a.test"]);
    let clients = TestCa::new();
    let alice = clients.client_cert("alice", "alice");
    let backend = line_then_close();
    let dir = crate::support::process::TempDir::new();
    let log = dir.path().join("access.json");
    let spec = format!(
        "127.0.0.1:0={}[tls_cert={},tls_key={},tls_client_ca={}]",
        backend.addr(),
        server.cert.display(),
        server.key.display(),
        clients.ca_pem.display()
    );
    let porxy = Porxy::start(&[
        "--tunnel",
        &spec,
        "--access-log",
        log.to_str().unwrap(),
        "--access-log-format",
        "json",
    ]);
    let args = [
        "-servername",
        "a.test",
        "-CAfile",
        ca.ca_pem.to_str().unwrap(),
        "-ign_eof",
        "-cert",
        alice.cert.to_str().unwrap(),
        "-key",
        alice.key.to_str().unwrap(),
    ];
    let (out, _) = s_client(porxy.tunnel("cli-1"), &args, b"mutual\n");
    assert!(out.contains("mutual\n"), "{out}");
    let mut record = String::new();
    wait_until(WAIT, "the connection's record", || {
        record = std::fs::read_to_string(&log).unwrap_or_default();
        record.lines().count() == 1
    });
    let record: serde_json::Value = serde_json::from_str(record.trim()).unwrap();
    assert_eq!(record["server_name"], "a.test");
    assert_eq!(record["tls_client_subject"], "CN=alice");
    assert_eq!(record["bytes_to_upstream"], 7);
    assert_eq!(record["bytes_to_client"], 7);
}
