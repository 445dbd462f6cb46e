//! Unit tests of the SPEC grammar: accepted forms, options, and where each rejection points.

use super::*;
use std::net::SocketAddr;
use std::time::Duration;

fn addr(s: &str) -> Endpoint {
    Endpoint::Addr(s.parse::<SocketAddr>().unwrap())
}

fn endpoints(spec: &TunnelSpec) -> Vec<Endpoint> {
    spec.remotes.iter().map(|r| r.endpoint.clone()).collect()
}

#[test]
fn accepted_forms() {
    let cases: &[(&str, Endpoint, Vec<Endpoint>)] = &[
        (
            "8000=9000",
            addr("127.0.0.1:8000"),
            vec![addr("127.0.0.1:9000")],
        ),
        (
            "0.0.0.0:8000=10.1.2.3:80,10.1.2.4:80",
            addr("0.0.0.0:8000"),
            vec![addr("10.1.2.3:80"), addr("10.1.2.4:80")],
        ),
        (
            "[::1]:8000=[::1]:9000",
            addr("[::1]:8000"),
            vec![addr("[::1]:9000")],
        ),
        (
            " 8000 = localhost:9000 , 9001 ",
            addr("127.0.0.1:8000"),
            vec![
                Endpoint::Host {
                    host: "localhost".into(),
                    port: 9000,
                },
                addr("127.0.0.1:9001"),
            ],
        ),
        (
            "8000=[::1]:9000,9001",
            addr("127.0.0.1:8000"),
            vec![addr("[::1]:9000"), addr("127.0.0.1:9001")],
        ),
    ];
    for (text, local, remotes) in cases {
        let spec: TunnelSpec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(&spec.local, local, "{text}");
        assert_eq!(&endpoints(&spec), remotes, "{text}");
        assert!(spec.remotes.iter().all(|r| r.weight == 1), "{text}");
        assert_eq!(spec.options, TunnelOptions::default(), "{text}");
    }
}

#[test]
fn options_in_brackets() {
    let spec: TunnelSpec = "8000=9000,[::1]:9001[connect_timeout=2s, idle-timeout=1m]"
        .parse()
        .unwrap();
    assert_eq!(
        endpoints(&spec),
        vec![addr("127.0.0.1:9000"), addr("[::1]:9001")]
    );
    assert_eq!(spec.options.connect_timeout, Some(Duration::from_secs(2)));
    assert_eq!(spec.options.idle_timeout, Some(Duration::from_secs(60)));
    assert_eq!(spec.options.half_closed_timeout, None);
    let empty: TunnelSpec = "8000=9000[]".parse().unwrap();
    assert_eq!(empty.options, TunnelOptions::default());
}

#[test]
fn weights_follow_a_star() {
    let spec: TunnelSpec = "8000=9000*3,[::1]:9001,9002*1[strategy=hash]"
        .parse()
        .unwrap();
    let weights: Vec<u32> = spec.remotes.iter().map(|r| r.weight).collect();
    assert_eq!(weights, [3, 1, 1]);
    assert_eq!(spec.options.strategy, Some(Strategy::Hash));
    assert_eq!(
        spec.to_string(),
        "127.0.0.1:8000=127.0.0.1:9000*3,[::1]:9001,127.0.0.1:9002[strategy=hash]"
    );
}

#[test]
fn a_remote_alone_parses_with_its_weight() {
    let remote: Remote = "127.0.0.1:7001*5".parse().unwrap();
    assert_eq!(remote.endpoint, addr("127.0.0.1:7001"));
    assert_eq!(remote.weight, 5);
    assert_eq!(remote.to_string(), "127.0.0.1:7001*5");
    let err = "7001 x".parse::<Remote>().unwrap_err();
    assert_eq!(err.column(), 6);
}

#[test]
fn display_round_trips() {
    for text in [
        "127.0.0.1:8000=127.0.0.1:9000",
        "[::1]:8000=db.local:5432,127.0.0.1:9001[connect_timeout=2s,half_closed_timeout=500ms]",
    ] {
        let spec: TunnelSpec = text.parse().unwrap();
        assert_eq!(spec.to_string(), text);
        assert_eq!(spec.to_string().parse::<TunnelSpec>().unwrap(), spec);
    }
}

/// Each malformed SPEC: the column of the fault and a fragment of the message.
#[test]
fn rejections_point_at_the_fault() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "empty tunnel"),
        ("8000", 5, "expected `=`"),
        ("8000=", 6, "expected REMOTE"),
        ("=9000", 1, "expected LOCAL"),
        ("8000=foo:bar", 10, "`bar` is not a port"),
        ("8000=9000,", 11, "expected REMOTE"),
        ("8000=99999", 6, "out of range"),
        ("8000=::1:9000", 6, "IPv6 addresses go in brackets"),
        ("8000=[::1:9000", 6, "closing `]`"),
        ("8000=[::1]", 11, "needs a port"),
        ("8000=[::g]:1", 7, "not an IPv6 address"),
        ("8000=300.1.1.1:80", 6, "not an IPv4 address"),
        ("8000=bad_host:80", 6, "not a host name"),
        ("8000=host", 6, "needs a port"),
        (
            "8000=9000[conect_timeout=2s]",
            11,
            "unknown option `conect_timeout`",
        ),
        ("8000=9000[connect_timeout=2]", 27, "no unit"),
        ("8000=9000[connect_timeout=0s]", 27, "more than zero"),
        ("8000=9000[connect_timeout]", 26, "expected `=`"),
        ("8000=9000[connect_timeout=2s", 29, "expected `,` or `]`"),
        ("8000=9000[idle_timeout=1s] x", 28, "unexpected `x`"),
        ("8000=9000 9001", 11, "unexpected `9`"),
        ("8000=9000*", 11, "expected a weight"),
        ("8000=9000*0", 11, "from 1 to 1000"),
        ("8000=9000*1001", 11, "from 1 to 1000"),
        (
            "8000=9000[strategy=fastest]",
            20,
            "unknown strategy `fastest`",
        ),
    ];
    for (text, column, fragment) in cases {
        let err = text.parse::<TunnelSpec>().expect_err(text);
        assert!(
            err.message().contains(fragment),
            "{text}: message {:?} lacks {fragment:?}",
            err.message()
        );
        assert_eq!(err.column(), *column, "{text}: {err}");
        assert!(err.to_string().contains(&format!("column {column}")));
    }
}

#[test]
fn caret_sits_under_the_fault() {
    let err = "8000=foo:bar".parse::<TunnelSpec>().unwrap_err();
    assert_eq!(err.caret(), "  8000=foo:bar\n           ^");
}

#[test]
fn parser_never_panics_on_odd_input() {
    let samples = [
        "[",
        "]",
        "[]",
        "=",
        "==",
        ",",
        "8000=[",
        "8000=[]:1",
        "8000=9000[",
        "8000=9000[=]",
        "8000=9000[a=b",
        "é=ü",
        "8000=9000[idle_timeout=ü]",
        "[::1]",
        "[::1]:",
        ":80",
        "8000=:80",
        "\u{0}",
        "8000=9000]",
    ];
    for text in samples {
        let _ = text.parse::<TunnelSpec>();
    }
}

/// Regression: an option given twice was taken, the last one winning, where the TOML file
/// refuses a key given twice. Refused at the second one, whatever its spelling.
#[test]
fn an_option_given_twice_is_refused_at_the_second() {
    let cases: &[(&str, usize)] = &[
        (
            "127.0.0.1:0=127.0.0.1:9[idle_timeout=1s,idle_timeout=4s]",
            41,
        ),
        ("8000=9000[idle_timeout=1s, Idle-Timeout=4s]", 28),
        ("8000=9000[check=tcp,rise=2,check=off]", 28),
    ];
    for (text, column) in cases {
        let err = text.parse::<TunnelSpec>().expect_err(text);
        assert_eq!(err.column(), *column, "{text}: {err}");
        assert!(
            err.message().contains("given twice"),
            "{text}: {}",
            err.message()
        );
    }
    let err = "8000=9000[idle_timeout=1s,idle_timeout=4s]"
        .parse::<TunnelSpec>()
        .unwrap_err();
    assert_eq!(
        err.message(),
        "option `idle_timeout` is given twice (first at column 11); give each option once"
    );
}

/// Regression: remotes that no TCP connect can reach as one server (port 0, the unspecified,
/// broadcast and multicast addresses) were accepted. Refused where they stand, as remotes only:
/// a listen address may be `0.0.0.0` or port 0.
#[test]
fn remotes_no_server_can_be_are_refused() {
    let cases: &[(&str, usize, &str)] = &[
        ("0=0", 3, "port 0"),
        ("0=127.0.0.1:0", 13, "port 0"),
        ("0=db.local:00", 12, "port 0"),
        ("0=[::1]:0", 9, "port 0"),
        ("0=9000,127.0.0.1:0*2", 18, "port 0"),
        ("0=0.0.0.0:80", 3, "unspecified address"),
        ("0=[::]:80", 3, "unspecified address"),
        ("0=[::ffff:0.0.0.0]:80", 3, "unspecified address"),
        ("0=255.255.255.255:80", 3, "broadcast address"),
        ("0=224.0.0.1:80", 3, "multicast address"),
        ("0=239.255.255.250:1900", 3, "multicast address"),
        ("0=[ff02::1]:80", 3, "multicast address"),
    ];
    for (text, column, fragment) in cases {
        let err = text.parse::<TunnelSpec>().expect_err(text);
        assert!(
            err.message().contains(fragment),
            "{text}: message {:?} lacks {fragment:?}",
            err.message()
        );
        assert_eq!(err.column(), *column, "{text}: {err}");
    }
    for remote in ["0.0.0.0:80", "127.0.0.1:0*2", "[ff02::1]:80"] {
        assert!(remote.parse::<Remote>().is_err(), "{remote}");
    }
    for local in ["0.0.0.0:0=9000", "[::]:8000=9000", "0=10.0.0.255:80"] {
        local
            .parse::<TunnelSpec>()
            .unwrap_or_else(|e| panic!("{local}: {e}"));
    }
}

/// Regression: `127.0.0.1:9000:1` was told to bracket it as an IPv6 address, and `-1` to add a
/// port to it as a host name: the hints now say what is wrong.
#[test]
fn hints_say_what_is_wrong_with_the_address() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "0=127.0.0.1:9000:1",
            17,
            "`127.0.0.1:9000:1` has too many colons: an IPv4 address takes one `:PORT`",
        ),
        (
            "0=db.local:9000:1",
            16,
            "`db.local:9000:1` has too many colons: a host name takes one `:PORT`",
        ),
        ("0=-1", 3, "`-1` is not a port number (0 to 65535)"),
        ("0=+80", 3, "`+80` is not a port number (0 to 65535)"),
        ("-1=9000", 1, "`-1` is not a port number (0 to 65535)"),
        (
            "0=80.5",
            3,
            "`80.5` is neither a port number (0 to 65535) nor an IPv4 address",
        ),
        ("0=db!:80", 3, "`db!` is not a host name or IP address"),
        (
            "0=db!",
            3,
            "`db!` is not a port number, host name or IP address",
        ),
        (
            "0=db.local",
            3,
            "`db.local` needs a port, like `db.local:8000`",
        ),
        (
            "0=10.0.0.1",
            3,
            "`10.0.0.1` needs a port, like `10.0.0.1:8000`",
        ),
        (
            "0=::1:9000",
            3,
            "IPv6 addresses go in brackets, like `[::1]:9000`",
        ),
        (
            "0=::1",
            3,
            "IPv6 addresses go in brackets, with a port, like `[::1]:8000`",
        ),
        (
            "0=fe80::1:2:3:4:5:6:7",
            3,
            "IPv6 addresses go in brackets, like `[fe80::1:2:3:4:5:6]:7`",
        ),
        (
            "0=a::b::c:80",
            3,
            "`a::b::c:80` is not an address: an IPv6 address goes in brackets, like `[::1]:8000`",
        ),
    ];
    for (text, column, message) in cases {
        let err = text.parse::<TunnelSpec>().expect_err(text);
        assert_eq!(err.message(), *message, "{text}");
        assert_eq!(err.column(), *column, "{text}: {err}");
    }
}

/// The grammar is a leaf: besides `units`, it names nothing of the crate, so that the runtime
/// (errors, config, tunnels, balancing) may use it anywhere without a module cycle.
#[test]
fn the_grammar_names_nothing_of_the_runtime() {
    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("spec/ is readable") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    sources(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/spec"),
        &mut files,
    );
    assert!(files.len() >= 10, "found {files:?}");
    // Spelled so that this test does not find itself.
    let needle = ["crate", "::"].concat();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a source file");
        let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
        for line in code {
            for (at, _) in line.match_indices(needle.as_str()) {
                let path = &line[at + needle.len()..];
                assert!(
                    path.starts_with("units::") || path.starts_with("spec::"),
                    "{} uses the runtime: {line}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn sni_routes_name_the_tunnels_own_remotes() {
    let text = "127.0.0.1:443=10.0.0.1:443,[::1]:443\
                [tls_handshake_timeout=3s,sni_routes=a.test>10.0.0.1:443;*>[::1]:443]";
    let spec: TunnelSpec = text.parse().unwrap();
    assert_eq!(spec.check(), Ok(()));
    let routes = spec.options.sni_routes.as_ref().unwrap();
    assert_eq!(routes.to_string(), "a.test>10.0.0.1:443;*>[::1]:443");
    assert_eq!(spec.to_string().parse::<TunnelSpec>().unwrap(), spec);

    let stray = "127.0.0.1:443=10.0.0.1:443[sni_routes=a.test>10.0.0.9:443]"
        .parse::<TunnelSpec>()
        .map(|spec| spec.check());
    let message = match stray {
        Ok(checked) => checked.unwrap_err().to_string(),
        Err(error) => error.to_string(),
    };
    assert!(
        message.contains(
            "sni_routes sends clients to 10.0.0.9:443, which is not one of the tunnel's remotes"
        ),
        "{message}"
    );
    let fanout =
        "127.0.0.1:443=10.0.0.1:443,10.0.0.2:443[mode=fanout,sni_routes=a.test>10.0.0.1:443]"
            .parse::<TunnelSpec>()
            .unwrap_err()
            .to_string();
    assert!(
        fanout.contains("option `sni_routes` does not apply with mode=fanout"),
        "{fanout}"
    );
}

#[test]
fn a_remotes_own_tls_settings_need_tls_to_it() {
    let mut spec: TunnelSpec = "127.0.0.1:1=127.0.0.1:9,127.0.0.1:10".parse().unwrap();
    spec.remotes[1].tls.ca = Some("/ca.pem".into());
    assert_eq!(
        spec.check(),
        Err(OptionsConflict::RemoteTlsOnly {
            remote: "127.0.0.1:10".into(),
            key: OptionKey::TlsCa
        })
    );
    spec.remotes[1].tls.enabled = Some(true);
    assert_eq!(spec.check(), Ok(()));
    assert!(!spec.tls_to(&spec.remotes[0]) && spec.tls_to(&spec.remotes[1]));
    spec.remotes[1].tls.cert = Some("/c.pem".into());
    assert_eq!(
        spec.check(),
        Err(OptionsConflict::TlsPair(OptionKey::BackendTlsKey))
    );
    spec.remotes[1].tls.cert = None;
    spec.options.check_tls = Some(false);
    assert_eq!(spec.check(), Ok(()), "check_tls with one TLS remote");
    spec.remotes[1].tls = RemoteTls::default();
    assert_eq!(
        spec.check(),
        Err(OptionsConflict::BackendTlsOnly(OptionKey::CheckTls))
    );
}

/// Found by the `spec` fuzzer: a text value holding `[`, `,` or `]` was written back unescaped,
/// and the written SPEC did not parse. Now they are escaped (`\[`, `\,`, `\]`) both ways.
#[test]
fn text_values_with_brackets_and_commas_survive_a_round_trip() {
    let spec: TunnelSpec = r"8000=7000[check=on,check_send=a\,b\[c\]d,check_expect=x[1]]"
        .parse()
        .unwrap();
    assert_eq!(spec.options.check_send.as_deref(), Some("a,b[c]d"));
    let written = spec.to_string();
    assert!(written.contains(r"check_send=a\,b\[c\]d"), "{written}");
    assert_eq!(written.parse::<TunnelSpec>().unwrap(), spec);
    // A `[` without its `]`, as the fuzzer wrote it: the value ends at the `]`.
    let spec: TunnelSpec = "8000=7000[check=on,check_send=x[1,]".parse().unwrap();
    assert_eq!(spec.options.check_send.as_deref(), Some("x[1"));
    assert_eq!(spec.to_string().parse::<TunnelSpec>().unwrap(), spec);
}
