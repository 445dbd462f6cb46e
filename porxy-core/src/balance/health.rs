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
    streak: Streak,
    next_at: Instant,
    probe: Option<usize>,
}

/// The rise and fall counts of one watched backend, and the verdicts they lead to. No IO: the
/// checker feeds it each probe's outcome.
#[derive(Debug)]
struct Streak {
    ok_in_row: u32,
    failed_in_row: u32,
    /// The backend's [`Backend::downs`] when last looked at.
    downs_seen: u64,
}

impl Streak {
    fn new(backend: &Backend) -> Streak {
        Streak {
            ok_in_row: 0,
            failed_in_row: 0,
            downs_seen: backend.downs(),
        }
    }

    /// Counts one probe's outcome; changes the backend's health when `rise` good probes (or
    /// `fall` bad ones) in a row say so, and returns the new health then.
    fn record(&mut self, backend: &Backend, passed: bool, config: &CheckConfig) -> Option<Health> {
        // Connect failures took it down since the last probe: the good probes before that fall
        // say nothing about it now, and it must pass `rise` more.
        let downs = backend.downs();
        if downs != self.downs_seen {
            self.downs_seen = downs;
            self.ok_in_row = 0;
        }
        if passed {
            self.failed_in_row = 0;
            self.ok_in_row = self.ok_in_row.saturating_add(1);
            if backend.health() == Health::Down && self.ok_in_row >= config.rise {
                backend.set_health(Health::Up);
                return Some(Health::Up);
            }
        } else {
            self.ok_in_row = 0;
            self.failed_in_row = self.failed_in_row.saturating_add(1);
            if backend.health() == Health::Up && self.failed_in_row >= config.fall {
                backend.set_health(Health::Down);
                self.downs_seen = backend.downs();
                return Some(Health::Down);
            }
        }
        None
    }
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
                            streak: Streak::new(&backend),
                            backend,
                            config,
                            tunnel,
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
        let changed = w.streak.record(&w.backend, verdict.is_ok(), &w.config);
        match (changed, verdict) {
            (Some(Health::Up), _) => {
                warn!(tunnel = %w.tunnel, backend = %w.backend.addr, passed = w.streak.ok_in_row, "backend is up: health checks pass");
            }
            (Some(Health::Down), Err(why)) => {
                warn!(tunnel = %w.tunnel, backend = %w.backend.addr, failed = w.streak.failed_in_row, reason = %why, "backend is down: health checks fail");
            }
            (_, Err(why)) => {
                debug!(tunnel = %w.tunnel, backend = %w.backend.addr, %why, "health check failed");
            }
            (_, Ok(())) => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::backend::PassiveHealth;

    fn config(rise: u32, fall: u32) -> CheckConfig {
        CheckConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise,
            fall,
            send: None,
            expect: None,
        }
    }

    fn backend() -> Backend {
        Backend::new("127.0.0.1:1".parse().unwrap(), 1, None)
    }

    /// Connect failures (passive health) with active checks on: `max_fails` 1.
    const PASSIVE: PassiveHealth = PassiveHealth {
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        active_checks: true,
    };

    #[test]
    fn fall_bad_checks_in_a_row_take_it_down() {
        let (b, c) = (backend(), config(2, 3));
        let mut s = Streak::new(&b);
        assert_eq!(s.record(&b, false, &c), None);
        assert_eq!(s.record(&b, false, &c), None);
        assert_eq!(s.record(&b, true, &c), None, "a good check ends the run");
        assert_eq!(s.record(&b, false, &c), None);
        assert_eq!(s.record(&b, false, &c), None);
        assert_eq!(b.health(), Health::Up, "two bad in a row are not three");
        assert_eq!(s.record(&b, false, &c), Some(Health::Down));
        assert_eq!(b.health(), Health::Down);
        assert_eq!(
            s.record(&b, false, &c),
            None,
            "already down: no new verdict"
        );
    }

    #[test]
    fn rise_good_checks_in_a_row_bring_it_back() {
        let (b, c) = (backend(), config(3, 1));
        let mut s = Streak::new(&b);
        assert_eq!(s.record(&b, false, &c), Some(Health::Down));
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(s.record(&b, false, &c), None, "a bad check ends the run");
        assert_eq!(b.health(), Health::Down);
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(b.health(), Health::Down, "two good in a row are not three");
        assert_eq!(s.record(&b, true, &c), Some(Health::Up));
        assert_eq!(b.health(), Health::Up);
    }

    /// Regression: good checks counted before connect failures took the backend down brought it
    /// back on the next good check, whatever `rise` said.
    #[test]
    fn after_a_passive_down_it_needs_rise_good_checks_again() {
        let (b, c) = (backend(), config(3, 3));
        let mut s = Streak::new(&b);
        for _ in 0..5 {
            assert_eq!(s.record(&b, true, &c), None, "up already");
        }
        assert!(b.connect_failed(Instant::now(), &PASSIVE), "marked down");
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(s.record(&b, true, &c), None);
        assert_eq!(b.health(), Health::Down, "two good checks since the fall");
        assert_eq!(s.record(&b, true, &c), Some(Health::Up));
    }

    /// A connect failure that does not take the backend down changes nothing for the checks.
    #[test]
    fn a_connect_failure_short_of_max_fails_leaves_the_counts_alone() {
        let (b, c) = (backend(), config(2, 2));
        let passive = PassiveHealth {
            max_fails: 3,
            ..PASSIVE
        };
        let mut s = Streak::new(&b);
        assert_eq!(s.record(&b, false, &c), None);
        assert!(!b.connect_failed(Instant::now(), &passive), "one of three");
        assert_eq!(s.record(&b, false, &c), Some(Health::Down), "fall=2");
        assert_eq!(s.record(&b, true, &c), None);
        assert!(!b.connect_failed(Instant::now(), &passive), "down already");
        assert_eq!(s.record(&b, true, &c), Some(Health::Up), "rise=2");
    }

    /// The checker's own bookkeeping uses the streak: recorded verdicts move the backend.
    #[test]
    fn the_checker_applies_rise_after_a_passive_down() {
        let (mut checker, _mailbox) = Checker::new().unwrap();
        let b = Arc::new(backend());
        let key = id(&b);
        checker.watched.insert(
            key,
            Watched {
                streak: Streak::new(&b),
                backend: b.clone(),
                config: config(2, 2),
                tunnel: "127.0.0.1:2".parse().unwrap(),
                next_at: Instant::now(),
                probe: None,
            },
        );
        for _ in 0..4 {
            checker.record(key, Ok(()));
        }
        assert!(b.connect_failed(Instant::now(), &PASSIVE));
        checker.record(key, Ok(()));
        assert_eq!(b.health(), Health::Down, "one good check is not rise=2");
        checker.record(key, Ok(()));
        assert_eq!(b.health(), Health::Up);
        checker.record(key, Err("refused".into()));
        checker.record(key, Err("refused".into()));
        assert_eq!(b.health(), Health::Down, "fall=2");
    }
}
