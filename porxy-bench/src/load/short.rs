//! Short connections: connect, send a 64-byte request, read the 64-byte reply and the close,
//! close; again, with a fixed number in flight (closed loop). The backend's `O` service closes
//! first, so the client's ports do not pile up in TIME_WAIT. Each slot's request (with the
//! PROXY header ahead of it, for the `-proxy` kinds) is built once and sent in one write.
//!
//! Connects are non-blocking (`mio::net::TcpStream::connect`); a connection is known to be
//! established when, after a readiness event, `take_error` is empty and `peer_addr` succeeds.
//! Events for a slot whose connection was already replaced are harmless: every step retries
//! the I/O and stops at `WouldBlock`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{Shared, Target, Worker, WorkerReport};
use crate::backend::{MESSAGE, ONCE};
use crate::error::Result;
use crate::histogram::Histogram;

/// A worker keeping `in_flight` short connections going through `target`.
pub fn worker(target: Target, in_flight: usize) -> Worker {
    Box::new(move |shared: &Shared| run(target, in_flight, shared))
}

/// Where one connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connecting,
    /// Writing the request; this many bytes of it are sent.
    Sending(usize),
    /// Reading the reply; this many bytes arrived.
    Receiving(usize),
}

struct Slot {
    stream: TcpStream,
    step: Step,
    started: Instant,
}

/// What became of a connection after an event.
enum Progress {
    Pending,
    /// The reply and the close arrived.
    Done,
    Failed,
}

fn run(target: Target, in_flight: usize, shared: &Shared) -> Result<WorkerReport> {
    let addr = target.addr;
    let mut poll = Poll::new()?;
    let mut slots: Vec<Option<Slot>> = (0..in_flight).map(|_| None).collect();
    // One per slot: a header names its slot's client port, so no two connections open at the
    // same time name the same client.
    let requests: Vec<Vec<u8>> = (0..in_flight)
        .map(|i| {
            let mut request = target.opening(i, ONCE);
            request.extend_from_slice(&[0x62; MESSAGE]);
            request
        })
        .collect();
    let mut events = Events::with_capacity(in_flight.max(16));
    let mut histogram = Histogram::default();
    let (mut work, mut errors) = (0u64, 0u64);
    shared.ready();
    while !shared.stopped() {
        // Every free slot starts a connection; one whose connect failed at once retries soon.
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.is_none() {
                match open(&poll, addr, i) {
                    Ok(opened) => *slot = Some(opened),
                    Err(_) if shared.recording() => errors += 1,
                    Err(_) => {}
                }
            }
        }
        let timeout = if slots.iter().any(Option::is_none) {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(50)
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
        for event in events.iter() {
            let i = event.token().0;
            let Some(slot) = slots[i].as_mut() else {
                continue;
            };
            let progress = advance(slot, &requests[i]);
            let counted = shared.recording();
            match progress {
                Progress::Pending => continue,
                Progress::Done if counted => {
                    work += 1;
                    histogram.record(slot.started.elapsed().as_nanos() as u64);
                }
                Progress::Failed if counted => errors += 1,
                Progress::Done | Progress::Failed => {}
            }
            if let Some(mut old) = slots[i].take() {
                let _ = poll.registry().deregister(&mut old.stream);
            }
        }
    }
    Ok(WorkerReport {
        work,
        errors,
        latency: Some(histogram),
        resumed: None,
    })
}

/// Starts a non-blocking connect for slot `i`.
fn open(poll: &Poll, addr: SocketAddr, i: usize) -> io::Result<Slot> {
    let mut stream = TcpStream::connect(addr)?;
    poll.registry().register(
        &mut stream,
        Token(i),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(Slot {
        stream,
        step: Step::Connecting,
        started: Instant::now(),
    })
}

/// Where a non-blocking connect is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connect {
    /// Not yet (a spurious event, or one for another step).
    Pending,
    /// Connected; TCP_NODELAY is set.
    Established,
    /// Refused, reset or timed out.
    Failed,
}

/// After a readiness event: whether the connect of `stream` is done (mio's recipe: no
/// pending error, then a peer address).
pub(crate) fn established(stream: &TcpStream) -> Connect {
    match stream.take_error() {
        Ok(None) => {}
        Ok(Some(_)) | Err(_) => return Connect::Failed,
    }
    match stream.peer_addr() {
        Ok(_) => {
            let _ = stream.set_nodelay(true);
            Connect::Established
        }
        Err(err) if err.kind() == io::ErrorKind::NotConnected => Connect::Pending,
        Err(_) => Connect::Failed,
    }
}

/// Moves a connection on as far as its socket allows.
fn advance(slot: &mut Slot, request: &[u8]) -> Progress {
    loop {
        match slot.step {
            Step::Connecting => match established(&slot.stream) {
                Connect::Established => slot.step = Step::Sending(0),
                Connect::Pending => return Progress::Pending,
                Connect::Failed => return Progress::Failed,
            },
            Step::Sending(sent) => match slot.stream.write(&request[sent..]) {
                Ok(n) if sent + n == request.len() => slot.step = Step::Receiving(0),
                Ok(n) => slot.step = Step::Sending(sent + n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Failed,
            },
            Step::Receiving(got) => {
                let mut buf = [0u8; 2 * MESSAGE];
                match slot.stream.read(&mut buf) {
                    Ok(0) if got == MESSAGE => return Progress::Done,
                    Ok(0) => return Progress::Failed,
                    Ok(n) if got + n <= MESSAGE => slot.step = Step::Receiving(got + n),
                    Ok(_) => return Progress::Failed,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        return Progress::Pending
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Progress::Failed,
                }
            }
        }
    }
}
