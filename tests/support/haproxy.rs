//! HAProxy (Debian's package), a real peer: in `mode tcp`, in front of porxy, on a loopback
//! listening socket the test binds (port 0) and hands over as `fd@3`, so no fixed port is used
//! and no client can arrive before HAProxy is there to take it (the backlog holds it).
//!
//! `tests/run.sh` installs HAProxy; without it the tests that need it fail, saying so, rather
//! than being skipped.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::process::TempDir;

/// A running HAProxy, killed on drop.
pub struct Haproxy {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

/// Where Debian puts it, or on the PATH.
fn binary() -> String {
    for candidate in ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"] {
        if Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    let found = Command::new("sh")
        .args(["-c", "command -v haproxy"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    found.unwrap_or_else(|| {
        panic!("haproxy is not installed: run the tests with tests/run.sh, which installs it")
    })
}

impl Haproxy {
    /// HAProxy forwarding every client to `server`, with `bind_options` on its `bind` line
    /// (`accept-proxy`) and `server_options` on its `server` line (`send-proxy`,
    /// `send-proxy-v2`).
    pub fn start(bind_options: &str, server: SocketAddr, server_options: &str) -> Haproxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind HAProxy's socket");
        let addr = listener.local_addr().unwrap();
        let dir = TempDir::new();
        let config = dir.write(
            "haproxy.cfg",
            &format!(
                "global\n    maxconn 200\n\
                 defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
                 frontend in\n    bind fd@3 {bind_options}\n    default_backend out\n\
                 backend out\n    server porxy {server} {server_options}\n"
            ),
        );
        let fd = listener.as_raw_fd();
        let mut command = Command::new(binary());
        command
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The listening socket becomes HAProxy's fd 3 (dup2 clears close-on-exec).
        // SAFETY: only async-signal-safe calls between fork and exec.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start haproxy");
        drop(listener);
        Haproxy {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
