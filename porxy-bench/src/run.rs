//! The orchestrator: starts the backend, each proxy in turn, runs the phases, collects the
//! figures, and hands them to the report.
//!
//! Every child is held by a [`Proc`] guard, so an error, a panic or Ctrl-C (which sets a flag
//! the sleeps and waits check) stops each one by PID before the harness exits.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::child::{read_lossy, Proc, Spawn};
use crate::error::{Context, Error, Result};
use crate::load::bulk::{self, Direction};
use crate::load::{self, idle, rr, sample, short, Target, Window, Worker};
use crate::peers::{self, Kind, Setup};
use crate::plan::{self, Phase, Section, SectionId, Settings, RR_CONNS, SHORT_IN_FLIGHT};
use crate::programs::{self, Programs};
use crate::report::{self, Environment, Memory, Results};
use crate::sys::{self, Cpus};
use crate::syscalls::{self, Counter};

/// Descriptors the harness and its children keep for themselves beyond the connections.
const FD_SLACK: u64 = 256;

/// Runs the benchmark and prints the report on stdout (progress goes to stderr).
pub fn run(mut settings: Settings) -> Result<()> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second Ctrl-C exits at once; the first asks the run to stop and clean up.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&interrupted))?;
        signal_hook::flag::register(signal, Arc::clone(&interrupted))?;
    }
    let mut notes = Vec::new();

    // The proxy holds two descriptors per idle connection.
    let wanted_fds = 2 * settings.idle as u64 + FD_SLACK;
    let nofile = sys::raise_nofile(wanted_fds.max(4096));
    if nofile.soft < wanted_fds {
        let fit = (nofile.soft.saturating_sub(FD_SLACK) / 2) as usize;
        notes.push(format!(
            "{}; idle connections reduced from {} to {fit} (the proxy needs two descriptors each)",
            nofile
                .shortfall
                .clone()
                .unwrap_or_else(|| format!("RLIMIT_NOFILE is {}", nofile.soft)),
            settings.idle
        ));
        settings.idle = fit;
    }

    if !settings.porxy.is_file() {
        return Err(Error::new(format!(
            "{} not found: build it with `cargo build --release -p porxy-cli` (bench/run.sh does)",
            settings.porxy.display()
        )));
    }
    let haproxy = programs::find_program("haproxy");
    let nginx = programs::find_program("nginx");
    let mut programs = Programs {
        porxy: settings.porxy.clone(),
        nginx_stream_module: nginx.as_deref().and_then(programs::nginx_stream_module),
        haproxy,
        nginx,
        nofile: nofile.soft,
        max_conns: settings.idle,
    };
    settings.kinds.retain(|kind| {
        let missing = match kind.without_proxy_protocol() {
            Kind::Haproxy => programs.haproxy.is_none(),
            Kind::Nginx => programs.nginx.is_none(),
            _ => false,
        };
        if missing {
            notes.push(format!(
                "{} is not installed: left out (bench/run.sh installs it)",
                kind.name()
            ));
        }
        !missing
    });
    if programs.nginx.is_none() {
        programs.nginx_stream_module = None;
    }
    let dir = TempDir::create()?;
    // Only when the plan has the section (not in smoke mode, not for direct alone, not when
    // `--phases` leaves it no phase).
    let counts_syscalls = plan::sections(&settings)
        .iter()
        .any(|section| section.id == SectionId::Syscalls);
    if counts_syscalls {
        eprintln!("checking that perf can count system calls");
        if let Err(why) = syscalls::available(&Cpus::all(), &dir.0, &interrupted) {
            notes.push(format!("{why}: the system-call section is left out"));
            settings.syscalls = false;
        }
    }
    let env = Environment::capture(&settings, &programs, &nofile);
    let mut results = Results::new(settings.clone(), env, notes);
    let started = Instant::now();
    let cpu_before = sys::machine_cpu().ok();
    for section in plan::sections(&settings) {
        run_section(
            &section,
            &settings,
            &programs,
            &dir.0,
            &mut results,
            &interrupted,
        )?;
    }
    // Every child has been stopped and waited for: their CPU time is in ours now.
    let cpu_after = sys::machine_cpu().ok();
    results.finish(started.elapsed(), cpu_before.zip(cpu_after));
    print!("{}", report::render(&results));
    Ok(())
}

/// Runs every round of one section.
fn run_section(
    section: &Section,
    settings: &Settings,
    programs: &Programs,
    dir: &Path,
    results: &mut Results,
    interrupted: &AtomicBool,
) -> Result<()> {
    let cpus = Cpus::all();
    let (proxy_cpus, load_cpus) = if section.pinned {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        (Cpus::one(0), Cpus::one(if n > 1 { 1 } else { 0 }))
    } else {
        (cpus.clone(), cpus)
    };
    let mut backend = start_backend(section, &load_cpus, dir)?;
    let backend_addr = backend.1;
    for round in 1..=section.rounds {
        for &setup in &section.setups {
            let tag = format!(
                "{:?}-{}-{}-r{round}",
                section.id,
                setup.kind.name(),
                setup.threads
            )
            .to_lowercase();
            eprintln!(
                "[{:>5.1}s] {:?} round {round}/{}: {setup}",
                results.elapsed().as_secs_f64(),
                section.id,
                section.rounds
            );
            let mut running = peers::start(
                setup,
                backend_addr,
                &proxy_cpus,
                programs,
                dir,
                &tag,
                interrupted,
            )?;
            let pid = running.pid();
            for &phase in &section.phases {
                if phase == Phase::Idle && setup.kind == Kind::Direct {
                    continue;
                }
                let label = format!("{setup} {phase:?}");
                match phase {
                    Phase::Idle => {
                        let pid = pid.ok_or_else(|| Error::new("no proxy process"))?;
                        let memory =
                            idle_phase(running.target, settings, pid, &load_cpus, interrupted)
                                .context(|| label.clone())?;
                        eprintln!("          {}", memory.summary());
                        results.add_memory(section.id, setup, memory);
                    }
                    _ => {
                        let workers = workers(phase, running.target, section.threads);
                        let window = Window {
                            warmup: settings.warmup,
                            length: settings.window,
                        };
                        // The system-call section comes last: a failure there (perf's) costs a
                        // note, not the report of everything measured before it.
                        let counting = section.id == SectionId::Syscalls;
                        let not_counted = |results: &mut Results, err: Error| {
                            results.add_note(format!("{label}: system calls not counted: {err}"));
                        };
                        let counter = if counting {
                            let pid = pid.ok_or_else(|| Error::new("no proxy process"))?;
                            match count_syscalls(pid, &load_cpus, dir, &tag, phase) {
                                Ok(counter) => Some(counter),
                                Err(err) => {
                                    not_counted(results, err);
                                    continue;
                                }
                            }
                        } else {
                            None
                        };
                        let measure = match load::measure(
                            workers,
                            &load_cpus,
                            window,
                            pid,
                            counter,
                            interrupted,
                        ) {
                            Ok(measure) => measure,
                            Err(err) if counting && !interrupted.load(Ordering::Relaxed) => {
                                not_counted(results, err);
                                continue;
                            }
                            Err(err) => return Err(err).context(|| label.clone()),
                        };
                        if measure.work == 0 {
                            return Err(Error::new(format!(
                                "{label}: nothing completed in the window ({} errors)",
                                measure.errors
                            )));
                        }
                        eprintln!("          {}", report::summary(phase, &measure));
                        results.add_measure(section.id, setup, phase, measure);
                    }
                }
                if let Some(proc) = running.proc.as_mut() {
                    proc.check_alive().context(|| label.clone())?;
                }
                backend.0.check_alive()?;
            }
            if let Some(proc) = running.proc.as_mut() {
                let exit = proc.stop();
                let stderr = proxy_logs(setup, proc.stderr_path(), dir, &tag);
                results.add_stop(setup, round, exit, stderr);
            }
        }
    }
    Ok(())
}

/// Attaches a system-call counter to the proxy `pid` and its children (nginx's worker), for
/// one phase.
fn count_syscalls(pid: u32, cpus: &Cpus, dir: &Path, tag: &str, phase: Phase) -> Result<Counter> {
    let mut pids = vec![pid];
    pids.extend(sys::descendants(pid).iter().map(|child| child.pid));
    let tag = format!("{tag}-{phase:?}").to_lowercase();
    Counter::attach(&pids, cpus, dir, &tag)
        .context(|| format!("counting the system calls of {tag}"))
}

/// The workers of one timed phase; the multi-connection phases are split over `threads`.
fn workers(phase: Phase, target: Target, threads: usize) -> Vec<Worker> {
    let split = |total: usize| -> Vec<usize> {
        (0..threads)
            .map(|i| total / threads + usize::from(i < total % threads))
            .filter(|&n| n > 0)
            .collect()
    };
    match phase {
        Phase::BulkUp => vec![bulk::worker(target, Direction::Up)],
        Phase::BulkDown => vec![bulk::worker(target, Direction::Down)],
        Phase::Rr1 => vec![rr::worker(target, 1)],
        Phase::Rr64 => split(RR_CONNS)
            .into_iter()
            .map(|n| rr::worker(target, n))
            .collect(),
        Phase::Short => split(SHORT_IN_FLIGHT)
            .into_iter()
            .map(|n| short::worker(target, n))
            .collect(),
        Phase::Idle => Vec::new(),
    }
}

/// Opens the idle connections through the proxy, measures its memory (and its CPU while they
/// sit idle), closes them and measures again.
fn idle_phase(
    target: Target,
    settings: &Settings,
    pid: u32,
    cpus: &Cpus,
    interrupted: &AtomicBool,
) -> Result<Memory> {
    let settle = Duration::from_millis(200);
    let hold = settings.window.min(Duration::from_secs(1));
    let before = sample(Some(pid))?.expect("a pid was given");
    let count = settings.idle;
    let opener = {
        let cpus = cpus.clone();
        thread::spawn(move || {
            cpus.pin_current_thread()?;
            idle::open(target, count)
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
    Ok(Memory {
        conns: count,
        open_secs,
        before_kib: before.rss_kib,
        open_kib: open.rss_kib,
        closed_kib: closed.rss_kib,
        idle_cpu_share: load::cpu_seconds(open, open_later) / hold.as_secs_f64(),
    })
}

/// Starts the backend on `cpus` and returns it with its address.
fn start_backend(section: &Section, cpus: &Cpus, dir: &Path) -> Result<(Proc, SocketAddr)> {
    let exe = std::env::current_exe().context(|| "finding porxy-bench's own path")?;
    let spawn = Spawn {
        label: "backend".into(),
        program: &exe,
        args: vec![
            "backend".into(),
            "--threads".into(),
            section.threads.to_string().into(),
        ],
        cpus,
        stderr_path: dir.join(format!("backend-{:?}.stderr", section.id).to_lowercase()),
        ready_line: true,
        stdin_lifeline: true,
    };
    let (proc, line) = Proc::spawn(spawn, Duration::from_secs(10))?;
    let line = line.unwrap_or_default();
    let addr = line
        .strip_prefix("READY addr=")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| Error::new(format!("backend said {line:?}, not READY addr=...")))?;
    Ok((proc, addr))
}

/// What a proxy wrote to stderr (and nginx to its error log), minus empty lines.
fn proxy_logs(setup: Setup, stderr: &Path, dir: &Path, tag: &str) -> Vec<String> {
    let mut text = read_lossy(stderr);
    if setup.kind == Kind::Nginx {
        text.push_str(&read_lossy(&dir.join(tag).join("error.log")));
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The run's temporary directory (configs, logs), removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<TempDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("porxy-bench-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
