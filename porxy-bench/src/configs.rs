//! How each proxy is configured: porxy's arguments, HAProxy's and nginx's configuration files.
//!
//! Each is the tool's defaults plus what the benchmark needs: N threads (porxy `--reactors`,
//! HAProxy `nbthread`, nginx `worker_processes`), room for the idle connections (`maxconn`,
//! `worker_connections`) and long timeouts so idle connections are not cut; then what the setup
//! measures: porxy's copy path (`splice=off`), busy polling, and the PROXY protocol taken from
//! the client and sent to the backend (porxy `accept_proxy=v2,send_proxy=v2`, HAProxy
//! `accept-proxy` and `send-proxy-v2`).

use std::net::SocketAddr;
use std::path::Path;

use crate::programs::Programs;
use crate::setup::{Kind, Setup, PORXY_BUSY_POLL};

/// porxy's arguments: one tunnel to the backend (`splice=off` for porxy-copy, the PROXY
/// protocol both ways for porxy-proxy), the setup's reactors and busy polling, warnings only.
pub fn porxy_args(setup: Setup, backend: SocketAddr) -> Vec<String> {
    let options = match setup.kind {
        Kind::PorxyCopy => "[splice=off]",
        Kind::PorxyProxy => "[accept_proxy=v2,send_proxy=v2]",
        _ => "",
    };
    let mut args = vec![
        "--tunnel".into(),
        format!("127.0.0.1:0={backend}{options}"),
        "--reactors".into(),
        setup.threads.to_string(),
        "--log".into(),
        "warn".into(),
    ];
    if setup.busy {
        args.extend(["--busy-poll".into(), PORXY_BUSY_POLL.into()]);
    }
    args
}

/// The HAProxy configuration: `mode tcp`, one frontend, one server, `nbthread`,
/// `busy-polling` when the setup busy-polls, and for haproxy-proxy `accept-proxy` on the bind
/// (it takes v1 and v2 alike: HAProxy has no v2-only switch) and `send-proxy-v2` on the server.
pub fn haproxy_config(
    setup: Setup,
    listen: SocketAddr,
    backend: SocketAddr,
    p: &Programs,
) -> String {
    let maxconn = conn_budget(p);
    let threads = setup.threads;
    let busy = if setup.busy { "    busy-polling\n" } else { "" };
    let (accept, send) = if setup.kind.proxy_protocol() {
        (" accept-proxy", " send-proxy-v2")
    } else {
        ("", "")
    };
    format!(
        "# written by porxy-bench\n\
         global\n    nbthread {threads}\n    maxconn {maxconn}\n{busy}\n\
         defaults\n    mode tcp\n    maxconn {maxconn}\n    timeout connect 5s\n    \
         timeout client 10m\n    timeout server 10m\n\n\
         frontend bench\n    bind {listen}{accept}\n    default_backend backend\n\n\
         backend backend\n    server s1 {backend}{send}\n"
    )
}

/// The nginx configuration: a stream server proxying to the backend, `worker_processes`.
pub fn nginx_config(
    threads: usize,
    listen: SocketAddr,
    backend: SocketAddr,
    prefix: &Path,
    p: &Programs,
) -> String {
    let module = p
        .nginx_stream_module
        .as_ref()
        .map(|m| format!("load_module {};\n", m.display()))
        .unwrap_or_default();
    // Each proxied connection is two nginx connections (client and upstream).
    let worker_connections = 2 * conn_budget(p) + 64;
    format!(
        "# written by porxy-bench\n{module}\
         worker_processes {threads};\n\
         worker_rlimit_nofile {nofile};\n\
         pid {pid};\n\
         error_log {log} warn;\n\n\
         events {{\n    worker_connections {worker_connections};\n}}\n\n\
         stream {{\n    server {{\n        listen {listen};\n        proxy_pass {backend};\n        \
         proxy_connect_timeout 5s;\n        proxy_timeout 10m;\n    }}\n}}\n",
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
        let default = porxy_args(Setup::new(Kind::Porxy, 1), addr(7000));
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
        let busy = porxy_args(Setup::busy(Kind::Porxy), addr(7000));
        assert_eq!(busy[..default.len()], default[..]);
        assert_eq!(busy[default.len()..], ["--busy-poll", "1ms"]);
    }

    #[test]
    fn busy_haproxy_busy_polls_in_its_global_section() {
        let config = |setup| haproxy_config(setup, addr(8000), addr(7000), &programs());
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
        let args = porxy_args(Setup::new(Kind::PorxyProxy, 1), addr(7000));
        assert_eq!(
            args[1],
            "127.0.0.1:0=127.0.0.1:7000[accept_proxy=v2,send_proxy=v2]"
        );
        let plain = porxy_args(Setup::new(Kind::Porxy, 1), addr(7000));
        assert_eq!(args[2..], plain[2..], "nothing else changes");
    }

    #[test]
    fn haproxy_proxy_accepts_on_its_bind_and_sends_v2_on_its_server() {
        let config =
            |kind| haproxy_config(Setup::new(kind, 1), addr(8000), addr(7000), &programs());
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
}
