//! Reading `--config`: only a regular file, of bounded size, in UTF-8; a fault names the file
//! (and, inside it, the line, the column and the key). `--check` and a start read it alike.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use crate::support::process::{run, Finished, TempDir};

/// The longest a refused `--check` or start may take: refusing needs no waiting at all.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `porxy [--check] --config PATH` and checks that it exits 1 with `fragment` in its error,
/// printing no READY line and no `config OK`.
#[track_caller]
fn refused(check: bool, path: &Path, fragment: &str) -> Finished {
    let path = path.to_str().expect("a UTF-8 temp path");
    let mut args = vec!["--config", path];
    if check {
        args.insert(0, "--check");
    }
    let out = run(&args, REFUSE_TIMEOUT);
    assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
    assert!(
        out.stderr.starts_with("porxy: error: ") && out.stderr.contains(fragment),
        "{args:?}: the error lacks {fragment:?}: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    out
}

/// Regression: `--config /dev/zero` was read without a limit (memory grew until the process was
/// killed), a FIFO without a writer blocked the start for ever, and a directory got an OS error.
/// Each is refused at once, by `--check` and by a start, naming the path and what it is.
#[test]
fn a_config_path_that_is_not_a_regular_file_is_refused_with_its_kind() {
    let dir = TempDir::new();
    let fifo = dir.path().join("fifo.toml");
    let name = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path it is given, nothing else.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo");
    let socket_path = dir.path().join("socket.toml");
    let _socket = UnixListener::bind(&socket_path).unwrap();
    let cases: [(&Path, &str); 4] = [
        (Path::new("/dev/zero"), "/dev/zero is a character device"),
        (dir.path(), "is a directory"),
        (&fifo, "fifo.toml is a FIFO (named pipe)"),
        (&socket_path, "socket.toml is a socket"),
    ];
    for (path, fragment) in cases {
        for check in [true, false] {
            let out = refused(check, path, fragment);
            assert!(out.stderr.contains("not a regular file"), "{}", out.stderr);
        }
    }
}

/// A file past the size limit is refused without being read whole. The file is sparse: it
/// costs no disk.
#[test]
fn a_config_file_past_the_size_limit_is_refused() {
    let dir = TempDir::new();
    let path = dir.path().join("huge.toml");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(16 * 1024 * 1024 + 1).unwrap();
    for check in [true, false] {
        refused(check, &path, "huge.toml is larger than 16 MiB");
    }
}

/// Regression: a config that is not UTF-8 got `stream did not contain valid UTF-8`, with no
/// line or column. The first bad byte is located like any other fault.
#[test]
fn a_config_file_that_is_not_utf8_names_the_line_and_column_of_the_bad_byte() {
    let dir = TempDir::new();
    let path = dir.path().join("latin1.toml");
    std::fs::write(
        &path,
        b"[backends.echo]\naddress = \"127.0.0.1:7000\"\n# caf\xe9\n",
    )
    .unwrap();
    for check in [true, false] {
        refused(
            check,
            &path,
            &format!("{}:3:6: backends.echo: not UTF-8", path.display()),
        );
    }
}
