//! Where bad files are blamed: each error names the file, the line, the column and the key
//! path, written the way the user wrote it.

use super::lift;

#[test]
fn errors_name_file_line_and_key() {
    let listener = "[backends.echo]\naddress = \"127.0.0.1:7000\"\n[listeners.demo]\n";
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "unknown top-level key",
            "[proxy]\nreactors = 2\n\nbogus = 1\n".into(),
            "porxy.toml:4:1: proxy.bogus",
            "unknown field `bogus`",
        ),
        (
            "unknown table",
            "[proxie]\nreactors = 2\n".into(),
            "porxy.toml:1:2: proxie",
            "expected one of `proxy`, `backends`, `listeners`",
        ),
        (
            "unknown listener key",
            format!("{listener}listen = \"8000\"\nbackends = [\"echo\"]\nbackend = \"x\"\n"),
            "porxy.toml:6:1: listeners.demo.backend",
            "unknown field `backend`",
        ),
        (
            "bad accept mode",
            "[proxy]\naccept = \"kernel\"\n".into(),
            "porxy.toml:2:10: proxy.accept",
            "unknown accept mode `kernel`; expected `reactors` or `listener`",
        ),
        (
            "bad duration",
            "[proxy]\nconnect_timeout = \"5 parsecs\"\n".into(),
            "porxy.toml:2:19: proxy.connect_timeout",
            "`5 parsecs` is not a duration",
        ),
        (
            "duration without a unit",
            format!("{listener}listen = \"8000\"\nbackends = [\"echo\"]\nidle_timeout = 5\n"),
            "porxy.toml:6:16: listeners.demo.idle_timeout",
            "like \"5s\"",
        ),
        (
            "zero listener timeout",
            format!("{listener}listen = \"8000\"\nbackends = [\"echo\"]\nidle_timeout = \"0s\"\n"),
            "porxy.toml:6:16: listeners.demo.idle_timeout",
            "more than zero",
        ),
        (
            "splice is a boolean",
            format!("{listener}listen = \"8000\"\nbackends = [\"echo\"]\nsplice = \"on\"\n"),
            "porxy.toml:6:10: listeners.demo.splice",
            "expected a boolean",
        ),
        (
            "bad size",
            "[proxy]\nbuffer_size = \"64 parsecs\"\n".into(),
            "porxy.toml:2:15: proxy.buffer_size",
            "is not a size",
        ),
        (
            "size out of range, from ProxyConfig::validate",
            "[proxy]\n\nbuffer_size = \"1B\"\n".into(),
            "porxy.toml:3:15: proxy.buffer_size",
            "is not from 1024",
        ),
        (
            "pipe size out of range, from ProxyConfig::validate",
            "[proxy]\npipe_size = \"1B\"\n".into(),
            "porxy.toml:2:13: proxy.pipe_size",
            "1 bytes is not from 4096 to 67108864",
        ),
        (
            "zero fin timeout, from ProxyConfig::validate",
            "[proxy]\nclient_fin_timeout = \"0s\"\n".into(),
            "porxy.toml:2:22: proxy.client_fin_timeout",
            "must be more than zero",
        ),
        (
            "zero listener fin timeout",
            format!("{listener}listen = \"8000\"\nbackends = [\"echo\"]\nserver_fin_timeout = \"0s\"\n"),
            "porxy.toml:6:22: listeners.demo.server_fin_timeout",
            "more than zero",
        ),
        (
            "bad access_log_format",
            "[proxy]\naccess_log_format = \"xml\"\n".into(),
            "porxy.toml:2:21: proxy.access_log_format",
            "unknown format \"xml\": expected `logfmt` or `json`",
        ),
        (
            "empty access_log",
            "[proxy]\naccess_log = \"\"\n".into(),
            "porxy.toml:2:14: proxy.access_log",
            "expected a file path, `stderr` or `off`",
        ),
        (
            "bad busy_poll",
            "[proxy]\nbusy_poll = \"fast\"\n".into(),
            "porxy.toml:2:13: proxy.busy_poll",
            "`fast` is not a duration",
        ),
        (
            "busy_poll without a unit",
            "[proxy]\nbusy_poll = \"200\"\n".into(),
            "porxy.toml:2:13: proxy.busy_poll",
            "`200` has no unit",
        ),
        (
            "busy_poll too long, from ProxyConfig::validate",
            "[proxy]\nbusy_poll = \"2s\"\n".into(),
            "porxy.toml:2:13: proxy.busy_poll",
            "2s is more than 1s; a reactor spins a CPU",
        ),
        (
            "zero reactors, from ProxyConfig::validate",
            "[proxy]\nreactors = 0\n".into(),
            "porxy.toml:2:12: proxy.reactors",
            "0 is not from 1 to 1024",
        ),
        (
            "negative reactors",
            "[proxy]\nreactors = -1\n".into(),
            "porxy.toml:2:12: proxy.reactors",
            "expected usize",
        ),
        (
            "backend address no server can have: unspecified",
            "[backends.echo]\naddress = \"0.0.0.0:80\"\n".into(),
            "porxy.toml:2:12: backends.echo.address",
            "the unspecified address (`0.0.0.0`, `[::]`) means every address of this machine",
        ),
        (
            "backend address no server can have: port 0",
            "[backends.echo]\naddress = \"127.0.0.1:0\"\n".into(),
            "porxy.toml:2:12: backends.echo.address",
            "port 0 is no server's port",
        ),
        (
            "bad backend address, caret at the port",
            "[backends.echo]\naddress = \"127.0.0.1:70000\"\n".into(),
            "porxy.toml:2:22: backends.echo.address",
            "out of range",
        ),
        (
            "unquoted listen address",
            format!("{listener}listen = 8000\n"),
            "porxy.toml:4:10: listeners.demo.listen",
            "an address is a string, like \"127.0.0.1:8000\"",
        ),
        (
            "IPv6 without brackets",
            format!("{listener}listen = \"::1:8000\"\nbackends = [\"echo\"]\n"),
            "porxy.toml:4:11: listeners.demo.listen",
            "IPv6 addresses go in brackets",
        ),
        (
            "unknown backend",
            format!("{listener}listen = \"8000\"\nbackends = [\"echo\", \"ech\"]\n"),
            "porxy.toml:5:21: listeners.demo.backends",
            "unknown backend \"ech\"; defined backends: echo",
        ),
        (
            "one backend twice",
            format!("{listener}listen = \"8000\"\nbackends = [\"echo\", \"echo\"]\n"),
            "porxy.toml:5:21: listeners.demo.backends",
            "backend \"echo\" is listed twice; list it once, and give [backends.echo] a `weight`",
        ),
        (
            "no backends defined at all",
            "[listeners.demo]\nlisten = \"8000\"\nbackends = [\"echo\"]\n".into(),
            "porxy.toml:3:13: listeners.demo.backends",
            "no [backends.NAME] table is defined",
        ),
        (
            "empty backends list",
            format!("{listener}listen = \"8000\"\nbackends = []\n"),
            "porxy.toml:5:12: listeners.demo.backends",
            "empty list",
        ),
        (
            "listener without backends",
            format!("{listener}listen = \"8000\"\n"),
            "porxy.toml:3:12: listeners.demo",
            "no backend",
        ),
        (
            "listener without listen",
            format!("{listener}backends = [\"echo\"]\n"),
            "porxy.toml:3:1: listeners.demo",
            "missing field `listen`",
        ),
        (
            "listener name unfit for the READY line",
            "[backends.e]\naddress = \"7000\"\n[listeners.\"a b\"]\nlisten = \"8000\"\nbackends = [\"e\"]\n"
                .into(),
            "porxy.toml:3:12: listeners.\"a b\"",
            "only letters, digits",
        ),
        (
            "syntax error: unquoted address",
            format!("{listener}listen = 127.0.0.1:8000\n"),
            "porxy.toml:4:15: listeners.demo.listen",
            "syntax error",
        ),
        (
            "syntax error: duplicate key",
            format!("{listener}listen = \"8000\"\nlisten = \"8001\"\n"),
            "porxy.toml:5:1: listeners.demo",
            "duplicate key",
        ),
        (
            "unknown mode",
            format!("{listener}listen = \"8000\"\nbackends = [\"echo\"]\nmode = \"mirror\"\n"),
            "porxy.toml:6:8: listeners.demo.mode",
            "unknown mode `mirror`; known modes: balance, fanout",
        ),
        (
            "fan-out option without fan-out",
            format!("{listener}listen = \"8000\"\nbackends = [\"echo\"]\nreply = \"none\"\n"),
            "porxy.toml:3:12: listeners.demo",
            "option `reply` applies only with mode=fanout",
        ),
        (
            "max_lag too small",
            format!(
                "{listener}listen = \"8000\"\nbackends = [\"echo\"]\nmode = \"fanout\"\n\
                 max_lag = 1024\n"
            ),
            "porxy.toml:7:11: listeners.demo.max_lag",
            "must be from 64KiB to 1GiB",
        ),
        (
            "a key of the check table, named as written",
            format!(
                "{listener}listen = \"8000\"\nbackends = [\"echo\"]\n\
                 [listeners.demo.check]\ninterval = \"soon\"\n"
            ),
            "porxy.toml:7:12: listeners.demo.check.interval",
            "`soon` is not a duration",
        ),
        (
            "a dotted key of the check table, named as written",
            format!(
                "{listener}listen = \"8000\"\nbackends = [\"echo\"]\ncheck.rise = 0\n"
            ),
            "porxy.toml:6:14: listeners.demo.check.rise",
            "`0` is not a whole number from 1 to 1000",
        ),
        (
            "syntax error: unclosed table header",
            "[proxy\nreactors = 2\n".into(),
            "porxy.toml:1:7",
            "syntax error: unclosed table",
        ),
        (
            "syntax error: unclosed string",
            "[proxy]\nbacklog = \"x\n".into(),
            "porxy.toml:2:13: proxy.backlog",
            "syntax error",
        ),
    ];
    for (name, text, location, fragment) in cases {
        let err = match lift(&text) {
            Ok(file) => panic!("{name}: accepted as {file:?}"),
            Err(err) => err.to_string(),
        };
        let prefix = if location.ends_with(':') {
            location.to_string()
        } else {
            format!("{location}:")
        };
        assert!(
            err.starts_with(&prefix),
            "{name}: {err:?} is not at {location:?}"
        );
        assert!(err.contains(fragment), "{name}: {err:?} lacks {fragment:?}");
        assert!(!err.contains('\n'), "{name}: {err:?} spans lines");
    }
}

/// A listener's option keys go through the core's typed setters: each refusal is the core's,
/// whole, after the key's location (what a SPEC says after the option's name).
#[test]
fn option_values_are_refused_by_the_core_at_their_value() {
    let listener = "[backends.echo]\naddress = \"127.0.0.1:7000\"\n[listeners.demo]\n\
                    listen = \"8000\"\nbackends = [\"echo\"]\n";
    let cases = [
        (
            "queue_timeout = \"0s\"\n",
            "porxy.toml:6:17: listeners.demo.queue_timeout: must be more than zero",
        ),
        (
            "[listeners.demo.check]\nsend_proxy = true\n",
            "porxy.toml:3:12: listeners.demo: option `check_send_proxy` applies only with \
             send_proxy (the tunnel's or a backend's)",
        ),
        (
            "max_conns = 0\n",
            "porxy.toml:6:13: listeners.demo.max_conns: `0` is not a whole number from 1 to \
             10000000",
        ),
        (
            "strategy = \"fastest\"\n",
            "porxy.toml:6:12: listeners.demo.strategy: unknown strategy `fastest`; known \
             strategies: round_robin, least_conn, random, hash, first",
        ),
        (
            "mode = \"fanout\"\nmax_lag = \"1KiB\"\n",
            "porxy.toml:7:11: listeners.demo.max_lag: must be from 64KiB to 1GiB, not `1KiB`",
        ),
        (
            "mode = \"fanout\"\nmax_lag = \"lots\"\n",
            "porxy.toml:7:11: listeners.demo.max_lag: `lots` is not a size like `65536`, \
             `16KiB` or `1MiB`",
        ),
        (
            "mode = \"fanout\"\nstrategy = \"hash\"\n",
            "porxy.toml:3:12: listeners.demo: option `strategy` does not apply with \
             mode=fanout: every remote gets every client",
        ),
    ];
    for (keys, want) in cases {
        let err = lift(&format!("{listener}{keys}")).expect_err(keys);
        assert_eq!(err.to_string(), want, "{keys}");
    }
}
