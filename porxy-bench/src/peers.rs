//! The things measured side by side: a direct connection (the limit), porxy, HAProxy in
//! `mode tcp`, and nginx's stream module; how each is started and checked before it is measured
//! (its configuration is in [`crate::configs`]).
//!
//! Every proxy listens on 127.0.0.1 and forwards to the backend. porxy picks its own port and
//! says it on its READY line; HAProxy and nginx get a port the harness found free by binding
//! 127.0.0.1:0, written into a config file in the run's temporary directory. In the
//! busy-polling section porxy runs with `--busy-poll` [`PORXY_BUSY_POLL`] and HAProxy with
//! `busy-polling` in its global section.
//!
//! The `-proxy` kinds are porxy and HAProxy with the PROXY protocol on both sides, as behind a
//! load balancer in front of a backend that wants the client's address: porxy with
//! `accept_proxy=v2,send_proxy=v2` on its tunnel, HAProxy with `accept-proxy` on its bind and
//! `send-proxy-v2` on its server. The load generator sends them a v2 header ahead of every
//! connection and the backend takes theirs (see [`crate::proxy_header`]); beside the plain
//! kinds in the same run, they give what the protocol costs on the data path.
//!
//! The `-tls` kinds are the three proxies terminating TLS with the run's certificate (see
//! [`crate::certs`] and [`crate::configs`]); their check before measuring is a TLS one
//! ([`crate::load::tls::probe`]), which also says what they negotiated and whether they resume.
//!
//! In the SNI section the backend is a TLS one with two ports ([`crate::tls_backend`]): the
//! `-sni` kinds route to them by server name ([`crate::sni`]), their plain selves forward to
//! the routed one; both are checked with the TLS probe and then for where each name lands
//! ([`crate::load::tls::probe::probe_routes`]).
//!
//! The `-log` kinds are the three proxies writing an access log line per connection into a
//! file of the run's directory ([`crate::access_log`]; HAProxy's through its stdout), which
//! [`Running`] names for the harness to count. porxy-b is porxy's arguments given to another
//! porxy binary (`--porxy-b`), for an A/B of two builds in one run.

use std::ffi::OsString;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub use crate::setup::{Kind, Setup};

use crate::access_log;
use crate::backend::{ECHO, MESSAGE, NO_HEADER, WHO};
use crate::child::{Proc, Spawn};
use crate::configs::{haproxy_config, nginx_config, porxy_args};
use crate::error::{Context, Error, Result};
use crate::load::tls::probe::{self as tls_probe, Negotiated};
use crate::load::tls::Tls;
use crate::load::{connect, Target};
use crate::programs::Programs;
use crate::proxy_header;
use crate::sni::Routes;
use crate::sys::Cpus;
use crate::waiting::sleep_checked;

/// How long a proxy may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The connections [`probe`] makes through a plain setup: an echo, then the backend's `W`.
const PROBE_CONNECTIONS: u64 = 2;
/// A proxy (or the direct connection) ready for traffic.
pub struct Running {
    /// Where clients connect, and whether they send a PROXY header first.
    pub target: Target,
    /// The process, none for the direct connection.
    pub proc: Option<Proc>,
    /// For a TLS kind: what its check's connections negotiated.
    pub negotiated: Option<Negotiated>,
    /// For a `-log` kind: the file its access log goes to.
    pub access_log: Option<PathBuf>,
    /// The connections [`start`] made through it to see it listen and check it: the first
    /// lines of a `-log` kind's access log.
    pub opened: u64,
}

impl Running {
    /// The PID whose CPU and memory are measured.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

/// Starts `setup` in front of `backend`, on `cpus`; returns once a 64-byte echo went through it
/// and the backend said it got the PROXY header the setup should send, or none (see [`probe`]).
/// A TLS kind terminates TLS with `tls`'s certificate and is checked with its client. With
/// `routes` (the SNI section, whose `backend` is their routed port and terminates TLS), a
/// `-sni` kind routes by them, and every setup is checked with `tls`'s client for where each
/// server name lands.
#[allow(clippy::too_many_arguments)]
pub fn start(
    setup: Setup,
    backend: SocketAddr,
    cpus: &Cpus,
    programs: &Programs,
    dir: &Path,
    tag: &str,
    tls: Option<&Tls>,
    routes: Option<&Routes>,
    interrupted: &AtomicBool,
) -> Result<Running> {
    let stderr_path = dir.join(format!("{tag}.stderr"));
    let label = setup.to_string();
    let cert = match (setup.kind.tls(), tls) {
        (true, Some(tls)) => Some(&tls.cert),
        (true, None) => return Err(Error::new(format!("{setup}: no certificate to serve"))),
        (false, _) => None,
    };
    let routing = match (setup.kind.sni(), routes) {
        (true, Some(routes)) => Some(routes),
        (true, None) => return Err(Error::new(format!("{setup}: no routes to follow"))),
        (false, _) => None,
    };
    let log_file = access_log::path(setup.kind, dir, tag);
    let mut running = match setup.kind.program() {
        Kind::Direct => Running {
            target: Target::plain(backend),
            proc: None,
            negotiated: None,
            access_log: None,
            opened: 0,
        },
        Kind::Porxy => {
            let program = match setup.kind {
                Kind::PorxyB => programs
                    .porxy_b
                    .as_deref()
                    .ok_or_else(|| Error::new("porxy-b: no binary given (--porxy-b PATH)"))?,
                _ => &programs.porxy,
            };
            let spawn = Spawn {
                label,
                program,
                args: os_args(&porxy_args(
                    setup,
                    backend,
                    cert,
                    routing,
                    log_file.as_deref(),
                )),
                cpus,
                stderr_path,
                stdout_path: None,
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
                target: Target {
                    addr,
                    proxy_header: setup.kind.proxy_protocol(),
                },
                proc: Some(proc),
                negotiated: None,
                access_log: None,
                opened: 0,
            }
        }
        Kind::Haproxy => {
            let program = programs
                .haproxy
                .as_deref()
                .ok_or_else(|| missing("haproxy"))?;
            let addr = free_port()?;
            let config = dir.join(format!("{tag}.cfg"));
            fs::write(
                &config,
                haproxy_config(setup, addr, backend, programs, cert, routing),
            )
            .context(|| format!("writing {}", config.display()))?;
            let spawn = Spawn {
                label,
                program,
                args: vec!["-f".into(), config.into(), "-db".into()],
                cpus,
                stderr_path,
                // `log stdout`: its access log.
                stdout_path: log_file.clone(),
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
                nginx_config(setup, addr, backend, &prefix, programs, cert, routing),
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
                stdout_path: None,
                ready_line: false,
                stdin_lifeline: false,
            };
            let (proc, _) = Proc::spawn(spawn, START_TIMEOUT)?;
            listening(setup, addr, proc, interrupted)?
        }
        other => unreachable!("{other:?} is not a program"),
    };
    running.access_log = log_file;
    let checking = || format!("checking {setup} before measuring it");
    let addr = running.target.addr;
    running.negotiated = match (tls, routes) {
        (Some(tls), Some(_)) => {
            let routing = setup.kind.sni();
            Some(tls_probe::probe_routes(addr, &tls.client, routing).context(checking)?)
        }
        (Some(tls), None) if setup.kind.tls() => {
            Some(tls_probe::probe(addr, &tls.client).context(checking)?)
        }
        _ => {
            probe(running.target).context(checking)?;
            running.opened += PROBE_CONNECTIONS;
            None
        }
    };
    Ok(running)
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
                target: Target {
                    addr,
                    proxy_header: setup.kind.proxy_protocol(),
                },
                proc: Some(proc),
                negotiated: None,
                access_log: None,
                // The connection that found it listening.
                opened: 1,
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

/// One 64-byte echo through `target`, then the backend's `W` service: the client the proxy's
/// PROXY header named must be the one the load generator's header named, and there must be no
/// header without the PROXY protocol. Else a `-proxy` kind that did not take the client's
/// header, or sent none, would be measured doing less than it says.
fn probe(target: Target) -> Result<()> {
    use std::io::{Read, Write};
    let open = |n: usize, service: u8| -> Result<(TcpStream, Vec<u8>)> {
        let stream = connect(target.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let opening = target.opening(n, service);
        Ok((stream, opening))
    };
    let (mut stream, mut request) = open(0, ECHO)?;
    let body = request.len();
    request.extend_from_slice(&[b'p'; MESSAGE]);
    stream.write_all(&request)?;
    let mut reply = [0u8; MESSAGE];
    stream.read_exact(&mut reply)?;
    if reply[..] != request[body..] {
        return Err(Error::new("the echo came back different"));
    }
    let (mut stream, opening) = open(1, WHO)?;
    stream.write_all(&opening)?;
    let mut said = String::new();
    stream.read_to_string(&mut said)?;
    let expected = if target.proxy_header {
        proxy_header::client(proxy_header::client_port(1), target.addr).to_string()
    } else {
        NO_HEADER.to_owned()
    };
    if said.trim_end() != expected {
        return Err(Error::new(format!(
            "the backend got {} where it should have got {}",
            header_named(said.trim_end()),
            header_named(&expected)
        )));
    }
    Ok(())
}

/// What the backend's `W` reply says, in words.
fn header_named(said: &str) -> String {
    if said == NO_HEADER {
        "no PROXY header".into()
    } else if said.is_empty() {
        "no reply".into()
    } else {
        format!("a PROXY header naming {said}")
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_proxy_kind_pairs_with_its_plain_self() {
        let kinds = [
            Kind::Direct,
            Kind::Porxy,
            Kind::PorxyCopy,
            Kind::PorxyProxy,
            Kind::Haproxy,
            Kind::HaproxyProxy,
            Kind::Nginx,
        ];
        let with: Vec<Kind> = kinds.into_iter().filter(|k| k.proxy_protocol()).collect();
        assert_eq!(with, [Kind::PorxyProxy, Kind::HaproxyProxy]);
        assert_eq!(Kind::PorxyProxy.without_proxy_protocol(), Kind::Porxy);
        assert_eq!(Kind::HaproxyProxy.without_proxy_protocol(), Kind::Haproxy);
        assert!(kinds
            .iter()
            .filter(|k| !k.proxy_protocol())
            .all(|&k| k.without_proxy_protocol() == k));
    }

    #[test]
    fn the_tls_kinds_are_the_three_programs_compared_among_themselves() {
        let tls = [Kind::PorxyTls, Kind::HaproxyTls, Kind::NginxTls];
        assert!(tls.iter().all(|k| k.tls() && !k.proxy_protocol()));
        assert_eq!(
            tls.map(Kind::program),
            [Kind::Porxy, Kind::Haproxy, Kind::Nginx]
        );
        assert_eq!(tls.map(Kind::is_peer), [false, true, true]);
        assert_eq!(
            tls.map(Kind::name),
            ["porxy-tls", "haproxy-tls", "nginx-tls"]
        );
        assert!(!Kind::Porxy.tls() && Kind::HaproxyProxy.is_peer() && !Kind::Direct.is_peer());
    }

    #[test]
    fn the_sni_kinds_are_the_three_programs_each_beside_its_plain_self() {
        let sni = [Kind::PorxySni, Kind::HaproxySni, Kind::NginxSni];
        assert!(sni
            .iter()
            .all(|k| k.sni() && !k.tls() && !k.proxy_protocol()));
        assert_eq!(sni.map(Kind::without_sni), sni.map(Kind::program));
        assert_eq!(sni.map(Kind::is_peer), [false, true, true]);
        assert_eq!(
            sni.map(Kind::name),
            ["porxy-sni", "haproxy-sni", "nginx-sni"]
        );
        assert!(!Kind::Porxy.sni() && Kind::PorxyTls.without_sni() == Kind::PorxyTls);
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
