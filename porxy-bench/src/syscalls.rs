//! The system calls a proxy makes in a measured window, counted by `perf stat` on the kernel's
//! syscall tracepoints.
//!
//! `perf stat` is attached to the proxy's processes (all their threads, and any they start)
//! with its counters off (`--delay=-1`), and switched on and off through two FIFOs
//! (`--control=fifo:CTL,ACK`): the harness writes `enable` just before the window opens and
//! `disable` just after it closes, and waits for perf's `ack` each time, so the counts cover
//! the window and a fraction of a millisecond more. Counting costs the proxy a little at every
//! call, so the section that counts reports counts only, never CPU or latency.
//!
//! By name, only the calls a network server makes are counted ([`WATCHED`]); the total covers
//! every call, and what the names miss shows as `other`. Counting all ~350 syscall tracepoints
//! would work too, but perf then takes ~15 s to let go of them (each tracepoint's removal waits
//! for an RCU grace period).

use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::child::{Proc, Spawn};
use crate::error::{Context, Error, Result};
use crate::sys::Cpus;

/// How long perf has to attach or to answer a command.
const PERF_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a wait for perf's answer looks whether perf is still there.
const ACK_SLICE_MS: libc::c_int = 100;

/// The calls counted by name: I/O, polling, sockets, descriptors, time, memory, threads.
const WATCHED: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "recvmmsg",
    "sendmmsg",
    "splice",
    "pipe2",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "accept",
    "accept4",
    "connect",
    "socket",
    "bind",
    "listen",
    "setsockopt",
    "getsockopt",
    "getsockname",
    "getpeername",
    "shutdown",
    "close",
    "fcntl",
    "ioctl",
    "clock_gettime",
    "gettimeofday",
    "timer_settime",
    "timerfd_settime",
    "futex",
    "sched_yield",
    "nanosleep",
    "clock_nanosleep",
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "madvise",
    "rt_sigreturn",
    "rt_sigprocmask",
    "getpid",
    "gettid",
];

/// Where the kernel lists its syscall tracepoints (tracefs, or tracefs under debugfs).
const TRACEPOINT_DIRS: &[&str] = &[
    "/sys/kernel/tracing/events/syscalls",
    "/sys/kernel/debug/tracing/events/syscalls",
];

/// The system calls counted in one window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// All calls (the `raw_syscalls:sys_enter` tracepoint).
    pub total: u64,
    /// Calls by name, most frequent first (names as the kernel's tracepoints give them).
    pub by_call: Vec<(String, u64)>,
}

impl Counts {
    /// Adds another window's counts.
    pub fn add(&mut self, other: &Counts) {
        self.total += other.total;
        for (name, count) in &other.by_call {
            match self.by_call.iter_mut().find(|(n, _)| n == name) {
                Some((_, c)) => *c += count,
                None => self.by_call.push((name.clone(), *count)),
            }
        }
        sort(&mut self.by_call);
    }
}

/// Whether perf can count system calls here as [`Counter`] does (attached to a process,
/// switched through FIFOs, every watched tracepoint); the reason when it cannot. Takes a few
/// seconds: perf is attached to a `sleep` the check starts (and stops, by PID).
pub fn available(
    cpus: &Cpus,
    dir: &Path,
    interrupted: &AtomicBool,
) -> std::result::Result<(), String> {
    // First the plain question, for the plain answer (no perf, no right to tracepoints).
    let output = Command::new("perf")
        .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"])
        .output()
        .map_err(|e| format!("perf could not be run ({e}; Debian's package is linux-perf)"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        return Err(format!(
            "perf cannot count the syscall tracepoints ({}: {first})",
            output.status
        ));
    }
    // A process that makes a few system calls every 20 ms.
    let probe = Proc::spawn(
        Spawn {
            label: "a shell loop (perf check)".into(),
            program: Path::new("sh"),
            args: vec!["-c".into(), "while :; do sleep 0.02; done".into()],
            cpus,
            stderr_path: dir.join("perf-check-probe.stderr"),
            stdout_path: None,
            ready_line: false,
            stdin_lifeline: false,
        },
        PERF_TIMEOUT,
    )
    .map_err(|e| e.to_string())?
    .0;
    let counted = Counter::attach(&[probe.pid()], cpus, dir, "perf-check").and_then(|mut c| {
        c.enable(interrupted)?;
        crate::waiting::sleep_checked(Duration::from_millis(200), interrupted)?;
        c.disable(interrupted)?;
        c.finish()
    });
    drop(probe);
    match counted {
        Ok(counts) if counts.total > 0 => Ok(()),
        Ok(_) => Err("perf counted no system call of a process that makes some".into()),
        Err(e) => Err(format!(
            "perf cannot count a process's system calls as the section does ({e})"
        )),
    }
}

/// A `perf stat` attached to a proxy, counters off until [`Counter::enable`].
pub struct Counter {
    perf: Proc,
    ctl: File,
    ack: File,
    output: PathBuf,
}

impl Counter {
    /// Attaches perf to `pids` (with their threads and future children). perf itself runs on
    /// `cpus`, away from the proxy's CPU; its files go in `dir`, named after `tag`.
    pub fn attach(pids: &[u32], cpus: &Cpus, dir: &Path, tag: &str) -> Result<Counter> {
        let ctl_path = dir.join(format!("{tag}.perf-ctl"));
        let ack_path = dir.join(format!("{tag}.perf-ack"));
        let output = dir.join(format!("{tag}.perf.csv"));
        for path in [&ctl_path, &ack_path] {
            make_fifo(path)?;
        }
        // Read and write, so that opening does not wait for perf, and neither side ever sees
        // an end of file.
        let open = |path: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .context(|| format!("opening {}", path.display()))
        };
        let ctl = open(&ctl_path)?;
        let ack = open(&ack_path)?;
        let pid_list: Vec<String> = pids.iter().map(u32::to_string).collect();
        let mut control = OsString::from("fifo:");
        control.push(&ctl_path);
        control.push(",");
        control.push(&ack_path);
        let mut args: Vec<OsString> = vec![
            "stat".into(),
            "-x,".into(),
            "-e".into(),
            "raw_syscalls:sys_enter".into(),
        ];
        for name in watched() {
            args.push("-e".into());
            args.push(format!("syscalls:sys_enter_{name}").into());
        }
        args.extend([
            "-p".into(),
            pid_list.join(",").into(),
            "--delay=-1".into(),
            "--control".into(),
            control,
            "-o".into(),
            output.clone().into(),
        ]);
        let perf_program = PathBuf::from("perf");
        let (perf, _) = Proc::spawn(
            Spawn {
                label: "perf stat".into(),
                program: &perf_program,
                args,
                cpus,
                stderr_path: dir.join(format!("{tag}.perf.stderr")),
                stdout_path: None,
                ready_line: false,
                stdin_lifeline: false,
            },
            PERF_TIMEOUT,
        )?;
        Ok(Counter {
            perf,
            ctl,
            ack,
            output,
        })
    }

    /// Switches the counters on; returns once perf says they are.
    pub fn enable(&mut self, interrupted: &AtomicBool) -> Result<()> {
        self.command("enable", interrupted)
    }

    /// Switches the counters off; returns once perf says they are.
    pub fn disable(&mut self, interrupted: &AtomicBool) -> Result<()> {
        self.command("disable", interrupted)
    }

    /// Stops perf (SIGINT, on which it writes its counts) and reads what it counted.
    pub fn finish(mut self) -> Result<Counts> {
        let status = self.perf.interrupt(PERF_TIMEOUT);
        // perf stat exits with 130, or of the SIGINT itself, after writing its counts.
        if !status.is_some_and(|s| s.success() || s.code() == Some(130) || interrupted(s)) {
            return Err(Error::new(format!(
                "perf stat did not end cleanly ({status:?}); stderr: {}",
                self.perf.stderr_tail(3)
            )));
        }
        let text = fs::read_to_string(&self.output)
            .context(|| format!("reading {}", self.output.display()))?;
        parse(&text).ok_or_else(|| {
            Error::new(format!(
                "perf stat wrote no system-call count to {}",
                self.output.display()
            ))
        })
    }

    /// Sends one control command and waits for perf's `ack`.
    /// The wait is in short slices: the harness holds both ends of the ack FIFO, so perf dying
    /// shows as no hang-up, only as its exit; Ctrl-C (which reaches perf too) ends it at once.
    fn command(&mut self, what: &str, interrupted: &AtomicBool) -> Result<()> {
        self.perf.check_alive()?;
        self.ctl
            .write_all(format!("{what}\n").as_bytes())
            .context(|| format!("asking perf to {what}"))?;
        let deadline = Instant::now() + PERF_TIMEOUT;
        loop {
            let mut poll = libc::pollfd {
                fd: self.ack.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the length given.
            let ready = unsafe { libc::poll(&mut poll, 1, ACK_SLICE_MS) };
            if ready == 1 {
                break;
            }
            if interrupted.load(Ordering::Relaxed) {
                return Err(Error::new("interrupted"));
            }
            self.perf.check_alive()?;
            if Instant::now() >= deadline {
                return Err(Error::new(format!(
                    "perf did not acknowledge {what} within {PERF_TIMEOUT:?}; stderr: {}",
                    self.perf.stderr_tail(3)
                )));
            }
            // Zero (the slice passed) or EINTR: look again.
        }
        // perf writes "ack\n" and a NUL.
        let mut reply = [0u8; 16];
        let n = self
            .ack
            .read(&mut reply)
            .context(|| format!("reading perf's answer to {what}"))?;
        if !reply[..n].starts_with(b"ack") {
            return Err(Error::new(format!(
                "perf answered {what} with {:?}",
                String::from_utf8_lossy(&reply[..n])
            )));
        }
        Ok(())
    }
}

/// The watched calls this kernel has a tracepoint for (perf refuses an unknown one; `select`
/// and `poll`, say, are not on every architecture). All of them when the list is unreadable.
fn watched() -> Vec<&'static str> {
    for dir in TRACEPOINT_DIRS {
        if Path::new(dir).is_dir() {
            return WATCHED
                .iter()
                .copied()
                .filter(|name| Path::new(dir).join(format!("sys_enter_{name}")).exists())
                .collect();
        }
    }
    WATCHED.to_vec()
}

/// Whether a status says the process died of SIGINT.
fn interrupted(status: std::process::ExitStatus) -> bool {
    std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGINT)
}

/// Creates a FIFO at `path`.
fn make_fifo(path: &Path) -> Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::new(format!("{}: a NUL in the path", path.display())))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
        return Err(Error::new(format!(
            "creating the FIFO {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Reads `perf stat -x,` output: `count,unit,event,...` lines. None without the total.
fn parse(text: &str) -> Option<Counts> {
    let mut total = None;
    let mut by_call = Vec::new();
    for line in text.lines() {
        let mut fields = line.split(',');
        let (Some(count), Some(_unit), Some(event)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // "<not counted>": the counter was on but its threads never ran, so nothing
        // happened. "<not supported>" is no number: skip it.
        let count = match count.trim() {
            "<not counted>" => 0,
            count => match count.parse::<u64>() {
                Ok(count) => count,
                Err(_) => continue,
            },
        };
        if event == "raw_syscalls:sys_enter" {
            total = Some(count);
        } else if let Some(name) = event.strip_prefix("syscalls:sys_enter_") {
            if count > 0 {
                by_call.push((name.to_owned(), count));
            }
        }
    }
    let named: u64 = by_call.iter().map(|(_, n)| n).sum();
    let total = total?;
    if total > named {
        by_call.push(("other".to_owned(), total - named));
    }
    sort(&mut by_call);
    Some(Counts { total, by_call })
}

/// Most frequent first, then by name.
fn sort(calls: &mut [(String, u64)]) {
    calls.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv_gives_the_total_and_the_calls_by_frequency() {
        let text = "# started on Sun Nov 22\n\n\
                    1300,,raw_syscalls:sys_enter,1000,100.00,,\n\
                    300,,syscalls:sys_enter_sendto,1000,100.00,,\n\
                    0,,syscalls:sys_enter_read,1000,100.00,,\n\
                    <not counted>,,syscalls:sys_enter_write,0,0.00,,\n\
                    <not supported>,,syscalls:sys_enter_mmap,0,0.00,,\n\
                    600,,syscalls:sys_enter_recvfrom,1000,100.00,,\n\
                    300,,syscalls:sys_enter_epoll_wait,1000,100.00,,\n";
        let counts = parse(text).expect("a total");
        assert_eq!(counts.total, 1300);
        assert_eq!(
            counts.by_call,
            [
                ("recvfrom".to_owned(), 600),
                ("epoll_wait".to_owned(), 300),
                ("sendto".to_owned(), 300),
                ("other".to_owned(), 100),
            ]
        );
    }

    #[test]
    fn no_total_is_no_count() {
        assert_eq!(parse("300,,syscalls:sys_enter_sendto,1,100.00,,\n"), None);
        assert_eq!(
            parse("<not supported>,,raw_syscalls:sys_enter,0,0.00,,\n"),
            None
        );
        assert_eq!(parse(""), None);
    }

    #[test]
    fn threads_that_never_ran_made_no_call() {
        let idle = parse("<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n").unwrap();
        assert_eq!(idle, Counts::default());
    }

    #[test]
    fn windows_add_up_by_call() {
        let mut a = parse("10,,raw_syscalls:sys_enter,1,100,,\n6,,syscalls:sys_enter_close,1,100,,\n4,,syscalls:sys_enter_read,1,100,,\n").unwrap();
        let b = parse("5,,raw_syscalls:sys_enter,1,100,,\n5,,syscalls:sys_enter_read,1,100,,\n")
            .unwrap();
        a.add(&b);
        assert_eq!(a.total, 15);
        assert_eq!(a.by_call, [("read".to_owned(), 9), ("close".to_owned(), 6)]);
    }
}
