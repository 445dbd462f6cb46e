//! ALPN toward TLS backends: a plain listener offers its backends the tunnel's `tls_alpn`; a
//! listener that terminates TLS offers each backend the one protocol its client chose, since
//! the backend gets that client's bytes.

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
