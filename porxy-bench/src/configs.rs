//! How each proxy is configured: porxy's arguments, HAProxy's and nginx's configuration files.
//!
//! Each is the tool's defaults plus what the benchmark needs: N threads (porxy `--reactors`,
//! HAProxy `nbthread`, nginx `worker_processes`), room for the idle connections (`maxconn`,
//! `worker_connections`) and long timeouts so idle connections are not cut; then what the setup
//! measures: porxy's copy path (`splice=off`), busy polling, the PROXY protocol taken from
//! the client and sent to the backend (porxy `accept_proxy=v2,send_proxy=v2`, HAProxy
//! `accept-proxy` and `send-proxy-v2`), and TLS terminated with the run's certificate (porxy
//! `tls_cert`/`tls_key`, HAProxy `ssl crt` on its bind, nginx `listen ... ssl` with
//! `ssl_certificate`/`ssl_certificate_key`), each with its own TLS defaults but one: nginx
//! before 1.23.4 leaves TLS 1.3 out by default, so its versions are set to porxy's (1.2 and
//! 1.3), which HAProxy's defaults are too; all three then negotiate TLS 1.3. With `routes`
//! (the `-sni` kinds), each routes TLS by server name without terminating it, as
//! [`crate::sni`] says. The `-log` kinds write an access log line per connection, as
//! [`crate::access_log`] says.

use std::net::SocketAddr;
use std::path::Path;

use crate::access_log;
use crate::certs::Certificate;
use crate::programs::Programs;
use crate::setup::{Kind, Setup, PORXY_BUSY_POLL};
use crate::sni::{Routes, NGINX_PREREAD, NGINX_UPSTREAM};

/// porxy's arguments: one tunnel to the backend (`splice=off` for porxy-copy, the PROXY
/// protocol both ways for porxy-proxy, `cert`'s files for porxy-tls; with `routes`, to both
/// of their ports with `sni_routes` instead), the setup's reactors and busy polling, warnings
/// only; with `access_log`, its access log (logfmt) into that file.
pub fn porxy_args(
    setup: Setup,
    backend: SocketAddr,
    cert: Option<&Certificate>,
    routes: Option<&Routes>,
    access_log: Option<&Path>,
) -> Vec<String> {
    let options = match (setup.kind, cert) {
        (Kind::PorxyCopy, _) => "[splice=off]".to_owned(),
        (Kind::PorxyProxy, _) => "[accept_proxy=v2,send_proxy=v2]".to_owned(),
        (Kind::PorxyTls, Some(cert)) => format!(
            "[tls_cert={},tls_key={}]",
            cert.cert.display(),
            cert.key.display()
        ),
        _ => String::new(),
    };
    let tunnel = match routes {
        Some(routes) => routes.porxy_tunnel(),
        None => format!("127.0.0.1:0={backend}{options}"),
    };
    let mut args = vec![
        "--tunnel".into(),
        tunnel,
        "--reactors".into(),
        setup.threads.to_string(),
        "--log".into(),
        "warn".into(),
    ];
    if setup.busy {
        args.extend(["--busy-poll".into(), PORXY_BUSY_POLL.into()]);
    }
    if let Some(file) = access_log {
        args.extend(["--access-log".into(), file.display().to_string()]);
    }
    args
}

/// The HAProxy configuration: `mode tcp`, one frontend, one server, `nbthread`,
/// `busy-polling` when the setup busy-polls, for haproxy-proxy `accept-proxy` on the bind
/// (it takes v1 and v2 alike: HAProxy has no v2-only switch) and `send-proxy-v2` on the
/// server, for haproxy-tls `ssl crt` on the bind with `cert`'s certificate and key in one
/// file, with `routes` its frontend's rules and a backend for each route instead of the
/// one backend, and for haproxy-log a tcplog line per connection on its stdout.
pub fn haproxy_config(
    setup: Setup,
    listen: SocketAddr,
    backend: SocketAddr,
    p: &Programs,
    cert: Option<&Certificate>,
    routes: Option<&Routes>,
) -> String {
    let maxconn = conn_budget(p);
    let threads = setup.threads;
    let busy = if setup.busy { "    busy-polling\n" } else { "" };
    let (log_global, log_defaults) = if setup.kind.access_log() {
        (access_log::HAPROXY_GLOBAL, access_log::HAPROXY_DEFAULTS)
    } else {
        ("", "")
    };
    let (mut accept, send) = if setup.kind.proxy_protocol() {
        (" accept-proxy".to_owned(), " send-proxy-v2")
    } else {
        (String::new(), "")
    };
    if let (true, Some(cert)) = (setup.kind.tls(), cert) {
        accept.push_str(&format!(" ssl crt {}", cert.combined.display()));
    }
    let (rules, backends) = match routes {
        Some(routes) => (routes.haproxy_rules(), routes.haproxy_backends()),
        None => (
            "    default_backend backend\n".to_owned(),
            format!("backend backend\n    server s1 {backend}{send}\n"),
        ),
    };
    format!(
        "# written by porxy-bench\n\
         global\n    nbthread {threads}\n    maxconn {maxconn}\n{busy}{log_global}\n\
         defaults\n    mode tcp\n    maxconn {maxconn}\n    timeout connect 5s\n    \
         timeout client 10m\n    timeout server 10m\n{log_defaults}\n\
         frontend bench\n    bind {listen}{accept}\n{rules}\n{backends}"
    )
}

/// The nginx configuration: a stream server proxying to the backend, `worker_processes`; with
/// a `cert`, its listener terminates TLS with it (TLS 1.2 and 1.3, see the module docs); with
/// `routes`, it prereads the ClientHello and proxies to the upstream mapped from its name; for
/// nginx-log, an access log line per session into [`access_log::NGINX_FILE`] in `prefix`.
pub fn nginx_config(
    setup: Setup,
    listen: SocketAddr,
    backend: SocketAddr,
    prefix: &Path,
    p: &Programs,
    cert: Option<&Certificate>,
    routes: Option<&Routes>,
) -> String {
    let (ssl, tls) = match cert {
        Some(cert) => (
            " ssl",
            format!(
                "        ssl_certificate {};\n        ssl_certificate_key {};\n        \
                 ssl_protocols TLSv1.2 TLSv1.3;\n",
                cert.cert.display(),
                cert.key.display()
            ),
        ),
        None => ("", String::new()),
    };
    let (map, preread, upstream) = match routes {
        Some(routes) => (routes.nginx_map(), NGINX_PREREAD, NGINX_UPSTREAM.to_owned()),
        None => (String::new(), "", backend.to_string()),
    };
    let module = p
        .nginx_stream_module
        .as_ref()
        .map(|m| format!("load_module {};\n", m.display()))
        .unwrap_or_default();
    let (log_format, access) = if setup.kind.access_log() {
        (
            access_log::nginx_log_format(),
            access_log::nginx_access_log(&prefix.join(access_log::NGINX_FILE)),
        )
    } else {
        (String::new(), String::new())
    };
    // Each proxied connection is two nginx connections (client and upstream).
    let worker_connections = 2 * conn_budget(p) + 64;
    let threads = setup.threads;
    format!(
        "# written by porxy-bench\n{module}\
         worker_processes {threads};\n\
         worker_rlimit_nofile {nofile};\n\
         pid {pid};\n\
         error_log {log} warn;\n\n\
         events {{\n    worker_connections {worker_connections};\n}}\n\n\
         stream {{\n{log_format}{map}    server {{\n        listen {listen}{ssl};\n{tls}{preread}{access}        \
         proxy_pass {upstream};\n        proxy_connect_timeout 5s;\n        proxy_timeout 10m;\n    \
         }}\n}}\n",
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn programs() -> Programs {
        Programs {
            porxy: PathBuf::from("porxy"),
            porxy_b: None,
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
        let default = porxy_args(Setup::new(Kind::Porxy, 1), addr(7000), None, None, None);
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
        let busy = porxy_args(Setup::busy(Kind::Porxy), addr(7000), None, None, None);
        assert_eq!(busy[..default.len()], default[..]);
        assert_eq!(busy[default.len()..], ["--busy-poll", "1ms"]);
    }

    #[test]
    fn busy_haproxy_busy_polls_in_its_global_section() {
        let config = |setup| haproxy_config(setup, addr(8000), addr(7000), &programs(), None, None);
        let busy = config(Setup::busy(Kind::Haproxy));
        let global = busy.split("\n\n").find(|s| s.contains("global")).unwrap();
        assert!(global.lines().any(|l| l.trim() == "busy-polling"), "{busy}");
        assert_eq!(busy.matches("busy-polling").count(), 1, "{busy}");
        let default = config(Setup::new(Kind::Haproxy, 1));
        assert!(!default.contains("busy"), "{default}");
        assert_eq!(default, busy.replace("    busy-polling\n", ""));
    }

    #[test]
    fn porxy_proxy_takes_and_sends_v2_headers_on_its_tunnel() {
        let args = porxy_args(
            Setup::new(Kind::PorxyProxy, 1),
            addr(7000),
            None,
            None,
            None,
        );
        assert_eq!(
            args[1],
            "127.0.0.1:0=127.0.0.1:7000[accept_proxy=v2,send_proxy=v2]"
        );
        let plain = porxy_args(Setup::new(Kind::Porxy, 1), addr(7000), None, None, None);
        assert_eq!(args[2..], plain[2..], "nothing else changes");
    }

    #[test]
    fn haproxy_proxy_accepts_on_its_bind_and_sends_v2_on_its_server() {
        let config = |kind| {
            haproxy_config(
                Setup::new(kind, 1),
                addr(8000),
                addr(7000),
                &programs(),
                None,
                None,
            )
        };
        let with = config(Kind::HaproxyProxy);
        assert!(
            with.contains("    bind 127.0.0.1:8000 accept-proxy\n"),
            "{with}"
        );
        assert!(
            with.contains("    server s1 127.0.0.1:7000 send-proxy-v2\n"),
            "{with}"
        );
        let without = config(Kind::Haproxy);
        assert_eq!(
            without,
            with.replace(" accept-proxy", "")
                .replace(" send-proxy-v2", "")
        );
    }

    #[test]
    fn the_tls_kinds_serve_the_same_certificate_each_its_own_way() {
        let dir = PathBuf::from("/run/bench");
        let cert = Certificate {
            cert: dir.join("tls-ecdsa.pem"),
            key: dir.join("tls-ecdsa.key"),
            combined: dir.join("tls-ecdsa.combined.pem"),
            der: Vec::new().into(),
        };
        let porxy = porxy_args(
            Setup::new(Kind::PorxyTls, 1),
            addr(7000),
            Some(&cert),
            None,
            None,
        );
        assert_eq!(
            porxy[1],
            "127.0.0.1:0=127.0.0.1:7000[tls_cert=/run/bench/tls-ecdsa.pem,tls_key=/run/bench/tls-ecdsa.key]"
        );
        let setup = Setup::new(Kind::HaproxyTls, 1);
        let haproxy = haproxy_config(
            setup,
            addr(8000),
            addr(7000),
            &programs(),
            Some(&cert),
            None,
        );
        assert!(
            haproxy.contains("    bind 127.0.0.1:8000 ssl crt /run/bench/tls-ecdsa.combined.pem\n"),
            "{haproxy}"
        );
        assert_eq!(
            haproxy.replace(" ssl crt /run/bench/tls-ecdsa.combined.pem", ""),
            haproxy_config(
                Setup::new(Kind::Haproxy, 1),
                addr(8000),
                addr(7000),
                &programs(),
                None,
                None
            )
        );
        let prefix = dir.join("nginx");
        let nginx = nginx_config(
            Setup::new(Kind::NginxTls, 1),
            addr(8000),
            addr(7000),
            &prefix,
            &programs(),
            Some(&cert),
            None,
        );
        for line in [
            "listen 127.0.0.1:8000 ssl;",
            "ssl_certificate /run/bench/tls-ecdsa.pem;",
            "ssl_certificate_key /run/bench/tls-ecdsa.key;",
            "ssl_protocols TLSv1.2 TLSv1.3;",
        ] {
            assert!(nginx.lines().any(|l| l.trim() == line), "{line}: {nginx}");
        }
        let plain = nginx_config(
            Setup::new(Kind::Nginx, 1),
            addr(8000),
            addr(7000),
            &prefix,
            &programs(),
            None,
            None,
        );
        assert!(!plain.contains("ssl"), "{plain}");
    }

    #[test]
    fn the_sni_kinds_route_instead_of_forwarding_to_the_one_backend() {
        let routes = Routes {
            routed: addr(7001),
            default: addr(7002),
        };
        let porxy = porxy_args(
            Setup::new(Kind::PorxySni, 1),
            addr(7001),
            None,
            Some(&routes),
            None,
        );
        assert_eq!(porxy[1], routes.porxy_tunnel());
        let setup = Setup::new(Kind::HaproxySni, 1);
        let haproxy = haproxy_config(
            setup,
            addr(8000),
            addr(7001),
            &programs(),
            None,
            Some(&routes),
        );
        assert!(haproxy.contains(&format!(
            "    bind 127.0.0.1:8000\n{}\n{}",
            routes.haproxy_rules(),
            routes.haproxy_backends()
        )));
        assert!(!haproxy.contains("backend backend"), "{haproxy}");
        let prefix = PathBuf::from("/run/bench/nginx");
        let nginx = nginx_config(
            Setup::new(Kind::NginxSni, 1),
            addr(8000),
            addr(7001),
            &prefix,
            &programs(),
            None,
            Some(&routes),
        );
        assert!(nginx.contains(&routes.nginx_map()), "{nginx}");
        for line in [
            "listen 127.0.0.1:8000;",
            "ssl_preread on;",
            "proxy_pass $upstream;",
        ] {
            assert!(nginx.lines().any(|l| l.trim() == line), "{line}: {nginx}");
        }
        let plain = nginx_config(
            Setup::new(Kind::Nginx, 1),
            addr(8000),
            addr(7001),
            &prefix,
            &programs(),
            None,
            None,
        );
        assert!(plain.contains("proxy_pass 127.0.0.1:7001;") && !plain.contains("preread"));
    }

    #[test]
    fn the_log_kinds_add_their_access_log_and_nothing_else() {
        let log = PathBuf::from("/run/bench/p.access.log");
        let with = porxy_args(
            Setup::new(Kind::PorxyLog, 1),
            addr(7000),
            None,
            None,
            Some(&log),
        );
        let plain = porxy_args(Setup::new(Kind::Porxy, 1), addr(7000), None, None, None);
        assert_eq!(with[..plain.len()], plain[..]);
        assert_eq!(
            with[plain.len()..],
            ["--access-log", "/run/bench/p.access.log"]
        );
        let haproxy = |kind| {
            haproxy_config(
                Setup::new(kind, 1),
                addr(8000),
                addr(7000),
                &programs(),
                None,
                None,
            )
        };
        let with = haproxy(Kind::HaproxyLog);
        let global = with.split("\n\n").find(|s| s.contains("global")).unwrap();
        assert!(
            global.contains("    log stdout format raw local0"),
            "{with}"
        );
        let defaults = with.split("\n\n").find(|s| s.contains("defaults")).unwrap();
        assert!(
            defaults.contains("    log global\n    option tcplog"),
            "{with}"
        );
        assert_eq!(
            with.replace(access_log::HAPROXY_GLOBAL, "")
                .replace(access_log::HAPROXY_DEFAULTS, ""),
            haproxy(Kind::Haproxy)
        );
        let prefix = PathBuf::from("/run/bench/nginx");
        let nginx = |kind| {
            nginx_config(
                Setup::new(kind, 1),
                addr(8000),
                addr(7000),
                &prefix,
                &programs(),
                None,
                None,
            )
        };
        let with = nginx(Kind::NginxLog);
        assert!(
            with.lines()
                .any(|l| l.trim() == "access_log /run/bench/nginx/access.log porxy_bench;"),
            "{with}"
        );
        assert!(with.contains("log_format porxy_bench '"), "{with}");
        assert_eq!(
            with.replace(&access_log::nginx_log_format(), "").replace(
                &access_log::nginx_access_log(&prefix.join(access_log::NGINX_FILE)),
                ""
            ),
            nginx(Kind::Nginx)
        );
    }
}
