//! The access log: one record per connection as it ends, with exact bytes and why it ended,
//! in logfmt or JSON (read back with `jq`); reopened for logrotate without losing a line; an
//! unwritable path refused at start; a writer that cannot keep up drops records, counted,
//! and never slows the relay.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::client::{
    abort, connect, connect_expect_reset, read_until_end, round_trip, End,
};
use crate::support::control::control_addr;
use crate::support::control::ControlClient;
use crate::support::curl::{curl, url};
use crate::support::process::{run, Porxy, TempDir};
use crate::support::{wait_until, Backend};

const WAIT: Duration = Duration::from_secs(10);

/// The lines of `path` (none while it does not exist).
fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `path` holds `count` lines; its lines.
#[track_caller]
fn wait_lines(path: &Path, count: usize) -> Vec<String> {
    wait_until(
        WAIT,
        &format!("{count} records in {}", path.display()),
        || lines(path).len() >= count,
    );
    let found = lines(path);
    assert_eq!(found.len(), count, "{found:#?}");
    found
}

/// The value of `key` in a logfmt line (unquoted values only).
#[track_caller]
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// One connection through `tunnel` that sends `size` bytes, reads them back and ends cleanly.
fn echo_exactly(tunnel: SocketAddr, size: usize) {
    let mut stream = connect(tunnel);
    let sent: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    assert_eq!(back.len(), size);
}

/// Connections of known sizes give one logfmt record each, with their exact bytes, the
/// backend, the configuration generation and a clean end.
#[test]
fn each_connection_gets_one_record_with_its_exact_bytes() {
    let echo = Backend::echo();
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let porxy = Porxy::start(&[
        "--access-log",
        log.to_str().unwrap(),
        "--tunnel",
        &format!("127.0.0.1:0={}", echo.addr()),
    ]);
    let tunnel = porxy.tunnel("cli-1");
    let sizes = [1usize, 1000, 100_000, 1 << 20];
    for size in sizes {
        echo_exactly(tunnel, size);
    }
    let records = wait_lines(&log, sizes.len());
    let mut seen: Vec<usize> = records
        .iter()
        .map(|r| field(r, "bytes_to_upstream").parse().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, sizes);
    for record in &records {
        assert_eq!(
            field(record, "bytes_to_upstream"),
            field(record, "bytes_to_client")
        );
        assert_eq!(field(record, "tunnel"), "cli-1");
        assert_eq!(field(record, "listen"), tunnel.to_string());
        assert_eq!(field(record, "backend"), echo.addr().to_string());
        assert_eq!(field(record, "generation"), "1");
        assert_eq!(field(record, "reason"), "completed");
        assert_eq!(field(record, "fault"), "none");
        assert!(field(record, "client").starts_with("127.0.0.1:"));
        let connect_ms: f64 = field(record, "connect_ms").parse().unwrap();
        let duration_ms: f64 = field(record, "duration_ms").parse().unwrap();
        assert!(connect_ms <= duration_ms, "{record}");
    }
    let ids: std::collections::BTreeSet<&str> = records.iter().map(|r| field(r, "conn")).collect();
    assert_eq!(ids.len(), sizes.len(), "one record per connection");
}

/// JSON records, read with jq, say why each connection ended and whose fault that was: a clean
/// end, a client reset, a refused upstream, an idle timeout, a client an access rule refused.
#[test]
fn json_records_name_the_reason_and_fault() {
    let echo = Backend::echo();
    let refused = Backend::echo().go_down();
    let dir = TempDir::new();
    let log = dir.path().join("access.json");
    let porxy = Porxy::start(&[
        "--access-log",
        log.to_str().unwrap(),
        "--access-log-format",
        "json",
        "--tunnel",
        &format!("127.0.0.1:0={}", echo.addr()),
        "--tunnel",
        &format!("127.0.0.1:0={}", refused.addr()),
        "--tunnel",
        &format!("127.0.0.1:0={}[idle_timeout=200ms]", echo.addr()),
        "--tunnel",
        &format!("127.0.0.1:0={}[deny=127.0.0.0/8]", echo.addr()),
    ]);
    echo_exactly(porxy.tunnel("cli-1"), 300);
    let mut reset = connect(porxy.tunnel("cli-1"));
    round_trip(&mut reset, b"then a reset");
    abort(reset);
    connect_expect_reset(porxy.tunnel("cli-2"), WAIT);
    let mut idle = connect(porxy.tunnel("cli-3"));
    round_trip(&mut idle, b"idle");
    assert_eq!(read_until_end(&mut idle).end, End::Eof);
    connect_expect_reset(porxy.tunnel("cli-4"), WAIT);
    wait_lines(&log, 5);

    let out = Command::new("jq")
        .args([
            "-r",
            r#"[.tunnel, .reason, .fault, .bytes_to_upstream, .bytes_to_client, (.backend // "-")] | @tsv"#,
        ])
        .arg(&log)
        .output()
        .expect("run jq (tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    got.sort();
    let (e, r) = (echo.addr(), refused.addr());
    let mut want = vec![
        format!("cli-1\tcompleted\tnone\t300\t300\t{e}"),
        format!("cli-1\tclient_reset\tclient\t12\t12\t{e}"),
        format!("cli-2\tconnect_refused\tupstream\t0\t0\t{r}"),
        format!("cli-3\tidle_timeout\ttimeout\t4\t4\t{e}"),
        "cli-4\tdenied\toperator\t0\t0\t-".to_string(),
    ];
    want.sort();
    assert_eq!(got, want);
    // Every field is there, named, in every record.
    let keys = Command::new("jq")
        .args(["-c", "keys"])
        .arg(&log)
        .output()
        .unwrap();
    let keys = String::from_utf8(keys.stdout).unwrap();
    for line in keys.lines() {
        assert_eq!(
            line,
            r#"["backend","bytes_to_client","bytes_to_upstream","client","conn","connect_ms","destinations","duration_ms","error","fault","generation","imported","listen","reason","server_name","start","time","tls_client_subject","tunnel"]"#
        );
    }
}

/// logrotate's way: the file is renamed, porxy is told (REOPEN on the control socket, then
/// SIGUSR1), and records go on in a new file at the old path; none is lost.
#[test]
fn a_renamed_log_is_reopened_and_nothing_is_lost() {
    let echo = Backend::echo();
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let mut porxy = Porxy::start(&[
        "--access-log",
        log.to_str().unwrap(),
        "--control",
        "127.0.0.1:0",
        "--tunnel",
        &format!("127.0.0.1:0={}", echo.addr()),
    ]);
    let tunnel = porxy.tunnel("cli-1");
    for _ in 0..5 {
        echo_exactly(tunnel, 10);
    }
    wait_lines(&log, 5);
    let first = dir.path().join("access.log.1");
    fs::rename(&log, &first).unwrap();
    // Written between the rename and the reopen: into the renamed file.
    for _ in 0..3 {
        echo_exactly(tunnel, 20);
    }
    wait_lines(&first, 8);
    let mut control = ControlClient::connect(control_addr(&porxy));
    assert_eq!(control.cmd("REOPEN"), "OK reopened 1 access log files");
    for _ in 0..4 {
        echo_exactly(tunnel, 30);
    }
    let records = wait_lines(&log, 4);
    assert!(records
        .iter()
        .all(|r| field(r, "bytes_to_upstream") == "30"));

    let second = dir.path().join("access.log.2");
    fs::rename(&log, &second).unwrap();
    porxy.signal(libc::SIGUSR1);
    wait_until(WAIT, "SIGUSR1 to open a new file", || log.exists());
    echo_exactly(tunnel, 40);
    wait_lines(&log, 1);
    assert_eq!(lines(&first).len(), 8);
    assert_eq!(lines(&second).len(), 4);
    let full = control.block("STATUS FULL");
    assert_eq!(
        full.iter()
            .find(|l| l.starts_with("access_log "))
            .map(String::as_str),
        Some("access_log written=13 dropped=0 failed=0"),
        "{full:#?}"
    );
}

/// A path porxy cannot write is refused before it starts, with the path and the reason.
#[test]
fn an_unwritable_access_log_is_refused_at_start() {
    let echo = Backend::echo();
    let dir = TempDir::new();
    let missing = dir.path().join("no-such-dir").join("access.log");
    let finished = run(
        &[
            "--access-log",
            missing.to_str().unwrap(),
            "--tunnel",
            &format!("127.0.0.1:0={}", echo.addr()),
        ],
        WAIT,
    );
    assert_ne!(finished.code, Some(0));
    assert!(
        finished.stderr.contains(&format!(
            "cannot open the access log {}: No such file or directory",
            missing.display()
        )),
        "{}",
        finished.stderr
    );
    assert!(finished.stdout.is_empty(), "no READY line");
}

/// The log is a FIFO whose reader never reads: the writer blocks once the pipe is full, the
/// queue fills, and later records are dropped and counted; every connection is relayed
/// whole all the same.
#[test]
fn a_writer_that_cannot_keep_up_drops_records_not_connections() {
    let echo = Backend::echo();
    let dir = TempDir::new();
    let fifo = dir.path().join("access.fifo");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo only reads the path it is given.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    // A reader that never reads: porxy's open for writing then does not wait.
    let _reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let porxy = Porxy::start(&[
        "--access-log",
        fifo.to_str().unwrap(),
        "--admin",
        "127.0.0.1:0",
        "--tunnel",
        &format!("127.0.0.1:0={}", echo.addr()),
    ]);
    let admin = porxy.admin().unwrap().to_string();
    let tunnel = porxy.tunnel("cli-1");
    let dropped = || -> u64 {
        let status = curl(&[&url(&admin, "/status")]).json();
        status["access_log"]["dropped"].as_u64().unwrap()
    };
    // The queue holds 4,096 records; the pipe and the writer's buffer some hundreds more.
    let mut served = 0;
    while dropped() == 0 {
        assert!(
            served < 20_000,
            "no record dropped after {served} connections"
        );
        for _ in 0..500 {
            let mut client = connect(tunnel);
            round_trip(&mut client, b"relayed whatever the log does");
            served += 1;
        }
    }
    let scrape = curl(&[&url(&admin, "/metrics")]).body;
    let line = scrape
        .lines()
        .find(|l| l.starts_with("porxy_access_log_records_total{result=\"dropped\"}"))
        .expect("the dropped records' counter");
    let counted: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(counted >= 1, "{line}");
    wait_until(WAIT, "a warning about dropped records", || {
        porxy
            .stderr()
            .contains("access log records dropped: the writer cannot keep up")
    });
}

/// `[proxy] access_log` is every listener's, unless the listener has its own (or `off`); a
/// reload that names another file moves that listener's records there from then on.
#[test]
fn listeners_have_their_own_logs_and_a_reload_moves_them() {
    let echo = Backend::echo();
    let dir = TempDir::new();
    let (all, web, web2) = (
        dir.path().join("all.log"),
        dir.path().join("web.json"),
        dir.path().join("web2.json"),
    );
    let config = |web_log: &Path| {
        format!(
            "[proxy]\naccess_log = \"{}\"\n\n\
             [backends.echo]\naddress = \"{}\"\n\n\
             [listeners.web]\nlisten = \"127.0.0.1:0\"\nbackends = [\"echo\"]\n\
             access_log = \"{}\"\naccess_log_format = \"json\"\n\n\
             [listeners.quiet]\nlisten = \"127.0.0.1:0\"\nbackends = [\"echo\"]\naccess_log = \"off\"\n\n\
             [listeners.other]\nlisten = \"127.0.0.1:0\"\nbackends = [\"echo\"]\n",
            all.display(),
            echo.addr(),
            web_log.display()
        )
    };
    let file = dir.write("porxy.toml", &config(&web));
    let porxy = Porxy::start(&[
        "--config",
        file.to_str().unwrap(),
        "--control",
        "127.0.0.1:0",
    ]);
    echo_exactly(porxy.tunnel("web"), 11);
    echo_exactly(porxy.tunnel("quiet"), 12);
    echo_exactly(porxy.tunnel("other"), 13);
    let web_records = wait_lines(&web, 1);
    let record: serde_json::Value = serde_json::from_str(&web_records[0]).unwrap();
    assert_eq!(
        (&record["tunnel"], &record["bytes_to_upstream"]),
        (&"web".into(), &11.into())
    );
    let others = wait_lines(&all, 1);
    assert_eq!(field(&others[0], "tunnel"), "other", "quiet logs nothing");
    assert_eq!(field(&others[0], "bytes_to_upstream"), "13");

    dir.write("porxy.toml", &config(&web2));
    let mut control = ControlClient::connect(control_addr(&porxy));
    assert!(control.cmd("RELOAD").starts_with("OK reloaded"));
    echo_exactly(porxy.tunnel("web"), 14);
    let moved = wait_lines(&web2, 1);
    assert!(
        moved[0].contains(r#""bytes_to_upstream":14"#),
        "{}",
        moved[0]
    );
    assert_eq!(lines(&web).len(), 1, "the old file gets nothing more");
    // The new generation is in the record.
    assert!(moved[0].contains(r#""generation":2"#), "{}", moved[0]);
}
