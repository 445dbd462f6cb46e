//! Request/response: N connections, each with one 64-byte request outstanding at a time
//! (closed loop); the round trip of each is recorded. One thread drives its connections with a
//! `mio::Poll`, edge-triggered, reading and writing until `WouldBlock`.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{connect, Shared, Target, Worker, WorkerReport};
use crate::backend::{ECHO, MESSAGE};
use crate::error::{Context, Error, Result};
use crate::histogram::Histogram;

/// A worker driving `conns` request/response connections through `target`.
pub fn worker(target: Target, conns: usize) -> Worker {
    Box::new(move |shared: &Shared| run(target, conns, shared))
}

/// One connection's request in flight.
struct Exchange {
    stream: TcpStream,
    /// The opening (the PROXY header, if any, and the service byte), then the request.
    request: Vec<u8>,
    /// Where the request starts in `request`: every request after the first is that part.
    body: usize,
    /// The part of `request` still to write.
    unsent: std::ops::Range<usize>,
    /// Reply bytes received so far.
    received: usize,
    sent_at: Instant,
}

impl Exchange {
    /// Starts the next request (the first one carries the opening).
    fn start(&mut self, first: bool) {
        self.unsent = if first {
            0..self.request.len()
        } else {
            self.body..self.request.len()
        };
        self.received = 0;
        self.sent_at = Instant::now();
    }

    /// Writes and reads until `WouldBlock`; returns the round trips completed.
    fn pump(&mut self, scratch: &mut [u8], completed: &mut Vec<Duration>) -> io::Result<()> {
        loop {
            while !self.unsent.is_empty() {
                match self.stream.write(&self.request[self.unsent.clone()]) {
                    Ok(n) => self.unsent.start += n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
            loop {
                match self.stream.read(scratch) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => self.received += n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
            if self.received < MESSAGE {
                return Ok(());
            }
            if self.received > MESSAGE {
                return Err(io::Error::other("more reply than request"));
            }
            completed.push(self.sent_at.elapsed());
            self.start(false);
        }
    }
}

fn run(target: Target, count: usize, shared: &Shared) -> Result<WorkerReport> {
    let addr = target.addr;
    let mut poll = Poll::new()?;
    let mut exchanges = Vec::with_capacity(count);
    for i in 0..count {
        let stream = connect(addr).context(|| format!("connecting to {addr}"))?;
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut request = target.opening(i, ECHO);
        let body = request.len();
        request.extend_from_slice(&[0x61; MESSAGE]);
        exchanges.push(Exchange {
            stream,
            request,
            body,
            unsent: 0..0,
            received: 0,
            sent_at: Instant::now(),
        });
    }
    shared.ready();
    let mut histogram = Histogram::default();
    let mut work = 0u64;
    let mut scratch = [0u8; 4 * MESSAGE];
    let mut completed = Vec::new();
    let mut events = Events::with_capacity(count.max(16));
    for exchange in &mut exchanges {
        exchange.start(true);
    }
    // The first writes: registration already reports the sockets writable, but pumping here
    // does not depend on that.
    let mut ready: Vec<usize> = (0..count).collect();
    while !shared.stopped() {
        for &i in &ready {
            completed.clear();
            exchanges[i]
                .pump(&mut scratch, &mut completed)
                .map_err(|e| Error::new(format!("request/response via {addr}: {e}")))?;
            if shared.recording() {
                for rtt in &completed {
                    histogram.record(rtt.as_nanos() as u64);
                    work += 1;
                }
            }
        }
        match poll.poll(&mut events, Some(Duration::from_millis(50))) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
        ready.clear();
        ready.extend(events.iter().map(|e| e.token().0));
    }
    Ok(WorkerReport {
        work,
        latency: Some(histogram),
        connections: count as u64,
        ..WorkerReport::default()
    })
}
