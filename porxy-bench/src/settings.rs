//! What a run was asked to do: the [`Settings`] resolved from the arguments, and the
//! [`Mode`] their defaults come from. Which sections and phases follow from them is
//! [`crate::plan`]'s.

use std::path::PathBuf;
use std::time::Duration;

use crate::peers::Kind;
use crate::setup::Phase;

/// How long things take, by mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The default: ~8 minutes on 2 cores.
    Full,
    /// ~80 s: a look, not a result.
    Quick,
    /// ~17 s, direct and porxy (both data paths, with the PROXY protocol, with its access
    /// log, terminating TLS, routing TLS by server name) only: keeps the harness building and
    /// working (CI).
    Smoke,
}

impl Mode {
    /// Seconds per measured window.
    pub fn seconds(self) -> f64 {
        match self {
            Mode::Full => 1.0,
            Mode::Quick => 0.3,
            Mode::Smoke => 0.15,
        }
    }

    /// Seconds of load before each window.
    pub fn warmup(self) -> f64 {
        match self {
            Mode::Full => 0.2,
            Mode::Quick => 0.1,
            Mode::Smoke => 0.05,
        }
    }

    /// Rounds per section.
    pub fn rounds(self) -> u32 {
        match self {
            // Loopback on a virtual machine flips between a fast and a slow regime for
            // seconds at a time; the median of five rounds rides over two bad ones.
            Mode::Full => 5,
            Mode::Quick | Mode::Smoke => 1,
        }
    }

    /// Idle connections held in [`Phase::Idle`].
    pub fn idle(self) -> usize {
        match self {
            Mode::Full => 10_000,
            Mode::Quick => 2_000,
            Mode::Smoke => 300,
        }
    }

    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
            Mode::Smoke => "smoke",
        }
    }
}

/// Everything a run was asked to do, defaults resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The mode the defaults came from.
    pub mode: Mode,
    /// Measured window per phase.
    pub window: Duration,
    /// Load before each window.
    pub warmup: Duration,
    /// Rounds per section.
    pub rounds: u32,
    /// Idle connections wanted.
    pub idle: usize,
    /// The kinds of the pinned section, in order.
    pub kinds: Vec<Kind>,
    /// Whether to run the scaling section.
    pub scaling: bool,
    /// Whether to run the busy-polling section (when HAProxy is in the run and not in smoke
    /// mode).
    pub busy: bool,
    /// Whether to run the system-call section (not in smoke mode; the harness turns it off
    /// where perf cannot count).
    pub syscalls: bool,
    /// Whether the TLS kinds are measured with an RSA 2048 certificate too (the harness
    /// turns it off when it cannot make one).
    pub rsa: bool,
    /// Only these phases, when given (for profiling one of them).
    pub only: Option<Vec<Phase>>,
    /// The porxy binary.
    pub porxy: PathBuf,
    /// Another porxy binary, run as porxy-b (`--porxy-b`) beside the first: an A/B of two
    /// builds in one run.
    pub porxy_b: Option<PathBuf>,
}
