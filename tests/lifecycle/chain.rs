//! The fixture of the upgrade tests: a chain of porxy processes on one upgrade socket, each
//! with one `--tunnel` on port 0 (a successor gets the same port, matched by the tunnel's name)
//! and a control socket on port 0 (taken over the same way).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{spec_to, EXIT};
use crate::support::load::LoadReport;
use crate::support::process::{Porxy, TempDir};
use crate::support::Backend;

/// Porxy processes that replace one another through the upgrade socket in a temp dir.
pub(super) struct Chain {
    /// Holds the upgrade socket; removed with the chain.
    _dir: TempDir,
    up: PathBuf,
    spec: String,
    /// The socket file of the last porxy started, once it serves it.
    serving: Option<SocketFile>,
}

/// Which socket file is at the upgrade path (a successor removes its predecessor's and binds
/// its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SocketFile {
    inode: u64,
    modified: SystemTime,
}

impl Chain {
    /// A chain whose tunnel forwards to `backend`.
    pub(super) fn new(backend: &Backend) -> Chain {
        Chain::with_spec(spec_to(backend))
    }

    /// A chain whose tunnel is `spec` (listening on port 0).
    pub(super) fn with_spec(spec: String) -> Chain {
        let dir = TempDir::new();
        let up = dir.path().join("up.sock");
        Chain {
            _dir: dir,
            up,
            spec,
            serving: None,
        }
    }

    /// The upgrade socket's path.
    pub(super) fn path(&self) -> &Path {
        &self.up
    }

    /// The arguments of the first porxy: `--upgrade-socket` only.
    pub(super) fn first_args(&self) -> Vec<String> {
        [
            "--reactors",
            "2",
            "--tunnel",
            &self.spec,
            "--control",
            "127.0.0.1:0",
            "--upgrade-socket",
            &self.up.display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// The arguments of a successor: the first one's, and `--takeover` on the same path.
    pub(super) fn successor_args(&self) -> Vec<String> {
        let mut args = self.first_args();
        args.extend(["--takeover".to_string(), self.up.display().to_string()]);
        args
    }

    /// Starts the first porxy, and checks it serves the upgrade socket.
    pub(super) fn first(&mut self) -> Porxy {
        self.first_with(&[])
    }

    /// [`Chain::first`] with more arguments (which successors do not inherit).
    pub(super) fn first_with(&mut self, extra: &[&str]) -> Porxy {
        let mut args = self.first_args();
        args.extend(extra.iter().map(|a| a.to_string()));
        let porxy = start(&args);
        self.assert_served();
        porxy
    }

    /// Starts a successor, which takes over from the last one started, and checks it serves
    /// the upgrade socket in turn.
    pub(super) fn successor(&mut self) -> Porxy {
        self.successor_with(&[])
    }

    /// [`Chain::successor`] with more arguments.
    pub(super) fn successor_with(&mut self, extra: &[&str]) -> Porxy {
        let mut args = self.successor_args();
        args.extend(extra.iter().map(|a| a.to_string()));
        let porxy = start(&args);
        self.assert_served();
        porxy
    }

    /// Checks that the porxy just started (its READY line seen) serves the upgrade socket, in
    /// place of the one that did before: READY promises that a successor can take over now.
    #[track_caller]
    fn assert_served(&mut self) {
        let previous = self.serving;
        let now = socket_file(&self.up);
        assert!(
            now.is_some() && now != previous,
            "after READY, a new porxy serves the upgrade socket (before: {previous:?}, now: {now:?})"
        );
        self.serving = now;
    }
}

/// The socket file at `path`, if there is one.
fn socket_file(path: &Path) -> Option<SocketFile> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_socket() {
        return None;
    }
    Some(SocketFile {
        inode: meta.ino(),
        modified: meta.modified().ok()?,
    })
}

/// `Porxy::start` with owned arguments.
pub(super) fn start(args: &[String]) -> Porxy {
    Porxy::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Checks `new` took over from `old`: the same tunnel and control addresses.
#[track_caller]
pub(super) fn assert_took_over(new: &Porxy, old: &Porxy) {
    assert_eq!(
        new.tunnel("cli-1"),
        old.tunnel("cli-1"),
        "the new porxy listens where the old one did"
    );
    assert_eq!(
        new.control(),
        old.control(),
        "the new porxy serves the old one's control socket"
    );
}

/// Waits for `porxy` to exit by itself, and checks it exited 0 (every connection drained).
#[track_caller]
pub(super) fn assert_exits_cleanly(porxy: &mut Porxy, who: &str) {
    let status = porxy.wait_exit(EXIT);
    assert_eq!(
        status.code(),
        Some(0),
        "{who} exit status; stderr:\n{}",
        porxy.stderr()
    );
}

/// Checks that no exchange of a load failed.
#[track_caller]
pub(super) fn assert_no_failure(report: &LoadReport) {
    assert!(
        report.failures.is_empty(),
        "{} of {} exchanges failed:\n{}",
        report.failures.len(),
        report.failures.len() + report.completed,
        report.failures.join("\n")
    );
}
