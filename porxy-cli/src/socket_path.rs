//! Binding a Unix socket at a path the operator named, safely: the control socket and the
//! upgrade socket both go through here.
//!
//! The path is the operator's to name, and a typo must not cost a file: only a socket is ever
//! replaced, and only a stale one (nobody answers on it). A socket another process serves is
//! refused. The new socket is readable and writable by its owner only from the first moment it
//! can be reached: it is bound in a private directory (mode 0700), given mode 0600 there, and
//! only then linked at the path, with a link that fails rather than replace whatever appeared
//! there meanwhile.
//!
//! A socket path is limited to [`MAX_PATH_LEN`] bytes (`sun_path`), and the staging path must
//! fit too. The private directory's name is kept short (`.p<pid>-<n>`, socket `s`), which fits
//! whenever the operator's path leaves about a dozen bytes spare. When it does not, the socket
//! is bound through `/proc/self/fd/<fd>/s`, where `<fd>` is the private directory held open:
//! the same file in the same directory, named by a path of about 20 bytes. So every path that
//! fits `sun_path` works (given `/proc`), and none is ever bound outside the private directory.

use std::fs::DirBuilder;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Why a socket could not be bound at its path. `role` names the socket ("control socket",
/// "upgrade socket") in the message.
#[derive(Debug, thiserror::Error)]
pub enum SocketPathError {
    #[error("cannot bind the {role} at {path}: {source}")]
    Bind {
        role: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{role} {path} is in use by a running process")]
    InUse { role: &'static str, path: PathBuf },
    #[error("{role} {path}: the path exists and is not a socket; it is left untouched")]
    NotASocket { role: &'static str, path: PathBuf },
    #[error(
        "{role} {path}: the path is {len} bytes, longer than a Unix socket path can be \
         ({max} bytes)"
    )]
    TooLong {
        role: &'static str,
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error(
        "{role} {path}: another file appeared at the path while binding; it is left untouched"
    )]
    Taken { role: &'static str, path: PathBuf },
}

/// How many private directory names are tried before giving up (one left behind by a crash
/// takes a name).
const PRIVATE_DIR_TRIES: u32 = 16;

/// The longest Unix socket path, in bytes: Linux's `sun_path` holds 108, one of them the
/// terminating NUL.
pub(crate) const MAX_PATH_LEN: usize = 107;

/// The socket's name inside the private directory.
const STAGED_NAME: &str = "s";

/// Binds a Unix socket at `path`, readable and writable by its owner only. `role` names the
/// socket in errors and logs.
pub(crate) fn bind_unix(path: &Path, role: &'static str) -> Result<UnixListener, SocketPathError> {
    check_len(path, role)?;
    bind_linked(path, role)
}

/// [`bind_unix`] short of the length check: `path` need not fit in a socket address, as long
/// as nobody is to connect to it by that name.
fn bind_linked(path: &Path, role: &'static str) -> Result<UnixListener, SocketPathError> {
    let bind_error = |source| SocketPathError::Bind {
        role,
        path: path.into(),
        source,
    };
    clear_stale(path, role)?;
    let private = PrivateDir::create(path).map_err(bind_error)?;
    let staged = private.path.join(STAGED_NAME);
    let listener = bind_staged(&private, &staged).map_err(bind_error)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
        .map_err(bind_error)?;
    publish(&staged, path, role)?;
    Ok(listener)
}

/// What binding checks of the path itself, without touching the file system: it fits in a
/// socket address.
pub(crate) fn check_len(path: &Path, role: &'static str) -> Result<(), SocketPathError> {
    let len = path.as_os_str().len();
    if len > MAX_PATH_LEN {
        return Err(SocketPathError::TooLong {
            role,
            path: path.into(),
            len,
            max: MAX_PATH_LEN,
        });
    }
    Ok(())
}

/// Binds a socket that is to replace the one a running process serves at `path`: under the
/// name `path.new-<pid>` (as [`bind_unix`] binds), to be renamed over `path` by [`replace`]
/// once it may. Refused at once if `path` is anything but a socket or nothing.
pub(crate) fn bind_beside(
    path: &Path,
    role: &'static str,
) -> Result<(UnixListener, PathBuf), SocketPathError> {
    check_len(path, role)?;
    socket_or_nothing(path, role)?;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".new-{}", std::process::id()));
    let staged = PathBuf::from(name);
    // Peers connect by `path`, once renamed: the longer staged name need not fit.
    Ok((bind_linked(&staged, role)?, staged))
}

/// Renames `staged` (from [`bind_beside`]) over `path`, which must still be a socket or
/// nothing: a file put there meanwhile is left alone.
pub(crate) fn replace(
    staged: &Path,
    path: &Path,
    role: &'static str,
) -> Result<(), SocketPathError> {
    socket_or_nothing(path, role)?;
    std::fs::rename(staged, path).map_err(|source| SocketPathError::Bind {
        role,
        path: path.into(),
        source,
    })
}

/// Binds the socket at `staged`, in `private`: by that path when it fits `sun_path`, else by
/// the short path `/proc/self/fd/<fd>/s` to the same directory, held open meanwhile.
fn bind_staged(private: &PrivateDir, staged: &Path) -> io::Result<UnixListener> {
    if staged.as_os_str().len() <= MAX_PATH_LEN {
        return UnixListener::bind(staged);
    }
    let dir = std::fs::File::open(&private.path)?;
    // The directory opened is the one created (mode 0700, ours): check, in case it was swapped.
    let (opened, made) = (dir.metadata()?, std::fs::symlink_metadata(&private.path)?);
    if !opened.is_dir() || (opened.dev(), opened.ino()) != (made.dev(), made.ino()) {
        return Err(io::Error::other(format!(
            "the private directory {} changed while binding",
            private.path.display()
        )));
    }
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(STAGED_NAME);
    UnixListener::bind(short)
}

/// Makes the staged socket reachable at `path`. link(2) refuses an existing target, where
/// rename(2) would replace it: a file created at `path` since [`clear_stale`] looked is left
/// alone.
fn publish(staged: &Path, path: &Path, role: &'static str) -> Result<(), SocketPathError> {
    std::fs::hard_link(staged, path).map_err(|source| {
        if source.kind() == ErrorKind::AlreadyExists {
            SocketPathError::Taken {
                role,
                path: path.into(),
            }
        } else {
            SocketPathError::Bind {
                role,
                path: path.into(),
                source,
            }
        }
    })
}

/// Whether `path` holds a socket: `false` when nothing is there. Anything else is an error.
fn socket_or_nothing(path: &Path, role: &'static str) -> Result<bool, SocketPathError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => Ok(true),
        Ok(_) => Err(SocketPathError::NotASocket {
            role,
            path: path.into(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SocketPathError::Bind {
            role,
            path: path.into(),
            source,
        }),
    }
}

/// Makes way at `path`: nothing there, or a stale socket (removed). A live socket, or anything
/// that is not a socket, is an error and stays untouched.
fn clear_stale(path: &Path, role: &'static str) -> Result<(), SocketPathError> {
    if !socket_or_nothing(path, role)? {
        return Ok(());
    }
    let bind_error = |source| SocketPathError::Bind {
        role,
        path: path.into(),
        source,
    };
    match UnixStream::connect(path) {
        Ok(_) => Err(SocketPathError::InUse {
            role,
            path: path.into(),
        }),
        // Refused: a socket file nobody listens on, left by a process that died.
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing a stale {role}");
            std::fs::remove_file(path).map_err(bind_error)
        }
        // Any other answer (no permission, say) proves nothing: leave the file alone.
        Err(source) => Err(bind_error(source)),
    }
}

/// A directory only its owner can enter, next to the socket's path (so that a link from it to
/// the path stays on one file system); removed with its contents on drop.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn create(socket: &Path) -> io::Result<PrivateDir> {
        let parent = match socket.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut last = None;
        for attempt in 0..PRIVATE_DIR_TRIES {
            // Short, to leave the socket path room (see the module's doc).
            let path = parent.join(format!(".p{}-{attempt}", std::process::id()));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir { path }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::from(ErrorKind::AlreadyExists)))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // The listener stays bound: the socket lives on at its linked path.
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "cannot remove a temporary directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "test socket";

    /// A fresh directory for one test, removed afterwards.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!(
                "porxy-socket-path-test-{}-{name}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn binds_owner_only_and_leaves_no_temporary_directory() {
        let dir = Scratch::new("fresh");
        let path = dir.0.join("c.sock");
        let listener = bind_unix(&path, ROLE).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(entries(&dir.0), ["c.sock"]);
        // The linked path reaches the listener.
        let _client = UnixStream::connect(&path).unwrap();
        listener.accept().unwrap();
    }

    #[test]
    fn publishing_never_replaces_a_file_that_appeared_meanwhile() {
        let dir = Scratch::new("raced");
        let staged = dir.0.join("staged.sock");
        let _listener = UnixListener::bind(&staged).unwrap();
        let path = dir.0.join("c.sock");
        std::fs::write(&path, "created meanwhile").unwrap();
        let err = publish(&staged, &path, ROLE).unwrap_err();
        assert!(matches!(err, SocketPathError::Taken { .. }), "{err:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "created meanwhile");
    }

    #[test]
    fn a_file_that_is_no_socket_is_left_alone() {
        let dir = Scratch::new("file");
        let path = dir.0.join("porxy.toml");
        std::fs::write(&path, "keep me").unwrap();
        let err = bind_unix(&path, ROLE).unwrap_err();
        assert!(matches!(err, SocketPathError::NotASocket { .. }), "{err:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
        std::os::unix::fs::symlink(&path, dir.0.join("link")).unwrap();
        let err = bind_unix(&dir.0.join("link"), ROLE).unwrap_err();
        assert!(matches!(err, SocketPathError::NotASocket { .. }), "{err:?}");
        assert_eq!(entries(&dir.0), ["link", "porxy.toml"]);
    }
}
