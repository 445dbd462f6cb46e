//! TLS fixtures: a test certificate authority that signs server certificates for given names,
//! written as PEM files for porxy and for real clients (`openssl s_client`, `curl --cacert`),
//! and a rustls client for in-process checks of exact bytes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::client::set_timeouts;
use super::process::TempDir;

/// A certificate authority of the test's own, its files in a temporary directory.
pub struct TestCa {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    /// The CA certificate's PEM file, for clients to trust.
    pub ca_pem: PathBuf,
}

/// A server certificate and key, as files.
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "porxy test CA");
        let cert = params.self_signed(&key).expect("the CA certificate");
        let dir = TempDir::new();
        let ca_pem = dir.write("ca.pem", &cert.pem());
        TestCa {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            dir,
            ca_pem,
        }
    }

    /// A certificate for `names` (DNS names, `*.` wildcards, or IP addresses) signed by this
    /// CA, written as `<file>.pem` and `<file>.key`.
    pub fn server(&self, file: &str, names: &[&str]) -> ServerCert {
        let key = KeyPair::generate().expect("a server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, file.to_string());
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        ServerCert {
            cert: self.dir.write(&format!("{file}.pem"), &cert.pem()),
            key: self.dir.write(&format!("{file}.key"), &key.serialize_pem()),
        }
    }

    /// A client certificate for `name` signed by this CA, written as `<file>.pem` and
    /// `<file>.key`.
    pub fn client_cert(&self, file: &str, name: &str) -> ServerCert {
        let key = KeyPair::generate().expect("a client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a client certificate");
        ServerCert {
            cert: self.dir.write(&format!("{file}.pem"), &cert.pem()),
            key: self.dir.write(&format!("{file}.key"), &key.serialize_pem()),
        }
    }

    /// A rustls client that trusts this CA, offering `alpn`.
    pub fn client(&self, alpn: &[&str]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("the CA as a root");
        #[allow(deprecated)] // The ring provider: see porxy-core's tls module.
        let provider = rustls::crypto::ring::default_provider();
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }

    /// A blocking TLS connection to `addr` for `server_name`, handshake done.
    pub fn connect(&self, addr: SocketAddr, server_name: &str) -> TlsClient {
        connect_with(self.client(&[]), addr, server_name).expect("a TLS connection")
    }
}

/// A blocking TLS client stream.
pub type TlsClient = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr` with `config` for `server_name`, its handshake done (or why not).
pub fn connect_with(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
) -> io::Result<TlsClient> {
    let name = ServerName::try_from(server_name.to_string()).expect("a server name");
    let session = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let tcp = super::client::connect(addr);
    set_timeouts(&tcp);
    let mut stream = StreamOwned::new(session, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// Sends `close_notify`, then ends the TCP write side: the TLS half-close.
pub fn half_close(stream: &mut TlsClient) {
    stream.conn.send_close_notify();
    stream.flush().expect("flush the close_notify");
    stream
        .sock
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown write");
}

/// Reads plaintext until the server's close_notify; an error (a truncated stream) fails.
pub fn read_to_close_notify(stream: &mut TlsClient) -> Vec<u8> {
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .expect("read to the server's close_notify");
    got
}

/// A backend that speaks TLS with `cert`: it sends `greeting`, then echoes until the client's
/// close_notify, then sends its own.
pub fn tls_backend(cert: &ServerCert, greeting: &'static [u8]) -> super::Backend {
    tls_backend_with(cert, None, greeting)
}

/// [`tls_backend`] that requires a client certificate `clients` signed, if given.
pub fn tls_backend_with(
    cert: &ServerCert,
    clients: Option<&TestCa>,
    greeting: &'static [u8],
) -> super::Backend {
    super::Backend::start(tls_greeting_echo(cert, clients, greeting))
}

/// What [`tls_backend_with`] does with each connection: for a backend started another way
/// (one revived on a held port).
pub fn tls_greeting_echo(
    cert: &ServerCert,
    clients: Option<&TestCa>,
    greeting: &'static [u8],
) -> impl Fn(TcpStream, &super::backend::Ctx) + Send + Sync + 'static {
    let config = server_config(cert, clients, &[]);
    move |stream, _| {
        let Ok(session) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        let mut tls = StreamOwned::new(session, stream);
        if tls.write_all(greeting).is_err() {
            return;
        }
        echo_to_close_notify(&mut tls);
    }
}

/// A TLS backend with `cert` that takes the protocols `alpn` offers and greets each client
/// with the one agreed (`-` for none) and a newline, then echoes.
pub fn tls_alpn_backend(cert: &ServerCert, alpn: &[&str]) -> super::Backend {
    let config = server_config(cert, None, alpn);
    super::Backend::start(move |stream, _| {
        let Ok(session) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        let mut tls = StreamOwned::new(session, stream);
        while tls.conn.is_handshaking() {
            if tls.conn.complete_io(&mut tls.sock).is_err() {
                return;
            }
        }
        let agreed = tls.conn.alpn_protocol().unwrap_or(b"-").to_vec();
        if tls.write_all(&[&agreed[..], b"\n"].concat()).is_err() {
            return;
        }
        echo_to_close_notify(&mut tls);
    })
}

/// Echoes a server session until the client's close_notify, then sends its own.
fn echo_to_close_notify(tls: &mut StreamOwned<rustls::ServerConnection, TcpStream>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tls.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// A server configuration with `cert`, asking for client certificates `clients` signed (if
/// given), taking the protocols in `alpn`.
fn server_config(
    cert: &ServerCert,
    clients: Option<&TestCa>,
    alpn: &[&str],
) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;

    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
        .expect("the chain file")
        .collect::<Result<_, _>>()
        .expect("the chain");
    let key = PrivateKeyDer::from_pem_file(&cert.key).expect("the key");
    #[allow(deprecated)] // The ring provider: see porxy-core's tls module.
    let provider = rustls::crypto::ring::default_provider();
    let provider = Arc::new(provider);
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der.clone()).expect("the clients' CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .expect("a server configuration");
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}
