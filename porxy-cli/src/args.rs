//! Command-line arguments: clap reads them raw ([`RawArgs`]), then they are lifted into
//! validated [`Args`] (tunnel SPECs parsed, named `cli-1`, `cli-2`, ...).
//!
//! SPECs are parsed after clap, not by a clap value parser, so that a bad SPEC is reported like
//! every other configuration error (`porxy: error: ...`, exit 1) with the caret line under the
//! fault, which clap's error format has no room for.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use porxy_core::units::parse_duration;
use porxy_core::{AcceptMode, TunnelSpec};

use crate::access_log::{Format, Target};
use crate::clients::ListenAddr;
use crate::error::CliError;
use crate::named_tunnel::NamedTunnel;

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Command {
    /// `--help-tunnel`: explain the SPEC grammar and exit.
    HelpTunnel,
    /// Check or run a proxy.
    Run(Box<Args>),
    /// `porxy top ...`: the live view of a running porxy.
    Top(crate::top::TopArgs),
    /// `porxy completions SHELL`: a completion script on stdout.
    Completions(clap_complete::Shell),
    /// `porxy man`: the manual page (roff) on stdout.
    Man,
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
    /// `--takeover-config-only`: with `--takeover`, start from the configuration alone, not
    /// replaying the changes made at runtime in the porxy taken over.
    pub(crate) takeover_config_only: bool,
    /// `--bind-wait DURATION`: how long to wait for a port another process still holds.
    pub(crate) bind_wait: Option<Duration>,
    /// `--busy-poll DURATION`, overriding the file.
    pub(crate) busy_poll: Option<Duration>,
    /// `--reuse-port`, over the file's `[proxy] reuse_port`.
    pub(crate) reuse_port: bool,
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
    /// `--metrics ADDR`, overriding the file.
    pub(crate) metrics: Option<ListenAddr>,
    /// `--access-log`, overriding the file's `[proxy]`.
    pub(crate) access_log: Option<Target>,
    /// `--access-log-format`, overriding the file's `[proxy]`.
    pub(crate) access_log_format: Option<Format>,
}

/// The version `--version` shows: the package's, and the commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PORXY_COMMIT"), ")");

/// The arguments as clap reads them.
#[derive(Debug, Parser)]
#[command(
    name = "porxy",
    version = VERSION,
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

    /// With --takeover: start from the configuration alone; by default the changes made at
    /// runtime in the old porxy (drained backends, tunnels opened, ...) are made here too.
    #[arg(long, requires = "takeover")]
    takeover_config_only: bool,

    /// When a port is still held by another process (an old porxy draining), wait up to this
    /// long for it to be released instead of failing at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    bind_wait: Option<Duration>,

    /// After traffic, keep each reactor polling without sleeping for up to this long, like
    /// 200us or 1ms (at most 1s): lower latency for a CPU kept busy while traffic flows; 0s is
    /// off [default: off, or the file's `[proxy] busy_poll`].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    busy_poll: Option<Duration>,

    /// Bind listening sockets with SO_REUSEPORT: a new porxy started with it too (and
    /// --bind-wait for its admin addresses) takes their addresses beside this one and every
    /// new client from then on, so that `curl .../stop` on this one refuses nobody.
    #[arg(long)]
    reuse_port: bool,

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

    /// Serve Prometheus metrics, and only them, at /metrics on this TCP address or Unix path,
    /// for scrapers that should not reach the admin API [default: the file's `[metrics]
    /// listen`, else none; the admin endpoint serves /metrics too].
    #[arg(long, value_name = "ADDR", value_parser = parse_control)]
    metrics: Option<ListenAddr>,

    /// Write one line per connection as it ends to this file (reopened on SIGUSR1 and the
    /// control socket's REOPEN, for logrotate), to `stderr`, or `off` [default: the file's
    /// `[proxy] access_log`, else off].
    #[arg(long, value_name = "PATH|stderr|off", value_parser = Target::from_str)]
    access_log: Option<Target>,

    /// The access log's lines: `logfmt` or `json` (one object a line) [default: the file's
    /// `[proxy] access_log_format`, else logfmt].
    #[arg(long, value_name = "logfmt|json", value_parser = Format::from_str)]
    access_log_format: Option<Format>,
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
    // `porxy top` is a client of a running porxy, with arguments of its own; `completions`
    // and `man` print what is generated from the arguments below.
    let first = std::env::args_os().nth(1);
    match first.as_ref().and_then(|a| a.to_str()) {
        Some("top") => {
            let args = std::env::args_os().skip(1);
            return crate::top::TopArgs::try_parse_from(args).map(|top| Ok(Command::Top(top)));
        }
        Some("completions") => {
            return GeneratedArgs::try_parse_from(std::env::args_os().skip(1))
                .map(|g| Ok(Command::Completions(g.shell)));
        }
        Some("man") => {
            return ManArgs::try_parse_from(std::env::args_os().skip(1)).map(|_| Ok(Command::Man));
        }
        _ => {}
    }
    RawArgs::try_parse().map(RawArgs::lift)
}

/// `porxy completions SHELL`.
#[derive(Debug, Parser)]
#[command(
    name = "porxy completions",
    about = "Print a completion script: porxy completions bash > /etc/bash_completion.d/porxy"
)]
struct GeneratedArgs {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// `porxy man`.
#[derive(Debug, Parser)]
#[command(
    name = "porxy man",
    about = "Print the manual page: porxy man > /usr/local/share/man/man1/porxy.1"
)]
struct ManArgs {}

/// The arguments' definition, for what is generated from it (completions, the man page).
pub(crate) fn definition() -> clap::Command {
    <RawArgs as clap::CommandFactory>::command()
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
            takeover_config_only: self.takeover_config_only,
            leave_connections: self.leave_connections,
            bind_wait: self.bind_wait,
            busy_poll: self.busy_poll,
            reuse_port: self.reuse_port,
            admin: self.admin,
            admin_token_file: self.admin_token_file,
            admin_insecure: self.admin_insecure,
            rpc: self.rpc,
            state_file: self.state_file,
            metrics: self.metrics,
            access_log: self.access_log,
            access_log_format: self.access_log_format,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lift(argv: &[&str]) -> Result<Command, CliError> {
        RawArgs::try_parse_from(argv)
            .expect("clap accepts these")
            .lift()
    }

    use crate::tunnel_help::{tunnel_help, HELP_WIDTH};
    use porxy_core::OPTION_KEYS;

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
