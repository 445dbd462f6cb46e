//! The `-log` kinds' access logs: where each proxy writes its line per connection, the
//! configuration that turns it on, and the count of the lines it wrote, which the harness
//! checks against the connections the load opened through it after every phase (`run.rs`).
//!
//! Each proxy writes a line of about the same fields, as its own configuration allows, to a
//! file in the run's temporary directory (removed at the end):
//!
//! - **porxy**: `--access-log FILE`, logfmt (its default format): the end and start times,
//!   the connection's id, tunnel, listener, client, backend, generation, connect time,
//!   duration, bytes each way, why it ended and whose fault. A writer thread of its own (on
//!   the proxy's CPU, like the rest of it) takes the records off a bounded queue, formats them
//!   and writes them, flushing whenever the queue runs dry.
//! - **HAProxy**: `option tcplog` (client, accept time, frontend, backend and server, the wait,
//!   connect and total times, bytes, the termination state, connection counts, queues), with
//!   `log stdout format raw local0` and its stdout a file. HAProxy has no file target: it logs
//!   to syslog (a socket) or to stdout or stderr; a syslog daemon would do the writing on
//!   another process's CPU, stdout does it in HAProxy's, as porxy and nginx do.
//! - **nginx**: `access_log FILE porxy_bench` with [`NGINX_LOG_FORMAT`], the same fields as
//!   porxy's line where the stream module has them. Unbuffered (no `buffer=`): porxy hands each
//!   line to the kernel as soon as its writer has nothing else queued, and HAProxy writes each
//!   line as it logs it, so neither keeps lines back; nginx's `buffer=SIZE` would keep them in
//!   the worker until the buffer fills or `flush=` expires (seconds later, lost in a crash), a
//!   cheaper promise than the other two keep.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::setup::{Kind, Phase};
use crate::waiting::sleep_checked;

/// The longest wait, after a phase, for the lines of its connections: each is written as the
/// connection ends, after the load has closed its side (10,000 at once after the idle phase).
const LINES_WAIT: Duration = Duration::from_secs(5);

/// nginx's access log file, in its prefix directory.
pub const NGINX_FILE: &str = "access.log";

/// The name of nginx's `log_format` for the `-log` kind.
const NGINX_FORMAT_NAME: &str = "porxy_bench";

/// nginx's line: porxy's fields where the stream module has them (the session's start time is
/// not among its variables).
pub const NGINX_LOG_FORMAT: &str = "time=$time_iso8601 conn=$connection \
     listen=$server_addr:$server_port client=$remote_addr:$remote_port \
     backend=$upstream_addr connect_s=$upstream_connect_time duration_s=$session_time \
     bytes_to_upstream=$upstream_bytes_sent bytes_to_client=$bytes_sent status=$status";

/// HAProxy's `global` line: logs go to its stdout, without a syslog header.
pub const HAPROXY_GLOBAL: &str = "    log stdout format raw local0\n";

/// HAProxy's `defaults` lines: the global log, one tcplog line per connection as it ends.
pub const HAPROXY_DEFAULTS: &str = "    log global\n    option tcplog\n";

/// Where a `-log` setup's access log goes: `TAG.access.log` in the run's directory; nginx's
/// in its prefix directory (`dir/TAG`), beside its error log. `None` for the other kinds.
pub fn path(kind: Kind, dir: &Path, tag: &str) -> Option<PathBuf> {
    if !kind.access_log() {
        return None;
    }
    Some(match kind.program() {
        Kind::Nginx => dir.join(tag).join(NGINX_FILE),
        _ => dir.join(format!("{tag}.access.log")),
    })
}

/// nginx's `log_format`, for its `stream` block.
pub fn nginx_log_format() -> String {
    format!("    log_format {NGINX_FORMAT_NAME} '{NGINX_LOG_FORMAT}';\n")
}

/// nginx's `access_log` line for its `server` block, writing to `file`, unbuffered.
pub fn nginx_access_log(file: &Path) -> String {
    format!(
        "        access_log {} {NGINX_FORMAT_NAME};\n",
        file.display()
    )
}

/// An access log file, counted as it grows: each look reads only what was added since the
/// last one.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    read: u64,
    lines: u64,
}

impl LogFile {
    /// The file at `path` (it may not exist yet: no lines).
    pub fn new(path: PathBuf) -> LogFile {
        LogFile {
            path,
            read: 0,
            lines: 0,
        }
    }

    /// The lines in the file now.
    pub fn lines(&mut self) -> Result<u64> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(self.lines),
            Err(e) => return Err(self.error(e)),
        };
        file.seek(SeekFrom::Start(self.read))
            .map_err(|e| self.error(e))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(|e| self.error(e))?;
            if n == 0 {
                return Ok(self.lines);
            }
            self.read += n as u64;
            self.lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }

    /// Waits up to `within` for the file to hold `expected` lines (the proxy writes each as a
    /// connection ends, after the load has closed its side); the lines it holds then.
    pub fn await_lines(
        &mut self,
        expected: u64,
        within: Duration,
        interrupted: &AtomicBool,
    ) -> Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            let lines = self.lines()?;
            if lines >= expected || Instant::now() >= deadline {
                return Ok(lines);
            }
            sleep_checked(Duration::from_millis(20), interrupted)?;
        }
    }

    fn error(&self, e: io::Error) -> Error {
        Error::new(format!("reading {}: {e}", self.path.display()))
    }
}

/// What one phase (or the check before the first, `phase: None`) added to a `-log` setup's
/// access log: the connections the load opened through the proxy, and the lines written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lines {
    /// The phase; `None` for the check's connections when the proxy started.
    pub phase: Option<Phase>,
    /// Connections opened through the proxy.
    pub opened: u64,
    /// Lines the access log gained.
    pub written: u64,
}

/// A `-log` setup's access log as the harness checks it, phase by phase.
#[derive(Debug)]
pub struct LogCheck {
    file: LogFile,
    opened: u64,
    written: u64,
}

impl LogCheck {
    /// The log at `path`, before the check's connections.
    pub fn new(path: PathBuf) -> LogCheck {
        LogCheck {
            file: LogFile::new(path),
            opened: 0,
            written: 0,
        }
    }

    /// After `phase` opened `opened` connections through the proxy: waits (up to
    /// [`LINES_WAIT`]) until the log holds a line for every connection so far, and says what
    /// the phase added. A line short is a finding, not an error: the report shows it.
    pub fn after(
        &mut self,
        phase: Option<Phase>,
        opened: u64,
        interrupted: &AtomicBool,
    ) -> Result<Lines> {
        self.opened += opened;
        let lines = self
            .file
            .await_lines(self.opened, LINES_WAIT, interrupted)?;
        let written = lines.saturating_sub(self.written);
        self.written = lines;
        Ok(Lines {
            phase,
            opened,
            written,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn only_the_log_kinds_have_a_file_and_nginx_keeps_it_in_its_prefix() {
        let dir = Path::new("/run/bench");
        assert_eq!(path(Kind::Porxy, dir, "t"), None);
        assert_eq!(path(Kind::PorxyB, dir, "t"), None);
        assert_eq!(
            path(Kind::PorxyLog, dir, "t"),
            Some(dir.join("t.access.log"))
        );
        assert_eq!(
            path(Kind::HaproxyLog, dir, "t"),
            Some(dir.join("t.access.log"))
        );
        assert_eq!(
            path(Kind::NginxLog, dir, "t"),
            Some(dir.join("t/access.log"))
        );
    }

    #[test]
    fn a_log_file_is_counted_as_it_grows() {
        let dir = std::env::temp_dir().join(format!("porxy-bench-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let path = dir.join("access.log");
        let mut log = LogFile::new(path.clone());
        assert_eq!(log.lines().expect("no file yet"), 0);
        let mut file = File::create(&path).expect("created");
        file.write_all(b"one\ntwo\nthr").expect("written");
        assert_eq!(log.lines().expect("counted"), 2);
        file.write_all(b"ee\nfour\n").expect("written");
        let never = AtomicBool::new(false);
        let lines = log.await_lines(4, Duration::from_secs(1), &never);
        assert_eq!(lines.expect("counted"), 4);
        let short = log.await_lines(5, Duration::from_millis(50), &never);
        assert_eq!(short.expect("gives up"), 4);
        let mut check = LogCheck::new(path.clone());
        let lines = check.after(None, 3, &never).expect("counted");
        assert_eq!((lines.opened, lines.written), (3, 4));
        file.write_all(b"five\n").expect("written");
        let lines = check.after(Some(Phase::Short), 1, &never).expect("counted");
        assert_eq!(lines.phase, Some(Phase::Short));
        assert_eq!((lines.opened, lines.written), (1, 1));
        std::fs::remove_dir_all(&dir).expect("removed");
    }
}
