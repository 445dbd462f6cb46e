//! A steady load of short connections, to show that no client notices a restart.
//!
//! Each client thread repeats one exchange with a
//! [`Backend::greeting_echo`](super::Backend::greeting_echo) behind the proxy: connect, read the
//! greeting, one echo round trip, half-close, read the end of stream. Every step has the test
//! socket timeouts; any step that fails (refused, reset, early end of stream, wrong bytes) is
//! recorded with the connection's number and the step, and the client goes on. A short pause
//! between exchanges keeps the load steady instead of saturating a small machine.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::client::try_connect;
use super::wait::wait_until;

/// Pause between two exchanges of one client.
const PACE: Duration = Duration::from_millis(2);

/// Clients exchanging with `addr` until [`Load::finish`] (or `Drop`) stops them.
pub struct Load {
    shared: Arc<Shared>,
    clients: Vec<JoinHandle<()>>,
}

/// What a load saw, once stopped.
#[derive(Debug)]
pub struct LoadReport {
    /// Exchanges that completed, every byte as expected.
    pub completed: usize,
    /// One line per failed exchange: its number, the step and the error.
    pub failures: Vec<String>,
}

struct Shared {
    stop: AtomicBool,
    /// Exchanges started, across clients: numbers them.
    started: AtomicUsize,
    completed: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Load {
    /// Starts `clients` threads against `addr`, whose backend greets with `greeting`.
    pub fn start(addr: SocketAddr, clients: usize, greeting: u8) -> Load {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            started: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
        });
        let clients = (0..clients)
            .map(|index| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("load-{index}"))
                    .spawn(move || {
                        while !shared.stop.load(Ordering::SeqCst) {
                            let number = shared.started.fetch_add(1, Ordering::SeqCst);
                            match exchange(addr, greeting, number) {
                                Ok(()) => {
                                    shared.completed.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(why) => lock(&shared.failures)
                                    .push(format!("connection {number}: {why}")),
                            }
                            // Pacing a steady load, not waiting for anything.
                            std::thread::sleep(PACE);
                        }
                    })
                    .expect("spawn a load client")
            })
            .collect();
        Load { shared, clients }
    }

    /// Exchanges completed so far.
    pub fn completed(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Waits until `n` exchanges in all have completed; fails the test after `timeout`.
    #[track_caller]
    pub fn wait_completed(&self, n: usize, timeout: Duration) {
        wait_until(timeout, &format!("{n} exchanges of the load"), || {
            self.completed() >= n
        });
    }

    /// Stops the clients, waits for their last exchange, and tells what they saw.
    pub fn finish(mut self) -> LoadReport {
        self.stop_and_join();
        LoadReport {
            completed: self.completed(),
            failures: std::mem::take(&mut *lock(&self.shared.failures)),
        }
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Each exchange is bounded by the socket timeouts, so this ends.
        for client in self.clients.drain(..) {
            let _ = client.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// One exchange; the error names the step that failed.
fn exchange(addr: SocketAddr, greeting: u8, number: usize) -> Result<(), String> {
    let mut stream = try_connect(addr).map_err(|e| format!("connect: {e}"))?;
    let mut hello = [0u8; 1];
    stream
        .read_exact(&mut hello)
        .map_err(|e| format!("greeting: {e}"))?;
    if hello[0] != greeting {
        return Err(format!(
            "greeting {:?}, expected {:?}",
            hello[0] as char, greeting as char
        ));
    }
    let msg = format!("exchange {number}");
    stream
        .write_all(msg.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; msg.len()];
    stream
        .read_exact(&mut back)
        .map_err(|e| format!("echo: {e}"))?;
    if back != msg.as_bytes() {
        return Err(format!(
            "echo {:?}, expected {msg:?}",
            String::from_utf8_lossy(&back)
        ));
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("half-close: {e}"))?;
    let mut rest = [0u8; 64];
    loop {
        match stream.read(&mut rest) {
            Ok(0) => return Ok(()),
            Ok(n) => return Err(format!("{n} unexpected bytes after the echo")),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("end of stream: {e}")),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
