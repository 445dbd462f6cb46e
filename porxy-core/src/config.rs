//! Proxy-wide settings, their defaults, and the per-tunnel settings they resolve into (with a
//! tunnel's options, in `tunnel`).

use std::time::Duration;

use crate::accept_mode::AcceptMode;
use crate::error::Error;
use crate::spec::Networks;
use crate::units::MAX_DURATION;

/// Default bytes buffered per direction of a connection while bytes are in flight.
///
/// 16 KiB, as HAProxy's default: measured with bench/run.sh, 64 KiB buffers cost 0.40-0.70
/// CPU-seconds per GB relayed against 0.30-0.35 for 16 KiB (copies through a buffer that fits
/// the L1 cache), for fewer syscalls that do not make up for it.
pub const DEFAULT_BUFFER_SIZE: usize = 16 * 1024;
/// Smallest buffer accepted: below this, syscalls per byte explode.
pub const MIN_BUFFER_SIZE: usize = 1024;
/// Largest buffer accepted.
pub const MAX_BUFFER_SIZE: usize = 64 * 1024 * 1024;
/// Default size of the kernel pipes that carry a direction's bytes on the splice path.
///
/// 256 KiB, four times the kernel's default pipe: measured with bench/run.sh (5 rounds, one
/// bulk connection each way; then pipes were sized by `buffer_size`, so these runs enlarged the
/// buffers too, which carry only the small reads), 16 KiB pipes moved 10.3-10.7 Gbit/s and
/// 64 KiB 11.4-11.6, while 128 KiB and 256 KiB moved 12.0-12.4 at the same or lower CPU per GB:
/// each splice moves more bytes and hands TCP larger segments. The full run with 256 KiB pipes
/// and 16 KiB buffers moved 12.4 / 12.9 Gbit/s. A pipe holds references to the socket's pages, not
/// copies, and only while bytes are in flight; at most [`MAX_PIPES_PER_REACTOR`] are open.
pub const DEFAULT_PIPE_SIZE: usize = 256 * 1024;
/// Smallest pipe size accepted: one page.
pub const MIN_PIPE_SIZE: usize = 4096;
/// Largest pipe size accepted. The kernel caps an unprivileged pipe at
/// `/proc/sys/fs/pipe-max-size` (1 MiB by default); a pipe it will not enlarge keeps the size it
/// has, and holds at most that.
pub const MAX_PIPE_SIZE: usize = 64 * 1024 * 1024;
/// Default bound on an upstream connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a connection may pass no byte before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time a connection may stay half-closed (after either side's FIN).
pub const DEFAULT_HALF_CLOSED_TIMEOUT: Duration = Duration::from_secs(60);
/// Default wait for a slot when every backend is at its `max_conns`.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default connect failures in a row that mark a backend down.
pub const DEFAULT_MAX_FAILS: u32 = 3;
/// Default rest of a passively-down backend when there are no active checks.
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time between two active checks of a backend.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Default bound on one active check.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Default good checks in a row that bring a backend up.
pub const DEFAULT_RISE: u32 = 2;
/// Default failed checks in a row that take a backend down.
pub const DEFAULT_FALL: u32 = 3;
/// Descriptors kept back from the automatic connection limit for porxy's own use.
pub const RESERVED_DESCRIPTORS: usize = 64;
/// Most new clients a second `max_accept_rate` may allow.
pub const MAX_ACCEPT_RATE: u32 = 10_000_000;
/// Default listen backlog (the kernel caps it at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: i32 = 1024;
/// Most kernel pipes each reactor opens at once for splice(2), in use and in stock.
///
/// Each pipe costs two descriptors, which the automatic connection limit keeps back (see
/// [`ProxyConfig::connection_limit`]); where descriptors are scarce a reactor gets fewer, so
/// that pipes never take more than a quarter of them. A direction holds a pipe only while bytes
/// are in it, so the pipes serve whichever connections are busy; a busy direction that finds
/// them all in use copies that burst instead.
pub const MAX_PIPES_PER_REACTOR: usize = 32;
/// Longest busy-poll window accepted: a reactor spins a whole CPU for this long after every
/// burst of traffic, so anything longer is surely a typo (`1s` for `1ms`).
const MAX_BUSY_POLL: Duration = Duration::from_secs(1);

/// Proxy-wide settings. Tunnels may override the timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Number of reactor threads.
    pub reactors: usize,
    /// Bytes buffered per direction per connection.
    pub buffer_size: usize,
    /// Bytes a kernel pipe holds per direction on the splice path (see [`DEFAULT_PIPE_SIZE`]).
    pub pipe_size: usize,
    /// Listen backlog for every tunnel.
    pub backlog: i32,
    /// Default upstream connect timeout.
    pub connect_timeout: Duration,
    /// Default idle timeout.
    pub idle_timeout: Duration,
    /// Default half-closed timeout: how long a connection may stay half-closed, whichever side
    /// sent its FIN first (unless `client_fin_timeout` or `server_fin_timeout` says otherwise).
    pub half_closed_timeout: Duration,
    /// Default time a connection may stay half-closed after the client's FIN (the client has
    /// stopped sending; the upstream's reply may still flow). `None`: `half_closed_timeout`.
    pub client_fin_timeout: Option<Duration>,
    /// Default time a connection may stay half-closed after the upstream's FIN (the upstream
    /// has stopped sending; the client may still send). `None`: `half_closed_timeout`.
    pub server_fin_timeout: Option<Duration>,
    /// Most proxied connections at once; at the limit, new clients wait in the listen backlog
    /// instead of being accepted and reset for lack of descriptors. `None`: what
    /// `RLIMIT_NOFILE` allows (see [`ProxyConfig::connection_limit`]).
    pub max_connections: Option<usize>,
    /// Most new clients accepted per second by the whole proxy (after a quiet spell, a tenth of
    /// a second's worth at once); over it, clients wait in the listen backlog, they are not
    /// reset. `None`, the default: no limit. Changes with
    /// [`ProxyHandle::reload_with`](crate::ProxyHandle::reload_with).
    pub max_accept_rate: Option<u32>,
    /// Relay bulk data with splice(2) through kernel pipes, so those bytes never enter user
    /// space (Linux only; default on there). Tunnels may override it (`splice=on|off`).
    pub splice: bool,
    /// Which threads accept new clients: the reactors themselves (the default), or the listener
    /// thread, which hands them over.
    pub accept: AcceptMode,
    /// Busy polling: after the last event, each reactor keeps polling with a zero timeout for
    /// up to this long before it blocks, so that a message arriving meanwhile finds its thread
    /// awake (lower latency, a busy CPU while traffic flows). `Duration::ZERO`, the default,
    /// is off; at most 1 s.
    pub busy_poll: Duration,
    /// Clients that may connect to a tunnel with no `allow` or `deny` of its own (see
    /// [`TunnelOptions::deny`](crate::TunnelOptions::deny)); default: everyone.
    pub allow: Option<Networks>,
    /// Clients refused by a tunnel with no `allow` or `deny` of its own.
    pub deny: Option<Networks>,
    /// Listening sockets are SO_REUSEPORT: a new porxy with it too can bind their addresses
    /// while this one still listens, and takes every new client from then on (a redeploy
    /// without a moment of refused clients; see `--bind-wait`). Default off: a second porxy
    /// on the same address is refused, as any other process is.
    pub reuse_port: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            reactors: std::thread::available_parallelism().map_or(1, |n| n.get()),
            buffer_size: DEFAULT_BUFFER_SIZE,
            pipe_size: DEFAULT_PIPE_SIZE,
            backlog: DEFAULT_BACKLOG,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            half_closed_timeout: DEFAULT_HALF_CLOSED_TIMEOUT,
            client_fin_timeout: None,
            server_fin_timeout: None,
            max_connections: None,
            max_accept_rate: None,
            splice: crate::splice::SUPPORTED,
            accept: AcceptMode::default(),
            busy_poll: Duration::ZERO,
            allow: None,
            deny: None,
            reuse_port: false,
        }
    }
}

impl ProxyConfig {
    /// This configuration with the settings of `new` that a running proxy can change (see
    /// [`ProxyHandle::reload_with`](crate::ProxyHandle::reload_with)), and the names of those
    /// `new` changes that wait for the next start.
    pub(crate) fn with_runtime_settings(
        &self,
        new: &ProxyConfig,
    ) -> (ProxyConfig, Vec<&'static str>) {
        let ProxyConfig {
            reactors,
            buffer_size,
            pipe_size,
            backlog,
            connect_timeout,
            idle_timeout,
            half_closed_timeout,
            client_fin_timeout,
            server_fin_timeout,
            max_connections,
            max_accept_rate,
            splice,
            accept,
            busy_poll,
            allow,
            deny,
            reuse_port,
        } = new.clone();
        let restart_only = [
            ("reactors", reactors != self.reactors),
            ("buffer_size", buffer_size != self.buffer_size),
            ("pipe_size", pipe_size != self.pipe_size),
            ("backlog", backlog != self.backlog),
            ("max_connections", max_connections != self.max_connections),
            ("accept", accept != self.accept),
            ("busy_poll", busy_poll != self.busy_poll),
            ("reuse_port", reuse_port != self.reuse_port),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect();
        let applied = ProxyConfig {
            connect_timeout,
            idle_timeout,
            half_closed_timeout,
            client_fin_timeout,
            server_fin_timeout,
            max_accept_rate,
            splice,
            allow,
            deny,
            ..self.clone()
        };
        (applied, restart_only)
    }

    /// Checks every value is in range; the builder calls it before starting anything.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |name, reason: String| Err(Error::InvalidSetting { name, reason });
        if self.reactors == 0 || self.reactors > 1024 {
            return invalid(
                "reactors",
                format!("{} is not from 1 to 1024", self.reactors),
            );
        }
        if !(MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&self.buffer_size) {
            return invalid(
                "buffer_size",
                format!(
                    "{} bytes is not from {MIN_BUFFER_SIZE} to {MAX_BUFFER_SIZE}",
                    self.buffer_size
                ),
            );
        }
        if !(MIN_PIPE_SIZE..=MAX_PIPE_SIZE).contains(&self.pipe_size) {
            return invalid(
                "pipe_size",
                format!(
                    "{} bytes is not from {MIN_PIPE_SIZE} to {MAX_PIPE_SIZE}",
                    self.pipe_size
                ),
            );
        }
        if self.max_connections == Some(0) {
            return invalid("max_connections", "must be at least 1".into());
        }
        if self
            .max_accept_rate
            .is_some_and(|rate| !(1..=MAX_ACCEPT_RATE).contains(&rate))
        {
            return invalid(
                "max_accept_rate",
                format!("must be 1 to {MAX_ACCEPT_RATE} a second"),
            );
        }
        if self.backlog < 1 {
            return invalid("backlog", format!("{} is not at least 1", self.backlog));
        }
        for (name, value) in [
            ("connect_timeout", Some(self.connect_timeout)),
            ("idle_timeout", Some(self.idle_timeout)),
            ("half_closed_timeout", Some(self.half_closed_timeout)),
            ("client_fin_timeout", self.client_fin_timeout),
            ("server_fin_timeout", self.server_fin_timeout),
        ] {
            let Some(value) = value else {
                continue;
            };
            if value.is_zero() {
                return invalid(name, "must be more than zero".into());
            }
            if value > MAX_DURATION {
                return invalid(name, "must be at most 365 days".into());
            }
        }
        if self.busy_poll > MAX_BUSY_POLL {
            return invalid(
                "busy_poll",
                format!(
                    "{} is more than 1s; a reactor spins a CPU for this long after every burst \
                     of traffic, so this is probably a typo (windows like `200us` or `1ms` are \
                     usual)",
                    crate::units::format_duration(self.busy_poll)
                ),
            );
        }
        Ok(())
    }

    /// The connection limit in force: `max_connections`, or else two descriptors per
    /// connection out of the soft `RLIMIT_NOFILE`, less [`RESERVED_DESCRIPTORS`] for porxy's own
    /// use (event queues, wakers, listening and control sockets, health checks) and, where
    /// splice(2) exists, two per pipe the reactors may open (up to [`MAX_PIPES_PER_REACTOR`]
    /// each, all together no more than a quarter of the descriptors left: with `ulimit -n`
    /// 1,024, 32 pipes per reactor for 2 reactors, 15 for 8).
    ///
    /// So under the automatic limit, connections and pipes together cannot use up the
    /// descriptors. An explicit `max_connections` should leave as many spare.
    pub fn connection_limit(&self) -> usize {
        self.max_connections
            .unwrap_or_else(|| automatic_limit(soft_nofile(), self.reactors))
    }

    /// Pipes each reactor may open for splice(2): none where there is no splice.
    pub(crate) fn pipes_per_reactor(&self) -> usize {
        pipe_budget(soft_nofile(), self.reactors)
    }
}

/// The soft `RLIMIT_NOFILE` (1024 if it cannot be read).
fn soft_nofile() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Pipes each of `reactors` reactors may open with a soft descriptor limit of `soft`: up to
/// [`MAX_PIPES_PER_REACTOR`], all of them together taking no more than a quarter of the
/// descriptors porxy does not keep for itself.
fn pipe_budget(soft: u64, reactors: usize) -> usize {
    if !crate::splice::SUPPORTED {
        return 0;
    }
    let reactors = reactors.max(1) as u64;
    let quarter = soft.saturating_sub(RESERVED_DESCRIPTORS as u64) / 4;
    let total = (MAX_PIPES_PER_REACTOR as u64 * reactors).min(quarter / 2);
    usize::try_from(total / reactors).unwrap_or(MAX_PIPES_PER_REACTOR)
}

/// The automatic connection limit for a soft descriptor limit of `soft` and `reactors` reactors
/// (see [`ProxyConfig::connection_limit`]).
fn automatic_limit(soft: u64, reactors: usize) -> usize {
    let pipes = pipe_budget(soft, reactors) as u64 * reactors as u64;
    let reserved = RESERVED_DESCRIPTORS as u64 + 2 * pipes;
    let usable = soft.saturating_sub(reserved) / 2;
    usize::try_from(usable).unwrap_or(usize::MAX).max(1)
}

/// The effective timeouts of one tunnel, fixed when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TunnelSettings {
    /// Upstream connect bound.
    pub(crate) connect_timeout: Duration,
    /// No byte either way for this long closes the connection.
    pub(crate) idle_timeout: Duration,
    /// Half-closed for this long after the client's FIN closes the connection.
    pub(crate) client_fin_timeout: Duration,
    /// Half-closed for this long after the upstream's FIN closes the connection.
    pub(crate) server_fin_timeout: Duration,
    /// Waiting this long for a backend slot resets the client.
    pub(crate) queue_timeout: Duration,
    /// Relay with splice(2) (where the platform has it), else copy.
    pub(crate) splice: bool,
}

impl TunnelSettings {
    /// How long a connection may stay half-closed, given which sides have sent their FIN:
    /// the client (`client_fin`), the upstream (`server_fin`). None unless exactly one has:
    /// once both have, the connection is only writing out bytes it holds, and a sink that
    /// stops taking them is the idle timeout's business (a FIN timer counted from the first
    /// FIN could have run out already, and cut a reply that was still flowing).
    pub(crate) fn fin_timeout(&self, client_fin: bool, server_fin: bool) -> Option<Duration> {
        match (client_fin, server_fin) {
            (true, false) => Some(self.client_fin_timeout),
            (false, true) => Some(self.server_fin_timeout),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_takes_the_runtime_settings_and_names_the_others() {
        let running = ProxyConfig::default();
        let mut new = running.clone();
        new.idle_timeout = Duration::from_secs(7);
        new.max_accept_rate = Some(100);
        new.deny = Some(Networks::try_from(["10.0.0.0/8"].as_slice()).unwrap());
        new.reactors = running.reactors + 1;
        new.backlog = 7;
        let (applied, restart_only) = running.with_runtime_settings(&new);
        assert_eq!(restart_only, ["reactors", "backlog"]);
        assert_eq!(applied.idle_timeout, Duration::from_secs(7));
        assert_eq!(applied.max_accept_rate, Some(100));
        assert_eq!(applied.deny, new.deny);
        assert_eq!(
            (applied.reactors, applied.backlog),
            (running.reactors, running.backlog)
        );
        let (same, none) = running.with_runtime_settings(&running);
        assert_eq!((same, none.len()), (running, 0));
    }

    #[test]
    fn the_automatic_limit_leaves_descriptors_for_the_reactors_pipes() {
        if !crate::splice::SUPPORTED {
            assert_eq!(pipe_budget(20_000, 1), 0);
            assert_eq!(automatic_limit(20_000, 1), (20_000 - 64) / 2);
            return;
        }
        // 64 for porxy, 2 per pipe, 2 per connection.
        assert_eq!(pipe_budget(20_000, 1), 32);
        assert_eq!(automatic_limit(20_000, 1), (20_000 - 64 - 2 * 32) / 2);
        assert_eq!(pipe_budget(1024, 2), 32);
        assert_eq!(automatic_limit(1024, 2), (1024 - 64 - 2 * 64) / 2);
        // Scarce descriptors: the pipes take at most a quarter of what is left.
        assert_eq!(
            pipe_budget(1024, 8),
            15,
            "960 / 4 / 2 = 120 pipes for 8 reactors"
        );
        assert_eq!(automatic_limit(1024, 8), (1024 - 64 - 2 * 120) / 2);
        assert_eq!(pipe_budget(128, 1), 8);
        assert_eq!(automatic_limit(128, 1), (128 - 64 - 2 * 8) / 2);
        assert_eq!(pipe_budget(64, 4), 0);
        assert_eq!(automatic_limit(60, 4), 1, "never zero");
    }

    #[test]
    fn the_fin_timeout_follows_the_side_that_sent_fin() {
        let settings = TunnelSettings {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            client_fin_timeout: Duration::from_secs(3),
            server_fin_timeout: Duration::from_secs(7),
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            splice: false,
        };
        assert_eq!(
            settings.fin_timeout(true, false),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            settings.fin_timeout(false, true),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            settings.fin_timeout(true, true),
            None,
            "both FINs in: only held bytes are left, the idle timeout's business"
        );
        assert_eq!(settings.fin_timeout(false, false), None);
    }

    #[test]
    fn zero_fin_timeouts_are_refused_by_name() {
        for config in [
            ProxyConfig {
                client_fin_timeout: Some(Duration::ZERO),
                ..ProxyConfig::default()
            },
            ProxyConfig {
                server_fin_timeout: Some(Duration::ZERO),
                ..ProxyConfig::default()
            },
        ] {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("fin_timeout"), "{error}");
        }
    }

    #[test]
    fn busy_poll_is_off_by_default_and_at_most_a_second() {
        assert_eq!(ProxyConfig::default().busy_poll, Duration::ZERO);
        for ok in [Duration::ZERO, Duration::from_micros(200), MAX_BUSY_POLL] {
            let config = ProxyConfig {
                busy_poll: ok,
                ..ProxyConfig::default()
            };
            assert!(config.validate().is_ok(), "{ok:?}");
        }
        let error = ProxyConfig {
            busy_poll: Duration::from_millis(1500),
            ..ProxyConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            matches!(
                &error,
                Error::InvalidSetting {
                    name: "busy_poll",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("invalid setting `busy_poll`: 1s 500ms is more than 1s;"),
            "{error}"
        );
        assert!(error.to_string().contains("typo"), "{error}");
    }
}
