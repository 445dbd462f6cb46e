//! The control socket on a Unix socket path: owner-only, and never at the cost of a file.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use crate::support::client;
use crate::support::control::ControlClient;
use crate::support::process::{self, Finished, Porxy, TempDir};
use crate::support::wait::wait_until;

const EXIT_WAIT: Duration = Duration::from_secs(20);

/// Starts porxy with its control socket at `path`.
fn porxy_at(path: &Path) -> Porxy {
    let arg = format!("unix:{}", path.display());
    let porxy = Porxy::start(&["--control", &arg, "--log", "warn"]);
    assert_eq!(porxy.control(), Some(arg.as_str()));
    porxy
}

/// A control client on the socket at `path`.
fn client_at(path: &Path) -> ControlClient<UnixStream> {
    let stream = UnixStream::connect(path).expect("connect to the control socket");
    stream.set_read_timeout(Some(client::IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(client::IO_TIMEOUT)).unwrap();
    ControlClient::over(stream)
}

/// Runs porxy with its control socket at `path`, which it must refuse: it exits with code 1,
/// and stderr says `porxy: error: control socket PATH` followed by `why`.
#[track_caller]
fn refused_at(path: &Path, why: &str) -> Finished {
    let arg = format!("unix:{}", path.display());
    let run = process::run(&["--control", &arg, "--log", "warn"], EXIT_WAIT);
    assert_eq!(run.code, Some(1), "stderr:\n{}", run.stderr);
    // A path that can never be bound is refused before anything starts, after the flag that
    // gave it (`--control: `); one that is in the way, when binding.
    assert!(
        run.stderr.starts_with("porxy: error: ")
            && run
                .stderr
                .contains(&format!("control socket {}{why}", path.display())),
        "stderr:\n{}",
        run.stderr
    );
    run
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// The names in `dir`, sorted: nothing is left behind beside the socket.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn unix_control_socket_is_owner_only() {
    let dir = TempDir::new();
    let socket = dir.path().join("control.sock");
    let _porxy = porxy_at(&socket);
    assert_eq!(mode(&socket), 0o600, "control socket mode");
    assert_eq!(entries(dir.path()), ["control.sock"]);
    let mut control = client_at(&socket);
    assert_eq!(
        control.cmd("status"),
        "OK tunnels=0 open=0 accepted=0 bytes_up=0 bytes_down=0 connect_failures=0"
    );
    assert_eq!(control.cmd("QUIT"), "OK bye");
    assert_eq!(control.rest(), "", "the session ends after QUIT");
}

#[test]
fn unix_control_path_that_is_a_regular_file_is_refused() {
    let dir = TempDir::new();
    let file = dir.write("porxy.toml", "[proxy]\nreactors = 2\n");
    let run = refused_at(
        &file,
        ": the path exists and is not a socket; it is left untouched",
    );
    assert_eq!(run.stdout, "", "no READY line");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "[proxy]\nreactors = 2\n",
        "the file is intact"
    );
    assert_eq!(entries(dir.path()), ["porxy.toml"]);
}

#[test]
fn live_unix_control_socket_is_refused() {
    let dir = TempDir::new();
    let socket = dir.path().join("control.sock");
    let _first = porxy_at(&socket);
    refused_at(&socket, " is in use by a running process");
    // The first porxy's socket is still there and still answers.
    let mut control = client_at(&socket);
    assert!(control.cmd("STATUS").starts_with("OK tunnels=0 "));
}

#[test]
fn stale_unix_control_socket_is_replaced() {
    let dir = TempDir::new();
    let socket = dir.path().join("control.sock");
    // A socket file nobody listens on, as a porxy killed with SIGKILL leaves behind.
    drop(UnixListener::bind(&socket).unwrap());
    assert!(std::fs::symlink_metadata(&socket)
        .unwrap()
        .file_type()
        .is_socket());
    // A child another test forks holds a copy of the listener until it execs: wait for it.
    wait_until(
        Duration::from_secs(5),
        "connections to the stale socket refused",
        || {
            UnixStream::connect(&socket)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        },
    );
    let _porxy = porxy_at(&socket);
    assert_eq!(mode(&socket), 0o600);
    let mut control = client_at(&socket);
    assert!(control.cmd("STATUS").starts_with("OK tunnels=0 "));
    assert_eq!(entries(dir.path()), ["control.sock"]);
}

/// The longest path a Unix socket can have on Linux: 108 bytes of `sun_path`, less the NUL.
const MAX_SOCKET_PATH: usize = 107;

/// A path of exactly `len` bytes in `dir`: a subdirectory (created) padded to length, and a
/// short socket name, so that porxy's private staging directory beside it is longer than the
/// operator's path.
fn path_of_len(dir: &TempDir, len: usize) -> std::path::PathBuf {
    let base = dir.path().as_os_str().len();
    let name = "c.sock";
    // base + "/" + sub + "/" + name
    let sub_len = len - base - 2 - name.len();
    let sub = dir.path().join("d".repeat(sub_len));
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join(name);
    assert_eq!(path.as_os_str().len(), len);
    path
}

#[test]
fn unix_control_path_of_the_longest_length_works() {
    let dir = TempDir::new();
    let socket = path_of_len(&dir, MAX_SOCKET_PATH);
    let _porxy = porxy_at(&socket);
    assert_eq!(mode(&socket), 0o600, "control socket mode");
    assert_eq!(entries(socket.parent().unwrap()), ["c.sock"]);
    let mut control = client_at(&socket);
    assert!(control.cmd("STATUS").starts_with("OK tunnels=0 "));
}

#[test]
fn unix_control_path_one_byte_too_long_is_refused_naming_the_limit() {
    let dir = TempDir::new();
    let socket = path_of_len(&dir, MAX_SOCKET_PATH + 1);
    let run = refused_at(
        &socket,
        ": the path is 108 bytes, longer than a Unix socket path can be (107 bytes)",
    );
    assert_eq!(run.stdout, "", "no READY line");
    assert_eq!(entries(socket.parent().unwrap()), Vec::<String>::new());
}
