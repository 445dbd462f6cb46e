//! What a run measures: the sections, their setups and phases, and the timing of each mode.
//!
//! - **pinned**: each kind with one thread, the proxy on CPU 0, backend and load on CPU 1;
//!   phases: idle connections, bulk up, bulk down, request/response over 1 and 64
//!   connections, short connections.
//! - **scaling**: porxy, HAProxy and nginx with 1 and with 2 threads, nothing pinned (backend
//!   and load with 2 threads too); phases: bulk both ways, request/response over 64
//!   connections, short connections.
//! - **busy**: porxy with `--busy-poll 1ms` and HAProxy with `busy-polling`, pinned as in the
//!   pinned section, direct beside them; phases: request/response over 1 and 64 connections.
//!   Busy polling is neither proxy's default and keeps a CPU busy while traffic flows, so it is
//!   measured apart, against each other; only with HAProxy in the run, never in smoke mode.
//! - **syscalls**: every proxy of the pinned section, pinned the same way, one round; phases:
//!   bulk both ways, request/response over 1 and 64 connections, short connections. perf counts
//!   the proxy's system calls in each window (see [`crate::syscalls`]); counting slows every
//!   call, so this section reports the counts per unit of work and nothing else. Never in smoke
//!   mode, and only where perf can count them.
//!
//! Within a section, every round runs every setup in turn, so drift over time hits all alike.
//! The pinned section measures porxy twice: with its defaults (splice on Linux) and with
//! `splice=off` (`porxy-copy`), the copy path every byte of which passes through a buffer.
//! When asked for, it measures porxy and HAProxy with the PROXY protocol on both sides
//! (`porxy-proxy`, `haproxy-proxy`) beside themselves without, for its cost; like the copy
//! path, that is a pinned-section question (and a system-call one), not scaling's or busy
//! polling's.

use std::path::PathBuf;
use std::time::Duration;

use crate::peers::{Kind, Setup};

/// One measurement of a setup (named in `--phases` as idle, bulk-up, bulk-down, rr1, rr64,
/// short).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Phase {
    /// Many idle connections held: the proxy's resident memory per connection.
    Idle,
    /// Bulk transfer, client to backend, one connection.
    BulkUp,
    /// Bulk transfer, backend to client, one connection.
    BulkDown,
    /// 64-byte request/response over one connection.
    Rr1,
    /// 64-byte request/response over 64 connections.
    Rr64,
    /// Connect, one 64-byte exchange, close.
    Short,
}

/// Every timed phase (all but [`Phase::Idle`]), in the order a setup goes through them.
const TIMED: [Phase; 5] = [
    Phase::BulkUp,
    Phase::BulkDown,
    Phase::Rr1,
    Phase::Rr64,
    Phase::Short,
];

/// Request/response connections in [`Phase::Rr64`].
pub const RR_CONNS: usize = 64;
/// Short connections in flight in [`Phase::Short`].
pub const SHORT_IN_FLIGHT: usize = 32;

/// How long things take, by mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The default: ~8 minutes on 2 cores.
    Full,
    /// ~80 s: a look, not a result.
    Quick,
    /// ~7 s, direct and porxy (both data paths, and with the PROXY protocol) only: keeps the
    /// harness building and working (CI).
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
    /// Only these phases, when given (for profiling one of them).
    pub only: Option<Vec<Phase>>,
    /// The porxy binary.
    pub porxy: PathBuf,
}

/// Which section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SectionId {
    /// One thread each, pinned.
    Pinned,
    /// 1 and 2 threads, unpinned.
    Scaling,
    /// Busy polling, pinned.
    Busy,
    /// System calls counted, pinned.
    Syscalls,
}

/// A group of setups measured under the same conditions.
#[derive(Debug, Clone)]
pub struct Section {
    /// Which.
    pub id: SectionId,
    /// The setups, in the order each round runs them.
    pub setups: Vec<Setup>,
    /// The phases each setup goes through, in order.
    pub phases: Vec<Phase>,
    /// Whether the proxy gets CPU 0 and the rest CPU 1.
    pub pinned: bool,
    /// Backend threads, and load threads for the multi-connection phases.
    pub threads: usize,
    /// How many times each setup runs.
    pub rounds: u32,
}

impl Section {
    /// The title above its table.
    pub fn title(&self) -> &'static str {
        match self.id {
            SectionId::Pinned => {
                "Pinned: proxy on CPU 0, backend and load generator on CPU 1, one thread each"
            }
            SectionId::Scaling => {
                "Scaling: 1 and 2 threads (porxy reactors, HAProxy nbthread, nginx workers), unpinned"
            }
            SectionId::Busy => {
                "Busy polling: porxy --busy-poll 1ms and HAProxy busy-polling, pinned as above; \
                 ratios to HAProxy with busy-polling"
            }
            SectionId::Syscalls => {
                "System calls: the proxy's, per unit of work, counted by perf; pinned as above, \
                 one round"
            }
        }
    }
}

/// The sections of a run: the pinned one with `kinds`, the scaling one and the busy-polling one
/// when asked for.
pub fn sections(settings: &Settings) -> Vec<Section> {
    let mut sections = vec![Section {
        id: SectionId::Pinned,
        setups: settings
            .kinds
            .iter()
            .map(|&kind| Setup::new(kind, 1))
            .collect(),
        phases: [&[Phase::Idle][..], &TIMED].concat(),
        pinned: true,
        threads: 1,
        rounds: settings.rounds,
    }];
    if settings.scaling {
        let mut setups = Vec::new();
        for &kind in &settings.kinds {
            match kind {
                Kind::Direct if settings.mode != Mode::Smoke => setups.push(Setup::new(kind, 1)),
                // The copy path's and the PROXY protocol's figures are in the pinned section;
                // scaling shows the default.
                Kind::Direct | Kind::PorxyCopy | Kind::PorxyProxy | Kind::HaproxyProxy => {}
                _ => {
                    setups.push(Setup::new(kind, 1));
                    setups.push(Setup::new(kind, 2));
                }
            }
        }
        sections.push(Section {
            id: SectionId::Scaling,
            setups,
            phases: vec![Phase::BulkUp, Phase::BulkDown, Phase::Rr64, Phase::Short],
            pinned: false,
            threads: 2,
            rounds: settings.rounds,
        });
    }
    // HAProxy is left out of `kinds` when it is not installed: then there is nothing to
    // compare porxy's busy polling with.
    if settings.busy && settings.mode != Mode::Smoke && settings.kinds.contains(&Kind::Haproxy) {
        let setups = settings
            .kinds
            .iter()
            .filter_map(|&kind| match kind {
                Kind::Direct => Some(Setup::new(kind, 1)),
                Kind::Porxy | Kind::Haproxy => Some(Setup::busy(kind)),
                // Busy polling is measured on porxy's default data path, without the PROXY
                // protocol; nginx has none.
                Kind::PorxyCopy | Kind::PorxyProxy | Kind::HaproxyProxy | Kind::Nginx => None,
            })
            .collect();
        sections.push(Section {
            id: SectionId::Busy,
            setups,
            phases: vec![Phase::Rr1, Phase::Rr64],
            pinned: true,
            threads: 1,
            rounds: settings.rounds,
        });
    }
    if settings.syscalls && settings.mode != Mode::Smoke {
        let setups: Vec<Setup> = settings
            .kinds
            .iter()
            .filter(|&&kind| kind != Kind::Direct)
            .map(|&kind| Setup::new(kind, 1))
            .collect();
        if !setups.is_empty() {
            sections.push(Section {
                id: SectionId::Syscalls,
                setups,
                phases: TIMED.to_vec(),
                pinned: true,
                threads: 1,
                // Counts per unit of work barely move from one round to the next.
                rounds: 1,
            });
        }
    }
    if let Some(only) = &settings.only {
        for section in &mut sections {
            section.phases.retain(|phase| only.contains(phase));
        }
        sections.retain(|section| !section.phases.is_empty());
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kinds: &[Kind], only: Option<Vec<Phase>>) -> Settings {
        Settings {
            mode: Mode::Full,
            window: Duration::from_secs(1),
            warmup: Duration::ZERO,
            rounds: 1,
            idle: 10,
            kinds: kinds.to_vec(),
            scaling: true,
            busy: true,
            syscalls: false,
            porxy: PathBuf::from("porxy"),
            only,
        }
    }

    fn setups(section: &Section) -> Vec<String> {
        section.setups.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_copy_path_is_measured_pinned_but_not_scaled() {
        let all = [Kind::Direct, Kind::Porxy, Kind::PorxyCopy, Kind::Haproxy];
        let sections = sections(&settings(&all, None));
        assert_eq!(sections.len(), 3);
        assert_eq!(
            setups(&sections[0]),
            ["direct", "porxy×1", "porxy-copy×1", "haproxy×1"]
        );
        assert_eq!(
            setups(&sections[1]),
            ["direct", "porxy×1", "porxy×2", "haproxy×1", "haproxy×2"]
        );
    }

    #[test]
    fn only_keeps_the_phases_asked_for_and_drops_emptied_sections() {
        let kinds = [Kind::Porxy];
        let two = sections(&settings(&kinds, Some(vec![Phase::Rr1, Phase::BulkUp])));
        // Order stays the plan's, not the argument's; Rr1 is not in the scaling section.
        assert_eq!(two[0].phases, [Phase::BulkUp, Phase::Rr1]);
        assert_eq!(two[1].phases, [Phase::BulkUp]);
        let idle = sections(&settings(&kinds, Some(vec![Phase::Idle])));
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].id, SectionId::Pinned);
    }

    #[test]
    fn the_busy_section_pins_porxy_and_haproxy_busy_polling_beside_direct() {
        let all = [
            Kind::Direct,
            Kind::Porxy,
            Kind::PorxyCopy,
            Kind::Haproxy,
            Kind::Nginx,
        ];
        let sections = sections(&settings(&all, None));
        let ids: Vec<SectionId> = sections.iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            [SectionId::Pinned, SectionId::Scaling, SectionId::Busy]
        );
        let busy = &sections[2];
        assert_eq!(
            setups(busy),
            [
                "direct",
                "porxy×1 --busy-poll 1ms",
                "haproxy×1 busy-polling"
            ]
        );
        assert_eq!(
            busy.setups.iter().map(|s| s.busy).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert_eq!(busy.phases, [Phase::Rr1, Phase::Rr64]);
        assert!(busy.pinned, "pinned like the pinned section");
        assert_eq!(busy.threads, sections[0].threads);
        // Nothing else busy-polls.
        assert!(sections[..2]
            .iter()
            .all(|s| s.setups.iter().all(|x| !x.busy)));
    }

    #[test]
    fn the_busy_section_needs_haproxy_a_real_run_and_no_opt_out() {
        let has_busy = |s: &Settings| sections(s).iter().any(|x| x.id == SectionId::Busy);
        let with_haproxy = settings(&[Kind::Porxy, Kind::Haproxy], None);
        assert!(has_busy(&with_haproxy));
        assert!(!has_busy(&settings(&[Kind::Direct, Kind::Porxy], None)));
        assert!(!has_busy(&Settings {
            mode: Mode::Smoke,
            ..with_haproxy.clone()
        }));
        assert!(has_busy(&Settings {
            mode: Mode::Quick,
            ..with_haproxy.clone()
        }));
        assert!(!has_busy(&Settings {
            busy: false,
            ..with_haproxy
        }));
    }

    #[test]
    fn only_applies_to_the_busy_section_too() {
        let kinds = [Kind::Porxy, Kind::Haproxy];
        let rr1 = sections(&settings(&kinds, Some(vec![Phase::Rr1])));
        let busy = rr1.iter().find(|s| s.id == SectionId::Busy).unwrap();
        assert_eq!(busy.phases, [Phase::Rr1]);
        let bulk = sections(&settings(&kinds, Some(vec![Phase::BulkUp])));
        assert!(bulk.iter().all(|s| s.id != SectionId::Busy), "{bulk:?}");
    }

    #[test]
    fn the_proxy_protocol_kinds_are_pinned_and_counted_but_not_scaled_or_busy() {
        let kinds = [
            Kind::Porxy,
            Kind::PorxyProxy,
            Kind::Haproxy,
            Kind::HaproxyProxy,
        ];
        let sections = sections(&Settings {
            syscalls: true,
            ..settings(&kinds, None)
        });
        let ids: Vec<SectionId> = sections.iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            [
                SectionId::Pinned,
                SectionId::Scaling,
                SectionId::Busy,
                SectionId::Syscalls
            ]
        );
        let pinned = ["porxy×1", "porxy-proxy×1", "haproxy×1", "haproxy-proxy×1"];
        assert_eq!(setups(&sections[0]), pinned);
        assert_eq!(
            setups(&sections[1]),
            ["porxy×1", "porxy×2", "haproxy×1", "haproxy×2"]
        );
        assert_eq!(
            setups(&sections[2]),
            ["porxy×1 --busy-poll 1ms", "haproxy×1 busy-polling"]
        );
        assert_eq!(setups(&sections[3]), pinned);
    }

    #[test]
    fn the_syscall_section_counts_every_proxy_once_but_never_in_smoke_mode() {
        let all = [Kind::Direct, Kind::Porxy, Kind::PorxyCopy, Kind::Nginx];
        let counted = Settings {
            syscalls: true,
            rounds: 5,
            ..settings(&all, None)
        };
        let sections = sections(&counted);
        let last = sections.last().unwrap();
        assert_eq!(last.id, SectionId::Syscalls);
        assert_eq!(setups(last), ["porxy×1", "porxy-copy×1", "nginx×1"]);
        assert_eq!(last.rounds, 1);
        assert!(last.pinned);
        assert!(!last.phases.contains(&Phase::Idle));
        assert_eq!(sections[0].rounds, 5, "the others keep their rounds");
        let has = |s: &Settings| {
            super::sections(s)
                .iter()
                .any(|x| x.id == SectionId::Syscalls)
        };
        assert!(!has(&Settings {
            mode: Mode::Smoke,
            ..counted.clone()
        }));
        assert!(!has(&Settings {
            syscalls: false,
            ..counted.clone()
        }));
        assert!(!has(&Settings {
            kinds: vec![Kind::Direct],
            ..counted
        }));
    }
}
