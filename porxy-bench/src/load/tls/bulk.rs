//! Bulk transfer through a TLS-terminating proxy over one connection: the plain bulk workload
//! (the backend's sink or source) with the client encrypting or decrypting.
//!
//! Blocking I/O in 256 KiB socket calls as the plain workload, so that the client spends its
//! CPU on cryptography, not on system calls: rustls reads at most 4 KiB from a socket per
//! `read_tls`, so downloads read the socket into a buffer of their own and feed the session
//! from it; uploads let the session encrypt up to 256 KiB at a time and write it out with
//! `writev`. Bytes are counted as plaintext. Short socket timeouts let the worker notice the
//! stop. During an upload the client never reads: what the proxy sends then (session tickets)
//! is a few hundred bytes that wait in the socket.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection};

use super::super::bulk::Direction;
use super::super::{is_transient, Shared, Worker, WorkerReport};
use crate::backend::{SINK, SOURCE};
use crate::error::{Error, Result};

/// Bytes per socket read or write, and per plaintext write into the session.
const CHUNK: usize = 256 * 1024;

/// A worker that moves bytes one way through the TLS listener at `addr` and counts them.
pub fn worker(addr: SocketAddr, config: Arc<ClientConfig>, direction: Direction) -> Worker {
    Box::new(move |shared: &Shared| {
        let (mut sock, mut tls) = super::connect_blocking(addr, &config)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        sock.set_write_timeout(Some(Duration::from_millis(100)))?;
        let service = match direction {
            Direction::Up => SINK,
            Direction::Down => SOURCE,
        };
        tls.writer().write_all(&[service])?;
        // The session's own limit (64 KiB) would cut each 256 KiB write in four.
        tls.set_buffer_limit(Some(CHUNK));
        shared.ready();
        let work = match direction {
            Direction::Up => upload(&mut sock, &mut tls, shared),
            Direction::Down => download(&mut sock, &mut tls, shared),
        }
        .map_err(|err| Error::new(format!("TLS bulk {direction:?} via {addr}: {err}")))?;
        Ok(WorkerReport {
            work,
            connections: 1,
            ..WorkerReport::default()
        })
    })
}

/// Encrypts and sends until stopped; returns the plaintext bytes sent in the window.
fn upload(sock: &mut TcpStream, tls: &mut ClientConnection, shared: &Shared) -> Result<u64> {
    let buf = vec![0x42u8; CHUNK];
    let mut work = 0u64;
    while !shared.stopped() {
        // What the session still holds goes first: a write timed out before.
        while tls.wants_write() {
            match tls.write_tls(sock) {
                Ok(_) => {}
                Err(err) if is_transient(&err) => break,
                Err(err) => return Err(err.into()),
            }
        }
        if tls.wants_write() {
            continue;
        }
        let n = tls.writer().write(&buf)?;
        if shared.recording() {
            work += n as u64;
        }
    }
    Ok(work)
}

/// Receives and decrypts until stopped; returns the plaintext bytes received in the window.
fn download(sock: &mut TcpStream, tls: &mut ClientConnection, shared: &Shared) -> Result<u64> {
    super::flush(sock, tls)?;
    let mut ciphertext = vec![0u8; CHUNK];
    let mut plaintext = vec![0u8; CHUNK];
    let mut work = 0u64;
    while !shared.stopped() {
        let n = match sock.read(&mut ciphertext) {
            Ok(0) => return Err(Error::new("the proxy closed")),
            Ok(n) => n,
            Err(err) if is_transient(&err) => continue,
            Err(err) => return Err(err.into()),
        };
        let mut pending = &ciphertext[..n];
        while !pending.is_empty() {
            // Takes what fits in the session's buffer; the plaintext is drained below, so
            // the next call has room again.
            tls.read_tls(&mut pending)?;
            tls.process_new_packets()
                .map_err(|e| Error::new(format!("TLS: {e}")))?;
            loop {
                match tls.reader().read(&mut plaintext) {
                    Ok(0) => return Err(Error::new("the proxy ended the TLS session")),
                    Ok(got) => {
                        if shared.recording() {
                            work += got as u64;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) => return Err(err.into()),
                }
            }
        }
        // Key updates and alerts the session answers (none expected).
        if tls.wants_write() {
            super::flush(sock, tls)?;
        }
    }
    Ok(work)
}
