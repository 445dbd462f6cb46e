//! Child processes the harness starts (the backend and each proxy), pinned with `taskset`, and
//! stopped by PID when their guard drops, also on error and after Ctrl-C.
//!
//! Stopping is SIGTERM, a bounded wait, then SIGKILL. Descendants (nginx's workers) are noted
//! before the stop and killed too if they outlive their parent; each is checked by PID *and*
//! start time first, so a reused PID is never signalled. Should the harness itself be killed
//! (SIGKILL, no cleanup), each child gets SIGTERM from the kernel (`PR_SET_PDEATHSIG`).

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};
use crate::sys::{self, Cpus};

/// How long a child has to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// How a child was started and what to give it.
pub struct Spawn<'a> {
    /// A short name for messages: `porxy`, `nginx×2`, `backend`.
    pub label: String,
    /// The program.
    pub program: &'a Path,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The CPUs it may run on (`taskset -c`).
    pub cpus: &'a Cpus,
    /// Where its stderr goes.
    pub stderr_path: PathBuf,
    /// Where its stdout goes, when not to the harness (HAProxy's access log: `log stdout`);
    /// then there is no READY line to wait for.
    pub stdout_path: Option<PathBuf>,
    /// Whether to wait for a first stdout line (`READY ...`).
    pub ready_line: bool,
    /// Whether to keep a pipe to its stdin open for its lifetime (the backend exits when it
    /// closes, so it cannot outlive the harness).
    pub stdin_lifeline: bool,
}

/// A running child; dropping it stops it.
pub struct Proc {
    label: String,
    child: Child,
    stderr_path: PathBuf,
    _stdin: Option<ChildStdin>,
    exited: Option<Exit>,
}

/// How a child ended when it was stopped.
#[derive(Debug, Clone)]
pub struct Exit {
    /// Its status.
    pub status: ExitStatus,
    /// How long it took to exit after SIGTERM (zero when it had already exited).
    pub after: Duration,
    /// Whether it had to be killed.
    pub killed: bool,
}

impl Proc {
    /// Starts a child under `taskset -c CPUS`; with `ready_line`, waits up to `timeout` for its
    /// first stdout line and returns it.
    pub fn spawn(spec: Spawn<'_>, timeout: Duration) -> Result<(Proc, Option<String>)> {
        let stderr = File::create(&spec.stderr_path)
            .context(|| format!("creating {}", spec.stderr_path.display()))?;
        let stdout = match &spec.stdout_path {
            Some(path) if !spec.ready_line => {
                Stdio::from(File::create(path).context(|| format!("creating {}", path.display()))?)
            }
            Some(_) => {
                return Err(Error::new(format!(
                    "{}: a READY line cannot be read from a stdout that goes to a file",
                    spec.label
                )))
            }
            None => Stdio::piped(),
        };
        let mut command = Command::new("taskset");
        command
            .arg("-c")
            .arg(spec.cpus.to_string())
            .arg(spec.program)
            .args(&spec.args)
            .stdin(if spec.stdin_lifeline {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(stdout)
            .stderr(stderr);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl,
        // which is async-signal-safe and touches no memory shared with the parent.
        unsafe {
            command.pre_exec(|| {
                // Should the harness die without cleaning up (SIGKILL), the child gets a
                // SIGTERM instead of living on.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().context(|| {
            format!(
                "starting {} (taskset -c {} {})",
                spec.label,
                spec.cpus,
                spec.program.display()
            )
        })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut proc = Proc {
            label: spec.label,
            child,
            stderr_path: spec.stderr_path,
            _stdin: stdin,
            exited: None,
        };
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = stdout {
            // Reads the first line, then drains stdout so the child never blocks on it.
            thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                let first = reader.read_line(&mut line).map(|_| line);
                let _ = tx.send(first);
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            });
        }
        if !spec.ready_line {
            return Ok((proc, None));
        }
        match rx.recv_timeout(timeout) {
            Ok(Ok(line)) if !line.is_empty() => Ok((proc, Some(line.trim_end().to_owned()))),
            Ok(Ok(_)) | Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = proc.child.wait();
                Err(Error::new(format!(
                    "{} exited before saying READY; stderr: {}",
                    proc.label,
                    proc.stderr_tail(5)
                )))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::new(format!(
                "{} did not say READY within {timeout:?}; stderr: {}",
                proc.label,
                proc.stderr_tail(5)
            ))),
        }
    }

    /// The child's PID (taskset execs the program, so it is the program's PID).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error when the child has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::new(format!(
                "{} exited unexpectedly ({status}); stderr: {}",
                self.label,
                self.stderr_tail(5)
            ))),
            Err(err) => Err(Error::new(format!("waiting for {}: {err}", self.label))),
        }
    }

    /// The last `lines` lines of the child's stderr, on one line.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = read_lossy(&self.stderr_path);
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        if tail.is_empty() {
            "(empty)".into()
        } else {
            tail.join(" | ")
        }
    }

    /// Where the child's stderr went.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Sends SIGINT (on which `perf stat` writes its counts) and waits up to `within` for the
    /// child to exit. Its status, or None if it is still running: the guard stops it then.
    pub fn interrupt(&mut self, within: Duration) -> Option<ExitStatus> {
        if let Some(exit) = &self.exited {
            return Some(exit.status);
        }
        let start = Instant::now();
        signal(self.pid(), libc::SIGINT);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some(Exit {
                        status,
                        after: start.elapsed(),
                        killed: false,
                    });
                    return Some(status);
                }
                Ok(None) if start.elapsed() < within => thread::sleep(Duration::from_millis(5)),
                _ => return None,
            }
        }
    }

    /// Stops the child: SIGTERM, up to [`STOP_GRACE`], then SIGKILL for it and any descendant
    /// still alive. Idempotent.
    pub fn stop(&mut self) -> Exit {
        if let Some(exit) = &self.exited {
            return exit.clone();
        }
        let pid = self.pid();
        let family = sys::descendants(pid);
        let start = Instant::now();
        let mut killed = false;
        let status = match self.child.try_wait() {
            Ok(Some(status)) => Some(status),
            _ => {
                signal(pid, libc::SIGTERM);
                loop {
                    match self.child.try_wait() {
                        Ok(Some(status)) => break Some(status),
                        Ok(None) if start.elapsed() < STOP_GRACE => {
                            thread::sleep(Duration::from_millis(5))
                        }
                        _ => {
                            killed = true;
                            let _ = self.child.kill();
                            break self.child.wait().ok();
                        }
                    }
                }
            }
        };
        for orphan in family {
            if sys::is_same_process(orphan) {
                killed = true;
                signal(orphan.pid, libc::SIGKILL);
            }
        }
        let exit = Exit {
            status: status.unwrap_or_else(|| std::os::unix::process::ExitStatusExt::from_raw(-1)),
            after: start.elapsed(),
            killed,
        };
        self.exited = Some(exit.clone());
        exit
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `sig` to one process by PID.
fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory effects; the PID is one we started (or a descendant of
        // it, checked by start time).
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// A file's text, with invalid UTF-8 replaced; empty when unreadable.
pub fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
