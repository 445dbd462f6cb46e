//! The load generator: workers that drive one workload each, and the window that times them.
//!
//! A measurement is: start the workers (each connects, then says it is ready), let them run for
//! a warm-up, open the window (sample the proxy's CPU time, set `recording`), keep it open for
//! the measured time, close it (clear `recording`, sample again), stop the workers and add up
//! what they counted *while recording*. Workers check the two flags with relaxed loads: a
//! request straddling an edge of the window lands on one side or the other, which is noise far
//! below a window of a second.
//!
//! Every workload connects to a [`Target`]: the proxy's address, and whether each connection
//! opens with a PROXY protocol v2 header (the `-proxy` kinds), sent in the same write as the
//! service byte and the first request, as a load balancer in front would send it once the
//! client's first bytes are there. Through a TLS-terminating proxy (the `-tls` kinds) the
//! workloads are [`tls`]'s: the same bytes inside TLS, plus the handshakes.

pub mod bulk;
pub mod idle;
pub mod rr;
pub mod short;
pub mod slots;
pub mod tls;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::backend::MESSAGE;
use crate::error::{Error, Result};
use crate::histogram::Histogram;
use crate::proxy_header;
use crate::sys::{self, Cpus, Usage};
use crate::syscalls::{Counter, Counts};

/// How long a connect may take before a workload gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a workload's connections go, and what each says before its service byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The proxy's address (the backend's for the direct connection).
    pub addr: SocketAddr,
    /// Whether each connection opens with a PROXY v2 header (the proxy takes it and sends its
    /// own to the backend).
    pub proxy_header: bool,
}

impl Target {
    /// `addr`, with no header ahead of the connections.
    pub fn plain(addr: SocketAddr) -> Target {
        Target {
            addr,
            proxy_header: false,
        }
    }

    /// The first bytes of a workload's connection number `n`: the PROXY header when the target
    /// wants one (naming a client port of its own, see [`proxy_header::client_port`]), then
    /// `service`; with room for a request after them. Built once per connection or slot,
    /// outside the timed loops.
    pub fn opening(&self, n: usize, service: u8) -> Vec<u8> {
        let mut bytes = if self.proxy_header {
            proxy_header::header(proxy_header::client_port(n), self.addr)
        } else {
            Vec::new()
        };
        bytes.reserve(1 + MESSAGE);
        bytes.push(service);
        bytes
    }
}

/// Flags shared by the harness and the workers of one measurement.
#[derive(Debug, Default)]
pub struct Shared {
    stop: AtomicBool,
    recording: AtomicBool,
    ready: AtomicUsize,
}

impl Shared {
    /// Whether the workers should wind down.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Whether work done now counts.
    pub fn recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// Called by a worker once it is connected and about to generate load.
    pub fn ready(&self) {
        self.ready.fetch_add(1, Ordering::Release);
    }
}

/// What one worker counted inside the window.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// Bytes, requests or connections, by workload.
    pub work: u64,
    /// Failed operations (resets, refused connects, short replies).
    pub errors: u64,
    /// Latency of each counted operation, in nanoseconds, when the workload measures it.
    pub latency: Option<Histogram>,
    /// Of the connections counted, those whose TLS handshake resumed a session, when the
    /// workload makes TLS handshakes.
    pub resumed: Option<u64>,
    /// Every connection the worker opened, in the window or not: the lines a `-log` kind's
    /// access log gains (see [`crate::access_log`]).
    pub connections: u64,
}

/// A workload for one thread.
pub type Worker = Box<dyn FnOnce(&Shared) -> Result<WorkerReport> + Send>;

/// What one measurement found.
#[derive(Debug, Clone)]
pub struct Measure {
    /// Bytes, requests or connections counted in the window.
    pub work: u64,
    /// Length of the window.
    pub secs: f64,
    /// The proxy's CPU seconds in the window (none for a direct connection).
    pub cpu_secs: Option<f64>,
    /// Merged latencies, nanoseconds.
    pub latency: Option<Histogram>,
    /// Failed operations in the window.
    pub errors: u64,
    /// The proxy's system calls in the window, when they were counted.
    pub syscalls: Option<Counts>,
    /// Of the connections counted, those whose TLS handshake resumed a session (TLS
    /// handshake phases only).
    pub resumed: Option<u64>,
    /// Every connection the workers opened, in the window or not.
    pub connections: u64,
}

/// The timing of a measurement.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Load before the window opens.
    pub warmup: Duration,
    /// The window.
    pub length: Duration,
}

/// Runs `workers` on threads restricted to `cpus`, measures one window, and samples the CPU
/// time of process `proxy` (and its descendants) at its edges; with a `counter`, counts the
/// proxy's system calls in the window too. `interrupted` cuts it short with an error.
pub fn measure(
    workers: Vec<Worker>,
    cpus: &Cpus,
    window: Window,
    proxy: Option<u32>,
    counter: Option<Counter>,
    interrupted: &AtomicBool,
) -> Result<Measure> {
    let shared = Arc::new(Shared::default());
    let count = workers.len();
    let mut handles = Vec::with_capacity(count);
    for (i, worker) in workers.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let cpus = cpus.clone();
        let handle = thread::Builder::new()
            .name(format!("load-{i}"))
            .spawn(move || {
                cpus.pin_current_thread()
                    .map_err(|e| Error::new(format!("pinning a load thread to CPU {cpus}: {e}")))?;
                worker(&shared)
            })
            .map_err(|e| Error::new(format!("starting a load thread: {e}")))?;
        handles.push(handle);
    }
    let mut counter = counter;
    let outcome = run_window(
        &shared,
        &handles,
        count,
        window,
        proxy,
        counter.as_mut(),
        interrupted,
    );
    shared.stop.store(true, Ordering::Relaxed);
    let mut total = WorkerReport::default();
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(report)) => {
                total.work += report.work;
                total.errors += report.errors;
                total.connections += report.connections;
                if let Some(resumed) = report.resumed {
                    *total.resumed.get_or_insert(0) += resumed;
                }
                if let Some(h) = report.latency {
                    total
                        .latency
                        .get_or_insert_with(Histogram::default)
                        .merge(&h);
                }
            }
            Ok(Err(err)) => {
                first_error.get_or_insert(err);
            }
            Err(_) => {
                first_error.get_or_insert(Error::new("a load thread panicked"));
            }
        }
    }
    let (secs, cpu_secs) = outcome?;
    if let Some(err) = first_error {
        return Err(err);
    }
    let syscalls = counter.map(Counter::finish).transpose()?;
    Ok(Measure {
        work: total.work,
        secs,
        cpu_secs,
        latency: total.latency,
        errors: total.errors,
        syscalls,
        resumed: total.resumed,
        connections: total.connections,
    })
}

/// Waits for the workers to be ready, then times the window, with `counter` counting through
/// it. Returns its length and the proxy's CPU seconds in it.
fn run_window(
    shared: &Shared,
    handles: &[thread::JoinHandle<Result<WorkerReport>>],
    count: usize,
    window: Window,
    proxy: Option<u32>,
    mut counter: Option<&mut Counter>,
    interrupted: &AtomicBool,
) -> Result<(f64, Option<f64>)> {
    let deadline = Instant::now() + CONNECT_TIMEOUT * 2;
    while shared.ready.load(Ordering::Acquire) < count {
        if handles.iter().any(|h| h.is_finished()) {
            return Err(Error::new("a load thread ended before the window"));
        }
        if Instant::now() > deadline {
            return Err(Error::new("load threads did not connect in time"));
        }
        crate::waiting::sleep_checked(Duration::from_millis(2), interrupted)?;
    }
    crate::waiting::sleep_checked(window.warmup, interrupted)?;
    if let Some(counter) = counter.as_deref_mut() {
        counter.enable(interrupted)?;
    }
    let before = sample(proxy)?;
    let start = Instant::now();
    shared.recording.store(true, Ordering::Relaxed);
    crate::waiting::sleep_checked(window.length, interrupted)?;
    shared.recording.store(false, Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let after = sample(proxy)?;
    if let Some(counter) = counter {
        counter.disable(interrupted)?;
    }
    if handles.iter().any(|h| h.is_finished()) {
        return Err(Error::new("a load thread ended inside the window"));
    }
    let cpu_secs = match (before, after) {
        (Some(b), Some(a)) => Some(cpu_seconds(b, a)),
        _ => None,
    };
    Ok((secs, cpu_secs))
}

/// The usage of `proxy`, if there is one.
pub fn sample(proxy: Option<u32>) -> Result<Option<Usage>> {
    proxy
        .map(|pid| {
            sys::tree_usage(pid)
                .map_err(|e| Error::new(format!("reading /proc/{pid} of the proxy: {e}")))
        })
        .transpose()
}

/// CPU seconds between two samples.
pub fn cpu_seconds(before: Usage, after: Usage) -> f64 {
    after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / sys::clock_ticks_per_second() as f64
}

/// A blocking connection with TCP_NODELAY.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether an I/O error only means "not now".
pub fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend;

    /// Runs `workers` against nothing but the in-process backend, with a short window.
    fn measure_direct(workers: Vec<Worker>) -> Measure {
        let window = Window {
            warmup: Duration::from_millis(20),
            length: Duration::from_millis(100),
        };
        measure(
            workers,
            &Cpus::all(),
            window,
            None,
            None,
            &AtomicBool::new(false),
        )
        .expect("measures")
    }

    #[test]
    fn every_workload_counts_work_in_the_window() {
        let addr = Target::plain(backend::start_for_test());
        let up = measure_direct(vec![bulk::worker(addr, bulk::Direction::Up)]);
        let down = measure_direct(vec![bulk::worker(addr, bulk::Direction::Down)]);
        assert!(up.work > 0 && down.work > 0);
        assert!(up.cpu_secs.is_none(), "no proxy, no proxy CPU");
        let rr = measure_direct(vec![rr::worker(addr, 3), rr::worker(addr, 2)]);
        let latency = rr.latency.expect("request/response measures latency");
        assert!(rr.work > 0 && latency.quantile(0.5).is_some());
        let short = measure_direct(vec![short::worker(addr, 4)]);
        assert!(short.work > 0);
        assert_eq!(short.errors, 0);
    }

    #[test]
    fn idle_connections_stay_open() {
        let addr = Target::plain(backend::start_for_test());
        let held = idle::open(addr, 130).expect("opens");
        assert_eq!(held.len(), 130);
    }

    #[test]
    fn every_workload_works_with_a_proxy_header_ahead() {
        // The backend takes the header the load generator sends as if a proxy had sent it.
        let target = Target {
            addr: backend::start_for_test(),
            proxy_header: true,
        };
        assert_eq!(idle::open(target, 70).expect("opens").len(), 70);
        let up = measure_direct(vec![bulk::worker(target, bulk::Direction::Up)]);
        let down = measure_direct(vec![bulk::worker(target, bulk::Direction::Down)]);
        assert!(up.work > 0 && down.work > 0);
        let rr = measure_direct(vec![rr::worker(target, 3)]);
        assert!(rr.work > 0);
        let short = measure_direct(vec![short::worker(target, 4)]);
        assert!(short.work > 0);
        assert_eq!(short.errors, 0);
    }

    #[test]
    fn the_opening_is_the_service_byte_or_a_header_and_it() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        assert_eq!(
            Target::plain(addr).opening(3, backend::ECHO),
            [backend::ECHO]
        );
        let with = Target {
            addr,
            proxy_header: true,
        }
        .opening(3, backend::ECHO);
        let header = proxy_header::header(proxy_header::client_port(3), addr);
        assert_eq!(with[..header.len()], header[..]);
        assert_eq!(with[header.len()..], [backend::ECHO]);
    }

    #[test]
    fn a_refused_connect_is_an_error_not_a_hang() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let window = Window {
            warmup: Duration::ZERO,
            length: Duration::from_millis(10),
        };
        let result = measure(
            vec![rr::worker(Target::plain(addr), 1)],
            &Cpus::all(),
            window,
            None,
            None,
            &AtomicBool::new(false),
        );
        assert!(result.is_err());
    }
}
