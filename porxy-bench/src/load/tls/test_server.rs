//! A TLS server for the TLS workloads' tests, standing in for a TLS-terminating proxy and the
//! backend behind it: it terminates TLS with a certificate made for the test (rustls's default
//! server: session cache and tickets) and serves the backend's services itself, one blocking
//! thread per connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::TlsClient;
use crate::backend::{ECHO, MESSAGE, ONCE, SINK, SOURCE, WHO};
use crate::certs;
use crate::setup::CertKey;

/// A running test server; its certificate's directory goes when it is dropped (the threads
/// run until the test process exits).
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// A client trusting its certificate.
    pub client: TlsClient,
    dir: PathBuf,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a server on 127.0.0.1:0 whose files are named after `test`.
pub fn start(test: &str) -> TestServer {
    let dir = std::env::temp_dir().join(format!("porxy-bench-tls-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let cert = certs::make(CertKey::EcdsaP256, &dir).expect("a certificate");
    let key = PrivateKeyDer::from_pem_file(&cert.key).expect("its key");
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], key)
        .expect("a server configuration");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("its address");
    thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            thread::spawn(move || serve(sock, config));
        }
    });
    TestServer {
        addr,
        client: TlsClient::trusting(&cert).expect("a client"),
        dir,
    }
}

/// One connection: the service its first plaintext byte names, as the backend's.
fn serve(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<()> {
    let _ = sock.set_nodelay(true);
    let mut tls = StreamOwned::new(
        ServerConnection::new(config).map_err(io::Error::other)?,
        sock,
    );
    let mut service = [0u8; 1];
    tls.read_exact(&mut service)?;
    let mut buf = vec![0u8; 64 * 1024];
    match service[0] {
        ECHO => loop {
            let n = tls.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            tls.write_all(&buf[..n])?;
            tls.flush()?;
        },
        SINK => while tls.read(&mut buf)? > 0 {},
        SOURCE => loop {
            tls.write_all(&buf)?;
        },
        ONCE => {
            tls.read_exact(&mut buf[..MESSAGE])?;
            tls.write_all(&buf[..MESSAGE])?;
        }
        WHO => tls.write_all(b"-\n")?,
        other => return Err(io::Error::other(format!("no service {other}"))),
    }
    // The server closes first, with a close_notify, as the backend behind a proxy does.
    tls.conn.send_close_notify();
    tls.flush()?;
    tls.sock.shutdown(Shutdown::Write)
}
