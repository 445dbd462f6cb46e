//! TLS toward backends, backend by backend: ALPN (a plain listener offers its backends the
//! tunnel's `tls_alpn`; a listener that terminates TLS offers each backend the one protocol
//! its client chose, since the backend gets that client's bytes), and the settings a backend
//! of the config file gives itself.

use std::io::{BufRead, BufReader, Read};

use crate::support::client::connect;
use crate::support::process::Porxy;
use crate::support::tls::{connect_with, tls_alpn_backend, TestCa};

/// The first line a stream sends.
fn first_line(stream: impl Read) -> String {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).expect("a line");
    line
}

#[test]
fn a_plain_listener_offers_its_backends_the_tunnels_protocols() {
    let ca = TestCa::new();
    let backend = tls_alpn_backend(&ca.server("b", &["backend.test"]), &["h2", "http/1.1"]);
    let spec = format!(
        "127.0.0.1:0={}[backend_tls=on,tls_ca={},tls_server_name=backend.test,tls_alpn=http/1.1]",
        backend.addr(),
        ca.ca_pem.display()
    );
    let porxy = Porxy::start(&["--tunnel", &spec]);
    assert_eq!(first_line(connect(porxy.tunnel("cli-1"))), "http/1.1\n");
}

#[test]
fn a_terminating_listener_offers_each_backend_what_its_client_chose() {
    let ca = TestCa::new();
    let site = ca.server("site", &["site.test"]);
    let backend = tls_alpn_backend(&ca.server("b", &["backend.test"]), &["h2", "http/1.1"]);
    let spec = format!(
        "127.0.0.1:0={}[tls_cert={},tls_key={},tls_alpn=h2;http/1.1,\
         backend_tls=on,tls_ca={},tls_server_name=backend.test]",
        backend.addr(),
        site.cert.display(),
        site.key.display(),
        ca.ca_pem.display()
    );
    let porxy = Porxy::start(&["--tunnel", &spec]);
    let tunnel = porxy.tunnel("cli-1");
    for (offered, agreed) in [
        (&["http/1.1"][..], "http/1.1\n"),
        (&["h2", "http/1.1"][..], "h2\n"),
        (&[][..], "-\n"),
    ] {
        let client = connect_with(ca.client(offered), tunnel, "site.test").expect("a session");
        let chose = client.conn.alpn_protocol().map(|p| p.to_vec());
        assert_eq!(
            first_line(client),
            agreed,
            "the backend agreed on what the client chose ({chose:?})"
        );
    }
}

/// Backends with TLS settings of their own (`[backends.NAME] tls = true`, their own CA and
/// name) beside a plain one, in one listener: each is spoken to as it says.
#[test]
fn each_backend_of_a_config_file_speaks_tls_as_it_says() {
    let (one_ca, two_ca) = (TestCa::new(), TestCa::new());
    let one = crate::support::tls::tls_backend(&one_ca.server("one", &["one.test"]), b"1");
    let two = crate::support::tls::tls_backend(&two_ca.server("two", &["two.test"]), b"2");
    let plain = crate::support::Backend::greeting_echo(b"P");
    let dir = crate::support::process::TempDir::new();
    let config = format!(
        r#"
[backends.one]
address = "{one}"
tls = true
tls_ca = "{one_ca}"
tls_server_name = "one.test"

[backends.two]
address = "{two}"
tls = true
tls_ca = "{two_ca}"
tls_server_name = "two.test"

[backends.plain]
address = "{plain}"

[listeners.mixed]
listen = "127.0.0.1:0"
backends = ["one", "two", "plain"]
"#,
        one = one.addr(),
        two = two.addr(),
        plain = plain.addr(),
        one_ca = one_ca.ca_pem.display(),
        two_ca = two_ca.ca_pem.display(),
    );
    let path = dir.write("porxy.toml", &config);
    let porxy = Porxy::start(&["--config", path.to_str().unwrap()]);
    let mut greetings: Vec<u8> = (0..3)
        .map(|_| {
            let mut greeting = [0u8; 1];
            connect(porxy.tunnel("mixed"))
                .read_exact(&mut greeting)
                .unwrap();
            greeting[0]
        })
        .collect();
    greetings.sort();
    assert_eq!(greetings, b"12P", "each backend reached, as it speaks");

    // A backend's TLS setting where porxy speaks no TLS to it is refused, with the reason.
    let refused = dir.write(
        "refused.toml",
        &config.replace("tls = true\ntls_ca = \"", "tls_ca = \""),
    );
    let out = crate::support::process::run(
        &["--config", refused.to_str().unwrap(), "--check"],
        std::time::Duration::from_secs(10),
    );
    assert!(
        out.stderr
            .contains("has a TLS setting of its own (`tls_ca`) but porxy does not speak TLS to it"),
        "{}",
        out.stderr
    );
}
