//! One health check of one backend, driven by readiness: a non-blocking connect, then (for a
//! TLS backend, `check_tls`) a TLS handshake whose certificate must verify as the relay's would,
//! then the check's bytes sent and its reply prefix expected, inside TLS when there is TLS.

use std::io::{self, ErrorKind, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use super::CheckConfig;
use crate::conn::transport::Transport;
use crate::tls::client::ClientTls;
use crate::tls::stream::TlsStream;

/// How a probe speaks TLS to a backend: as its tunnel's connections do.
#[derive(Debug, Clone)]
pub(crate) struct CheckTls {
    pub(crate) client: ClientTls,
    /// The name the backend's certificate must be for.
    pub(crate) name: ServerName<'static>,
    /// Sent in the clear before the ClientHello (a PROXY header, `check_send_proxy`).
    pub(crate) preface: Vec<u8>,
}

impl CheckTls {
    fn session(&self) -> Result<ClientConnection, rustls::Error> {
        self.client.session(self.name.clone(), None)
    }
}

impl PartialEq for CheckTls {
    fn eq(&self, other: &Self) -> bool {
        self.client.same(&other.client) && self.name == other.name && self.preface == other.preface
    }
}

impl Eq for CheckTls {}

/// Steps a probe takes per readiness event at most: a check's bytes are few.
const STEPS: usize = 16;

enum Step {
    Connecting,
    Handshaking,
    Sending(usize),
    Reading(Vec<u8>),
}

/// What a probe's bytes travel over.
enum Wire {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
    /// Between the two, for the moment of wrapping.
    Gone,
}

impl Wire {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Wire::Tcp(tcp) => Some(tcp),
            Wire::Tls(tls) => Some(tls.tcp()),
            Wire::Gone => None,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Tcp(tcp) => tcp.read(buf),
            Wire::Tls(tls) => tls.read(buf),
            Wire::Gone => Err(ErrorKind::NotConnected.into()),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Tcp(tcp) => tcp.write(buf),
            Wire::Tls(tls) => Transport::write(tls.as_mut(), buf),
            Wire::Gone => Err(ErrorKind::NotConnected.into()),
        }
    }

    /// Pushes out what a TLS session still holds of what was written.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Wire::Tls(tls) => Transport::flush(tls.as_mut()),
            _ => Ok(()),
        }
    }
}

/// A probe under way.
pub(super) struct Probe {
    /// The watched backend's key.
    pub(super) watched: usize,
    pub(super) deadline: Instant,
    wire: Wire,
    step: Step,
}

/// Why a probe failed, for the log line when a backend goes down.
pub(super) type Verdict = Result<(), String>;

impl Probe {
    /// A probe whose connect is under way on `stream` (registered for readiness).
    pub(super) fn new(watched: usize, stream: TcpStream, deadline: Instant) -> Probe {
        Probe {
            watched,
            deadline,
            wire: Wire::Tcp(stream),
            step: Step::Connecting,
        }
    }

    /// What it was doing when its time ran out.
    pub(super) fn timed_out(&self) -> &'static str {
        match self.step {
            Step::Connecting => "connect timed out",
            Step::Handshaking => "TLS handshake timed out",
            Step::Sending(_) => "send timed out",
            Step::Reading(_) => "no expected reply in time",
        }
    }

    /// Goes on after a readiness event: `None` while it goes on, else its verdict.
    pub(super) fn step(&mut self, config: &CheckConfig) -> Option<Verdict> {
        for _ in 0..STEPS {
            match &mut self.step {
                Step::Connecting => {
                    let tcp = self.wire.tcp()?;
                    match tcp.take_error() {
                        Ok(Some(e)) | Err(e) => return Some(Err(format!("connect: {e}"))),
                        Ok(None) => {}
                    }
                    match tcp.peer_addr() {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::NotConnected => return None,
                        Err(e) => return Some(Err(format!("connect: {e}"))),
                    }
                    if let Some(tls) = &config.tls {
                        let session = match tls.session() {
                            Ok(session) => session,
                            Err(e) => return Some(Err(format!("TLS: {e}"))),
                        };
                        let Wire::Tcp(tcp) = std::mem::replace(&mut self.wire, Wire::Gone) else {
                            return Some(Err("connect: no socket".into()));
                        };
                        let mut stream = TlsStream::client(tcp, session);
                        stream.set_preface(tls.preface.clone());
                        self.wire = Wire::Tls(Box::new(stream));
                        self.step = Step::Handshaking;
                        continue;
                    }
                    match after_opening(config) {
                        Some(step) => self.step = step,
                        None => return Some(Ok(())),
                    }
                }
                Step::Handshaking => {
                    let Wire::Tls(tls) = &mut self.wire else {
                        return Some(Err("TLS: no session".into()));
                    };
                    match tls.handshake(&mut Vec::new()) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Some(Err(format!("TLS handshake: {e}"))),
                    }
                    match after_opening(config) {
                        Some(step) => self.step = step,
                        None => return Some(Ok(())),
                    }
                }
                Step::Sending(sent) => {
                    let payload = config.send.as_deref().unwrap_or_default();
                    if *sent == payload.len() {
                        match self.wire.flush() {
                            Ok(()) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                            Err(e) => return Some(Err(format!("send: {e}"))),
                        }
                        if config.expect.is_none() {
                            return Some(Ok(()));
                        }
                        self.step = Step::Reading(Vec::new());
                        continue;
                    }
                    match self.wire.write(&payload[*sent..]) {
                        Ok(n) => *sent += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Some(Err(format!("send: {e}"))),
                    }
                }
                Step::Reading(got) => {
                    let expect = config.expect.as_deref().unwrap_or_default();
                    if got.len() >= expect.len() {
                        return Some(if got.starts_with(expect) {
                            Ok(())
                        } else {
                            Err(format!(
                                "unexpected reply {:?}",
                                String::from_utf8_lossy(got)
                            ))
                        });
                    }
                    let mut buf = [0u8; 512];
                    let want = (expect.len() - got.len()).min(buf.len());
                    match self.wire.read(&mut buf[..want]) {
                        Ok(0) => return Some(Err("closed before the expected reply".into())),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Some(Err(format!("read: {e}"))),
                    }
                }
            }
        }
        None
    }
}

/// What a probe does once connected (and its TLS handshake done): send, else read, else
/// nothing (`None`: it passed).
fn after_opening(config: &CheckConfig) -> Option<Step> {
    match (&config.send, &config.expect) {
        (Some(_), _) => Some(Step::Sending(0)),
        (None, Some(_)) => Some(Step::Reading(Vec::new())),
        (None, None) => None,
    }
}
