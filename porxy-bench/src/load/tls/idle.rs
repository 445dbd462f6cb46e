//! Idle TLS connections: open many, each with a full handshake and one 64-byte echo through it
//! (so the proxy has finished its handshake, connected upstream and relayed both ways), then
//! hold them without traffic.
//!
//! As the plain idle connections, in batches of 64: connect each and send its ClientHello with
//! the echo's request waiting in the session, then finish each handshake (which sends the
//! request) and read each reply. The proxy works on a batch's handshakes while the client
//! finishes the first ones. Only the sockets are kept: a session holds tens of KiB of the
//! harness's memory and the proxy cannot tell it is gone (no `close_notify` is sent).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection};

use super::super::connect;
use super::HANDSHAKE_TIMEOUT;
use crate::backend::{ECHO, MESSAGE};
use crate::error::{Context, Result};

/// Connections opened before their handshakes are finished.
const BATCH: usize = 64;

/// Opens `count` TLS connections through `addr`, each with one echo, and returns them, open.
pub fn open(addr: SocketAddr, config: &Arc<ClientConfig>, count: usize) -> Result<Vec<TcpStream>> {
    let mut request = vec![ECHO];
    request.extend_from_slice(&[0x63; MESSAGE]);
    let mut held = Vec::with_capacity(count);
    let mut batch: Vec<(TcpStream, ClientConnection)> = Vec::with_capacity(BATCH);
    while held.len() < count {
        let first = held.len();
        for n in first..first + BATCH.min(count - first) {
            let mut sock = connect(addr).context(|| format!("idle connection {n} to {addr}"))?;
            sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
            sock.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
            let mut tls = super::session(config)?;
            tls.writer().write_all(&request)?;
            super::flush(&mut sock, &mut tls)?;
            batch.push((sock, tls));
        }
        for (i, (mut sock, mut tls)) in batch.drain(..).enumerate() {
            let n = first + i;
            super::finish_handshake(&mut sock, &mut tls)
                .context(|| format!("the handshake of idle connection {n}"))?;
            let mut reply = [0u8; MESSAGE];
            super::read_exact(&mut sock, &mut tls, &mut reply)
                .context(|| format!("the echo on idle connection {n}"))?;
            held.push(sock);
        }
    }
    Ok(held)
}
