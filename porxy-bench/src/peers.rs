//! The things measured side by side: a direct connection (the limit), porxy, HAProxy in
//! `mode tcp`, and nginx's stream module; how each is configured and started.
//!
//! Every proxy listens on 127.0.0.1 and forwards to the backend. porxy picks its own port and
//! says it on its READY line; HAProxy and nginx get a port the harness found free by binding
//! 127.0.0.1:0, written into a config file in the run's temporary directory. The configs are
//! each tool's defaults plus what the benchmark needs: N threads (HAProxy `nbthread`, nginx
//! `worker_processes`), room for the idle connections (`maxconn`, `worker_connections`) and
//! long timeouts so idle connections are not cut. In the busy-polling section porxy runs with
//! `--busy-poll` [`PORXY_BUSY_POLL`] and HAProxy with `busy-polling` in its global section.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::child::{Proc, Spawn};
use crate::error::{Context, Error, Result};
use crate::load::connect;
use crate::sys::Cpus;
use crate::waiting::sleep_checked;

/// How long a proxy may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// porxy's busy-poll window in the busy-polling section: longer than the gap between two
/// messages of a request/response exchange on loopback, so a busy reactor never sleeps.
pub const PORXY_BUSY_POLL: &str = "1ms";

/// What carries the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The client talks to the backend itself: the limit of the machine.
    Direct,
    /// porxy, from target/release, with its defaults (splice(2) on Linux).
    Porxy,
    /// The same porxy with `splice=off`: every byte copied through a buffer, as HAProxy and
    /// nginx do here; the row the copy-path targets are read from.
    PorxyCopy,
    /// HAProxy, `mode tcp`.
    Haproxy,
    /// nginx, stream module.
    Nginx,
}

impl Kind {
    /// The name in tables and messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Porxy => "porxy",
            Kind::PorxyCopy => "porxy-copy",
            Kind::Haproxy => "haproxy",
            Kind::Nginx => "nginx",
        }
    }

    /// Whether this is one of the peers porxy is compared with.
    pub fn is_peer(self) -> bool {
        matches!(self, Kind::Haproxy | Kind::Nginx)
    }
}

/// A kind with its number of threads (porxy reactors, HAProxy threads, nginx workers), and
/// whether it busy-polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Setup {
    /// What.
    pub kind: Kind,
    /// How many threads.
    pub threads: usize,
    /// Polls without sleeping (porxy `--busy-poll`, HAProxy `busy-polling`) instead of its
    /// default; only porxy and HAProxy do.
    pub busy: bool,
}

impl Setup {
    /// `kind` with `threads` threads and its default polling.
    pub fn new(kind: Kind, threads: usize) -> Setup {
        Setup {
            kind,
            threads,
            busy: false,
        }
    }

    /// `kind` with one thread, busy-polling.
    pub fn busy(kind: Kind) -> Setup {
        Setup {
            kind,
            threads: 1,
            busy: true,
        }
    }

    /// How this setup busy-polls, as its configuration says it: `--busy-poll 1ms` for porxy,
    /// `busy-polling` for HAProxy; `None` with default polling, for the direct connection
    /// (no proxy to poll) and for nginx (which cannot busy-poll; [`start`] refuses it).
    pub fn busy_polling(&self) -> Option<String> {
        match (self.busy, self.kind) {
            (true, Kind::Porxy | Kind::PorxyCopy) => Some(format!("--busy-poll {PORXY_BUSY_POLL}")),
            (true, Kind::Haproxy) => Some("busy-polling".into()),
            _ => None,
        }
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Direct => f.write_str("direct"),
            kind => {
                write!(f, "{}×{}", kind.name(), self.threads)?;
                match self.busy_polling() {
                    Some(how) => write!(f, " {how}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Where the programs are and how much room the proxies need.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The porxy binary.
    pub porxy: PathBuf,
    /// The haproxy binary, when found.
    pub haproxy: Option<PathBuf>,
    /// The nginx binary, when found.
    pub nginx: Option<PathBuf>,
    /// nginx's stream module, when it is a loadable module.
    pub nginx_stream_module: Option<PathBuf>,
    /// The descriptor limit the proxies run with.
    pub nofile: u64,
    /// The most connections a proxy must hold at once.
    pub max_conns: usize,
}

/// A proxy (or the direct connection) ready for traffic.
pub struct Running {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The process, none for the direct connection.
    pub proc: Option<Proc>,
}

impl Running {
    /// The PID whose CPU and memory are measured.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

/// Starts `setup` in front of `backend`, on `cpus`; returns once a 64-byte echo went through it.
pub fn start(
    setup: Setup,
    backend: SocketAddr,
    cpus: &Cpus,
    programs: &Programs,
    dir: &Path,
    tag: &str,
    interrupted: &AtomicBool,
) -> Result<Running> {
    let stderr_path = dir.join(format!("{tag}.stderr"));
    let label = setup.to_string();
    let running = match setup.kind {
        Kind::Direct => Running {
            addr: backend,
            proc: None,
        },
        Kind::Porxy | Kind::PorxyCopy => {
            let spawn = Spawn {
                label,
                program: &programs.porxy,
                args: os_args(&porxy_args(setup, backend)),
                cpus,
                stderr_path,
                ready_line: true,
                stdin_lifeline: false,
            };
            let (proc, line) = Proc::spawn(spawn, START_TIMEOUT)?;
            let line = line.unwrap_or_default();
            let addr = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("tunnel.cli-1="))
                .and_then(|addr| addr.parse().ok())
                .ok_or_else(|| Error::new(format!("porxy's READY line has no address: {line}")))?;
            Running {
                addr,
                proc: Some(proc),
            }
        }
        Kind::Haproxy => {
            let program = programs
                .haproxy
                .as_deref()
                .ok_or_else(|| missing("haproxy"))?;
            let addr = free_port()?;
            let config = dir.join(format!("{tag}.cfg"));
            fs::write(&config, haproxy_config(setup, addr, backend, programs))
                .context(|| format!("writing {}", config.display()))?;
            let spawn = Spawn {
                label,
                program,
                args: vec!["-f".into(), config.into(), "-db".into()],
                cpus,
                stderr_path,
                ready_line: false,
                stdin_lifeline: false,
            };
            let (proc, _) = Proc::spawn(spawn, START_TIMEOUT)?;
            listening(setup, addr, proc, interrupted)?
        }
        Kind::Nginx if setup.busy => {
            return Err(Error::new("nginx has no busy polling to measure"));
        }
        Kind::Nginx => {
            let program = programs.nginx.as_deref().ok_or_else(|| missing("nginx"))?;
            let addr = free_port()?;
            let prefix = dir.join(tag);
            fs::create_dir_all(&prefix).context(|| format!("creating {}", prefix.display()))?;
            let config = prefix.join("nginx.conf");
            fs::write(
                &config,
                nginx_config(setup.threads, addr, backend, &prefix, programs),
            )
            .context(|| format!("writing {}", config.display()))?;
            let mut args: Vec<OsString> = vec!["-p".into(), prefix.clone().into_os_string()];
            args.extend(["-e".into(), prefix.join("error.log").into_os_string()]);
            args.extend(["-c".into(), config.into_os_string()]);
            args.extend(["-g".into(), "daemon off;".into()]);
            let spawn = Spawn {
                label,
                program,
                args,
                cpus,
                stderr_path,
                ready_line: false,
                stdin_lifeline: false,
            };
            let (proc, _) = Proc::spawn(spawn, START_TIMEOUT)?;
            listening(setup, addr, proc, interrupted)?
        }
    };
    probe(running.addr).context(|| format!("a first echo through {setup}"))?;
    Ok(running)
}

/// porxy's arguments: one tunnel to the backend (`splice=off` for porxy-copy), the setup's
/// reactors and busy polling, warnings only.
fn porxy_args(setup: Setup, backend: SocketAddr) -> Vec<String> {
    let options = if setup.kind == Kind::PorxyCopy {
        "[splice=off]"
    } else {
        ""
    };
    let mut args = vec![
        "--tunnel".into(),
        format!("127.0.0.1:0={backend}{options}"),
        "--reactors".into(),
        setup.threads.to_string(),
        "--log".into(),
        "warn".into(),
    ];
    if setup.busy {
        args.extend(["--busy-poll".into(), PORXY_BUSY_POLL.into()]);
    }
    args
}

/// The HAProxy configuration: `mode tcp`, one frontend, one server, `nbthread`, and
/// `busy-polling` when the setup busy-polls.
fn haproxy_config(setup: Setup, listen: SocketAddr, backend: SocketAddr, p: &Programs) -> String {
    let maxconn = conn_budget(p);
    let threads = setup.threads;
    let busy = if setup.busy { "    busy-polling\n" } else { "" };
    format!(
        "# written by porxy-bench\n\
         global\n    nbthread {threads}\n    maxconn {maxconn}\n{busy}\n\
         defaults\n    mode tcp\n    maxconn {maxconn}\n    timeout connect 5s\n    \
         timeout client 10m\n    timeout server 10m\n\n\
         frontend bench\n    bind {listen}\n    default_backend backend\n\n\
         backend backend\n    server s1 {backend}\n"
    )
}

/// The nginx configuration: a stream server proxying to the backend, `worker_processes`.
fn nginx_config(
    threads: usize,
    listen: SocketAddr,
    backend: SocketAddr,
    prefix: &Path,
    p: &Programs,
) -> String {
    let module = p
        .nginx_stream_module
        .as_ref()
        .map(|m| format!("load_module {};\n", m.display()))
        .unwrap_or_default();
    // Each proxied connection is two nginx connections (client and upstream).
    let worker_connections = 2 * conn_budget(p) + 64;
    format!(
        "# written by porxy-bench\n{module}\
         worker_processes {threads};\n\
         worker_rlimit_nofile {nofile};\n\
         pid {pid};\n\
         error_log {log} warn;\n\n\
         events {{\n    worker_connections {worker_connections};\n}}\n\n\
         stream {{\n    server {{\n        listen {listen};\n        proxy_pass {backend};\n        \
         proxy_connect_timeout 5s;\n        proxy_timeout 10m;\n    }}\n}}\n",
        nofile = p.nofile,
        pid = prefix.join("nginx.pid").display(),
        log = prefix.join("error.log").display(),
    )
}

/// Proxied connections a proxy may hold: what the idle phase needs, within the descriptor
/// limit (two descriptors each).
fn conn_budget(p: &Programs) -> u64 {
    ((p.max_conns as u64) + 1024).min(p.nofile.saturating_sub(128) / 2)
}

/// Waits until something accepts on `addr` (HAProxy and nginx print nothing when ready).
fn listening(
    setup: Setup,
    addr: SocketAddr,
    mut proc: Proc,
    interrupted: &AtomicBool,
) -> Result<Running> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        proc.check_alive()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(Running {
                addr,
                proc: Some(proc),
            });
        }
        if Instant::now() > deadline {
            return Err(Error::new(format!(
                "{setup} did not listen on {addr} within {START_TIMEOUT:?}; stderr: {}",
                proc.stderr_tail(5)
            )));
        }
        sleep_checked(Duration::from_millis(10), interrupted)?;
    }
}

/// One 64-byte echo through `addr`.
fn probe(addr: SocketAddr) -> Result<()> {
    use std::io::{Read, Write};
    let mut stream = connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = [b'p'; 65];
    request[0] = crate::backend::ECHO;
    stream.write_all(&request)?;
    let mut reply = [0u8; 64];
    stream.read_exact(&mut reply)?;
    if reply != request[1..] {
        return Err(Error::new("the echo came back different"));
    }
    Ok(())
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<SocketAddr> {
    let probe = TcpListener::bind("127.0.0.1:0").context(|| "binding 127.0.0.1:0")?;
    Ok(probe.local_addr()?)
}

fn missing(program: &str) -> Error {
    Error::new(format!(
        "{program} is not installed (bench/run.sh installs it with apt-get)"
    ))
}

fn os_args(args: &[String]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Finds `name` on PATH (and in the sbin directories, which a non-root PATH may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// nginx's stream module as a file to load, when nginx was built with it as a dynamic module
/// (Debian's libnginx-mod-stream); `None` when it is built in or not found.
pub fn nginx_stream_module(nginx: &Path) -> Option<PathBuf> {
    let output = std::process::Command::new(nginx).arg("-V").output().ok()?;
    let text = String::from_utf8_lossy(&output.stderr);
    let dynamic = text.contains("--with-stream=dynamic");
    let built_in = text.split_whitespace().any(|flag| flag == "--with-stream");
    if built_in && !dynamic {
        return None;
    }
    let mut dirs: Vec<PathBuf> = text
        .split_whitespace()
        .filter_map(|flag| flag.strip_prefix("--modules-path="))
        .map(PathBuf::from)
        .collect();
    dirs.extend(["/usr/lib/nginx/modules", "/usr/lib64/nginx/modules"].map(PathBuf::from));
    dirs.into_iter()
        .map(|dir| dir.join("ngx_stream_module.so"))
        .find(|file| file.is_file())
}

/// The first line of `program ARG` (stdout or stderr), for the report's header.
pub fn version_line(program: &Path, arg: &str) -> String {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .and_then(|out| {
            let text = [out.stdout, out.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown version".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programs() -> Programs {
        Programs {
            porxy: PathBuf::from("porxy"),
            haproxy: None,
            nginx: None,
            nginx_stream_module: None,
            nofile: 4096,
            max_conns: 100,
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn busy_porxy_gets_the_busy_poll_flag() {
        let default = porxy_args(Setup::new(Kind::Porxy, 1), addr(7000));
        assert_eq!(
            default,
            [
                "--tunnel",
                "127.0.0.1:0=127.0.0.1:7000",
                "--reactors",
                "1",
                "--log",
                "warn"
            ]
        );
        let busy = porxy_args(Setup::busy(Kind::Porxy), addr(7000));
        assert_eq!(busy[..default.len()], default[..]);
        assert_eq!(busy[default.len()..], ["--busy-poll", "1ms"]);
    }

    #[test]
    fn busy_haproxy_busy_polls_in_its_global_section() {
        let config = |setup| haproxy_config(setup, addr(8000), addr(7000), &programs());
        let busy = config(Setup::busy(Kind::Haproxy));
        let global = busy.split("\n\n").find(|s| s.contains("global")).unwrap();
        assert!(global.lines().any(|l| l.trim() == "busy-polling"), "{busy}");
        assert_eq!(busy.matches("busy-polling").count(), 1, "{busy}");
        let default = config(Setup::new(Kind::Haproxy, 1));
        assert!(!default.contains("busy"), "{default}");
        assert_eq!(default, busy.replace("    busy-polling\n", ""));
    }

    #[test]
    fn setups_say_when_they_busy_poll() {
        assert_eq!(Setup::new(Kind::Porxy, 2).to_string(), "porxy×2");
        assert_eq!(
            Setup::busy(Kind::Porxy).to_string(),
            "porxy×1 --busy-poll 1ms"
        );
        assert_eq!(
            Setup::busy(Kind::Haproxy).to_string(),
            "haproxy×1 busy-polling"
        );
        assert_eq!(Setup::busy(Kind::Direct).to_string(), "direct");
    }
}
