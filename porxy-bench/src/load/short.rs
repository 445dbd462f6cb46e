//! Short connections: connect, send a 64-byte request, read the 64-byte reply and the close,
//! close; again, with a fixed number in flight (closed loop). The backend's `O` service closes
//! first, so the client's ports do not pile up in TIME_WAIT. Each slot's request (with the
//! PROXY header ahead of it, for the `-proxy` kinds) is built once and sent in one write.
//!
//! The slots, their poll and the non-blocking connect are [`super::slots`]'s: a connection is
//! known to be established when, after a readiness event, `take_error` is empty and
//! `peer_addr` succeeds. Stray events are harmless: every step retries the I/O and stops at
//! `WouldBlock`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::Registry;

use super::slots::{self, established, Connect, Progress, Refill, Slots, Tally};
use super::{Shared, Target, Worker, WorkerReport};
use crate::backend::{MESSAGE, ONCE};
use crate::error::Result;

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

impl slots::Slot for Slot {
    fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

fn run(target: Target, in_flight: usize, shared: &Shared) -> Result<WorkerReport> {
    let addr = target.addr;
    let mut slots = Slots::new(in_flight)?;
    // One per slot: a header names its slot's client port, so no two connections open at the
    // same time name the same client.
    let requests: Vec<Vec<u8>> = (0..in_flight)
        .map(|i| {
            let mut request = target.opening(i, ONCE);
            request.extend_from_slice(&[0x62; MESSAGE]);
            request
        })
        .collect();
    let mut tally = Tally::default();
    shared.ready();
    while !shared.stopped() {
        let failed = slots.fill(|registry, i| open(registry, addr, i));
        tally.failed_connects(failed, shared);
        slots.poll(Refill::Soon, |i, slot| {
            let progress = advance(slot, &requests[i]);
            tally.count(progress, slot.started, shared);
            progress
        })?;
    }
    Ok(tally.report(None, slots.opened()))
}

/// Starts a non-blocking connect for slot `i`.
fn open(registry: &Registry, addr: SocketAddr, i: usize) -> io::Result<Slot> {
    Ok(Slot {
        stream: slots::connect(registry, addr, i)?,
        step: Step::Connecting,
        started: Instant::now(),
    })
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
