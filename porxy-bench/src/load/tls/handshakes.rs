//! TLS handshakes: short TLS connections with a fixed number in flight (closed loop), as the
//! plain short connections but through a TLS-terminating proxy. Each: non-blocking connect,
//! handshake, 64 bytes to the backend's `O` service and 64 back, then the backend closes, the
//! proxy passes the close on (a `close_notify`, or a bare FIN: either ends a whole reply) and
//! the client closes. With resumption on, every handshake of a slot after its first resumes;
//! each done connection says which kind its handshake was.
//!
//! Each slot is a client of its own, with its own configuration and so its own session store:
//! it resumes the session of its previous connection, as a returning client does. One store
//! shared by all would keep at most 8 tickets for the one server name (rustls's bound), fewer
//! than the connections one batch of completions starts at once: about half the handshakes
//! would then be full ones for the client's sake, not the proxy's.
//!
//! The request is written into the session before the connect: rustls holds it until the
//! handshake is done and sends it with the client's last flight, as a client that has its
//! request ready does. When the window closes, the connections in flight finish (for up to
//! 2 s) and no new one starts. Every step moves the session on until the socket says
//! `WouldBlock` both ways (edge-triggered); a stray event for a slot only retries its I/O.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::Registry;
use rustls::{ClientConfig, ClientConnection, HandshakeKind};

use super::super::slots::{self, established, Connect, Progress, Refill, Slots, Tally};
use super::super::{Shared, Worker, WorkerReport};
use super::{Resumption, TlsClient};
use crate::backend::{MESSAGE, ONCE};
use crate::error::Result;

/// How long the connections in flight at the end of the window have to finish.
const DRAIN: Duration = Duration::from_secs(2);

/// A worker keeping `in_flight` TLS connections going through `addr`, each slot a client of
/// `tls` with `resumption`.
pub fn worker(
    addr: SocketAddr,
    tls: TlsClient,
    resumption: Resumption,
    in_flight: usize,
) -> Worker {
    Box::new(move |shared: &Shared| {
        let configs = (0..in_flight)
            .map(|_| tls.config(resumption))
            .collect::<Result<Vec<_>>>()?;
        run(addr, &configs, shared)
    })
}

struct Slot {
    stream: TcpStream,
    tls: ClientConnection,
    connected: bool,
    /// Reply bytes received.
    got: usize,
    started: Instant,
}

impl slots::Slot for Slot {
    fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Drives one slot per config until stopped, then lets the slots in flight finish.
fn run(addr: SocketAddr, configs: &[Arc<ClientConfig>], shared: &Shared) -> Result<WorkerReport> {
    let mut slots = Slots::new(configs.len())?;
    let mut request = vec![ONCE];
    request.extend_from_slice(&[0x62; MESSAGE]);
    let mut tally = Tally::default();
    let mut resumed = 0u64;
    let mut drain_until = None;
    shared.ready();
    loop {
        // After the window, the connections in flight are finished rather than cut: a proxy
        // logs a handshake cut short as its client's failure.
        if shared.stopped() {
            let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN);
            if slots.is_idle() || Instant::now() > until {
                break;
            }
        }
        let refill = if drain_until.is_none() {
            let failed = slots.fill(|registry, i| open(registry, addr, &configs[i], i, &request));
            tally.failed_connects(failed, shared);
            Refill::Soon
        } else {
            Refill::Never
        };
        slots.poll(refill, |_, slot| {
            let progress = advance(slot);
            if tally.count(progress, slot.started, shared) == Some(Progress::Done) {
                resumed += u64::from(slot.tls.handshake_kind() == Some(HandshakeKind::Resumed));
            }
            progress
        })?;
    }
    Ok(tally.report(Some(resumed), slots.opened()))
}

/// A new session with `request` waiting in it, and a non-blocking connect for slot `i`.
fn open(
    registry: &Registry,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    i: usize,
    request: &[u8],
) -> Result<Slot> {
    let mut tls = super::session(config)?;
    tls.writer().write_all(request)?;
    Ok(Slot {
        stream: slots::connect(registry, addr, i)?,
        tls,
        connected: false,
        got: 0,
        started: Instant::now(),
    })
}

/// Moves a connection on as far as its socket allows.
fn advance(slot: &mut Slot) -> Progress {
    if !slot.connected {
        match established(&slot.stream) {
            Connect::Established => slot.connected = true,
            Connect::Pending => return Progress::Pending,
            Connect::Failed => return Progress::Failed,
        }
    }
    loop {
        // What the session holds for the server: a flight of the handshake, the request.
        while slot.tls.wants_write() {
            match slot.tls.write_tls(&mut slot.stream) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Failed,
            }
        }
        match slot.tls.read_tls(&mut slot.stream) {
            // TCP's end: what came before it is read below, then the reply is whole or not.
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Progress::Failed,
        }
        if slot.tls.process_new_packets().is_err() {
            return Progress::Failed;
        }
        if let Some(end) = read_reply(slot) {
            return end;
        }
    }
}

/// Reads the reply's plaintext: `Some` once the connection is over, `None` while more may come.
fn read_reply(slot: &mut Slot) -> Option<Progress> {
    let mut buf = [0u8; 2 * MESSAGE];
    loop {
        match slot.tls.reader().read(&mut buf) {
            // close_notify, or a FIN without it (the proxy passed the backend's close on
            // bare): a whole reply either way.
            Ok(0) => return Some(finished(slot)),
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Some(finished(slot)),
            Ok(n) if slot.got + n <= MESSAGE => slot.got += n,
            Ok(_) => return Some(Progress::Failed),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return None,
            Err(_) => return Some(Progress::Failed),
        }
    }
}

/// The end of a connection whose server closed: done if the whole reply came.
fn finished(slot: &Slot) -> Progress {
    if slot.got == MESSAGE {
        Progress::Done
    } else {
        Progress::Failed
    }
}
