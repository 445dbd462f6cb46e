//! The porxy binary as a child process: start it, read its READY line, signal it, measure it.
//!
//! [`Porxy`] kills (SIGKILL, by the child's own PID) and reaps the process on `Drop` if it is
//! still running. It only signals a child it has not reaped yet, so the PID cannot have been
//! reused by another process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_porxy");
/// How long porxy may take to print its READY line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running porxy process.
pub struct Porxy {
    child: Child,
    pid: u32,
    tunnels: BTreeMap<String, SocketAddr>,
    /// The control socket's address as the READY line shows it, if porxy serves one.
    /// The READY line's other fields (`control=`, `admin=`, `rpc=`), by name.
    fields: BTreeMap<String, String>,
    /// Stdout lines after the READY line.
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<()>>,
    exited: Option<ExitStatus>,
}

impl Porxy {
    /// Starts `porxy ARGS...` and waits for its READY line.
    pub fn start(args: &[&str]) -> Porxy {
        let mut command = Command::new(BIN);
        command.args(args);
        Porxy::spawn(command)
    }

    /// Starts `porxy ARGS...` without waiting for its READY line: for a porxy that is expected
    /// to wait first (`--bind-wait`). Its stderr can be watched meanwhile; [`Porxy::wait_ready`]
    /// then reads the READY line. Until then it has no tunnels and no control address.
    pub fn launch(args: &[&str]) -> Porxy {
        let mut command = Command::new(BIN);
        command.args(args);
        Porxy::spawn_unready(command)
    }

    /// Starts porxy with at most `limit` open descriptors (`ulimit -n` in a shell that then
    /// execs porxy, so the PID is porxy's own).
    pub fn start_with_fd_limit(limit: u32, args: &[&str]) -> Porxy {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(args);
        Porxy::spawn(command)
    }

    /// Starts `command` (porxy, or a launcher that execs it in its place, so that the PID is
    /// porxy's own) and waits for its READY line.
    pub fn spawn(command: Command) -> Porxy {
        let mut porxy = Porxy::spawn_unready(command);
        porxy.wait_ready(READY_TIMEOUT);
        porxy
    }

    /// Spawns the process with its output piped to the reader threads; reads no line yet
    /// ([`Porxy::wait_ready`] does).
    pub fn spawn_unready(mut command: Command) -> Porxy {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn porxy");
        let pid = child.id();
        let (line_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let stderr_reader = collect_lines(
            child.stderr.take().expect("piped stderr"),
            stderr_text.clone(),
        );
        Porxy {
            child,
            pid,
            tunnels: BTreeMap::new(),
            fields: BTreeMap::new(),
            stdout: lines,
            stderr: stderr_text,
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
            exited: None,
        }
    }

    /// Waits up to `timeout` for the READY line and learns the tunnels and the control address
    /// from it. Kills the process and fails the test, with its stderr, if no READY line comes.
    #[track_caller]
    pub fn wait_ready(&mut self, timeout: Duration) {
        let ready = match self.stdout.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => {
                let why = match self.exit_status() {
                    Some(status) => format!("porxy exited ({status}) without a READY line"),
                    None => format!("porxy printed no READY line within {timeout:?}"),
                };
                self.stop_now();
                // The stderr reader ends with the process; its text is then complete.
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join();
                }
                panic!("{why}; stderr:\n{}", self.stderr());
            }
        };
        (self.tunnels, self.fields) = parse_ready(&ready, self.pid);
    }

    /// The address the tunnel `name` is bound to (config listeners by name, `--tunnel`s as
    /// `cli-1`, `cli-2`...).
    #[track_caller]
    pub fn tunnel(&self, name: &str) -> SocketAddr {
        *self
            .tunnels
            .get(name)
            .unwrap_or_else(|| panic!("no tunnel `{name}` in the READY line: {:?}", self.tunnels))
    }

    /// Every tunnel of the READY line.
    pub fn tunnels(&self) -> &BTreeMap<String, SocketAddr> {
        &self.tunnels
    }

    /// The admin endpoint's address (`host:port` or `unix:PATH`) from the READY line, if any.
    pub fn admin(&self) -> Option<&str> {
        self.ready_field("admin")
    }

    /// The control socket's address (`host:port` or `unix:PATH`) from the READY line, if any.
    pub fn control(&self) -> Option<&str> {
        self.ready_field("control")
    }

    /// The READY line's field `name` (`control`, `admin`, `rpc`), if it has one.
    pub fn ready_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// Sends `signal` to the process (only while it has not been reaped).
    pub fn signal(&mut self, signal: libc::c_int) {
        assert!(self.exit_status().is_none(), "porxy has already exited");
        // SAFETY: kill(2) has no memory effects; the PID is our unreaped child's.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid);
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait on porxy");
        }
        self.exited
    }

    /// Waits for the process to exit; fails the test if it runs on past `timeout`.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "porxy did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything porxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every stdout line printed after the READY line; only once the process has exited.
    #[track_caller]
    pub fn stdout_after_ready(&mut self) -> Vec<String> {
        assert!(self.exit_status().is_some(), "porxy is still running");
        // The pipe has closed with the process: the reader ends after the last line.
        if let Some(reader) = self.stdout_reader.take() {
            let _ = reader.join();
        }
        self.stdout.try_iter().collect()
    }

    /// Resident memory in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory it has had, in KiB (`VmHWM` of /proc/PID/status).
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// The most virtual memory it has had, in KiB (`VmPeak` of /proc/PID/status): an
    /// allocation shows here in full even where the kernel has not yet given it pages.
    pub fn peak_vm_kib(&self) -> u64 {
        self.status_kib("VmPeak:")
    }

    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read /proc/PID/status");
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("a {key} line"));
        line.split_whitespace()
            .nth(1)
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("{key} in kB"))
    }

    /// CPU time used so far, user plus system, in clock ticks (`utime + stime` of /proc/PID/stat).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .expect("read /proc/PID/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let after = &stat[stat.rfind(')').expect("comm in /proc/PID/stat") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of stat(5); `after` starts at field 3.
        let utime: u64 = fields[11].parse().expect("utime");
        let stime: u64 = fields[12].parse().expect("stime");
        utime + stime
    }

    /// Descriptors the process has open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    /// Kills the process if it still runs, and reaps it.
    fn stop_now(&mut self) -> Option<ExitStatus> {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
        self.exited
    }
}

impl Drop for Porxy {
    fn drop(&mut self) {
        self.stop_now();
        // The pipes close with the process, which ends both reader threads.
        for reader in [self.stdout_reader.take(), self.stderr_reader.take()]
            .into_iter()
            .flatten()
        {
            let _ = reader.join();
        }
    }
}

/// `READY pid=<pid> tunnel.<name>=<addr> ... [control=<addr>]` → the tunnel addresses by name,
/// and the control address.
#[track_caller]
fn parse_ready(line: &str, pid: u32) -> (BTreeMap<String, SocketAddr>, BTreeMap<String, String>) {
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("READY"), "first stdout line: {line:?}");
    assert_eq!(
        words.next(),
        Some(format!("pid={pid}").as_str()),
        "READY line with our child's pid: {line:?}"
    );
    let mut tunnels = BTreeMap::new();
    let mut fields = BTreeMap::new();
    for word in words {
        if let Some((name, value)) = word
            .split_once('=')
            .filter(|(n, _)| !n.starts_with("tunnel."))
        {
            fields.insert(name.to_string(), value.to_string());
            continue;
        }
        let (name, addr) = word
            .strip_prefix("tunnel.")
            .and_then(|w| w.split_once('='))
            .unwrap_or_else(|| panic!("`{word}` in the READY line: {line:?}"));
        let addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("`{addr}` in the READY line is not an address"));
        assert!(
            tunnels.insert(name.to_string(), addr).is_none(),
            "tunnel `{name}` twice in the READY line: {line:?}"
        );
    }
    (tunnels, fields)
}

/// What a porxy run that ended by itself printed.
#[derive(Debug)]
pub struct Finished {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `porxy ARGS...` to completion; fails the test if it runs on past `timeout`.
#[track_caller]
pub fn run(args: &[&str], timeout: Duration) -> Finished {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn porxy");
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let readers = [
        collect_lines(child.stdout.take().expect("piped stdout"), stdout.clone()),
        collect_lines(child.stderr.take().expect("piped stderr"), stderr.clone()),
    ];
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on porxy") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("porxy {args:?} still ran after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    for reader in readers {
        let _ = reader.join();
    }
    let take = |text: Arc<Mutex<String>>| text.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Finished {
        code: status.code(),
        stdout: take(stdout),
        stderr: take(stderr),
    }
}

/// A thread appending everything `from` yields to `into`, until end of stream.
fn collect_lines(from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            into.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&line);
            line.clear();
        }
    })
}

/// A fresh directory under the system temp dir, removed with its contents on `Drop`.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "porxy-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir { path }
    }

    /// The directory, for paths of files the test does not write itself (Unix sockets).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` to `name` in the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, text).expect("write a temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
