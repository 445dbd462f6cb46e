//! Active health checks: one thread for the whole proxy, never one per backend.
//!
//! Every `interval`, each watched backend gets a probe ([`probe`]): a non-blocking TCP
//! connect, a TLS handshake for a TLS backend, then optionally a string sent and a reply prefix
//! expected, all within `timeout`. `fall` failed
//! probes in a row take an up backend down; `rise` good ones in a row bring a down backend up.
//! Probes run concurrently on the thread's own mio `Poll`, so a dead backend's timeout delays no
//! other check.

mod probe;
mod streak;

use std::collections::HashMap;
use std::io::{self, ErrorKind};
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
pub(crate) use probe::CheckTls;
use probe::{Probe, Verdict};
use streak::Streak;

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
    /// TLS, for a TLS backend (`check_tls`): the handshake must pass, and the bytes above go
    /// inside it.
    pub(crate) tls: Option<CheckTls>,
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
                    entry.insert(Probe::new(key, stream, deadline));
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
            self.record(probe.watched, Err(probe.timed_out().to_string()));
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
        let verdict = probe.step(&w.config);
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::balance::backend::PassiveHealth;

    pub(super) fn config(rise: u32, fall: u32) -> CheckConfig {
        CheckConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise,
            fall,
            send: None,
            expect: None,
            tls: None,
        }
    }

    pub(super) fn backend() -> Backend {
        Backend::new("127.0.0.1:1".parse().unwrap(), 1, None)
    }

    /// Connect failures (passive health) with active checks on: `max_fails` 1.
    pub(super) const PASSIVE: PassiveHealth = PassiveHealth {
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        active_checks: true,
    };

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
