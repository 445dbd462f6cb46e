//! The results of a run and the markdown report made from them.
//!
//! Each figure is aggregated over the rounds in the way that is least noisy for it: rates
//! (Gbit/s, requests/s, connections/s) and memory per connection are the median of the rounds;
//! CPU per unit is total CPU time over total work (the tick counter is coarse, so sums beat
//! medians); latency quantiles come from the histograms of all rounds merged. Each figure is
//! shown with its ratio to the better of HAProxy and nginx with the same thread count (and the
//! PROXY protocol on or off alike, TLS terminated or not alike, TLS routed by server name or
//! not alike, an access log on or off alike); a `-proxy`, `-sni` or `-log` kind's figures are
//! also shown over its plain self's, and porxy's over porxy-b's ([`paired`]); a `-log` kind's
//! access log lines beside the connections opened through it ([`log_lines`]). The share of
//! resumed handshakes is the resumed connections of all rounds over all the connections
//! counted.

mod cells;
mod figures;
mod log_lines;
mod paired;
mod table;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::access_log::Lines;
use crate::child::Exit;
use crate::load::tls::probe::Negotiated;
use crate::load::Measure;
use crate::peers::{Kind, Setup};
use crate::plan::{Phase, SectionId, Settings};
use crate::programs::{self, Programs};
use crate::sys::{self, MachineCpu, Nofile};

pub use table::render;

/// What the idle-connection phase found.
#[derive(Debug, Clone)]
pub struct Memory {
    /// Connections held.
    pub conns: usize,
    /// Seconds it took to open (and echo on) all of them.
    pub open_secs: f64,
    /// The proxy's RSS before opening them, KiB.
    pub before_kib: u64,
    /// With all of them open and idle, KiB.
    pub open_kib: u64,
    /// Shortly after closing them, KiB.
    pub closed_kib: u64,
    /// The proxy's CPU use while they sat idle, as a share of one CPU.
    pub idle_cpu_share: f64,
}

impl Memory {
    /// RSS growth per connection, KiB.
    pub fn per_conn_kib(&self) -> f64 {
        (self.open_kib as f64 - self.before_kib as f64) / self.conns.max(1) as f64
    }

    /// One progress line.
    pub fn summary(&self) -> String {
        format!(
            "Idle: {} conns opened in {:.2}s, RSS {} -> {} KiB ({:.2} KiB/conn), {} KiB after closing, CPU while idle {:.1}%",
            self.conns,
            self.open_secs,
            self.before_kib,
            self.open_kib,
            self.per_conn_kib(),
            self.closed_kib,
            self.idle_cpu_share * 100.0
        )
    }
}

/// The machine and the programs, for the report's header.
#[derive(Debug, Clone)]
pub struct Environment {
    cpus: usize,
    kernel: String,
    load_at_start: String,
    versions: Vec<String>,
    nofile: String,
}

impl Environment {
    /// Looks at the machine and asks each program its version.
    pub fn capture(settings: &Settings, programs: &Programs, nofile: &Nofile) -> Self {
        let mut versions = vec![format!(
            "porxy: {} ({})",
            programs::version_line(&programs.porxy, "--version"),
            programs.porxy.display()
        )];
        if let Some(other) = &programs.porxy_b {
            versions.push(format!(
                "porxy-b: {} ({})",
                programs::version_line(other, "--version"),
                other.display()
            ));
        }
        let runs = |kind| settings.kinds.iter().any(|k| k.program() == kind);
        if runs(Kind::Haproxy) {
            if let Some(haproxy) = &programs.haproxy {
                versions.push(programs::version_line(haproxy, "-v"));
            }
        }
        if runs(Kind::Nginx) {
            if let Some(nginx) = &programs.nginx {
                versions.push(programs::version_line(nginx, "-v"));
            }
        }
        Environment {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            load_at_start: load_average(),
            versions,
            nofile: format!("RLIMIT_NOFILE {}/{}", nofile.soft, nofile.hard),
        }
    }
}

/// How one proxy process ended, and what it logged.
#[derive(Debug, Clone)]
struct Stop {
    setup: Setup,
    round: u32,
    exit: Exit,
    log: Vec<String>,
}

/// Everything measured in a run.
#[derive(Debug)]
pub struct Results {
    settings: Settings,
    env: Environment,
    notes: Vec<String>,
    timed: BTreeMap<(SectionId, Setup, Phase), Vec<Measure>>,
    memory: BTreeMap<(SectionId, Setup), Vec<Memory>>,
    negotiated: BTreeMap<(SectionId, Setup), Negotiated>,
    log_lines: BTreeMap<(SectionId, Setup), Vec<Lines>>,
    stops: Vec<Stop>,
    started: Instant,
    took: Duration,
    load_at_end: String,
    quiet: Option<String>,
}

impl Results {
    /// Empty results for a run with these settings.
    pub fn new(settings: Settings, env: Environment, notes: Vec<String>) -> Self {
        Results {
            settings,
            env,
            notes,
            timed: BTreeMap::new(),
            memory: BTreeMap::new(),
            negotiated: BTreeMap::new(),
            log_lines: BTreeMap::new(),
            stops: Vec::new(),
            started: Instant::now(),
            took: Duration::ZERO,
            load_at_end: String::new(),
            quiet: None,
        }
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Adds one round of a timed phase.
    pub fn add_measure(&mut self, section: SectionId, setup: Setup, phase: Phase, m: Measure) {
        self.timed
            .entry((section, setup, phase))
            .or_default()
            .push(m);
    }

    /// Adds one round of the idle phase.
    pub fn add_memory(&mut self, section: SectionId, setup: Setup, memory: Memory) {
        self.memory
            .entry((section, setup))
            .or_default()
            .push(memory);
    }

    /// Records what a TLS setup negotiated in its check; the first round's is kept.
    pub fn add_negotiated(&mut self, section: SectionId, setup: Setup, negotiated: Negotiated) {
        self.negotiated
            .entry((section, setup))
            .or_insert(negotiated);
    }

    /// Adds what a phase (or the check) added to a `-log` setup's access log, one round's.
    pub fn add_log_lines(&mut self, section: SectionId, setup: Setup, lines: Lines) {
        self.log_lines
            .entry((section, setup))
            .or_default()
            .push(lines);
    }

    /// Adds a note for the report's header.
    pub fn add_note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Records how a proxy process stopped and what it logged.
    pub fn add_stop(&mut self, setup: Setup, round: u32, exit: Exit, log: Vec<String>) {
        self.stops.push(Stop {
            setup,
            round,
            exit,
            log,
        });
    }

    /// Marks the end of the run.
    pub fn finish(&mut self, took: Duration, cpu: Option<(MachineCpu, MachineCpu)>) {
        self.took = took;
        self.load_at_end = load_average();
        self.quiet = cpu.map(|(before, after)| quietness(before, after, took));
    }
}

/// Whether anything but the benchmark used the CPUs during the run: machine-wide busy time
/// minus the harness's own (with its children, all waited for, and the softirq threads), and
/// the hypervisor's steal time.
fn quietness(before: MachineCpu, after: MachineCpu, took: Duration) -> String {
    let ticks = sys::clock_ticks_per_second() as f64;
    let busy = after.busy.saturating_sub(before.busy) as f64;
    let ours = after.ours.saturating_sub(before.ours) as f64;
    let others = (busy - ours).max(0.0) / ticks;
    let share = others / took.as_secs_f64().max(1e-9);
    let total = after.total.saturating_sub(before.total).max(1) as f64;
    let steal = after.steal.saturating_sub(before.steal) as f64 / total;
    let verdict = if share < 0.05 && steal < 0.02 {
        "the machine was quiet"
    } else {
        "the machine was NOT quiet: the figures are less reliable"
    };
    format!(
        "other activity during the run: {others:.1} CPU-seconds outside the benchmark \
         ({:.1} % of one CPU on average), hypervisor steal {:.1} % of CPU time: {verdict}",
        share * 100.0,
        steal * 100.0
    )
}

/// One progress line for a timed phase.
pub fn summary(phase: Phase, m: &Measure) -> String {
    let rate = m.work as f64 / m.secs;
    let cpu = m
        .cpu_secs
        .map(|c| format!(", proxy CPU {:.0}%", 100.0 * c / m.secs))
        .unwrap_or_default();
    let errors = if m.errors > 0 {
        format!(", {} errors", m.errors)
    } else {
        String::new()
    };
    let p99 = m
        .latency
        .as_ref()
        .and_then(|h| h.quantile(0.99))
        .map(|ns| format!(", p99 {:.1} µs", ns as f64 / 1e3))
        .unwrap_or_default();
    let bulk = matches!(phase, Phase::BulkUp | Phase::BulkDown);
    let resumed = match m.resumed {
        Some(r) if m.work > 0 => format!(", {:.1}% resumed", r as f64 * 100.0 / m.work as f64),
        _ => String::new(),
    };
    let calls = match &m.syscalls {
        Some(c) if m.work > 0 && bulk => {
            format!(
                ", {:.1} system calls/MB",
                c.total as f64 * 1e6 / m.work as f64
            )
        }
        Some(c) if m.work > 0 => {
            format!(", {:.2} system calls each", c.total as f64 / m.work as f64)
        }
        _ => String::new(),
    };
    if bulk {
        format!("{phase:?}: {:.2} Gbit/s{cpu}{calls}", rate * 8.0 / 1e9)
    } else {
        format!("{phase:?}: {rate:.0}/s{p99}{cpu}{calls}{resumed}{errors}")
    }
}

/// The three load averages of /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
