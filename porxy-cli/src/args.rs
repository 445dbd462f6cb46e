//! Command-line arguments: clap reads them raw ([`RawArgs`]), then they are lifted into
//! validated [`Args`] (tunnel SPECs parsed, named `cli-1`, `cli-2`, ...).
//!
//! SPECs are parsed after clap, not by a clap value parser, so that a bad SPEC is reported like
//! every other configuration error (`porxy: error: ...`, exit 1) with the caret line under the
//! fault, which clap's error format has no room for.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use porxy_core::units::parse_duration;
use porxy_core::{AcceptMode, TunnelSpec, OPTION_KEYS};

use crate::clients::ListenAddr;
use crate::error::CliError;
use crate::NamedTunnel;

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Command {
    /// `--help-tunnel`: explain the SPEC grammar and exit.
    HelpTunnel,
    /// Check or run a proxy.
    Run(Box<Args>),
}

/// Validated arguments.
#[derive(Debug)]
pub(crate) struct Args {
    /// `--config FILE`.
    pub(crate) config: Option<PathBuf>,
    /// `--tunnel SPEC`, parsed, named `cli-1`, `cli-2`, ... in the order given.
    pub(crate) tunnels: Vec<NamedTunnel>,
    /// `--reactors N`, overriding the file.
    pub(crate) reactors: Option<usize>,
    /// `--max-connections N`, overriding the file.
    pub(crate) max_connections: Option<usize>,
    /// `--max-accept-rate N`, overriding the file.
    pub(crate) max_accept_rate: Option<u32>,
    /// `--accept MODE`, overriding the file.
    pub(crate) accept: Option<AcceptMode>,
    /// `--log FILTER`, already known to parse.
    pub(crate) log: String,
    /// `--check`: validate and resolve, bind nothing.
    pub(crate) check: bool,
    /// `--drain-timeout DURATION`, overriding the file.
    pub(crate) drain_timeout: Option<Duration>,
    /// `--control ADDR`, overriding the file.
    pub(crate) control: Option<ListenAddr>,
    /// `--control-idle-timeout DURATION`, overriding the file.
    pub(crate) control_idle_timeout: Option<Duration>,
    /// `--upgrade-socket PATH`: where a new porxy may ask to take over.
    pub(crate) upgrade_socket: Option<PathBuf>,
    /// `--takeover PATH`: take the listening sockets of the porxy serving this upgrade socket.
    pub(crate) takeover: Option<PathBuf>,
    /// `--leave-connections`: with `--takeover`, leave the established connections to the
    /// old porxy instead of taking them over.
    pub(crate) leave_connections: bool,
    /// `--bind-wait DURATION`: how long to wait for a port another process still holds.
    pub(crate) bind_wait: Option<Duration>,
    /// `--busy-poll DURATION`, overriding the file.
    pub(crate) busy_poll: Option<Duration>,
    /// `--admin ADDR`, overriding the file.
    pub(crate) admin: Option<ListenAddr>,
    /// `--admin-token-file PATH`, overriding the file.
    pub(crate) admin_token_file: Option<PathBuf>,
    /// `--admin-insecure`.
    pub(crate) admin_insecure: bool,
    /// `--rpc ADDR`, overriding the file.
    pub(crate) rpc: Option<ListenAddr>,
    /// `--state-file PATH`, overriding the file.
    pub(crate) state_file: Option<PathBuf>,
}

/// The arguments as clap reads them.
#[derive(Debug, Parser)]
#[command(
    name = "porxy",
    version,
    about = "A multi-reactor TCP proxy",
    long_about = "A multi-reactor TCP proxy.\n\n\
        Tunnels come from a TOML file (--config), from --tunnel SPEC arguments, or both. Once \
        every tunnel listens, porxy prints one line on stdout:\n\n  \
        READY pid=<pid> tunnel.<name>=<bound address> ... [control=<address>]\n\n\
        File listeners keep their names; --tunnel ones are named cli-1, cli-2, ... Logs go to \
        stderr. The first SIGINT or SIGTERM drains connections (up to --drain-timeout); a second \
        one stops at once.\n\n\
        Exit status: 0 stopped with every connection finished (or handed over to a successor), \
        1 configuration or start error, 2 usage error, 3 the stop cut open connections."
)]
struct RawArgs {
    /// The TOML configuration file (see examples/porxy.toml).
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// A tunnel LOCAL=REMOTE[,REMOTE...][key=value,...]; repeatable. See --help-tunnel.
    #[arg(short = 't', long = "tunnel", value_name = "SPEC")]
    tunnels: Vec<String>,

    /// Number of reactor threads (overrides the file; default: one per CPU).
    #[arg(long, value_name = "N")]
    reactors: Option<usize>,

    /// Most proxied connections at once; more clients wait in the listen backlog (overrides
    /// the file; default: what the descriptor limit, `ulimit -n`, allows).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,

    /// Most new clients accepted per second by the whole proxy; more wait in the listen
    /// backlog, none is reset (overrides the file; default: no limit).
    #[arg(long, value_name = "N")]
    max_accept_rate: Option<u32>,

    /// Which threads accept new clients: `reactors` (each reactor accepts for itself; the
    /// default) or `listener` (one thread accepts and hands clients to the reactors in turn).
    /// Overrides the file.
    #[arg(long, value_name = "MODE")]
    accept: Option<AcceptMode>,

    /// Log filter in tracing EnvFilter syntax, like `info` or `porxy_core=debug`.
    #[arg(long, value_name = "FILTER", default_value = "info", value_parser = log_filter)]
    log: String,

    /// Validate the configuration and resolve host names, print `config OK: 1 tunnel` (or `N tunnels`), exit.
    #[arg(long)]
    check: bool,

    /// Explain the tunnel SPEC grammar, with examples, and exit.
    #[arg(long)]
    help_tunnel: bool,

    /// Longest a graceful stop waits for connections to finish [default: 30s, or the file's].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    drain_timeout: Option<Duration>,

    /// Serve the control socket (a line protocol for nc) on a TCP address like 9999 or
    /// 127.0.0.1:9999, or on a Unix socket path (unix:PATH, or any path with a `/`).
    #[arg(long, value_name = "ADDR", value_parser = parse_control)]
    control: Option<ListenAddr>,

    /// A control client that completes no line for this long is disconnected [default: 60s,
    /// or the file's `[control] idle_timeout`].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    control_idle_timeout: Option<Duration>,

    /// Listen on this Unix socket (owner-only) for a new porxy that takes over without
    /// dropping a connection: the new one is started with --takeover PATH.
    #[arg(long, value_name = "PATH")]
    upgrade_socket: Option<PathBuf>,

    /// Take over the porxy serving this upgrade socket: its listening sockets and control
    /// socket, then its established connections (with the bytes in flight), so that it exits
    /// at once.
    #[arg(long, value_name = "PATH")]
    takeover: Option<PathBuf>,

    /// With --takeover: leave the established connections to the old porxy, which finishes
    /// them (up to its drain timeout) before it exits.
    #[arg(long, requires = "takeover")]
    leave_connections: bool,

    /// When a port is still held by another process (an old porxy draining), wait up to this
    /// long for it to be released instead of failing at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    bind_wait: Option<Duration>,

    /// After traffic, keep each reactor polling without sleeping for up to this long, like
    /// 200us or 1ms (at most 1s): lower latency for a CPU kept busy while traffic flows; 0s is
    /// off [default: off, or the file's `[proxy] busy_poll`].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    busy_poll: Option<Duration>,

    /// Serve the HTTP admin API (routes, status, reload, stop; JSON) on a TCP address like
    /// 8001 or 127.0.0.1:8001, or on a Unix socket path (unix:PATH) [default: the file's
    /// `[admin] listen`, else none].
    #[arg(long, value_name = "ADDR", value_parser = parse_control)]
    admin: Option<ListenAddr>,

    /// The file whose first line is the bearer token every admin request must carry
    /// [default: the file's `[admin] token_file`, else $PORXY_ADMIN_TOKEN, else none].
    #[arg(long, value_name = "PATH")]
    admin_token_file: Option<PathBuf>,

    /// Serve the admin API (and the JSON-RPC socket) beyond loopback without a token
    /// (refused otherwise).
    #[arg(long)]
    admin_insecure: bool,

    /// Serve JSON-RPC 2.0 on a plain socket, one request per line, on a TCP address (loopback
    /// unless --admin-insecure) or a Unix socket path [default: the file's `[admin] rpc`].
    #[arg(long, value_name = "ADDR", value_parser = parse_control)]
    rpc: Option<ListenAddr>,

    /// Keep the routing table as changed at runtime (control socket, admin API, JSON-RPC,
    /// reloads) in this file, written atomically, and start from it next time in place of the
    /// configuration's tunnels [default: the file's `[state] file`, else none].
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
}

/// A duration more than zero: a zero timeout would cut every client before its first line.
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text).map_err(|e| e.to_string())? {
        zero if zero.is_zero() => Err("must be more than zero".into()),
        duration => Ok(duration),
    }
}

fn parse_control(text: &str) -> Result<ListenAddr, String> {
    text.parse()
}

/// Reads the process arguments. A clap error (usage, or `--help`/`--version`) is returned for
/// the caller to print with clap's own exit code.
pub(crate) fn parse() -> Result<Result<Command, CliError>, clap::Error> {
    RawArgs::try_parse().map(RawArgs::lift)
}

impl RawArgs {
    fn lift(self) -> Result<Command, CliError> {
        if self.help_tunnel {
            return Ok(Command::HelpTunnel);
        }
        let tunnels = self
            .tunnels
            .iter()
            .enumerate()
            .map(|(index, text)| cli_tunnel(index + 1, text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Command::Run(Box::new(Args {
            config: self.config,
            tunnels,
            reactors: self.reactors,
            max_connections: self.max_connections,
            max_accept_rate: self.max_accept_rate,
            accept: self.accept,
            log: self.log,
            check: self.check,
            drain_timeout: self.drain_timeout,
            control: self.control,
            control_idle_timeout: self.control_idle_timeout,
            upgrade_socket: self.upgrade_socket,
            takeover: self.takeover,
            leave_connections: self.leave_connections,
            bind_wait: self.bind_wait,
            busy_poll: self.busy_poll,
            admin: self.admin,
            admin_token_file: self.admin_token_file,
            admin_insecure: self.admin_insecure,
            rpc: self.rpc,
            state_file: self.state_file,
        })))
    }
}

/// The `number`th `--tunnel`, parsed and named `cli-<number>`.
fn cli_tunnel(number: usize, text: &str) -> Result<NamedTunnel, CliError> {
    let spec: TunnelSpec = text.parse().map_err(CliError::Spec)?;
    let name = format!("cli-{number}");
    let origin = format!("--tunnel {name} `{}`", text.trim());
    Ok(NamedTunnel {
        remote_origins: vec![origin.clone(); spec.remotes.len()],
        local_origin: origin,
        name,
        spec,
    })
}

/// Checks a `--log` filter parses, so a typo is a usage error and not silence.
fn log_filter(text: &str) -> Result<String, String> {
    crate::logging::filter(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

/// The text of `--help-tunnel`.
pub(crate) fn tunnel_help() -> String {
    format!(
        "\
A tunnel SPEC says where to listen and where to forward:

    LOCAL=REMOTE[,REMOTE...][key=value,...]

LOCAL and each REMOTE is an address:
    8000                  a bare port means 127.0.0.1:8000
    0.0.0.0:8000          an IPv4 address and port
    [::1]:8000            an IPv6 address, in brackets, and port
    db.internal:5432      a host name and port, resolved once when the tunnel opens
A LOCAL port of 0 asks the system for a free port; the READY line tells which one.
A REMOTE must be one server's address: not port 0, 0.0.0.0 or [::], a broadcast or a
multicast address, nor one of porxy's own listen addresses (porxy would forward to itself;
a loop through another proxy is yours to avoid).

A REMOTE may carry a weight, REMOTE*WEIGHT (1 to 1000, default 1), its share of the load.

Options go last, in brackets, separated by commas, each at most once. Known options:
    {keys}.
  Timeouts (each overrides the proxy-wide setting for this tunnel):
    connect_timeout       how long one upstream connect may take
    idle_timeout          how long a connection may pass no byte either way
    half_closed_timeout   how long a connection may stay half-closed: the default of
                          the two below
    client_fin_timeout    how long it may stay half-closed after the client's FIN
                          (the client has stopped sending; the reply may still flow)
    server_fin_timeout    how long it may stay half-closed after the upstream's FIN
                          (the upstream has stopped sending; the client may still send)
  Balancing, with several REMOTEs:
    strategy              round_robin (default, by weight), least_conn, random (two
                          choices drawn by weight, the less loaded wins), hash (by
                          client IP: a client keeps its backend), first (failover: the
                          first one that can take it)
    attempts              connects per client across backends before it is reset,
                          1 to 16 (default: the number of remotes, at most 16)
    max_conns             most connections each remote takes at once
    queue_timeout         how long a client waits when every remote is full (5s)
  Health:
    max_fails             connect failures in a row that mark a remote down (3)
    fail_timeout          without checks, how long a down remote rests (10s)
    check=tcp             active checks: connect every check_interval (2s) within
                          check_timeout (1s); rise (2) good ones bring a remote up,
                          fall (3) bad ones take it down; check_send / check_expect
                          send a string and expect a reply prefix (\\r \\n escapes)
  Fan-out (mode=fanout: every client copied to every REMOTE):
    mode                  balance (default) or fanout
    reply                 primary (default: the first REMOTE answers the client; the
                          others' replies are thrown away) or none (a one-way feed)
    max_lag               bytes a REMOTE may fall behind before it is dropped from that
                          connection (default 1MiB; at least 64KiB)
    min_live              the client is reset when fewer REMOTEs than this are left (1)
  Data path:
    splice=on|off         relay with splice(2) through kernel pipes, so bytes never
                          enter porxy's memory (default on, on Linux), or copy them
                          through a buffer (off)
  PROXY protocol:
    accept_proxy          read a PROXY header (v1, v2 or any) ahead of each client and
                          take the client it names as the real one
    proxy_timeout         how long a client has to send its whole header (5s)
    send_proxy            send each upstream a PROXY header (v1 or v2) first, naming the
                          client (the one a header it sent named, if it sent one)
    proxy_from            the peers that may send a header (networks; others are refused)
  Access (networks separated by `;`, like 10.0.0.0/8;192.0.2.7):
    allow, deny           who may connect, judged on the real client: the most specific
                          network that holds it decides; outside both, refused if there
                          is an allow list
    max_conns_per_client  the most connections one client holds at once
    rate_per_client       new connections one client may open per second, with bursts of
                          rate_burst (default: the rate)
    client_ipv6_prefix    IPv6 clients in one prefix of this length are one client for
                          the two above (64)
  TLS termination (clients speak TLS; the backends get plaintext):
    tls_cert, tls_key     PEM files: the certificate chain (its own first) and its key
    tls_alpn              protocols offered by ALPN, most wanted first (h2;http/1.1)
    tls_min_version       the oldest TLS version taken: 1.2 (default) or 1.3
    tls_handshake_timeout how long a client has for its handshake (10s)
    tls_client_ca         mutual TLS: the CAs (PEM) clients' certificates must chain to
    tls_client_auth       required (default) or optional: may a client show none
  Routing by server name (TLS passes through untouched; not with mode=fanout):
    sni_routes            NAME>REMOTE|REMOTE;... : the SNI of each client's ClientHello
                          picks the remotes that may serve it (exact names, *.wildcards,
                          and * for any other name or none); an unrouted client is reset.
                          tls_handshake_timeout is the time for its ClientHello (10s)
  TLS to the backends (not with mode=fanout):
    backend_tls           on: speak TLS to every backend
    tls_ca                the CAs (PEM) backends' certificates must chain to (default: the
                          system's store)
    tls_server_name       the name their certificates must be for (default: the
                          remote's host name)
    tls_verify            off: take any certificate (logged as a warning)
    tls_alpn              (without tls_cert) protocols offered to the backends; with
                          tls_cert, each backend is offered what its client chose
    backend_tls_cert, backend_tls_key
                          the certificate shown to backends that ask for one
    check_tls             on (default): active checks do the TLS handshake too, the
                          certificate verified; off: a TCP connect is the check
  Bandwidth (bytes a second, like 1MiB; not with mode=fanout):
    max_rate_up, max_rate_down
                          what each connection reads from its client, from its upstream
    max_tunnel_rate_up, max_tunnel_rate_down
                          what the tunnel's connections read together, each way
Durations need a unit: 500ms, 5s, 2m, 1h, or combined like 1m30s.

Spaces around `=` and `,` are allowed; quote the SPEC for the shell when you use them
or brackets.

Examples:
    porxy --tunnel 8000=9000
    porxy --tunnel '0.0.0.0:8080=10.0.0.5:80,10.0.0.6:80'
    porxy --tunnel '[::1]:5433=db.internal:5432[connect_timeout=2s,idle_timeout=10m]'
    porxy --tunnel '8000=9000[client_fin_timeout=5s,server_fin_timeout=1m]'
    porxy --tunnel '8000=7001*3,7002,7003[strategy=least_conn,check=tcp,max_conns=100]'
    porxy --tunnel '8000=7001,7002[mode=fanout,reply=none,max_lag=4MiB]'
    porxy --config porxy.toml --tunnel 0=127.0.0.1:7000

Tunnels from --tunnel are named cli-1, cli-2, ... in the READY line:
    READY pid=4242 tunnel.cli-1=127.0.0.1:8000
",
        keys = wrapped(OPTION_KEYS, HELP_WIDTH - 4).join("\n    ")
    )
}

/// The widest line of the tunnel help.
const HELP_WIDTH: usize = 92;

/// `words`, comma-separated, in lines of at most `width` characters (a longer word alone).
fn wrapped(words: &[&str], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in words {
        match lines.last_mut() {
            Some(line) if line.len() + 2 + word.len() < width => {
                line.push_str(", ");
                line.push_str(word);
            }
            Some(line) => {
                line.push(',');
                lines.push((*word).to_string());
            }
            None => lines.push((*word).to_string()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lift(argv: &[&str]) -> Result<Command, CliError> {
        RawArgs::try_parse_from(argv)
            .expect("clap accepts these")
            .lift()
    }

    #[test]
    fn tunnels_are_named_in_order() {
        let Ok(Command::Run(args)) = lift(&["porxy", "-t", "8000=9000", "--tunnel", "0=9001"])
        else {
            panic!("expected a run");
        };
        let names: Vec<_> = args.tunnels.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["cli-1", "cli-2"]);
        assert_eq!(args.log, "info");
        assert_eq!(args.drain_timeout, None);
    }

    #[test]
    fn bad_spec_keeps_the_spec_error() {
        match lift(&["porxy", "--tunnel", "8000=foo:bar"]) {
            Err(CliError::Spec(err)) => assert_eq!(err.column(), 10),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn help_tunnel_wins_over_bad_specs() {
        assert!(matches!(
            lift(&["porxy", "--help-tunnel", "--tunnel", "nonsense"]),
            Ok(Command::HelpTunnel)
        ));
        let help = tunnel_help();
        assert!(help.contains("REMOTE*WEIGHT"));
        let listed = help
            .split("Known options:\n")
            .nth(1)
            .and_then(|rest| rest.split(".\n").next())
            .expect("the list of options");
        let keys: Vec<&str> = listed
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        assert_eq!(keys, OPTION_KEYS, "every option, in order");
        for line in help.lines() {
            assert!(line.len() <= HELP_WIDTH, "{} wide: {line}", line.len());
        }
        assert!(help.contains("splice=on|off"));
        assert!(help.contains("accept_proxy          read a PROXY header"));
    }

    #[test]
    fn busy_poll_flag_takes_a_duration() {
        let busy = |value: &str| {
            let Ok(Command::Run(args)) = lift(&["porxy", "-t", "8000=9000", "--busy-poll", value])
            else {
                panic!("expected a run");
            };
            args.busy_poll
        };
        assert_eq!(busy("200us"), Some(Duration::from_micros(200)));
        assert_eq!(busy("1ms"), Some(Duration::from_millis(1)));
        assert_eq!(busy("0s"), Some(Duration::ZERO), "0s is off");
        let Ok(Command::Run(args)) = lift(&["porxy", "-t", "8000=9000"]) else {
            panic!("expected a run");
        };
        assert_eq!(args.busy_poll, None, "unset: the file's, or off");
        for bad in ["fast", "200"] {
            let err = RawArgs::try_parse_from(["porxy", "--busy-poll", bad]).expect_err(bad);
            assert_eq!(err.exit_code(), 2, "{bad}");
            let text = err.to_string();
            assert!(
                text.contains("'--busy-poll <DURATION>'") && text.contains(&format!("`{bad}`")),
                "{text}"
            );
        }
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        for argv in [
            &["porxy", "--log", "porxy_core=loud"][..],
            &["porxy", "--drain-timeout", "30"],
            &["porxy", "--reactors", "-1"],
            &["porxy", "--frobnicate"],
        ] {
            let err = RawArgs::try_parse_from(argv).expect_err(argv[1]);
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
        let args = RawArgs::try_parse_from(["porxy", "--drain-timeout", "1m"]).unwrap();
        assert_eq!(args.drain_timeout, Some(Duration::from_secs(60)));
    }
}
