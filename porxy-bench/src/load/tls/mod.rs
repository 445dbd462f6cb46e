//! The load generator as a TLS client, for the `-tls` kinds and the SNI section: rustls with
//! the ring provider, trusting the run's certificate ([`crate::certs`]) as its only root, SNI
//! [`SERVER_NAME`], TLS 1.3 and 1.2 offered (1.3 first, as any client does), no ALPN. A
//! `-tls` kind terminates TLS and its backend gets the plaintext; in the SNI section the TLS
//! goes through the proxy untouched and the backend terminates it ([`crate::tls_backend`]).
//! Either way the plaintext after the handshake is the plain workloads' (a service byte, then
//! the requests).
//!
//! Full handshakes use a config with resumption off. Resumed handshakes use one with rustls's
//! default in-memory session store (it keeps up to 8 TLS 1.3 tickets per server name, each
//! used once; every handshake brings new ones), made fresh for each measurement: the proxies
//! share one name, and a ticket from a proxy measured before would cost the next a refused
//! ticket and a full handshake.

pub mod bulk;
pub mod handshakes;
pub mod idle;
pub mod probe;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption as SessionStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::connect;
use crate::certs::{Certificate, SERVER_NAME};
use crate::error::{Context, Error, Result};

/// How long a blocking handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a TLS section needs: the certificate the proxies serve, and a client trusting it.
pub struct Tls {
    /// The certificate and its files.
    pub cert: Certificate,
    /// The client side.
    pub client: TlsClient,
}

impl Tls {
    /// A client for `cert`.
    pub fn new(cert: Certificate) -> Result<Tls> {
        let client = TlsClient::trusting(&cert)?;
        Ok(Tls { cert, client })
    }
}

/// Whether a client offers the tickets of its earlier connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumption {
    /// Every handshake is a full one.
    Off,
    /// rustls's default: tickets kept and offered.
    On,
}

/// Makes client configurations that trust the run's certificate.
#[derive(Debug, Clone)]
pub struct TlsClient {
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
}

impl TlsClient {
    /// A client trusting `cert` alone.
    pub fn trusting(cert: &Certificate) -> Result<TlsClient> {
        let mut roots = RootCertStore::empty();
        roots
            .add(cert.der.clone())
            .context(|| format!("trusting {}", cert.cert.display()))?;
        // ring, as porxy uses: the proxies differ, the client does not. (Deprecated since
        // rustls 0.23.48 for lacking post-quantum key exchange.)
        #[allow(deprecated)]
        let mut provider = rustls::crypto::ring::default_provider();
        // This provider lists secp384r1 first, and a client sends its key share for its
        // first group only, which every server here takes: a P-384 key exchange costs an
        // OpenSSL server ~1 ms, several times a whole X25519 handshake. Browsers and curl
        // offer X25519 first; so does this client, with the same three groups.
        {
            use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
            provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
        }
        Ok(TlsClient {
            provider: Arc::new(provider),
            roots: Arc::new(roots),
        })
    }

    /// A fresh configuration: its own session store when resumption is on.
    pub fn config(&self, resumption: Resumption) -> Result<Arc<ClientConfig>> {
        let mut config = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .context(|| "the TLS client's protocol versions")?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_no_client_auth();
        config.resumption = match resumption {
            Resumption::Off => SessionStore::disabled(),
            Resumption::On => SessionStore::default(),
        };
        Ok(Arc::new(config))
    }
}

/// A client session for [`SERVER_NAME`].
pub fn session(config: &Arc<ClientConfig>) -> Result<ClientConnection> {
    session_for(config, SERVER_NAME)
}

/// A client session for `name` (the SNI section's check asks for another name too).
pub fn session_for(config: &Arc<ClientConfig>, name: &str) -> Result<ClientConnection> {
    let name = ServerName::try_from(name.to_owned())
        .map_err(|e| Error::new(format!("{name}: not a server name: {e}")))?;
    ClientConnection::new(Arc::clone(config), name).context(|| "starting a TLS client session")
}

/// A blocking TLS connection to `addr` for [`SERVER_NAME`], its handshake done; reads and
/// writes time out after [`HANDSHAKE_TIMEOUT`] until the caller sets other timeouts.
pub fn connect_blocking(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> Result<(TcpStream, ClientConnection)> {
    connect_blocking_for(addr, config, SERVER_NAME)
}

/// The same for the server name `name`.
pub fn connect_blocking_for(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
) -> Result<(TcpStream, ClientConnection)> {
    let mut sock = connect(addr).context(|| format!("connecting to {addr}"))?;
    sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    sock.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut tls = session_for(config, name)?;
    finish_handshake(&mut sock, &mut tls)
        .context(|| format!("TLS handshake with {addr} for {name}"))?;
    Ok((sock, tls))
}

/// Drives `tls`'s handshake on a blocking socket until it is done and its last flight (with
/// any plaintext written before) is sent.
pub fn finish_handshake(sock: &mut TcpStream, tls: &mut ClientConnection) -> Result<()> {
    while tls.is_handshaking() {
        let (read, written) = tls.complete_io(sock)?;
        if read == 0 && written == 0 && tls.is_handshaking() {
            return Err(Error::new("the server closed during the handshake"));
        }
    }
    flush(sock, tls)?;
    Ok(())
}

/// Writes everything `tls` holds for the server (blocking).
pub fn flush(sock: &mut TcpStream, tls: &mut ClientConnection) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(sock)?;
    }
    Ok(())
}

/// Reads exactly `buf.len()` plaintext bytes (blocking): what a small reply needs.
pub fn read_exact(sock: &mut TcpStream, tls: &mut ClientConnection, buf: &mut [u8]) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match io::Read::read(&mut tls.reader(), &mut buf[got..]) {
            Ok(0) => return Err(Error::new("the server closed the TLS session")),
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if tls.read_tls(sock)? == 0 {
                    return Err(Error::new("the server closed the connection"));
                }
                tls.process_new_packets()
                    .map_err(|e| Error::new(format!("TLS: {e}")))?;
                flush(sock, tls)?;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod test_server;

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::super::bulk::Direction;
    use super::super::{measure, Measure, Window, Worker};
    use super::*;
    use crate::sys::Cpus;

    /// Runs `workers` with a short window.
    fn run(workers: Vec<Worker>) -> Measure {
        let window = Window {
            warmup: Duration::from_millis(50),
            length: Duration::from_millis(150),
        };
        let never = AtomicBool::new(false);
        measure(workers, &Cpus::all(), window, None, None, &never).expect("measures")
    }

    #[test]
    fn the_probe_says_what_was_negotiated_and_that_it_resumed() {
        let server = test_server::start("probe");
        let negotiated = probe::probe(server.addr, &server.client).expect("probes");
        assert_eq!(negotiated.version, "TLSv1_3");
        assert_eq!(negotiated.group, "X25519", "the client offers X25519 first");
        assert!(negotiated.resumed, "{negotiated}");
    }

    #[test]
    fn handshakes_are_full_without_resumption_and_resumed_with_it() {
        let server = test_server::start("handshakes");
        let worker =
            |resumption| handshakes::worker(server.addr, server.client.clone(), resumption, 4);
        let full = run(vec![worker(Resumption::Off)]);
        assert!(full.work > 0);
        assert_eq!((full.errors, full.resumed), (0, Some(0)));
        let resumed = run(vec![worker(Resumption::On)]);
        // Each slot's first handshake is a full one, most likely in the warm-up.
        let share = resumed.resumed.expect("counted") as f64 / resumed.work as f64;
        assert!(resumed.errors == 0 && share > 0.5, "{resumed:?}");
    }

    #[test]
    fn bulk_moves_bytes_both_ways_and_idle_connections_stay_open() {
        let server = test_server::start("bulk");
        let config = || server.client.config(Resumption::Off).expect("a config");
        let up = run(vec![bulk::worker(server.addr, config(), Direction::Up)]);
        let down = run(vec![bulk::worker(server.addr, config(), Direction::Down)]);
        assert!(up.work > 0 && down.work > 0, "{up:?} {down:?}");
        let held = idle::open(server.addr, &config(), 70).expect("opens");
        assert_eq!(held.len(), 70);
    }

    #[test]
    fn the_tls_backend_serves_the_workloads_and_says_which_port_took_them() {
        let dir =
            std::env::temp_dir().join(format!("porxy-bench-tls-backend-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let cert = crate::certs::make_sni(&dir).expect("a certificate");
        let (routed, default) = crate::tls_backend::start_for_test(&cert.cert, &cert.key);
        let client = TlsClient::trusting(&cert).expect("a client");
        // Straight to its ports, with no proxy between: both names reach the port dialled.
        let negotiated = probe::probe_routes(routed, &client, false).expect("the routed port");
        assert!(negotiated.resumed, "{negotiated}");
        let wrong = probe::probe_routes(default, &client, false).expect_err("the default port");
        assert!(wrong.to_string().contains("\"default\" port"), "{wrong}");
        let config = || client.config(Resumption::Off).expect("a config");
        let full = run(vec![handshakes::worker(
            routed,
            client.clone(),
            Resumption::Off,
            4,
        )]);
        assert!(full.work > 0 && full.errors == 0, "{full:?}");
        let up = run(vec![bulk::worker(routed, config(), Direction::Up)]);
        let down = run(vec![bulk::worker(routed, config(), Direction::Down)]);
        assert!(up.work > 0 && down.work > 0, "{up:?} {down:?}");
        assert_eq!(idle::open(default, &config(), 70).expect("opens").len(), 70);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
