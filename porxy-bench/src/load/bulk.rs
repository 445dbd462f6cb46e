//! Bulk transfer over one connection: upload into the backend's sink, or download from its
//! source. Blocking I/O in 256 KiB calls; short socket timeouts let the worker notice the stop.

use std::io::{Read, Write};
use std::time::Duration;

use super::{connect, is_transient, Shared, Target, Worker, WorkerReport};
use crate::backend::{SINK, SOURCE};
use crate::error::{Context, Error};

/// Bytes per read or write call.
const CHUNK: usize = 256 * 1024;

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to backend.
    Up,
    /// Backend to client.
    Down,
}

/// A worker that moves bytes one way through `target` and counts them.
pub fn worker(target: Target, direction: Direction) -> Worker {
    Box::new(move |shared: &Shared| {
        let addr = target.addr;
        let mut stream = connect(addr).context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        stream.set_write_timeout(Some(Duration::from_millis(100)))?;
        let service = match direction {
            Direction::Up => SINK,
            Direction::Down => SOURCE,
        };
        stream.write_all(&target.opening(0, service))?;
        let mut buf = vec![0x42u8; CHUNK];
        shared.ready();
        let mut work = 0u64;
        while !shared.stopped() {
            let moved = match direction {
                Direction::Up => stream.write(&buf),
                Direction::Down => stream.read(&mut buf),
            };
            match moved {
                Ok(0) => return Err(Error::new(format!("bulk {direction:?}: {addr} closed"))),
                Ok(n) => {
                    if shared.recording() {
                        work += n as u64;
                    }
                }
                Err(err) if is_transient(&err) => {}
                Err(err) => {
                    return Err(Error::new(format!("bulk {direction:?} via {addr}: {err}")))
                }
            }
        }
        Ok(WorkerReport {
            work,
            connections: 1,
            ..WorkerReport::default()
        })
    })
}
