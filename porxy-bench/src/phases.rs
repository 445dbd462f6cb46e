//! How one phase of a setup is loaded: the workers of a timed phase, and the idle phase (open
//! many connections, measure the proxy's memory, close them). Over TLS (a TLS section's setup)
//! the same phases use the TLS workloads of [`crate::load::tls`], each measurement with a fresh
//! client configuration (see there why).

use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::load::bulk::{self, Direction};
use crate::load::tls::{self, Resumption, TlsClient};
use crate::load::{self, idle, rr, sample, short, Target, Worker};
use crate::plan::{Phase, Settings, RR_CONNS, SHORT_IN_FLIGHT};
use crate::report::Memory;
use crate::sys::Cpus;

/// How long a proxy must use no CPU to count as settled after the idle phase.
const QUIET: Duration = Duration::from_millis(100);
/// The longest wait for it.
const QUIET_LIMIT: Duration = Duration::from_secs(5);

/// The workers of one timed phase; the multi-connection phases are split over `threads`.
/// With `tls`, the connections are TLS ones (the handshake phases need it).
pub fn workers(
    phase: Phase,
    target: Target,
    threads: usize,
    tls: Option<&TlsClient>,
) -> Result<Vec<Worker>> {
    let split = |total: usize| -> Vec<usize> {
        (0..threads)
            .map(|i| total / threads + usize::from(i < total % threads))
            .filter(|&n| n > 0)
            .collect()
    };
    let addr = target.addr;
    let workers = match (phase, tls) {
        (Phase::BulkUp, None) => vec![bulk::worker(target, Direction::Up)],
        (Phase::BulkDown, None) => vec![bulk::worker(target, Direction::Down)],
        (Phase::BulkUp, Some(tls)) => {
            vec![tls::bulk::worker(
                addr,
                tls.config(Resumption::Off)?,
                Direction::Up,
            )]
        }
        (Phase::BulkDown, Some(tls)) => {
            vec![tls::bulk::worker(
                addr,
                tls.config(Resumption::Off)?,
                Direction::Down,
            )]
        }
        (Phase::Rr1, None) => vec![rr::worker(target, 1)],
        (Phase::Rr64, None) => split(RR_CONNS)
            .into_iter()
            .map(|n| rr::worker(target, n))
            .collect(),
        (Phase::Short, None) => split(SHORT_IN_FLIGHT)
            .into_iter()
            .map(|n| short::worker(target, n))
            .collect(),
        // The plan never asks for these over TLS (see `plan.rs`).
        (Phase::Rr1 | Phase::Rr64 | Phase::Short, Some(_)) => {
            return Err(Error::new(format!("{phase:?} has no TLS workload")));
        }
        (Phase::Handshake | Phase::Resumed, Some(tls)) => {
            let resumption = match phase {
                Phase::Resumed => Resumption::On,
                _ => Resumption::Off,
            };
            split(SHORT_IN_FLIGHT)
                .into_iter()
                .map(|n| tls::handshakes::worker(addr, tls.clone(), resumption, n))
                .collect()
        }
        (Phase::Handshake | Phase::Resumed, None) => {
            return Err(Error::new(format!("{phase:?} needs a TLS listener")));
        }
        (Phase::Idle, _) => Vec::new(),
    };
    Ok(workers)
}

/// Opens the idle connections through the proxy (TLS ones with `tls`), measures its memory
/// (and its CPU while they sit idle), closes them and measures again.
pub fn idle_phase(
    target: Target,
    tls: Option<&TlsClient>,
    settings: &Settings,
    pid: u32,
    cpus: &Cpus,
    interrupted: &AtomicBool,
) -> Result<Memory> {
    let settle = Duration::from_millis(200);
    let hold = settings.window.min(Duration::from_secs(1));
    let before = sample(Some(pid))?.expect("a pid was given");
    let count = settings.idle;
    let config = tls.map(|tls| tls.config(Resumption::Off)).transpose()?;
    let opener = {
        let cpus = cpus.clone();
        thread::spawn(move || {
            cpus.pin_current_thread()?;
            match config {
                Some(config) => tls::idle::open(target.addr, &config, count),
                None => idle::open(target, count),
            }
        })
    };
    let opened_at = Instant::now();
    let held = opener
        .join()
        .map_err(|_| Error::new("the idle-connection thread panicked"))??;
    let open_secs = opened_at.elapsed().as_secs_f64();
    crate::waiting::sleep_checked(settle, interrupted)?;
    let open = sample(Some(pid))?.expect("a pid was given");
    crate::waiting::sleep_checked(hold, interrupted)?;
    let open_later = sample(Some(pid))?.expect("a pid was given");
    drop(held);
    crate::waiting::sleep_checked(settle * 2, interrupted)?;
    let closed = sample(Some(pid))?.expect("a pid was given");
    wait_until_idle(pid, interrupted)?;
    Ok(Memory {
        conns: count,
        open_secs,
        before_kib: before.rss_kib,
        open_kib: open.rss_kib,
        closed_kib: closed.rss_kib,
        idle_cpu_share: load::cpu_seconds(open, open_later) / hold.as_secs_f64(),
    })
}

/// Waits (up to [`QUIET_LIMIT`]) until the proxy has used no CPU for [`QUIET`], so that the
/// phase after the idle one never pays for tearing its thousands of connections (TLS sessions,
/// for the TLS kinds) down. Here every proxy is quiet by the first look, 400 ms after the
/// close; a slower machine may need more.
fn wait_until_idle(pid: u32, interrupted: &AtomicBool) -> Result<()> {
    let deadline = Instant::now() + QUIET_LIMIT;
    let mut last = sample(Some(pid))?.expect("a pid was given");
    while Instant::now() < deadline {
        crate::waiting::sleep_checked(QUIET, interrupted)?;
        let now = sample(Some(pid))?.expect("a pid was given");
        if now.cpu_ticks == last.cpu_ticks {
            break;
        }
        last = now;
    }
    Ok(())
}
