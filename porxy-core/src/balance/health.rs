//! Active health checks: one thread for the whole proxy, never one per backend.
//!
//! Every `interval`, each watched backend gets a probe: a non-blocking TCP connect, then
//! optionally a string sent and a reply prefix expected, all within `timeout`. `fall` failed
//! probes in a row take an up backend down; `rise` good ones in a row bring a down backend up.
//! Probes run concurrently on the thread's own mio `Poll`, so a dead backend's timeout delays no
//! other check.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tracing::{debug, warn};

use super::backend::{Backend, Health};
use crate::mailbox::{Mailbox, WAKER_TOKEN};

/// How a tunnel's backends are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckConfig {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) rise: u32,
    pub(crate) fall: u32,
    /// Sent once connected, if set.
    pub(crate) send: Option<Vec<u8>>,
    /// The reply must start with this, if set.
    pub(crate) expect: Option<Vec<u8>>,
}

/// What the API asks of the checker.
pub(crate) enum CheckerMsg {
    /// Check this backend (of the tunnel on `tunnel`) from now on.
    Watch {
        backend: Arc<Backend>,
        config: CheckConfig,
        tunnel: SocketAddr,
    },
    /// Stop checking this backend.
    Unwatch(Arc<Backend>),
    /// End the thread.
    Stop,
}

/// The identity of a watched backend: its `Arc`'s address.
fn id(backend: &Arc<Backend>) -> usize {
    Arc::as_ptr(backend) as usize
}

struct Watched {
    backend: Arc<Backend>,
    config: CheckConfig,
    tunnel: SocketAddr,
    ok_in_row: u32,
    failed_in_row: u32,
    next_at: Instant,
    probe: Option<usize>,
}

enum Step {
    Connecting,
    Sending(usize),
    Reading(Vec<u8>),
}

struct Probe {
    watched: usize,
    stream: TcpStream,
    deadline: Instant,
    step: Step,
}

/// Why a probe failed, for the log line when a backend goes down.
type Verdict = Result<(), String>;

pub(crate) struct Checker {
    poll: Poll,
    rx: Receiver<CheckerMsg>,
    watched: HashMap<usize, Watched>,
    probes: Slab<Probe>,
}

impl Checker {
    pub(crate) fn new() -> io::Result<(Checker, Mailbox<CheckerMsg>)> {
        let poll = Poll::new()?;
        let (mailbox, rx) = crate::mailbox::mailbox(poll.registry())?;
        Ok((
            Checker {
                poll,
                rx,
                watched: HashMap::new(),
                probes: Slab::new(),
            },
            mailbox,
        ))
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            self.start_due_probes(now);
            self.expire_probes(now);
            let timeout = self.next_wakeup().map(|at| {
                at.saturating_duration_since(Instant::now()) + Duration::from_micros(999)
            });
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "health checker poll failed; active checks stop");
                return;
            }
            let mut woken = false;
            for event in events.iter() {
                if event.token() == WAKER_TOKEN {
                    woken = true;
                } else {
                    self.advance(event.token().0);
                }
            }
            if woken && !self.handle_messages() {
                return;
            }
        }
    }

    /// Returns false when told to stop.
    fn handle_messages(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(CheckerMsg::Watch {
                    backend,
                    config,
                    tunnel,
                }) => {
                    // Watching a backend already watched (a tunnel change that kept it) keeps
                    // its rise/fall counts: only the settings change.
                    if let Some(w) = self.watched.get_mut(&id(&backend)) {
                        w.config = config;
                        w.tunnel = tunnel;
                        continue;
                    }
                    self.watched.insert(
                        id(&backend),
                        Watched {
                            backend,
                            config,
                            tunnel,
                            ok_in_row: 0,
                            failed_in_row: 0,
                            next_at: Instant::now(),
                            probe: None,
                        },
                    );
                }
                Ok(CheckerMsg::Unwatch(backend)) => {
                    if let Some(w) = self.watched.remove(&id(&backend)) {
                        if let Some(key) = w.probe {
                            self.probes.try_remove(key);
                        }
                    }
                }
                Ok(CheckerMsg::Stop) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let due = self
            .watched
            .values()
            .filter(|w| w.probe.is_none())
            .map(|w| w.next_at);
        let deadlines = self.probes.iter().map(|(_, p)| p.deadline);
        due.chain(deadlines).min()
    }

    fn start_due_probes(&mut self, now: Instant) {
        let due: Vec<usize> = self
            .watched
            .iter()
            .filter(|(_, w)| w.probe.is_none() && w.next_at <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let Some(w) = self.watched.get_mut(&key) else {
                continue;
            };
            w.next_at = now + w.config.interval;
            let deadline = now + w.config.timeout;
            let entry = self.probes.vacant_entry();
            let token = Token(entry.key());
            let started = TcpStream::connect(w.backend.addr).and_then(|mut stream| {
                self.poll.registry().register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(stream)
            });
            match started {
                Ok(stream) => {
                    w.probe = Some(entry.key());
                    entry.insert(Probe {
                        watched: key,
                        stream,
                        deadline,
                        step: Step::Connecting,
                    });
                }
                Err(e) => self.record(key, Err(format!("connect: {e}"))),
            }
        }
    }

    fn expire_probes(&mut self, now: Instant) {
        let late: Vec<usize> = self
            .probes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        for key in late {
            let probe = self.probes.remove(key);
            let what = match probe.step {
                Step::Connecting => "connect timed out",
                Step::Sending(_) => "send timed out",
                Step::Reading(_) => "no expected reply in time",
            };
            self.record(probe.watched, Err(what.to_string()));
        }
    }

    /// Moves a probe on after a readiness event; records its verdict when it has one.
    fn advance(&mut self, key: usize) {
        let Some(probe) = self.probes.get_mut(key) else {
            return;
        };
        let Some(w) = self.watched.get(&probe.watched) else {
            self.probes.remove(key);
            return;
        };
        let verdict = step_probe(probe, &w.config);
        if let Some(verdict) = verdict {
            let probe = self.probes.remove(key);
            self.record(probe.watched, verdict);
        }
    }

    fn record(&mut self, key: usize, verdict: Verdict) {
        let Some(w) = self.watched.get_mut(&key) else {
            return;
        };
        w.probe = None;
        match verdict {
            Ok(()) => {
                w.failed_in_row = 0;
                w.ok_in_row = w.ok_in_row.saturating_add(1);
                if w.backend.health() == Health::Down && w.ok_in_row >= w.config.rise {
                    w.backend.set_health(Health::Up);
                    warn!(tunnel = %w.tunnel, backend = %w.backend.addr, passed = w.ok_in_row, "backend is up: health checks pass");
                }
            }
            Err(why) => {
                w.ok_in_row = 0;
                w.failed_in_row = w.failed_in_row.saturating_add(1);
                debug!(tunnel = %w.tunnel, backend = %w.backend.addr, %why, "health check failed");
                if w.backend.health() == Health::Up && w.failed_in_row >= w.config.fall {
                    w.backend.set_health(Health::Down);
                    warn!(tunnel = %w.tunnel, backend = %w.backend.addr, failed = w.failed_in_row, reason = %why, "backend is down: health checks fail");
                }
            }
        }
    }
}

/// One step of a probe: `None` while it goes on, else its verdict.
fn step_probe(probe: &mut Probe, config: &CheckConfig) -> Option<Verdict> {
    for _ in 0..16 {
        match &mut probe.step {
            Step::Connecting => {
                match probe.stream.take_error() {
                    Ok(Some(e)) | Err(e) => return Some(Err(format!("connect: {e}"))),
                    Ok(None) => {}
                }
                match probe.stream.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotConnected => return None,
                    Err(e) => return Some(Err(format!("connect: {e}"))),
                }
                probe.step = match (&config.send, &config.expect) {
                    (Some(_), _) => Step::Sending(0),
                    (None, Some(_)) => Step::Reading(Vec::new()),
                    (None, None) => return Some(Ok(())),
                };
            }
            Step::Sending(sent) => {
                let payload = config.send.as_deref().unwrap_or_default();
                if *sent == payload.len() {
                    if config.expect.is_none() {
                        return Some(Ok(()));
                    }
                    probe.step = Step::Reading(Vec::new());
                    continue;
                }
                match probe.stream.write(&payload[*sent..]) {
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
                match probe.stream.read(&mut buf[..want]) {
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
