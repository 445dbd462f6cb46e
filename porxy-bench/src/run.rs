//! The orchestrator: starts the backend, each proxy in turn, runs the phases, collects the
//! figures, and hands them to the report.
//!
//! Every child is held by a [`Proc`] guard, so an error, a panic or Ctrl-C (which sets a flag
//! the sleeps and waits check) stops each one by PID before the harness exits.

use std::ffi::OsString;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::access_log::LogCheck;
use crate::certs::{self, Certificate};
use crate::child::{read_lossy, Proc, Spawn};
use crate::error::{Context, Error, Result};
use crate::load::tls::Tls;
use crate::load::{self, Window};
use crate::peers::{self, Kind, Setup};
use crate::phases::{idle_phase, workers};
use crate::plan::{self, Phase, Section, SectionId, Settings};
use crate::programs::{self, Programs};
use crate::report::{self, Environment, Results};
use crate::setup::CertKey;
use crate::sni::Routes;
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
    if let Some(other) = settings.porxy_b.as_ref().filter(|path| !path.is_file()) {
        return Err(Error::new(format!(
            "--porxy-b {}: not found (build the other porxy with `cargo build --release -p \
             porxy-cli` in its checkout)",
            other.display()
        )));
    }
    let haproxy = programs::find_program("haproxy");
    let nginx = programs::find_program("nginx");
    let mut programs = Programs {
        porxy: settings.porxy.clone(),
        porxy_b: settings.porxy_b.clone(),
        nginx_stream_module: nginx.as_deref().and_then(programs::nginx_stream_module),
        haproxy,
        nginx,
        nofile: nofile.soft,
        max_conns: settings.idle,
    };
    settings.kinds.retain(|kind| {
        let missing = match kind.program() {
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
    let tls = certificates(&mut settings, &dir.0, &mut notes)?;
    let env = Environment::capture(&settings, &programs, &nofile);
    let mut results = Results::new(settings.clone(), env, notes);
    let started = Instant::now();
    let cpu_before = sys::machine_cpu().ok();
    for section in plan::sections(&settings) {
        let tls = tls
            .iter()
            .find(|(id, _)| *id == section.id)
            .map(|(_, tls)| tls);
        run_section(
            &section,
            &settings,
            &programs,
            &dir.0,
            tls,
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

/// The certificates of the TLS and SNI sections the plan has (none without a TLS or SNI
/// kind), made in `dir`, each with its section. Without `openssl` there is no RSA certificate:
/// its section is left out with a note.
fn certificates(
    settings: &mut Settings,
    dir: &Path,
    notes: &mut Vec<String>,
) -> Result<Vec<(SectionId, Tls)>> {
    let mut made = Vec::new();
    for section in plan::sections(settings) {
        let key = match section.id {
            SectionId::Tls(key) => key,
            SectionId::Sni => {
                made.push((section.id, Tls::new(certs::make_sni(dir)?)?));
                continue;
            }
            _ => continue,
        };
        match certs::make(key, dir) {
            Ok(cert) => made.push((section.id, Tls::new(cert)?)),
            Err(why) if key == CertKey::Rsa2048 => {
                notes.push(format!("{why}: the {} TLS section is left out", key.name()));
                settings.rsa = false;
            }
            Err(why) => return Err(why),
        }
    }
    Ok(made)
}

/// Runs every round of one section; a TLS section's proxies serve `tls`'s certificate, the
/// SNI section's TLS backend does.
fn run_section(
    section: &Section,
    settings: &Settings,
    programs: &Programs,
    dir: &Path,
    tls: Option<&Tls>,
    results: &mut Results,
    interrupted: &AtomicBool,
) -> Result<()> {
    let client = tls.map(|tls| &tls.client);
    let cpus = Cpus::all();
    let (proxy_cpus, load_cpus) = if section.pinned {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        (Cpus::one(0), Cpus::one(if n > 1 { 1 } else { 0 }))
    } else {
        (cpus.clone(), cpus)
    };
    let backend_tls = tls.filter(|_| section.id == SectionId::Sni);
    let (mut backend, backend_addr, routes) =
        start_backend(section, &load_cpus, dir, backend_tls.map(|t| &t.cert))?;
    for round in 1..=section.rounds {
        for &setup in &section.setups {
            let tag = format!(
                "{}-{}-{}-r{round}",
                section.id.slug(),
                setup.kind.name(),
                setup.threads
            );
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
                tls,
                routes.as_ref(),
                interrupted,
            )?;
            if let Some(negotiated) = running.negotiated.take() {
                results.add_negotiated(section.id, setup, negotiated);
            }
            // A -log kind's lines are counted after the check's connections and after every
            // phase, against the connections opened through it.
            let mut log_check = running.access_log.take().map(LogCheck::new);
            if let Some(check) = log_check.as_mut() {
                let lines = check.after(None, running.opened, interrupted)?;
                results.add_log_lines(section.id, setup, lines);
            }
            let pid = running.pid();
            for &phase in &section.phases {
                if phase == Phase::Idle && setup.kind == Kind::Direct {
                    continue;
                }
                let label = format!("{setup} {phase:?}");
                let opened = match phase {
                    Phase::Idle => {
                        let pid = pid.ok_or_else(|| Error::new("no proxy process"))?;
                        let memory = idle_phase(
                            running.target,
                            client,
                            settings,
                            pid,
                            &load_cpus,
                            interrupted,
                        )
                        .context(|| label.clone())?;
                        eprintln!("          {}", memory.summary());
                        let opened = memory.conns as u64;
                        results.add_memory(section.id, setup, memory);
                        opened
                    }
                    _ => {
                        let workers = workers(phase, running.target, section.threads, client)
                            .context(|| label.clone())?;
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
                        let opened = measure.connections;
                        results.add_measure(section.id, setup, phase, measure);
                        opened
                    }
                };
                if let Some(check) = log_check.as_mut() {
                    let lines = check.after(Some(phase), opened, interrupted)?;
                    if lines.written != lines.opened {
                        eprintln!(
                            "          access log: {} lines for {} connections",
                            lines.written, lines.opened
                        );
                    }
                    results.add_log_lines(section.id, setup, lines);
                }
                if let Some(proc) = running.proc.as_mut() {
                    proc.check_alive().context(|| label.clone())?;
                }
                backend.check_alive()?;
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

/// Starts the backend on `cpus` and returns it with its address; with `tls`, the TLS backend
/// serving that certificate, whose address is its routed port, and the routes to its two.
fn start_backend(
    section: &Section,
    cpus: &Cpus,
    dir: &Path,
    tls: Option<&Certificate>,
) -> Result<(Proc, SocketAddr, Option<Routes>)> {
    let exe = std::env::current_exe().context(|| "finding porxy-bench's own path")?;
    let mut args: Vec<OsString> = vec![
        "backend".into(),
        "--threads".into(),
        section.threads.to_string().into(),
    ];
    if let Some(cert) = tls {
        args.extend(["--tls-cert".into(), cert.cert.clone().into_os_string()]);
        args.extend(["--tls-key".into(), cert.key.clone().into_os_string()]);
    }
    let spawn = Spawn {
        label: "backend".into(),
        program: &exe,
        args,
        cpus,
        stderr_path: dir.join(format!("backend-{}.stderr", section.id.slug())),
        stdout_path: None,
        ready_line: true,
        stdin_lifeline: true,
    };
    let (proc, line) = Proc::spawn(spawn, Duration::from_secs(10))?;
    let line = line.unwrap_or_default();
    let field = |name: &str| -> Option<SocketAddr> {
        line.split_whitespace()
            .skip(1)
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    let said = || Error::new(format!("backend said {line:?}, not READY addr=..."));
    if !line.starts_with("READY ") {
        return Err(said());
    }
    let addr = field("addr").ok_or_else(said)?;
    let routes = match tls {
        Some(_) => Some(Routes {
            routed: addr,
            default: field("default").ok_or_else(said)?,
        }),
        None => None,
    };
    Ok((proc, addr, routes))
}

/// What a proxy wrote to stderr (and nginx to its error log), minus empty lines.
fn proxy_logs(setup: Setup, stderr: &Path, dir: &Path, tag: &str) -> Vec<String> {
    let mut text = read_lossy(stderr);
    if setup.kind.program() == Kind::Nginx {
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
