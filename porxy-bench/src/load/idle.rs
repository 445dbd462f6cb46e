//! Idle connections: open many, make each carry one 64-byte echo (so the proxy has surely
//! connected upstream and relayed both ways), then hold them without traffic.
//!
//! Connections are opened in batches of 64 (connect all, send all, then read all replies), so
//! 10,000 take about a second; blocking calls with timeouts, no poll needed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{connect, Target};
use crate::backend::{ECHO, MESSAGE};
use crate::error::{Context, Result};

/// Connections opened before their replies are read.
const BATCH: usize = 64;
/// How long one reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens `count` echoed connections through `target` and returns them, open.
pub fn open(target: Target, count: usize) -> Result<Vec<TcpStream>> {
    let addr = target.addr;
    let mut held = Vec::with_capacity(count);
    while held.len() < count {
        let batch = BATCH.min(count - held.len());
        let first = held.len();
        for _ in 0..batch {
            let n = held.len();
            let mut stream = connect(addr).context(|| format!("idle connection {n} to {addr}"))?;
            let mut request = target.opening(n, ECHO);
            request.extend_from_slice(&[0x63; MESSAGE]);
            stream.write_all(&request)?;
            held.push(stream);
        }
        for (n, stream) in held[first..].iter_mut().enumerate() {
            stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
            let mut reply = [0u8; MESSAGE];
            stream
                .read_exact(&mut reply)
                .context(|| format!("the echo on idle connection {}", first + n))?;
        }
    }
    Ok(held)
}
