//! A TLS client's ClientHello, looked at without being taken: a listener that routes by server
//! name (`sni_routes`) reads the name its client asks for from the first bytes of the stream,
//! which it peeks, and then relays those bytes untouched to the backend it picks. Parsing is
//! rustls's own ([`rustls::server::Acceptor`]), given a copy of the bytes; the TLS session is
//! never decrypted and porxy holds no key for it.

use std::fmt;

use rustls::server::Acceptor;

use crate::conn::close::CloseReason;
use crate::conn::opening::{Parsed, Preamble};

/// The most bytes a ClientHello may take, records and all: a browser's, with post-quantum key
/// shares, is under 2 KiB; one with large PSK identities may take a few more. A client that
/// sends more without completing one is refused.
pub(crate) const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// Reads the server name from a ClientHello at the start of the stream, consuming nothing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientHelloPeek;

/// Why the start of a stream is not a ClientHello.
#[derive(Debug)]
struct NotClientHello(String);

impl fmt::Display for NotClientHello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a TLS ClientHello: {}", self.0)
    }
}

impl std::error::Error for NotClientHello {}

impl Preamble for ClientHelloPeek {
    fn max_len(&self) -> usize {
        MAX_CLIENT_HELLO
    }

    fn name(&self) -> &'static str {
        "TLS ClientHello"
    }

    fn parse(&self, received: &[u8]) -> Parsed {
        let invalid = |why: String| Parsed::Invalid(Box::new(NotClientHello(why)));
        let mut acceptor = Acceptor::default();
        let mut rest = received;
        // Bounded: each round takes at least a byte, or ends.
        while !rest.is_empty() {
            match acceptor.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return invalid(e.to_string()),
            }
        }
        match acceptor.accept() {
            Ok(None) => Parsed::Incomplete,
            Ok(Some(accepted)) => Parsed::Complete {
                // The ClientHello is the stream's own: it stays for the backend.
                len: 0,
                source: None,
                details: None,
                server_name: accepted.client_hello().server_name().map(str::to_owned),
            },
            Err((error, _alert)) => invalid(error.to_string()),
        }
    }

    fn failure_reason(&self) -> CloseReason {
        CloseReason::TlsHandshake
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;

    /// The ClientHello a rustls client sends for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let config = ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut client = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        hello
    }

    #[test]
    fn the_name_is_read_and_nothing_taken() {
        let hello = client_hello("a.example.test");
        let Parsed::Complete {
            len, server_name, ..
        } = ClientHelloPeek.parse(&hello)
        else {
            panic!("not complete");
        };
        assert_eq!(len, 0);
        assert_eq!(server_name.as_deref(), Some("a.example.test"));
    }

    #[test]
    fn a_hello_in_pieces_is_incomplete_until_whole() {
        let hello = client_hello("a.example.test");
        for cut in [1, 5, 6, hello.len() / 2, hello.len() - 1] {
            assert!(
                matches!(ClientHelloPeek.parse(&hello[..cut]), Parsed::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_ip_address_is_no_name_and_garbage_is_refused() {
        let hello = client_hello("192.0.2.1");
        assert!(matches!(
            ClientHelloPeek.parse(&hello),
            Parsed::Complete {
                server_name: None,
                ..
            }
        ));
        let Parsed::Invalid(error) = ClientHelloPeek.parse(b"GET / HTTP/1.1\r\n\r\n") else {
            panic!("garbage taken");
        };
        assert!(
            error.to_string().starts_with("not a TLS ClientHello"),
            "{error}"
        );
    }
}
