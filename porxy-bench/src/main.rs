//! `porxy-bench`: measures porxy side by side with a direct connection (the limit), HAProxy
//! (`mode tcp`) and nginx (stream module), all on loopback, the three terminating TLS with
//! the same certificate ([`certs`], [`load::tls`]), and the three routing TLS by server name
//! without terminating it, in front of TLS backends ([`sni`], [`tls_backend`]). See
//! bench/README.md.
//!
//! ```text
//!   load generator (threads of this process) ──► proxy under test ──► backend (child process:
//!   bulk, request/response, short, idle          porxy / haproxy /     echo, sink, source,
//!   connections; pinned to CPU 1)                nginx, CPU 0          once; CPU 1)
//! ```
//!
//! The same binary is the backend (`porxy-bench backend`, started by the harness). The
//! orchestrator ([`run`]) starts each proxy as a child, measures it phase by phase ([`load`]),
//! reads the proxy's CPU time and memory from /proc ([`sys`]), counts its system calls with perf
//! ([`syscalls`]), and prints a markdown table ([`report`]).

mod access_log;
mod backend;
mod certs;
mod child;
mod configs;
mod error;
mod histogram;
mod load;
mod peers;
mod phases;
mod plan;
mod programs;
mod proxy_header;
mod report;
mod run;
mod section;
mod settings;
mod setup;
mod sni;
mod sys;
mod syscalls;
mod tls_backend;
mod waiting;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};
use crate::peers::Kind;
use crate::plan::{Mode, Phase, Settings};

/// porxy side by side with a direct connection, HAProxy and nginx, on loopback.
#[derive(Debug, Parser)]
#[command(name = "porxy-bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// A ~80 s run: short windows, one round, 2,000 idle connections.
    #[arg(long, conflicts_with = "smoke")]
    quick: bool,
    /// A ~17 s run of direct and porxy (both data paths, with the PROXY protocol, with its
    /// access log, terminating TLS with the ECDSA certificate, and routing TLS by server name)
    /// only, to check that the harness works (CI).
    #[arg(long)]
    smoke: bool,
    /// Seconds each phase is measured (after its warm-up).
    #[arg(long, value_name = "SECONDS")]
    seconds: Option<f64>,
    /// Seconds of load before each measurement.
    #[arg(long, value_name = "SECONDS")]
    warmup: Option<f64>,
    /// Rounds: every setup runs once per round, in turn.
    #[arg(long, value_name = "N")]
    rounds: Option<u32>,
    /// Idle connections held to measure memory.
    #[arg(long, value_name = "N")]
    idle: Option<usize>,
    /// What to measure, in order. porxy-proxy and haproxy-proxy are porxy and HAProxy with the
    /// PROXY protocol v2 taken from the client and sent to the backend: beside porxy and
    /// haproxy they show what the protocol costs. porxy-tls, haproxy-tls and nginx-tls
    /// terminate TLS with a certificate made for the run, in a section of their own.
    /// porxy-sni, haproxy-sni and nginx-sni route TLS by server name without terminating it,
    /// in front of TLS backends, in a section of their own with each one's plain self beside
    /// it (relaying the same TLS unrouted). porxy-log, haproxy-log and nginx-log write an
    /// access log line per connection to a file: beside porxy, haproxy and nginx they show what
    /// the log costs. porxy-b is another porxy binary (--porxy-b) with porxy's arguments.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KINDS")]
    kinds: Option<Vec<Kind>>,
    /// Only these phases (for profiling one of them): idle, bulk-up, bulk-down, rr1, rr64,
    /// short; handshake and resumed (TLS and SNI kinds only).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PHASES")]
    phases: Option<Vec<Phase>>,
    /// Skip the scaling section (1 and 2 threads, unpinned).
    #[arg(long)]
    no_scaling: bool,
    /// Skip the busy-polling section (porxy --busy-poll 1ms and HAProxy busy-polling, pinned;
    /// it runs only with HAProxy, never with --smoke).
    #[arg(long)]
    no_busy: bool,
    /// Skip the system-call section (the proxies' system calls per unit of work, counted with
    /// perf; never with --smoke).
    #[arg(long)]
    no_syscalls: bool,
    /// Measure the TLS kinds with the ECDSA P-256 certificate only, not also the full
    /// handshakes with an RSA 2048 one.
    #[arg(long)]
    no_rsa: bool,
    /// The porxy binary [default: `porxy` next to this binary].
    #[arg(long, value_name = "PATH")]
    porxy: Option<PathBuf>,
    /// Another porxy binary (another build, from another checkout), measured as the kind
    /// porxy-b beside porxy in the same rounds: the report gives porxy ÷ porxy-b. Needs
    /// porxy-b in --kinds, and porxy-b needs it.
    #[arg(long, value_name = "PATH")]
    porxy_b: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// The backend the harness starts (echo, sink, source, once), on 127.0.0.1:0.
    #[command(hide = true)]
    Backend {
        /// Threads, each with its own SO_REUSEPORT listener (plain backend only).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Terminate TLS with this certificate chain (PEM), on two ports, one thread: the SNI
        /// section's backend.
        #[arg(long, value_name = "PATH", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The key of `--tls-cert` (PEM).
        #[arg(long, value_name = "PATH", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Sub::Backend {
            tls_cert: Some(cert),
            tls_key: Some(key),
            ..
        }) => tls_backend::serve(&cert, &key),
        Some(Sub::Backend { threads, .. }) => backend::serve(threads),
        None => settings(cli).and_then(run::run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("porxy-bench: error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves the arguments against the mode's defaults.
fn settings(cli: Cli) -> Result<Settings> {
    let mode = if cli.smoke {
        Mode::Smoke
    } else if cli.quick {
        Mode::Quick
    } else {
        Mode::Full
    };
    let seconds = |value: Option<f64>, default: f64, name: &str| -> Result<Duration> {
        let value = value.unwrap_or(default);
        Duration::try_from_secs_f64(value)
            .ok()
            .filter(|d| !d.is_zero() || name == "--warmup")
            .ok_or_else(|| Error::new(format!("{name} {value}: not a positive number of seconds")))
    };
    let kinds = match cli.kinds {
        Some(kinds) => kinds,
        // porxy-proxy, porxy-log, porxy-tls and porxy-sni too, so that CI keeps the PROXY
        // protocol's, the access log's (and the check of its lines), TLS's and SNI routing's
        // paths working (porxy-log adds ~1 s, porxy-tls ~2 s, porxy-sni with its plain self
        // ~4 s).
        None if mode == Mode::Smoke => vec![
            Kind::Direct,
            Kind::Porxy,
            Kind::PorxyCopy,
            Kind::PorxyProxy,
            Kind::PorxyLog,
            Kind::PorxyTls,
            Kind::PorxySni,
        ],
        // Not the -proxy or -log kinds: the PROXY protocol's and the access log's costs are
        // questions of their own (see bench/README.md), and the full run keeps its length.
        // Nor the -tls and -sni kinds:
        // TLS termination and SNI routing are questions of their own too, and would add a few
        // minutes each.
        None => vec![
            Kind::Direct,
            Kind::Porxy,
            Kind::PorxyCopy,
            Kind::Haproxy,
            Kind::Nginx,
        ],
    };
    let porxy = match cli.porxy {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| Error::new(format!("finding porxy-bench's own path: {e}")))?
            .with_file_name("porxy"),
    };
    match (cli.porxy_b.is_some(), kinds.contains(&Kind::PorxyB)) {
        (true, false) => {
            return Err(Error::new(
                "--porxy-b PATH: add porxy-b to --kinds where it should run",
            ))
        }
        (false, true) => {
            return Err(Error::new(
                "--kinds porxy-b: give the other porxy binary with --porxy-b PATH",
            ))
        }
        _ => {}
    }
    let rounds = cli.rounds.unwrap_or(mode.rounds());
    if rounds == 0 {
        return Err(Error::new("--rounds 0: at least one round is needed"));
    }
    Ok(Settings {
        mode,
        window: seconds(cli.seconds, mode.seconds(), "--seconds")?,
        warmup: seconds(cli.warmup, mode.warmup(), "--warmup")?,
        rounds,
        idle: cli.idle.unwrap_or(mode.idle()).max(1),
        kinds,
        scaling: !cli.no_scaling,
        busy: !cli.no_busy,
        syscalls: !cli.no_syscalls,
        // Not in smoke mode: it needs the openssl CLI, and its path is the ECDSA one's.
        rsa: !cli.no_rsa && mode != Mode::Smoke,
        only: cli.phases,
        porxy,
        porxy_b: cli.porxy_b,
    })
}
