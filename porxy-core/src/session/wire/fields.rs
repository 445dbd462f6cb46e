//! The fields a session frame is made of, written and read: addresses, pipes (the end of
//! stream and the bytes pending), clocks, and the bounded reader every decoder goes through
//! (a field that runs past the body is an error, never a panic).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::WireError;
use crate::config::MAX_BUFFER_SIZE;
use crate::conn::pipe::{PipeSnapshot, PipeState};

pub(super) fn put_addr(body: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            body.push(4);
            body.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            body.push(6);
            body.extend_from_slice(&ip.octets());
        }
    }
    body.extend_from_slice(&addr.port().to_be_bytes());
}

pub(super) fn put_pipe(body: &mut Vec<u8>, pipe: &PipeSnapshot) {
    body.push(match pipe.state {
        PipeState::Open => 0,
        PipeState::Draining => 1,
        PipeState::Done => 2,
    });
    // A direction holds at most one buffer or kernel pipe: at most MAX_BUFFER_SIZE bytes.
    body.extend_from_slice(&(pipe.pending.len() as u32).to_be_bytes());
    body.extend_from_slice(&pipe.pending);
}

pub(super) fn put_clocks(
    body: &mut Vec<u8>,
    idle_for: Duration,
    half_closed_for: Option<Duration>,
) {
    body.extend_from_slice(&micros(idle_for).to_be_bytes());
    let half = half_closed_for.map_or(0, |d| micros(d).saturating_add(1));
    body.extend_from_slice(&half.to_be_bytes());
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Reads fields off the front of a body.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `body`.
    pub(super) fn new(body: &'a [u8]) -> Reader<'a> {
        Reader { rest: body }
    }

    /// Whether every byte has been read.
    pub(super) fn is_done(&self) -> bool {
        self.rest.is_empty()
    }

    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Malformed(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let b = self.take(8, what)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(b);
        Ok(u64::from_be_bytes(word))
    }

    pub(super) fn addr(&mut self) -> Result<SocketAddr, WireError> {
        let ip = match self.u8("address family")? {
            4 => {
                let b = self.take(4, "IPv4 address")?;
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(self.take(16, "IPv6 address")?);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
            _ => return Err(WireError::Malformed("unknown address family")),
        };
        Ok(SocketAddr::new(ip, self.u16("port")?))
    }

    pub(super) fn clocks(&mut self) -> Result<(Duration, Option<Duration>), WireError> {
        let idle_for = Duration::from_micros(self.u64("idle time")?);
        let half_closed_for = match self.u64("half-closed time")? {
            0 => None,
            n => Some(Duration::from_micros(n - 1)),
        };
        Ok((idle_for, half_closed_for))
    }

    pub(super) fn pipe(&mut self) -> Result<PipeSnapshot, WireError> {
        let state = match self.u8("pipe state")? {
            0 => PipeState::Open,
            1 => PipeState::Draining,
            2 => PipeState::Done,
            _ => return Err(WireError::Malformed("unknown pipe state")),
        };
        let len = self.u32("pending length")? as usize;
        if len > MAX_BUFFER_SIZE {
            return Err(WireError::Malformed(
                "more pending bytes than a buffer or pipe holds",
            ));
        }
        let pending = self.take(len, "pending bytes")?.to_vec();
        // Done means the end of stream was passed on, after every byte.
        if state == PipeState::Done && !pending.is_empty() {
            return Err(WireError::Malformed(
                "bytes pending after the end of stream was passed on",
            ));
        }
        Ok(PipeSnapshot { state, pending })
    }
}
