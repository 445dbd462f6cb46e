//! The reply text of every kind of outcome and error, pinned to what the control socket has
//! always said: the texts come from the README's transcript and the end-to-end tests.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use porxy_core::{
    BackendState, BackendStatus, CloseMode, Error, GenerationStatus, OpenedTunnel, ReactorStatus,
    ReloadReport, Status, Strategy, TunnelMode, TunnelStatus,
};

use super::{closed_text, removed_text, render, Reply};
use crate::config_file::{self, Overrides};
use crate::control::command::{parse, ParseError};
use crate::control::outcome::{AdminError, Outcome, ServiceChange};
use crate::reload::ReloadError;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("an address")
}

/// The reply to an outcome.
fn ok(outcome: Outcome) -> Reply {
    render(&Ok(outcome))
}

/// The reply to an error.
fn err(error: impl Into<AdminError>) -> String {
    render(&Err(error.into())).text
}

/// One line of text, neither closing nor stopping.
fn line(text: &str) -> Reply {
    Reply {
        text: format!("{text}\n"),
        close: false,
        then_stop: false,
    }
}

fn backend(addr_: &str, state: BackendState, weight: u32, open: u64) -> BackendStatus {
    let mut backend = BackendStatus::new(addr(addr_));
    backend.weight = weight;
    backend.state = state;
    backend.open = open;
    backend.total = open;
    backend
}

fn tunnel(local: &str, backends: Vec<BackendStatus>, open: u64, bytes: u64) -> TunnelStatus {
    let mut tunnel = TunnelStatus::new(addr(local));
    tunnel.remotes = backends.iter().map(|b| b.addr).collect();
    tunnel.strategy = Strategy::RoundRobin;
    tunnel.mode = TunnelMode::Balance;
    tunnel.backends = backends;
    tunnel.open = open;
    tunnel.accepted = open;
    tunnel.bytes_to_upstream = bytes;
    tunnel.bytes_to_client = bytes;
    tunnel
}

/// A status of `tunnels`, with `reactors` and `generations`.
fn status(
    tunnels: Vec<TunnelStatus>,
    reactors: Vec<ReactorStatus>,
    generations: Vec<GenerationStatus>,
) -> Status {
    let mut status = Status::default();
    status.tunnels = tunnels;
    status.reactors = reactors;
    status.generations = generations;
    status
}

/// Reactor `index` with `open` connections, each adopted.
fn reactor(index: usize, open: u64) -> ReactorStatus {
    let mut reactor = ReactorStatus::new(index);
    reactor.open = open;
    reactor.adopted = open;
    reactor
}

/// The README's demo: one client on port 8000, through two reactors; with `OPEN 8001=7000`
/// and `ADD 8001 7001*2` and `DRAIN 8001 7000` done when `more` is set.
fn demo(more: bool) -> Status {
    let mut tunnels = vec![tunnel(
        "127.0.0.1:8000",
        vec![backend("127.0.0.1:7000", BackendState::Up, 1, 1)],
        1,
        12,
    )];
    if more {
        tunnels.push(tunnel(
            "127.0.0.1:8001",
            vec![
                backend("127.0.0.1:7000", BackendState::Draining, 1, 0),
                backend("127.0.0.1:7001", BackendState::Up, 2, 0),
            ],
            0,
            0,
        ));
    }
    status(
        tunnels,
        vec![reactor(0, 1), reactor(1, 0)],
        vec![GenerationStatus::new(1, 1, true)],
    )
}

#[test]
fn help_lists_every_command_in_a_block() {
    let want = "\
OK commands:
HELP                                          list the commands
STATUS                                        tunnels listening now and the sums of their counters, one line
STATUS FULL                                   every tunnel and reactor with its counters
OPEN LOCAL=REMOTE[,REMOTE...][key=value,...]  open a tunnel; on an existing LOCAL, change its remotes and options for new connections
CLOSE LOCAL                                   stop listening on LOCAL; established connections go on
CLOSE LOCAL NOW                               stop listening on LOCAL and close its connections
ADD LOCAL REMOTE[*WEIGHT]                     add a backend to the tunnel on LOCAL
REMOVE LOCAL REMOTE [DEADLINE|NOW]            take a backend out; its connections go on, until DEADLINE (like 30s) if given
DRAIN LOCAL REMOTE                            no new connections to a backend; established ones go on
ENABLE LOCAL REMOTE                           put a drained or disabled backend back in service
DISABLE LOCAL REMOTE                          no new connections to a backend, and close its connections
RELOAD                                        read the config file again and apply it; on error nothing changes (like SIGHUP)
RELOAD FORCE                                  the same, even for a file without listeners: every listener closes
REOPEN                                        open the access log's files again, after logrotate moved them (like SIGUSR1)
STOP                                          stop the proxy gracefully (like SIGTERM)
EXIT                                          close this control connection (also QUIT)
END
";
    let reply = ok(Outcome::Help);
    assert_eq!(reply.text, want);
    assert!(!reply.close && !reply.then_stop);
}

#[test]
fn status_is_one_line_of_totals() {
    assert_eq!(
        ok(Outcome::Status(demo(false))),
        line("OK tunnels=1 open=1 accepted=1 bytes_up=12 bytes_down=12 connect_failures=0")
    );
    let mut stopping = Status::default();
    stopping.stopping = true;
    assert_eq!(
        ok(Outcome::Status(stopping)),
        line("OK tunnels=0 open=0 accepted=0 bytes_up=0 bytes_down=0 connect_failures=0 stopping")
    );
}

#[test]
fn status_full_is_the_readme_transcript() {
    let want = "\
OK tunnels=1 open=1 accepted=1 bytes_up=12 bytes_down=12 connect_failures=0
tunnel 127.0.0.1:8000 remotes=127.0.0.1:7000 strategy=round_robin open=1 accepted=1 imported=0 bytes_up=12 bytes_down=12 connect_failures=0 closes=-
  backend 127.0.0.1:7000 state=up weight=1 open=1 total=1 failures=0
reactor 0 open=1 adopted=1
reactor 1 open=0 adopted=0
generation 1 open=1 current
END
";
    assert_eq!(ok(Outcome::StatusFull(demo(false), None)).text, want);
    let want = "\
OK tunnels=2 open=1 accepted=1 bytes_up=12 bytes_down=12 connect_failures=0
tunnel 127.0.0.1:8000 remotes=127.0.0.1:7000 strategy=round_robin open=1 accepted=1 imported=0 bytes_up=12 bytes_down=12 connect_failures=0 closes=-
  backend 127.0.0.1:7000 state=up weight=1 open=1 total=1 failures=0
tunnel 127.0.0.1:8001 remotes=127.0.0.1:7000,127.0.0.1:7001 strategy=round_robin open=0 accepted=0 imported=0 bytes_up=0 bytes_down=0 connect_failures=0 closes=-
  backend 127.0.0.1:7000 state=draining weight=1 open=0 total=0 failures=0
  backend 127.0.0.1:7001 state=up weight=2 open=0 total=0 failures=0
reactor 0 open=1 adopted=1
reactor 1 open=0 adopted=0
generation 1 open=1 current
END
";
    assert_eq!(ok(Outcome::StatusFull(demo(true), None)).text, want);
}

#[test]
fn status_full_shows_a_fan_out_tunnel_and_old_generations() {
    let mut fanout = tunnel(
        "127.0.0.1:8002",
        vec![
            backend("127.0.0.1:7000", BackendState::Up, 1, 0),
            backend("127.0.0.1:7001", BackendState::Removing, 1, 0),
        ],
        0,
        0,
    );
    fanout.mode = TunnelMode::Fanout;
    fanout.reply = Some(porxy_core::Reply::Primary);
    fanout.backends[1].bytes_sent = 5;
    fanout.backends[1].lag_drops = 2;
    let status = status(
        vec![fanout],
        Vec::new(),
        vec![
            GenerationStatus::new(1, 3, false),
            GenerationStatus::new(2, 0, true),
        ],
    );
    let want = "\
OK tunnels=1 open=0 accepted=0 bytes_up=0 bytes_down=0 connect_failures=0
tunnel 127.0.0.1:8002 remotes=127.0.0.1:7000,127.0.0.1:7001 mode=fanout reply=primary open=0 accepted=0 imported=0 bytes_up=0 bytes_down=0 connect_failures=0 closes=-
  backend 127.0.0.1:7000 state=up weight=1 open=0 total=0 failures=0 bytes_sent=0 lag_drops=0
  backend 127.0.0.1:7001 state=removing weight=1 open=0 total=0 failures=0 bytes_sent=5 lag_drops=2
generation 1 open=3
generation 2 open=0 current
END
";
    assert_eq!(ok(Outcome::StatusFull(status, None)).text, want);
}

/// A TLS tunnel's certificates follow its backends: role, file, serial, names, expiry.
#[test]
fn status_full_shows_the_certificates_a_tunnel_holds() {
    use std::time::{Duration, SystemTime};

    use porxy_core::{CertificateRole, CertificateStatus};

    let mut site = tunnel(
        "127.0.0.1:8443",
        vec![backend("127.0.0.1:7000", BackendState::Up, 1, 0)],
        0,
        0,
    );
    // Thirty days and an hour from now: thirty whole days left.
    let not_after = SystemTime::now() + Duration::from_secs(30 * 86_400 + 3600);
    site.certificates = vec![
        CertificateStatus::new(
            "/etc/porxy/site.pem".into(),
            CertificateRole::Listener,
            "1a2b".into(),
            vec!["site.test".into(), "*.site.test".into()],
            not_after,
        ),
        CertificateStatus::new(
            "/etc/porxy/client.pem".into(),
            CertificateRole::BackendClient,
            "03".into(),
            Vec::new(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_800),
        ),
    ];
    let text = ok(Outcome::StatusFull(
        status(vec![site], Vec::new(), Vec::new()),
        None,
    ))
    .text;
    let expires = humantime::format_rfc3339_seconds(not_after).to_string();
    let want = format!(
        "  backend 127.0.0.1:7000 state=up weight=1 open=0 total=0 failures=0
  certificate listener /etc/porxy/site.pem serial=1a2b names=site.test,*.site.test not_after={expires} days_left=30
  certificate backend_client /etc/porxy/client.pem serial=03 names=- not_after=2100-01-01T00:00:00Z days_left="
    );
    assert!(text.contains(&want), "{text}");
}

#[test]
fn opened_and_changed_tunnels() {
    let opened = |remotes: &[&str], replaced| {
        ok(Outcome::Opened(OpenedTunnel::new(
            addr("127.0.0.1:8001"),
            remotes.iter().map(|r| addr(r)).collect(),
            replaced,
        )))
    };
    assert_eq!(
        opened(&["127.0.0.1:7000"], false),
        line("OK opened 127.0.0.1:8001 -> 127.0.0.1:7000")
    );
    assert_eq!(
        opened(&["127.0.0.1:7000", "[::1]:7001"], true),
        line("OK changed 127.0.0.1:8001 -> 127.0.0.1:7000,[::1]:7001")
    );
}

/// The texts of [`Outcome::Closed`], from the fields of the `Closed` it holds (which only
/// porxy-core can build; `execute`'s tests render real ones).
#[test]
fn closed_tunnels_and_connections_left_going() {
    let local = addr("127.0.0.1:8001");
    assert_eq!(
        closed_text(local, CloseMode::KeepConnections, true, 0),
        "closed 127.0.0.1:8001; established connections go on"
    );
    assert_eq!(
        closed_text(local, CloseMode::CloseConnections, true, 3),
        "closed 127.0.0.1:8001 and its connections"
    );
    assert_eq!(
        closed_text(local, CloseMode::CloseConnections, false, 1),
        "no tunnel listens on 127.0.0.1:8001; connections earlier tunnels there left going, \
         reset: 1"
    );
}

#[test]
fn backends_added_and_changed() {
    let (tunnel, backend) = (addr("127.0.0.1:8001"), addr("127.0.0.1:7000"));
    assert_eq!(
        ok(Outcome::BackendAdded {
            tunnel,
            backend: addr("127.0.0.1:7001")
        }),
        line("OK added 127.0.0.1:7001 to 127.0.0.1:8001")
    );
    let changed = |change, open| {
        ok(Outcome::BackendChanged {
            tunnel,
            backend,
            change,
            open,
        })
    };
    assert_eq!(
        changed(ServiceChange::Drain, 0),
        line("OK draining 127.0.0.1:7000 of 127.0.0.1:8001: 0 connections go on until they end")
    );
    assert_eq!(
        changed(ServiceChange::Enable, 4),
        line("OK enabled 127.0.0.1:7000 of 127.0.0.1:8001")
    );
    assert_eq!(
        changed(ServiceChange::Disable, 2),
        line("OK disabled 127.0.0.1:7000 of 127.0.0.1:8001: its 2 connections are closed")
    );
}

/// The texts of [`Outcome::Removed`], from the fields of the `Removal` it holds (which only
/// porxy-core can build; `execute`'s tests render real ones).
#[test]
fn removals_state_the_deadline_in_force() {
    let (tunnel, backend) = (addr("127.0.0.1:8001"), addr("127.0.0.1:7000"));
    let text = |asked, open, deadline| removed_text(tunnel, backend, asked, open, deadline);
    let secs = |s| Some(Duration::from_secs(s));
    let head = "removing 127.0.0.1:7000 from 127.0.0.1:8001";
    assert_eq!(
        text(None, 1, None),
        format!("{head}: 1 connections go on until they end")
    );
    assert_eq!(
        text(Some(Duration::ZERO), 1, Some(Duration::ZERO)),
        format!("{head}: its 1 connections are closed")
    );
    assert_eq!(
        text(secs(30), 1, secs(30)),
        format!("{head}: 1 connections go on for at most 30s")
    );
    // An earlier REMOVE's deadline stands: what is left of it, in whole milliseconds rounded
    // up; whether this one asked for a later deadline or for none.
    let left = Some(Duration::from_micros(12_345_001));
    let stands = format!(
        "{head}: 2 connections go on for at most 12s 346ms: the deadline of an earlier REMOVE \
         stands"
    );
    assert_eq!(text(secs(3600), 2, left), stands);
    assert_eq!(text(None, 2, left), stands);
    // A later NOW still closes them at once.
    assert_eq!(
        text(Some(Duration::ZERO), 2, Some(Duration::ZERO)),
        format!("{head}: its 2 connections are closed")
    );
}

#[test]
fn reloaded_counts_what_changed() {
    let a = addr("127.0.0.1:8001");
    let mut report = ReloadReport::default();
    report.generation = 2;
    report.opened = vec![a];
    report.changed = vec![a];
    report.closed = vec![a];
    report.bound = vec![a, a];
    assert_eq!(
        ok(Outcome::Reloaded(report)),
        line("OK reloaded: generation 2, opened 1, changed 1, unchanged 0, closed 1")
    );
}

#[test]
fn stopping_says_what_drains_and_stops_after_the_reply() {
    let reply = ok(Outcome::Stopping {
        open: 1,
        drain_timeout: Duration::from_secs(30),
    });
    assert_eq!(
        reply,
        Reply {
            text: "OK stopping: 1 connections to drain, for at most 30s\n".into(),
            close: false,
            then_stop: true,
        }
    );
}

#[test]
fn bye_closes_the_connection() {
    assert_eq!(
        ok(Outcome::Bye),
        Reply {
            text: "OK bye\n".into(),
            close: true,
            then_stop: false,
        }
    );
}

fn bad_request(line: &[u8]) -> ParseError {
    parse(line).expect_err("a bad line")
}

#[test]
fn a_bad_request_says_what_was_wrong_escaped() {
    assert_eq!(
        err(bad_request(b"FROB")),
        "ERR: unknown command `FROB`; try HELP\n"
    );
    assert_eq!(
        err(bad_request(b"FROB\x1b[2J\x00")),
        "ERR: unknown command `FROB\\u{1b}[2J\\u{0}`; try HELP\n"
    );
    assert_eq!(
        err(bad_request(b"CLOSE foo")),
        "ERR: bad address `foo` at column 1: `foo` needs a port, like `foo:8000`\n"
    );
    assert_eq!(
        err(bad_request(b"OPEN 8000=foo:bar")),
        "ERR: bad tunnel `8000=foo:bar` at column 10: `bar` is not a port number (0 to 65535)\n"
    );
    assert_eq!(
        err(bad_request(b"OPEN \xff\xfe")),
        "ERR: line is not UTF-8 (bad byte at offset 5)\n"
    );
    assert_eq!(err(bad_request(b"")), "ERR: empty line; try HELP\n");
}

#[test]
fn errors_of_the_proxy_are_their_message_and_causes() {
    let (tunnel, backend) = (addr("127.0.0.1:8001"), addr("127.0.0.1:7000"));
    let cases: Vec<(Error, String)> = vec![
        // Invalid.
        (
            Error::Resolve {
                endpoint: "nowhere.invalid:80".into(),
                source: io::Error::other(
                    "failed to lookup address information: Name or service not known",
                ),
            },
            "cannot resolve `nowhere.invalid:80`: failed to lookup address information: Name \
             or service not known"
                .into(),
        ),
        (
            Error::DuplicateRemote {
                local: "127.0.0.1:8001".into(),
                remote: backend,
            },
            "tunnel on 127.0.0.1:8001 lists remote 127.0.0.1:7000 twice; give it a weight \
             instead (`*N`)"
                .into(),
        ),
        // Not found.
        (
            Error::NoSuchTunnel(addr("127.0.0.1:1")),
            "no tunnel listens on 127.0.0.1:1".into(),
        ),
        (
            Error::NoSuchBackend { tunnel, backend },
            "tunnel 127.0.0.1:8001 has no backend 127.0.0.1:7000".into(),
        ),
        // Conflict.
        (
            Error::BackendExists { tunnel, backend },
            "tunnel 127.0.0.1:8001 already has backend 127.0.0.1:7000".into(),
        ),
        (
            Error::BackendLeaving {
                tunnel,
                backend,
                open: 1,
            },
            "backend 127.0.0.1:7000 of tunnel 127.0.0.1:8001 is still being removed (1 \
             connections left); wait for them to end, or REMOVE it with a deadline (or NOW) to \
             close them"
                .into(),
        ),
        (
            Error::LastBackend { tunnel },
            "backend is the last of tunnel 127.0.0.1:8001; close the tunnel instead".into(),
        ),
        (
            Error::SelfLoop {
                tunnel,
                remote: addr("127.0.0.1:8000"),
                listener: addr("127.0.0.1:8000"),
            },
            "tunnel 127.0.0.1:8001 would forward to porxy itself: its remote 127.0.0.1:8000 \
             reaches porxy's listener 127.0.0.1:8000; a remote must be a server elsewhere"
                .into(),
        ),
        (
            Error::Bind {
                addr: tunnel,
                source: io::Error::from_raw_os_error(libc::EADDRINUSE),
            },
            "cannot listen on 127.0.0.1:8001: Address already in use (os error 98)".into(),
        ),
        // Stopping.
        (Error::Stopped, "the proxy is stopping".into()),
        // Internal.
        (
            Error::ThreadPanicked("listener".into()),
            "the listener thread panicked".into(),
        ),
    ];
    for (error, want) in cases {
        assert_eq!(err(error), format!("ERR: {want}\n"));
    }
}

#[test]
fn what_an_error_echoes_is_escaped() {
    let error = Error::NoAddress {
        endpoint: "evil\x1b]0;owned\x07:80".into(),
    };
    assert_eq!(
        err(error),
        "ERR: `evil\\u{1b}]0;owned\\u{7}:80` resolved to no address\n"
    );
}

#[test]
fn a_refused_reload_says_why_nothing_changed() {
    let refused = |why: ReloadError| err(why);
    assert_eq!(
        refused(ReloadError::NoConfigFile),
        "ERR: reload failed, nothing changed: nothing to reload: porxy was started without \
         --config\n"
    );
    assert_eq!(
        refused(ReloadError::NoListener {
            path: "/etc/porxy.toml".into(),
            running: vec!["db".into(), "web".into()],
            remedy: "send RELOAD FORCE on the control socket",
        }),
        "ERR: reload failed, nothing changed: /etc/porxy.toml defines no listener: reloading it \
         would close every listener the file had (db, web). If the file was being written, \
         reload once it is complete (replace it atomically: write a temp file, then mv); to \
         close them all on purpose, send RELOAD FORCE on the control socket\n"
    );
    let file = config_file::parse("porxy.toml", "[proxy]\nfrob = 1\n", &Overrides::default())
        .expect_err("an unknown key");
    let reply = refused(ReloadError::Config(file));
    assert!(
        reply.starts_with(
            "ERR: reload failed, nothing changed: porxy.toml:2:1: proxy.frob: unknown field \
             `frob`, expected one of `reactors`, "
        ),
        "{reply}"
    );
    assert_eq!(
        refused(ReloadError::NameTaken {
            name: "cli-1".into(),
            origin: "porxy.toml:4:1: listeners.cli-1".into(),
        }),
        "ERR: reload failed, nothing changed: --tunnel cli-1: the name is taken by \
         porxy.toml:4:1: listeners.cli-1\n"
    );
    let taken = Error::Tunnel {
        spec: "127.0.0.1:8001=127.0.0.1:7000".into(),
        source: Box::new(Error::Bind {
            addr: addr("127.0.0.1:8001"),
            source: io::Error::from_raw_os_error(libc::EADDRINUSE),
        }),
    };
    assert_eq!(
        refused(ReloadError::Core(taken)),
        "ERR: reload failed, nothing changed: tunnel `127.0.0.1:8001=127.0.0.1:7000`: cannot \
         listen on 127.0.0.1:8001: Address already in use (os error 98)\n"
    );
    assert_eq!(
        refused(ReloadError::Core(Error::Stopped)),
        "ERR: reload failed, nothing changed: the proxy is stopping\n"
    );
}
