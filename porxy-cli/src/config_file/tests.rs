//! Table-style tests of the file lift: what good files become, and where bad ones are blamed.

use std::time::Duration;

use porxy_core::{AcceptMode, Endpoint, ProxyConfig, Remote, TunnelSpec};

use super::{parse, ConfigError, Overrides};

mod errors;

fn lift(text: &str) -> Result<super::ConfigFile, ConfigError> {
    parse("porxy.toml", text, &Overrides::default())
}

const GOOD: &str = r#"
[proxy]
reactors = 3
buffer_size = "16KiB"
pipe_size = "128KiB"
backlog = 64
connect_timeout = "1s"
idle_timeout = "2m"
half_closed_timeout = "30s"
server_fin_timeout = "5s"
drain_timeout = "10s"
splice = false

[backends.b]
address = "127.0.0.1:7001"
[backends.a]
address = "[::1]:7002"
[backends.unused]
address = "localhost:7003"

[listeners.zeta]
listen = "8000"
backends = ["b", "a"]
idle_timeout = "10m"
client_fin_timeout = "2s"

[listeners.alpha]
listen = "0.0.0.0:0"
backends = ["a"]
splice = true
"#;

#[test]
fn good_file_lifts_to_specs_in_file_order() {
    let file = lift(GOOD).unwrap();
    // Every field, so that a new one with a default is seen here.
    let mut want = ProxyConfig::default();
    want.reactors = 3;
    want.buffer_size = 16 * 1024;
    want.pipe_size = 128 * 1024;
    want.backlog = 64;
    want.connect_timeout = Duration::from_secs(1);
    want.idle_timeout = Duration::from_secs(120);
    want.half_closed_timeout = Duration::from_secs(30);
    want.client_fin_timeout = None;
    want.server_fin_timeout = Some(Duration::from_secs(5));
    want.max_connections = None;
    want.splice = false;
    want.accept = AcceptMode::default();
    want.busy_poll = Duration::ZERO;
    assert_eq!(file.proxy, want);
    assert_eq!(file.drain_timeout, Some(Duration::from_secs(10)));
    let expected: &[(&str, &str)] = &[
        (
            "zeta",
            "127.0.0.1:8000=127.0.0.1:7001,[::1]:7002[idle_timeout=10m,client_fin_timeout=2s]",
        ),
        ("alpha", "0.0.0.0:0=[::1]:7002[splice=on]"),
    ];
    assert_eq!(file.listeners.len(), expected.len());
    for (tunnel, (name, spec)) in file.listeners.iter().zip(expected) {
        assert_eq!(tunnel.name, *name);
        assert_eq!(tunnel.spec, spec.parse::<TunnelSpec>().unwrap(), "{name}");
    }
    assert_eq!(
        file.listeners[0].local_origin,
        "porxy.toml:22:10: listeners.zeta.listen"
    );
    assert_eq!(
        file.listeners[0].remote_origins,
        [
            "porxy.toml:15:11: backends.b.address",
            "porxy.toml:17:11: backends.a.address"
        ]
    );
}

#[test]
fn empty_file_and_defaults() {
    let file = lift("").unwrap();
    assert_eq!(file.proxy, ProxyConfig::default());
    assert_eq!(file.drain_timeout, None);
    assert!(file.listeners.is_empty());
    let file = lift("[proxy]\nbuffer_size = 4096\n").unwrap();
    assert_eq!(file.proxy.buffer_size, 4096);
}

#[test]
fn accept_mode_is_read_and_overridden() {
    for mode in [AcceptMode::Listener, AcceptMode::Reactors] {
        let text = format!("[proxy]\naccept = \"{mode}\"\n");
        assert_eq!(lift(&text).unwrap().proxy.accept, mode);
    }
    let flag = Overrides {
        accept: Some(AcceptMode::Reactors),
        ..Overrides::default()
    };
    let file = parse("p.toml", "[proxy]\naccept = \"listener\"\n", &flag).unwrap();
    assert_eq!(file.proxy.accept, AcceptMode::Reactors, "the flag wins");
}

#[test]
fn busy_poll_is_read_and_the_flag_wins() {
    let busy = |text: &str, flag: Option<Duration>| {
        let overrides = Overrides {
            busy_poll: flag,
            ..Overrides::default()
        };
        parse("p.toml", text, &overrides).map(|file| file.proxy.busy_poll)
    };
    let file = "[proxy]\nbusy_poll = \"200us\"\n";
    assert_eq!(busy("", None).unwrap(), Duration::ZERO, "off by default");
    assert_eq!(busy(file, None).unwrap(), Duration::from_micros(200));
    assert_eq!(
        busy("[proxy]\nbusy_poll = \"0s\"\n", None).unwrap(),
        Duration::ZERO
    );
    let millisecond = Some(Duration::from_millis(1));
    assert_eq!(busy(file, millisecond).unwrap(), Duration::from_millis(1));
    assert_eq!(
        busy(file, Some(Duration::ZERO)).unwrap(),
        Duration::ZERO,
        "--busy-poll 0s turns the file's busy polling off"
    );
    assert_eq!(busy("", millisecond).unwrap(), Duration::from_millis(1));
    let err = busy(file, Some(Duration::from_secs(2))).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Flag {
                flag: "--busy-poll",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        crate::error::chain(&err),
        "--busy-poll: invalid setting `busy_poll`: 2s is more than 1s; a reactor spins a CPU for \
         this long after every burst of traffic, so this is probably a typo (windows like \
         `200us` or `1ms` are usual)"
    );
}

#[test]
fn overrides_win_and_are_blamed_by_flag() {
    let reactors = |n| Overrides {
        reactors: Some(n),
        ..Overrides::default()
    };
    let file = parse("p.toml", "[proxy]\nreactors = 0\n", &reactors(2)).unwrap();
    assert_eq!(file.proxy.reactors, 2);
    let err = parse("p.toml", "", &reactors(0)).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Flag {
                flag: "--reactors",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Each bad file: the `file:line:col: key.path` it must be blamed on, and a fragment of the
/// message.
#[test]
fn listener_order_survives_dotted_keys() {
    let text = "[backends.e]\naddress = \"7000\"\n\
                [listeners]\nb.listen = \"1\"\nb.backends = [\"e\"]\n\
                [listeners.c]\nlisten = \"2\"\nbackends = [\"e\"]\n\
                [listeners.a]\nlisten = \"3\"\nbackends = [\"e\"]\n";
    let names: Vec<String> = lift(text)
        .unwrap()
        .listeners
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["b", "c", "a"]);
}

#[test]
fn shipped_example_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/porxy.toml");
    let file = super::load(path.as_ref(), &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.drain_timeout, Some(Duration::from_secs(30)));
    assert_eq!(file.listeners.len(), 1);
    let demo = &file.listeners[0];
    assert_eq!(demo.name, "demo");
    assert_eq!(
        demo.spec.local,
        Endpoint::Addr("127.0.0.1:8000".parse().unwrap())
    );
    assert_eq!(
        demo.spec.remotes,
        [Remote::from(Endpoint::Addr(
            "127.0.0.1:7000".parse().unwrap()
        ))]
    );
    assert_eq!(
        demo.spec.options.connect_timeout,
        Some(Duration::from_secs(2))
    );
}

#[test]
fn fanout_keys_lift_to_spec_options() {
    let text = r#"
[backends.a]
address = "127.0.0.1:7001"
[backends.b]
address = "127.0.0.1:7002"

[listeners.feed]
listen = "8000"
backends = ["a", "b"]
mode = "fanout"
reply = "none"
max_lag = "4MiB"
min_live = 2
"#;
    let file = lift(text).expect("a good fan-out file");
    let spec = file.listeners[0].spec.to_string();
    assert_eq!(
        spec,
        "127.0.0.1:8000=127.0.0.1:7001,127.0.0.1:7002[mode=fanout,reply=none,max_lag=4MiB,min_live=2]"
    );
    let lag_in_bytes = text.replace("\"4MiB\"", "4194304");
    let file = lift(&lag_in_bytes).expect("max_lag as a number of bytes");
    assert_eq!(file.listeners[0].spec.to_string(), spec);
}

#[test]
fn proxy_header_keys_lift_to_spec_options_and_errors_are_located() {
    let text = r#"
[backends.a]
address = "127.0.0.1:7001"

[listeners.edge]
listen = "8000"
backends = ["a"]
accept_proxy = "v2"
proxy_timeout = "3s"
send_proxy = "v1"
proxy_from = ["10.0.0.0/8", "192.0.2.7"]
allow = ["10.0.0.0/8"]
deny = ["10.6.0.0/16"]
"#;
    let file = lift(text).expect("a good file");
    assert_eq!(
        file.listeners[0].spec.to_string(),
        "127.0.0.1:8000=127.0.0.1:7001[accept_proxy=v2,proxy_timeout=3s,send_proxy=v1,proxy_from=10.0.0.0/8;192.0.2.7,allow=10.0.0.0/8,deny=10.6.0.0/16]"
    );
    let typo = lift(&text.replace("\"v2\"", "\"v3\""))
        .unwrap_err()
        .to_string();
    assert!(
        typo.contains("listeners.edge.accept_proxy")
            && typo.contains("unknown accept_proxy `v3`; use v1, v2 or any"),
        "{typo}"
    );
    let host_bits = lift(&text.replace("\"10.6.0.0/16\"", "\"10.6.1.0/16\""))
        .unwrap_err()
        .to_string();
    assert!(
        host_bits.contains("listeners.edge.deny")
            && host_bits.contains("`10.6.1.0/16` has host bits set; did you mean `10.6.0.0/16`?"),
        "{host_bits}"
    );
    let alone = lift(&text.replace("accept_proxy = \"v2\"\n", ""))
        .unwrap_err()
        .to_string();
    assert!(
        alone.contains("option `proxy_timeout` applies only with accept_proxy"),
        "{alone}"
    );
}

#[test]
fn sni_routes_name_the_listeners_backends_and_errors_are_located() {
    let text = r#"
[backends.a]
address = "127.0.0.1:7001"
[backends.b]
address = "127.0.0.1:7002"
[backends.stray]
address = "127.0.0.1:7003"

[listeners.edge]
listen = "8443"
backends = ["a", "b"]
[listeners.edge.sni_routes]
"api.example.com" = ["a"]
"*" = ["a", "b"]
"#;
    let file = lift(text).expect("a good file");
    assert_eq!(
        file.listeners[0].spec.to_string(),
        "127.0.0.1:8443=127.0.0.1:7001,127.0.0.1:7002[sni_routes=*>127.0.0.1:7001|127.0.0.1:7002;api.example.com>127.0.0.1:7001]"
    );
    let stray = lift(&text.replace("= [\"a\"]", "= [\"stray\"]"))
        .unwrap_err()
        .to_string();
    assert!(
        stray.contains("listeners.edge.sni_routes")
            && stray.contains("backend \"stray\" is not one of this listener's backends (a, b)"),
        "{stray}"
    );
    let bad_name = lift(&text.replace("api.example.com", "api..example.com"))
        .unwrap_err()
        .to_string();
    assert!(
        bad_name.contains("`api..example.com` is not a server name"),
        "{bad_name}"
    );
}

/// `[control]`: the control socket's address and idle timeout, their errors, and the flags
/// that override them.
mod control_table {
    use std::time::Duration;

    use super::{lift, parse, Overrides};
    use crate::clients::ListenAddr;

    #[test]
    fn listen_takes_a_tcp_address_or_a_unix_path() {
        let file =
            lift("[control]\nlisten = \"unix:/run/porxy.sock\"\nidle_timeout = \"2m\"\n").unwrap();
        assert_eq!(
            file.control,
            Some(ListenAddr::Unix("/run/porxy.sock".into()))
        );
        assert_eq!(file.control_idle_timeout, Some(Duration::from_secs(120)));
        let file = lift("[control]\nlisten = \"./porxy.sock\"\n").unwrap();
        assert_eq!(file.control, Some(ListenAddr::Unix("./porxy.sock".into())));
        assert_eq!(file.control_idle_timeout, None);
        let file = lift("[control]\nlisten = \"9999\"\n").unwrap();
        assert_eq!(
            file.control,
            Some(ListenAddr::Tcp("127.0.0.1:9999".parse().unwrap()))
        );
        let file = lift("").unwrap();
        assert_eq!((file.control, file.control_idle_timeout), (None, None));
    }

    #[test]
    fn bad_values_and_unknown_keys_are_located() {
        let cases: &[(&str, &str)] = &[
            (
                "[control]\nlisten = \"localhost\"\n",
                "porxy.toml:2:10: control.listen: `localhost` is neither a TCP address nor a \
                 Unix socket path: `localhost` needs a port, like `localhost:8000`",
            ),
            (
                "[control]\nlisten = \"unix:\"\n",
                "porxy.toml:2:10: control.listen: `unix:` needs a path, like `unix:/run/porxy.sock`",
            ),
            (
                "[control]\nlisten = 9999\n",
                "porxy.toml:2:10: control.listen: an address is a string, like \"127.0.0.1:9999\"",
            ),
            (
                "[control]\nlisten = \"9999\"\nidle_timeout = \"soon\"\n",
                "porxy.toml:3:16: control.idle_timeout: `soon` is not a duration",
            ),
            (
                "[control]\nlisten = \"9999\"\nidle_timeout = \"0s\"\n",
                "porxy.toml:3:16: control.idle_timeout: must be more than zero",
            ),
            (
                "# the control socket\n[control]\nlisten = \"9999\"\nlisen = \"9998\"\n",
                "porxy.toml:4:1: control.lisen: unknown field `lisen`, expected `listen` or \
                 `idle_timeout`",
            ),
            (
                "[control]\nidle_timeout = \"1m\"\n",
                "porxy.toml:1:1: control: missing field `listen`",
            ),
        ];
        for (text, want) in cases {
            let err = lift(text).expect_err(text);
            assert!(
                err.to_string().starts_with(want),
                "{text:?}\n got: {err}\nwant: {want}"
            );
        }
    }

    #[test]
    fn the_flags_override_the_table() {
        let flags = Overrides {
            control: Some(ListenAddr::Unix("/tmp/flag.sock".into())),
            control_idle_timeout: Some(Duration::from_secs(5)),
            ..Overrides::default()
        };
        let text = "[control]\nlisten = \"127.0.0.1:9999\"\nidle_timeout = \"10m\"\n";
        let file = parse("p.toml", text, &flags).unwrap();
        assert_eq!(file.control, flags.control);
        assert_eq!(file.control_idle_timeout, Some(Duration::from_secs(5)));
        // A flag alone, with no table in the file, still gives a control socket.
        let file = parse("p.toml", "", &flags).unwrap();
        assert_eq!(file.control, flags.control);
        // The idle timeout flag alone leaves the file's address.
        let idle_only = Overrides {
            control_idle_timeout: Some(Duration::from_secs(5)),
            ..Overrides::default()
        };
        let file = parse("p.toml", text, &idle_only).unwrap();
        assert_eq!(
            file.control,
            Some(ListenAddr::Tcp("127.0.0.1:9999".parse().unwrap()))
        );
        assert_eq!(file.control_idle_timeout, Some(Duration::from_secs(5)));
    }
}

/// The `[listeners.NAME.check]` table: its keys are `interval`, `timeout`, `rise`, `fall`,
/// `send` and `expect` (the SPEC's `check_interval`... without the prefix), and its presence
/// turns checks on.
#[test]
fn check_table_keys_lift_to_spec_options() {
    let text = r#"
[backends.a]
address = "127.0.0.1:7001"

[listeners.web]
listen = "8000"
backends = ["a"]

[listeners.web.check]
interval = "500ms"
timeout = "200ms"
rise = 3
fall = 4
send = "PING\r\n"
expect = "+PONG"
"#;
    let file = lift(text).expect("a good check table");
    let options = &file.listeners[0].spec.options;
    assert_eq!(options.check, Some(true));
    assert_eq!(options.check_interval, Some(Duration::from_millis(500)));
    assert_eq!(options.check_timeout, Some(Duration::from_millis(200)));
    assert_eq!((options.rise, options.fall), (Some(3), Some(4)));
    assert_eq!(options.check_send.as_deref(), Some("PING\r\n"));
    assert_eq!(options.check_expect.as_deref(), Some("+PONG"));
    assert_eq!(
        file.listeners[0].spec.to_string(),
        r"127.0.0.1:8000=127.0.0.1:7001[check=tcp,check_interval=500ms,check_timeout=200ms,rise=3,fall=4,check_send=PING\r\n,check_expect=+PONG]"
    );

    // An empty table is enough to turn checks on, with the defaults.
    let bare = lift(&text[..text.find("interval").unwrap()]).expect("an empty check table");
    assert_eq!(bare.listeners[0].spec.options.check, Some(true));
    assert_eq!(bare.listeners[0].spec.options.check_interval, None);

    // The SPEC's names are not the table's: the error names the key and where it is.
    let spec_name = text.replace("interval = ", "check_interval = ");
    let error = lift(&spec_name).unwrap_err().to_string();
    assert!(
        error.contains("listeners.web.check.check_interval")
            && error.contains("unknown field `check_interval`"),
        "{error}"
    );
}

#[test]
fn admin_and_state_tables_lift_and_their_errors_are_located() {
    let text = r#"
[admin]
listen = "127.0.0.1:8001"
token_file = "/etc/porxy/admin.token"
max_body = "64KiB"
request_timeout = "2s"
idle_timeout = "30s"
rpc = "unix:/run/porxy-rpc.sock"
insecure = false

[state]
file = "/var/lib/porxy/state.json"
"#;
    let file = lift(text).expect("a good file");
    let admin = file.admin.expect("[admin]");
    assert_eq!(admin.listen, Some("127.0.0.1:8001".parse().unwrap()));
    assert_eq!(admin.max_body, Some(64 * 1024));
    assert_eq!(admin.request_timeout, Some(Duration::from_secs(2)));
    assert_eq!(admin.idle_timeout, Some(Duration::from_secs(30)));
    assert_eq!(admin.rpc, Some("unix:/run/porxy-rpc.sock".parse().unwrap()));
    assert_eq!(
        file.state_file.as_deref(),
        Some(std::path::Path::new("/var/lib/porxy/state.json"))
    );
    let zero = lift(&text.replace("\"2s\"", "\"0s\""))
        .unwrap_err()
        .to_string();
    assert!(
        zero.contains("admin.request_timeout") && zero.contains("must be more than zero"),
        "{zero}"
    );
    let unknown = lift(&text.replace("insecure", "insecur"))
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("unknown field `insecur`"), "{unknown}");
}
