//! The check before a TLS kind is measured: a 64-byte echo through a TLS connection, then a
//! second connection with the same session store asking the backend's `W` service whether a
//! PROXY header came (none must). It also says what was negotiated (version, cipher suite,
//! key exchange group), so the report shows the three proxies did the same cryptography, and
//! whether the second handshake resumed the first's session: the resumed-handshake phase means
//! nothing for a proxy that never resumes, and the report must say so rather than hide it.
//!
//! In the SNI section the same check goes through the proxy to the TLS backend, then
//! [`probe_routes`] asks the backend's `P` service which of its ports a connection for each
//! name reached: a `-sni` kind must send [`SERVER_NAME`] to the routed port and
//! [`OTHER_NAME`] to the default one (else it would be measured routing nothing), its plain
//! self both to the routed port, its only one.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use rustls::{ClientConnection, HandshakeKind};

use super::{connect_blocking, connect_blocking_for, flush, read_exact, Resumption, TlsClient};
use crate::backend::{ECHO, MESSAGE, NO_HEADER, WHO};
use crate::certs::{OTHER_NAME, SERVER_NAME};
use crate::error::{Context, Error, Result};
use crate::tls_backend::{Port, PORT};

/// What the probe's connections negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// `TLSv1_3`, `TLSv1_2`.
    pub version: String,
    /// The cipher suite, as rustls names it.
    pub suite: String,
    /// The key exchange group.
    pub group: String,
    /// Whether the second connection resumed the first's session.
    pub resumed: bool,
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {}; {}",
            self.version,
            self.suite,
            self.group,
            if self.resumed {
                "a second connection resumed"
            } else {
                "a second connection did NOT resume"
            }
        )
    }
}

/// Checks the TLS listener at `addr` (see the module docs).
pub fn probe(addr: SocketAddr, client: &TlsClient) -> Result<Negotiated> {
    let config = client.config(Resumption::On)?;
    let (mut sock, mut tls) = connect_blocking(addr, &config)?;
    let mut request = vec![ECHO];
    request.extend_from_slice(&[b'p'; MESSAGE]);
    tls.writer().write_all(&request)?;
    flush(&mut sock, &mut tls)?;
    let mut reply = [0u8; MESSAGE];
    read_exact(&mut sock, &mut tls, &mut reply)?;
    if reply[..] != request[1..] {
        return Err(Error::new("the echo came back different"));
    }
    let (version, suite, group) = parameters(&tls);
    drop((sock, tls));

    let (mut sock, mut tls) = connect_blocking(addr, &config)?;
    let said = ask(&mut sock, &mut tls, WHO)?;
    if said.trim_end() != NO_HEADER {
        return Err(Error::new(format!(
            "the backend's W service said {said:?}: a TLS kind sends no PROXY header"
        )));
    }
    Ok(Negotiated {
        version,
        suite,
        group,
        resumed: tls.handshake_kind() == Some(HandshakeKind::Resumed),
    })
}

/// Checks an SNI section's setup at `addr`: [`probe`], then where each name's connection
/// arrived (see the module docs); `routing` for a `-sni` kind.
pub fn probe_routes(addr: SocketAddr, client: &TlsClient, routing: bool) -> Result<Negotiated> {
    let negotiated = probe(addr, client)?;
    let config = client.config(Resumption::Off)?;
    let other = if routing { Port::Default } else { Port::Routed };
    for (name, wanted) in [(SERVER_NAME, Port::Routed), (OTHER_NAME, other)] {
        let (mut sock, mut tls) = connect_blocking_for(addr, &config, name)?;
        let said = ask(&mut sock, &mut tls, PORT).context(|| format!("asking {name}'s port"))?;
        if said.trim_end() != wanted.name() {
            return Err(Error::new(format!(
                "a connection for {name} reached the TLS backend's {:?} port, not its {} port",
                said.trim_end(),
                wanted.name()
            )));
        }
    }
    Ok(negotiated)
}

/// Sends the service byte `service` and reads the whole answer, to the server's close.
fn ask(sock: &mut TcpStream, tls: &mut ClientConnection, service: u8) -> Result<String> {
    tls.writer().write_all(&[service])?;
    flush(sock, tls)?;
    let mut said = String::new();
    let mut stream = rustls::Stream::new(tls, sock);
    match stream.read_to_string(&mut said) {
        Ok(_) => {}
        // A close without close_notify after the whole answer: as good here.
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof && !said.is_empty() => {}
        Err(err) => return Err(err.into()),
    }
    Ok(said)
}

/// The version, cipher suite and key exchange group of an established session.
fn parameters(tls: &ClientConnection) -> (String, String, String) {
    let unknown = || "?".to_owned();
    (
        tls.protocol_version()
            .map_or_else(unknown, |v| format!("{v:?}")),
        tls.negotiated_cipher_suite()
            .map_or_else(unknown, |s| format!("{:?}", s.suite())),
        tls.negotiated_key_exchange_group()
            .map_or_else(unknown, |g| format!("{:?}", g.name())),
    )
}
